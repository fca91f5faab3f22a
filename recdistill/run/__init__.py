"""The run spine: stages, model cache, result records."""
