"""Zero-shot item vectors: an MLP learns to map item content (text embedding, genres, year) to the
vectors a trained model holds for warm items, then maps the content of cold items it never saw.

The mapper is fitted full-batch with AdamW on 90% of the warm items; the other 10% choose the best
step (early stopping on the configured loss), so the summary's `valid_loss` is an honest estimate of
how well content predicts an unseen item's vector -- compare it with `mean_valid_loss`, the loss of
predicting every held-out item as the mean training vector.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from recdistill.errors import ConfigError
from recdistill.transfer.config import CONTENT_FEATURES, TransferConfig

log = logging.getLogger(__name__)

#: Share of the warm items held out to choose the mapper's best step.
VALID_FRACTION = 0.1


def genre_multi_hot(items: pd.DataFrame) -> pd.DataFrame:
    """(I, G) 0/1 frame, one column per genre present in the '|'-joined `genres`, sorted by name."""
    genres = items["genres"].astype(object).fillna("").astype(str)
    dummies = genres.str.get_dummies(sep="|")  # an item without genres yields a column named ''
    dummies = dummies.drop(columns=[c for c in dummies.columns if not c.strip()])
    return dummies.reindex(columns=sorted(dummies.columns))


def year_features(items: pd.DataFrame) -> np.ndarray:
    """(I, 2) float32: the standardised year (0 where missing) and a missing-year indicator."""
    years = pd.to_numeric(items["year"], errors="coerce").astype("Float64").to_numpy(  # (I,) NaN where not a number
        dtype="float32", na_value=np.nan)
    missing = np.isnan(years)
    known = years[~missing]
    mean = float(known.mean()) if len(known) else 0.0
    std = float(known.std()) if len(known) > 1 else 0.0
    standard = (years - mean) / (std if std > 0 else 1.0)
    return np.stack([np.where(missing, 0.0, standard), missing], axis=1).astype("float32")


def _require_columns(items: pd.DataFrame, feature: str, columns: Sequence[str]) -> None:
    """ConfigError when the items table lacks a column that content feature `feature` reads."""
    absent = [c for c in columns if c not in items.columns]
    if absent:
        raise ConfigError(f"transfer.content {feature!r} needs item column(s) {absent}; the items table has "
                          f"{list(items.columns)}; valid content: {', '.join(CONTENT_FEATURES)}")


def item_content_features(items: pd.DataFrame, text: torch.Tensor | None, content: Sequence[str]) -> torch.Tensor:
    """(I, F) float32 features of every item: the `content` blocks concatenated in the given order --
    text: the given (I, T) text embeddings; genres: multi-hot over the genres present;
    year: standardised year plus a missing indicator."""
    blocks: list[torch.Tensor] = []
    for feature in content:
        if feature == "text":
            if text is None:
                raise ConfigError("transfer.content includes 'text' but no item text embeddings were given; "
                                  f"drop it or choose among {', '.join(CONTENT_FEATURES)}")
            assert text.shape[0] == len(items), f"text embeddings have {text.shape[0]} rows, items {len(items)}"
            blocks.append(text.detach().to("cpu", torch.float32).reshape(len(items), -1))  # (I, T)
        elif feature == "genres":
            _require_columns(items, feature, ["genres"])
            blocks.append(torch.tensor(genre_multi_hot(items).to_numpy(dtype="float32")))  # (I, G)
        elif feature == "year":
            _require_columns(items, feature, ["year"])
            blocks.append(torch.from_numpy(year_features(items)))  # (I, 2)
        else:
            raise ConfigError(f"transfer.content has {feature!r}; valid: {', '.join(CONTENT_FEATURES)}")
    features = torch.cat(blocks, dim=1) if blocks else torch.zeros(len(items), 0)  # (I, F)
    if features.shape[1] == 0:
        raise ConfigError(f"transfer.content={list(content)} gives no feature columns for these items; "
                          f"valid content: {', '.join(CONTENT_FEATURES)}")
    return features


class ContentMapper(nn.Module):
    """MLP from item content (F) through one hidden layer to an item representation (D)."""

    def __init__(self, n_features: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (n, F) -> item vectors (n, D)."""
        return self.net(features)


def mapper_loss(predicted: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean `loss` (mse | cosine) between predicted and target vectors, both (n, D)."""
    if loss == "mse":
        return F.mse_loss(predicted, target)
    if loss == "cosine":
        return (1.0 - F.cosine_similarity(predicted, target, dim=-1)).mean()
    raise ConfigError(f"transfer.mapper_loss={loss!r} unknown; valid: mse, cosine")


def fit_mapper(features: torch.Tensor, targets: torch.Tensor, warm_items: torch.Tensor, cfg: TransferConfig | Any,
               seed: int) -> tuple[ContentMapper, dict[str, Any]]:
    """Fit a ContentMapper from features (I, F) to targets (I, D) on warm_items (n,) only; returns the
    mapper at its best held-out step (eval mode) and a summary of the fit."""
    assert features.dim() == 2 and targets.dim() == 2, f"features {tuple(features.shape)} and targets " \
        f"{tuple(targets.shape)} must both be (items, columns)"
    assert features.shape[0] == targets.shape[0], f"features have {features.shape[0]} rows, targets {targets.shape[0]}"
    warm = warm_items.to("cpu", torch.long).unique()  # (n,)
    assert len(warm) >= 2, f"need at least 2 warm items to fit and hold out, got {len(warm)}"
    assert 0 <= int(warm.min()) and int(warm.max()) < features.shape[0], "warm item ids outside the feature rows"
    device = features.device
    generator = torch.Generator().manual_seed(seed)
    order = warm[torch.randperm(len(warm), generator=generator)]
    n_valid = max(1, int(round(VALID_FRACTION * len(warm))))
    valid, train = order[:n_valid].to(device), order[n_valid:].to(device)
    x_train, x_valid = features[train].float(), features[valid].float()  # (n_train, F), (n_valid, F)
    targets = targets.detach().to(device, torch.float32)
    y_train, y_valid = targets[train], targets[valid]  # (n_train, D), (n_valid, D)

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without moving the caller's RNG
        torch.manual_seed(seed)
        mapper = ContentMapper(features.shape[1], cfg.mapper_hidden, targets.shape[1]).to(device)
    optimizer = torch.optim.AdamW(mapper.parameters(), lr=cfg.mapper_lr)
    best: dict[str, float] = {"valid_loss": float("inf"), "epoch": 0}
    best_state = copy.deepcopy(mapper.state_dict())
    epoch = 0
    for epoch in range(1, cfg.mapper_epochs + 1):
        mapper.train()
        loss = mapper_loss(mapper(x_train), y_train, cfg.mapper_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        mapper.eval()
        with torch.no_grad():
            valid_loss = float(mapper_loss(mapper(x_valid), y_valid, cfg.mapper_loss))
        if valid_loss < best["valid_loss"]:
            best = {"valid_loss": valid_loss, "epoch": epoch}
            best_state = copy.deepcopy(mapper.state_dict())
        elif epoch - best["epoch"] >= cfg.mapper_patience:
            break
    mapper.load_state_dict(best_state)
    mapper.eval()
    with torch.no_grad():
        best["train_loss"] = float(mapper_loss(mapper(x_train), y_train, cfg.mapper_loss))
    mean_vector = y_train.mean(dim=0, keepdim=True).expand_as(y_valid)  # (n_valid, D)
    summary = {"loss": cfg.mapper_loss, "train_loss": best["train_loss"], "valid_loss": best["valid_loss"],
               "mean_valid_loss": float(mapper_loss(mean_vector, y_valid, cfg.mapper_loss)),
               "best_epoch": int(best["epoch"]), "epochs": epoch, "n_train": len(train), "n_valid": len(valid)}
    log.info("Zero-shot mapper: %s valid %.4g (mean vector %.4g) at step %d of %d, %d warm items",
             cfg.mapper_loss, summary["valid_loss"], summary["mean_valid_loss"], best["epoch"], epoch, len(warm))
    return mapper, summary


def zero_shot_item_vectors(mapper: ContentMapper, features: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """(n, D) mapped vectors of `items` (n,) from their rows of features (I, F)."""
    device = next(mapper.parameters()).device
    mapper.eval()
    with torch.no_grad():
        return mapper(features[items.to(features.device)].to(device).float())  # (n, D)
