"""Transfer learning between models: shared weights, zero-shot content mapping for cold items."""
