"""Top-K lists from full-catalogue scores, under the project's tie rule and the seen-item mask.

The same function ranks for the ONNX and the PyTorch path and for the export check, so both
paths can only differ by their scores. Equal scores are ordered by the tie key of (seed, raw user
id, raw item id) (`recdistill.data.tie_keys`), exactly as evaluation orders them
(`recdistill.evaluation.ranking_eval.tie_topk`); masked items (score -inf) are never recommended.
"""

from __future__ import annotations

import numpy as np
import torch

from recdistill.data.tie_keys import TieKeys
from recdistill.evaluation.ranking_eval import tie_topk


def mask_seen(scores: np.ndarray, row: np.ndarray, item: np.ndarray) -> np.ndarray:
    """A copy of `scores` (B, I) with -inf at every (row, item) pair."""
    masked = np.array(scores, dtype=np.float32, copy=True)  # (B, I)
    masked[row, item] = -np.inf
    return masked


def top_items(scores: np.ndarray, k: int, tie_users: np.ndarray, ties: TieKeys) -> tuple[np.ndarray, np.ndarray]:
    """(items, values), each (B, k), of the k best items of each row of `scores` (B, I), best first;
    -1 and -inf where a row has fewer than k items above -inf. `tie_users` (B,) is the internal id
    each row's tie keys are hashed for."""
    assert k >= 1, f"k must be >= 1, got {k}"
    tensor = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))  # (B, I)
    users = torch.as_tensor(tie_users, dtype=torch.long)
    values, index = tie_topk(tensor, k, users, torch.arange(tensor.shape[1]), ties)  # (B, <=k)
    missing = k - values.shape[1]
    if missing > 0:  # a catalogue smaller than k
        values = torch.cat([values, values.new_full((values.shape[0], missing), float("-inf"))], 1)  # (B, k)
        index = torch.cat([index, index.new_full((index.shape[0], missing), -1)], 1)  # (B, k)
    index = torch.where(values == float("-inf"), -1, index)
    return index.numpy(), values.numpy()
