"""Schema of the `evaluator` config group: the evaluation protocol, written next to every result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List


@dataclass
class EvaluatorConfig:
    """How models are evaluated and what they may read as input."""

    name: str = "rating"  # task evaluator: rating | ranking
    history_length: int = 32  # most recent visible interactions a model reads per prediction
    # which earlier interactions of the same user a prediction may read: train targets read
    # earlier train ones, valid targets read train, test targets read train + valid; never test
    input_history: str = "earlier_visible"
    latency_batch_size: int = 256  # batch size for the scoring-latency measurement
    latency_repeats: int = 20  # timed repeats (median and p90 are reported)
    # ranking only
    ks: List[int] = field(default_factory=lambda: [5, 10, 20])  # cut-offs of HR, NDCG, Recall, ... @K
    protocol: str = "full"  # full: rank every item | sampled: the truth among n_negatives sampled items
    mask_history: bool = True  # drop the items a user's input history holds from their ranking
    n_negatives: int = 100  # sampled protocol only: negatives per user
    user_batch_size: int = 1024  # users scored per forward pass
    item_chunk: int = 65536  # items scored at once; bounds memory on large catalogues
