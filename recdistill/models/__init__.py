"""Recommender models, one per file, all following `recdistill.models.base`."""
