"""Model checkpoints that hold their own typed config, so a model is rebuilt from the file alone."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from recdistill.models.base import DataShape, RatingModel
from recdistill.models.ranking_base import RankingModel, RankingShape
from recdistill.models.registry import build_model
from recdistill.utils.atomic import torch_save
from recdistill.utils.safe_load import load_plain


def save_model(path: str | Path, model: RatingModel | RankingModel, state: dict[str, torch.Tensor] | None = None,
               extra: dict[str, Any] | None = None) -> None:
    """Atomically save the unwrapped model's config, data shape and weights (`state` or its own)."""
    torch_save(path, {
        "config": asdict(model.config),
        "shape": asdict(model.shape),
        "shape_kind": type(model.shape).__name__,
        "state_dict": state if state is not None else model.state_dict(),
        "extra": extra or {},
    })


def load_model(path: str | Path, device: torch.device | str = "cpu"
               ) -> tuple[RatingModel | RankingModel, dict[str, Any]]:
    """Rebuild a model from a checkpoint written by `save_model`; returns (model, extra)."""
    blob = load_plain(path, "model checkpoint")
    shape_class = RankingShape if blob.get("shape_kind") == "RankingShape" else DataShape
    model = build_model(blob["config"], shape_class(**blob["shape"]))
    model.load_state_dict(blob["state_dict"])
    return model.to(device), blob["extra"]
