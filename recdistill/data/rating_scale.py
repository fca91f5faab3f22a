"""The rating scale of explicit feedback: the classes the rating task predicts.

A scale is (low, high, step): ML-100K's 1..5 by 1 has five classes 1, 2, 3, 4, 5; MovieLens-10M's
0.5..5 by 0.5 has ten. Class c stands for rating low + c * step. A reader that knows its scale
states it; otherwise `dataset.rating_scale: [low, high, step]` gives it, or it is inferred from the
data (whole numbers: step 1; halves: step 0.5; anything else must be configured). A rating that is
not on the scale is an error, never rounded into a neighbouring class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from recdistill.errors import ConfigError, DataError

_TOLERANCE = 1e-6  # ratings are read as float32: 3.5 is exact, 0.1-steps are not


@dataclass(frozen=True)
class RatingScale:
    """Ratings low, low + step, ..., high."""

    low: float
    high: float
    step: float

    @property
    def n_classes(self) -> int:
        return int(round((self.high - self.low) / self.step)) + 1

    def values(self) -> np.ndarray:
        """(C,) float32 rating of each class."""
        return (self.low + self.step * np.arange(self.n_classes)).astype(np.float32)

    def labels(self, ratings: np.ndarray) -> np.ndarray:
        """(N,) int64 class of each rating (assumed on the scale: see `off_scale`)."""
        return np.rint((np.asarray(ratings, dtype=np.float64) - self.low) / self.step).astype(np.int64)

    def off_scale(self, ratings: np.ndarray) -> np.ndarray:
        """(N,) bool: ratings outside [low, high] or between two steps (NaN included)."""
        ratings = np.asarray(ratings, dtype=np.float64)
        position = (ratings - self.low) / self.step
        on_step = np.abs(position - np.rint(position)) <= _TOLERANCE / self.step
        inside = (ratings >= self.low - _TOLERANCE) & (ratings <= self.high + _TOLERANCE)
        return ~(on_step & inside)

    def as_list(self) -> list[float]:
        return [self.low, self.high, self.step]

    def __str__(self) -> str:
        return f"{self.low:g}..{self.high:g} by {self.step:g}"


def parse_rating_scale(value: Sequence[float] | None, key: str = "dataset.rating_scale") -> RatingScale | None:
    """The scale a config value [low, high, step] gives (None stays None); ConfigError naming `key`
    when it is not three finite numbers with step > 0, low < high and (high - low) a whole number of steps."""
    if value is None:
        return None
    try:
        low, high, step = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={list(value) if not isinstance(value, str) else value!r} must be [low, high, step], "
                          "e.g. [1, 5, 1] or [0.5, 5, 0.5]") from None
    if not all(math.isfinite(v) for v in (low, high, step)) or step <= 0 or high <= low:
        raise ConfigError(f"{key}=[{low:g}, {high:g}, {step:g}] must have finite low < high and step > 0")
    steps = (high - low) / step
    if abs(steps - round(steps)) > 1e-6:
        raise ConfigError(f"{key}=[{low:g}, {high:g}, {step:g}]: high - low must be a whole number of steps")
    return RatingScale(low, high, step)


MAX_INFERRED_CLASSES = 21  # 0..10 by 0.5 at most; wider scales must be configured


def infer_rating_scale(ratings: np.ndarray, source: str) -> RatingScale:
    """The smallest scale holding `ratings`: step 1 when all are whole numbers, 0.5 when all are
    halves; DataError naming `source` (and asking for dataset.rating_scale) otherwise."""
    ratings = np.asarray(ratings, dtype=np.float64)
    if len(ratings) == 0:
        raise DataError(f"{source}: no ratings to infer the rating scale from; set dataset.rating_scale")
    if not np.isfinite(ratings).all():
        raise DataError(f"{source}: ratings hold NaN or infinite values")
    low, high = float(ratings.min()), float(ratings.max())
    for step in (1.0, 0.5):
        scale = RatingScale(math.floor(low / step) * step, math.ceil(high / step) * step, step)
        if scale.high > scale.low and not scale.off_scale(ratings).any():
            if scale.n_classes > MAX_INFERRED_CLASSES:
                raise DataError(f"{source}: ratings {low:g}..{high:g} would be {scale.n_classes} classes of step "
                                f"{step:g}; a rating scale that wide is not inferred (a stray value, or a 0-100 "
                                "score?): fix the data or set dataset.rating_scale=[low,high,step]")
            return scale
    raise DataError(f"{source}: ratings {low:g}..{high:g} are neither whole numbers nor halves; set "
                    "dataset.rating_scale=[low,high,step] to say which classes the rating task predicts")


def check_on_scale(ratings: np.ndarray, scale: RatingScale, where: Callable[[int], str]) -> None:
    """DataError when a rating is off `scale`: `where(i)` names the first offending row i (file and line)."""
    bad = np.flatnonzero(scale.off_scale(ratings))
    if len(bad):
        first = int(bad[0])
        raise DataError(f"{where(first)}: rating {float(np.asarray(ratings)[first]):g} is not on the rating scale "
                        f"{scale} ({len(bad)} such ratings); fix the data or set dataset.rating_scale=[low,high,step]")
