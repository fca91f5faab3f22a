"""Training loops with early stopping and resumable checkpoints."""
