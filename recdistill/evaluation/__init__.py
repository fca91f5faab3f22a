"""Metrics as tensor functions, model prediction and efficiency measurement."""
