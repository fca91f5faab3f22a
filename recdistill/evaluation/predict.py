"""Run a rating model over every example of a split in batches, without gradients."""

from __future__ import annotations

import torch

from recdistill.data.batching import RatingExamples
from recdistill.models.base import RatingModel, RatingOutput


@torch.no_grad()
def predict(
    model: RatingModel, examples: RatingExamples, batch_size: int, device: torch.device | str
) -> RatingOutput:
    """Concatenated outputs (logits, point estimates, hidden states) for all examples, on the CPU."""
    was_training = model.training
    model.eval()
    parts = [model(batch) for batch in examples.batches(batch_size, device)]
    model.train(was_training)
    return RatingOutput(*(torch.cat([getattr(p, field) for p in parts]).cpu() for field in RatingOutput._fields))
