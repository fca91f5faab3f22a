"""Schema of the `evaluator` config group: the evaluation protocol, written next to every result."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvaluatorConfig:
    """How models are evaluated and what they may read as input."""

    name: str = "rating"  # task evaluator: rating
    history_length: int = 32  # most recent visible interactions a model reads per prediction
    # which earlier interactions of the same user a prediction may read: train targets read
    # earlier train ones, valid targets read train, test targets read train + valid; never test
    input_history: str = "earlier_visible"
    latency_batch_size: int = 256  # batch size for the scoring-latency measurement
    latency_repeats: int = 20  # timed repeats (median and p90 are reported)
