"""Turn split interactions into model-ready tensors for the rating task.

Input protocol: to predict one interaction, a model reads the same user's *visible* interactions
that came earlier in time (at most `history_length` of them, most recent last). Which splits are
visible is the evaluation protocol: by default training targets see earlier training interactions,
validation targets see training ones, and test targets see training and validation ones — never a
test rating. Everything is gathered with tensor index operations, no per-row Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

#: Which splits each target split may read as input history (the default protocol).
VISIBLE_SPLITS = {"train": ("train",), "valid": ("train",), "test": ("train", "valid")}


def time_order(interactions: pd.DataFrame) -> np.ndarray:
    """Rank of each row when sorted by (user, timestamp, row): a global key for 'earlier'."""
    order = np.lexsort((interactions["row"].to_numpy(), interactions["timestamp"].to_numpy(),
                        interactions["user"].to_numpy()))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


@dataclass
class RatingExamples:
    """All tensors of one split's targets: ids, labels and padded histories (see models.base)."""

    tensors: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.tensors["label"])

    def batch(self, index: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Rows `index` of every tensor, moved to `device`."""
        return {name: tensor[index].to(device, non_blocking=True) for name, tensor in self.tensors.items()}

    def batches(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches in order, or shuffled by `generator` when one is given."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, batch_size):
            yield self.batch(order[start : start + batch_size], device)


def build_examples(
    targets: pd.DataFrame,
    visible: pd.DataFrame,
    order_of_row: np.ndarray,
    history_length: int,
    n_classes: int = 5,
) -> RatingExamples:
    """Examples for `targets`, each with the user's `visible` interactions earlier than it.

    `order_of_row[row]` is the global time-order key from `time_order` (indexed by original row).
    """
    visible_key = order_of_row[visible["row"].to_numpy()]
    sort = np.argsort(visible_key, kind="stable")
    visible_key = torch.from_numpy(visible_key[sort])
    visible_user = torch.from_numpy(visible["user"].to_numpy()[sort])
    visible_item = torch.from_numpy(visible["item"].to_numpy()[sort])
    visible_class = torch.from_numpy(visible["rating"].to_numpy()[sort]).round().long()  # 1..C

    target_user = torch.from_numpy(targets["user"].to_numpy().astype(np.int64))
    target_key = torch.from_numpy(order_of_row[targets["row"].to_numpy()])
    end = torch.searchsorted(visible_key, target_key)  # (N,) first visible slot not earlier
    start = torch.searchsorted(visible_user, target_user)  # (N,) the user's first visible slot
    offsets = torch.arange(-history_length, 0)  # (L,)
    positions = end.unsqueeze(1) + offsets  # (N, L) left-padded window ending before the target
    mask = positions >= start.unsqueeze(1)  # (N, L)
    safe = positions.clamp(min=0)
    if len(visible_item) == 0:  # nothing visible: every slot is masked, gather from a dummy row
        visible_item = visible_class = torch.zeros(1, dtype=torch.long)
    hist_items = torch.where(mask, visible_item[safe] + 1, 0)  # (N, L)
    hist_ratings = torch.where(mask, visible_class[safe], 0)  # (N, L)

    rating = torch.from_numpy(targets["rating"].to_numpy().astype(np.float32))
    label = rating.round().long() - 1
    assert len(label) == 0 or (int(label.min()) >= 0 and int(label.max()) < n_classes), "ratings must be 1..C"
    tensors = {
        "index": torch.arange(len(targets)),
        "user": target_user,
        "item": torch.from_numpy(targets["item"].to_numpy().astype(np.int64)),
        "rating": rating,
        "label": label,
        "hist_items": hist_items,
        "hist_ratings": hist_ratings,
        "hist_mask": mask,
    }
    return RatingExamples(tensors)


def build_split_examples(
    splits: dict[str, pd.DataFrame],
    history_length: int,
    visible_splits: dict[str, tuple[str, ...]] = VISIBLE_SPLITS,
) -> dict[str, RatingExamples]:
    """Examples for every split under the visibility protocol `visible_splits`."""
    all_interactions = pd.concat(list(splits.values()), ignore_index=True)
    order = time_order(all_interactions)
    order_of_row = np.empty(int(all_interactions["row"].max()) + 1, dtype=np.int64)
    order_of_row[all_interactions["row"].to_numpy()] = order
    examples = {}
    for name, targets in splits.items():
        visible = pd.concat([splits[source] for source in visible_splits[name]], ignore_index=True)
        examples[name] = build_examples(targets, visible, order_of_row, history_length)
    return examples
