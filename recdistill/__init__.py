"""recdistill: knowledge distillation and transfer learning for recommender systems."""

__version__ = "0.1.0"
