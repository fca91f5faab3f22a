"""Fold a new user into an ID model (BPR-MF, LightGCN): one deterministic closed form.

A model that scores `user . item` has no vector for a user it never saw. Given the items of the
user's history, the user's vector is the ridge regression of "this item is liked" on the frozen
item vectors of the history:

    p = argmin_p  sum_h (v_h . p - 1)^2 + ridge * |p|^2  =  (V^T V + ridge * I)^-1 V^T 1

with V (h, D) the history's item vectors. A history shorter than D is solved in its dual form,
p = V^T (V V^T + ridge * I)^-1 1 (the same p; an h x h system instead of D x D, so a 5-item
history costs microseconds even for a 256-wide teacher). It is solved in float64 with numpy and
returned as float32, the dtype the models score in; the ONNX and the PyTorch path call this same
function on the same float32 item vectors, so they fold a user into the same state.
"""

from __future__ import annotations

import numpy as np

#: The ridge weight of the fold-in; written into every export's manifest.
DEFAULT_RIDGE = 1.0


def ridge_fold_in(item_vectors: np.ndarray, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """(D,) float32 user vector for a history with item vectors (h, D) (see the module docstring)."""
    if item_vectors.ndim != 2 or len(item_vectors) == 0:
        raise ValueError(f"fold-in needs (h >= 1, D) item vectors, got shape {item_vectors.shape}")
    if not ridge > 0:
        raise ValueError(f"the fold-in ridge must be > 0 (it makes the solution unique), got {ridge}")
    vectors = item_vectors.astype(np.float64)  # (h, D)
    length, dim = vectors.shape
    if length < dim:  # dual form: (h, h) system
        kernel = vectors @ vectors.T + ridge * np.eye(length)  # (h, h) symmetric positive definite
        return (vectors.T @ np.linalg.solve(kernel, np.ones(length))).astype(np.float32)  # (D,)
    gram = vectors.T @ vectors + ridge * np.eye(dim)  # (D, D) symmetric positive definite
    return np.linalg.solve(gram, vectors.sum(0)).astype(np.float32)  # V^T 1 is the column sum, (D,)
