"""Run a rating model over every target of a split in batches, without gradients."""

from __future__ import annotations

import torch

from recdistill.data.batching import RatingWindows, TrainingSequences, UserRows
from recdistill.models.base import RatingModel, RatingOutput


@torch.no_grad()
def predict(model: RatingModel, data: RatingWindows | UserRows | TrainingSequences, batch_size: int,
            device: torch.device | str) -> RatingOutput:
    """Outputs for every target, on the CPU, with row i belonging to split row i."""
    was_training = model.training
    model.eval()
    parts, indices = [], []
    for batch in data.batches(batch_size, device):
        parts.append(model(batch))
        indices.append(batch["index"].cpu())
    model.train(was_training)
    order = torch.argsort(torch.cat(indices))
    return RatingOutput(*(torch.cat([getattr(p, f) for p in parts]).cpu()[order] for f in RatingOutput._fields))
