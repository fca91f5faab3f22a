"""The check every export passes: onnxruntime against the PyTorch checkpoint on the test users.

Each pass feeds both scorers the same inputs and compares the full-catalogue scores and the top-k
lists (seen items excluded, the tie rule applied), for every test user. Scores agree within
`tolerance` relative to the batch's largest score magnitude (absolute where that is below 1): float32
rounding grows with the scores, and a wide teacher's scores of ~20 differ by a few 1e-5 between two
correct kernels. Lists agree when they are identical, or differ only by swaps among items whose
reference scores are within twice that bound of each other (a near tie that rounding may order either
way; counted in the report as `near_tie_swaps`). Passes:
    sequence      each user's latest max_length history items, then only the latest few (the
                  graph's history length is dynamic: both lengths must agree)
    dot_product   each known user by id; then a vector folded in from the user's latest few items
                  (the new-user path), after checking that both sides fold in on identical item vectors
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from recdistill.errors import RecdistillError
from recdistill.serving.catalog import Catalog
from recdistill.serving.fold_in import ridge_fold_in
from recdistill.serving.scorers import Scorer
from recdistill.serving.topk import mask_seen, top_items

log = logging.getLogger(__name__)

#: Defaults of the check: what the issue asks of every export.
TOLERANCE = 1e-4
CHECK_K = 10
#: History items of the short pass (sequence) and of the fold-in pass (dot product).
SHORT_HISTORY = 5


class ExportCheckError(RecdistillError):
    """The exported graphs disagree with the checkpoint beyond the tolerance, or in a top-k list."""


def _short_items(catalog: Catalog, user: int) -> np.ndarray:
    """The latest SHORT_HISTORY history items of known `user` (internal ids)."""
    tokens = catalog.sequences(np.array([user]), SHORT_HISTORY)[0]
    return tokens[tokens > 0] - 1


def _passes(reference: Scorer, exported: Scorer, catalog: Catalog, max_length: int, ridge: float
            ) -> dict[str, Callable[[Scorer, np.ndarray], np.ndarray]]:
    """name -> scores(scorer, users) of each pass (see the module docstring)."""
    if reference.kind == "sequence":
        return {f"history of {max_length} items": lambda s, u: s.score_sequences(catalog.sequences(u, max_length)),
                f"latest {SHORT_HISTORY} items": lambda s, u: s.score_sequences(catalog.sequences(u, SHORT_HISTORY))}
    every = np.arange(catalog.n_items)
    if not np.array_equal(reference.item_vectors(every), exported.item_vectors(every)):
        raise ExportCheckError("the exported item vectors differ from the checkpoint's; the fold-in would differ")

    def folded(scorer: Scorer, users: np.ndarray) -> np.ndarray:
        states = np.stack([ridge_fold_in(scorer.item_vectors(_short_items(catalog, u)), ridge) for u in users])
        return scorer.score_states(states)  # (B, I)
    return {"known users": lambda s, u: s.score_users(u),
            f"folded in from the latest {SHORT_HISTORY} items": folded}


def check_export(reference: Scorer, exported: Scorer, catalog: Catalog, users: np.ndarray, max_length: int,
                 ridge: float, k: int = CHECK_K, tolerance: float = TOLERANCE, batch_size: int = 256
                 ) -> dict:
    """The check report (per pass: max score difference, users whose lists differ beyond a near tie);
    ExportCheckError when a score difference exceeds the bound or a top-k list differs beyond a near tie
    (see the module docstring)."""
    report: dict = {"users": "test users (with a test interaction)", "n_users": int(len(users)), "k": k,
                    "tolerance": tolerance, "seen_items_excluded": True, "passes": {}}
    failures = []
    for name, scores in _passes(reference, exported, catalog, max_length, ridge).items():
        largest, worst, differing, near_ties = 0.0, 0.0, [], 0
        for start in range(0, len(users), batch_size):
            batch = users[start:start + batch_size]
            expected, got = scores(reference, batch), scores(exported, batch)  # (B, I) each
            difference = float(np.abs(expected - got).max())
            bound = tolerance * max(1.0, float(np.abs(expected).max()))
            largest, worst = max(largest, difference), max(worst, difference / bound * tolerance)
            row, item = catalog.seen(batch)
            lists = [top_items(mask_seen(s, row, item), k, batch, catalog.ties)[0] for s in (expected, got)]
            swapped = (lists[0] != lists[1]).any(1)  # (B,)
            # a swap is a near tie when the reference scores of the two lists agree position by position
            gap = np.abs(np.take_along_axis(expected, lists[0], 1) - np.take_along_axis(expected, lists[1], 1))
            near = swapped & (gap.max(1) <= 2 * bound)
            near_ties += int(near.sum())
            differing += [int(u) for u in batch[swapped & ~near]]
        report["passes"][name] = {"max_abs_diff": largest, "max_relative_diff": worst,
                                  "lists_identical": not differing and not near_ties, "near_tie_swaps": near_ties,
                                  "users_with_different_lists": len(differing)}
        log.info("check %s: max |onnx - torch| %.2e (relative %.2e), top-%d lists %s%s", name, largest, worst, k,
                 "identical" if not differing else f"differ for {len(differing)} users",
                 f" ({near_ties} near-tie swaps)" if near_ties else "")
        if worst > tolerance or differing:
            first = f"; first user {catalog.user_ids[differing[0]]!r}" if differing else ""
            failures.append(f"{name}: max score difference {largest:.2e} (relative {worst:.2e}, tolerance "
                            f"{tolerance:.0e}), {len(differing)} of {len(users)} top-{k} lists differ beyond a near "
                            f"tie{first}")
    report["max_abs_diff"] = max(p["max_abs_diff"] for p in report["passes"].values())
    if failures:
        raise ExportCheckError("the ONNX export disagrees with the checkpoint: " + "; ".join(failures))
    return report
