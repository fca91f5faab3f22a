"""Datasets: readers, downloads, synthetic data, splits and item text embeddings."""
