"""The data report: what a dataset holds and what loading did to it, as one JSON-serialisable dict.

Written as `data_report.json` into every run folder and printed by `recdistill data info`:
counts and density, per-user and per-item spread, rating scale and histogram, time span and
suspicious times (negative, or later than the report's own time), repeated (user, item) pairs and
how `dataset.duplicates` resolved them, what the filters dropped, the text encoding the reader
used, and the content fingerprint the cache keys hold.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from recdistill.data.tables import RecData


def describe(data: RecData) -> dict[str, Any]:
    """The report of `data` (see the module docstring); rating and time entries are None when the
    data has no rating or no timestamp column."""
    inter = data.interactions
    n = len(inter)
    per_user = np.bincount(inter["user"].to_numpy(), minlength=data.n_users)
    per_item = np.bincount(inter["item"].to_numpy(), minlength=data.n_items)
    histogram = None
    if data.has_rating:
        histogram = {f"{float(k):g}": int(v) for k, v in inter["rating"].value_counts().sort_index().items()}
    times = inter["timestamp"].to_numpy() if data.has_timestamp else None
    return {
        "name": data.name,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_interactions": n,
        "density": n / (data.n_users * data.n_items) if data.n_users and data.n_items else 0.0,
        "interactions_per_user": _spread(per_user),
        "interactions_per_item": _spread(per_item),
        "rating_scale": data.rating_scale.as_list() if data.rating_scale else None,
        "rating_histogram": histogram,
        "time_span": _time_span(times) if times is not None else None,
        "suspicious_times": _suspicious_times(times) if times is not None else None,
        "side_tables": {"items": data.items is not None, "users": data.users is not None},
        "duplicates": data.report.get("duplicates"),
        "filters": data.report.get("filters", {}),
        "encoding": data.report.get("encoding"),
        "given_split": data.report.get("given_split"),
        "fingerprint": data.fingerprint,
    }


def _time_span(ts: np.ndarray) -> dict[str, Any]:
    """First and last time (ISO, UTC) and the days between; {} when there are no interactions."""
    if not len(ts):
        return {}
    first, last = (pd.Timestamp(int(t), unit="s", tz="UTC") for t in (ts.min(), ts.max()))
    days = round((int(ts.max()) - int(ts.min())) / 86400, 1)
    return {"first": first.isoformat(), "last": last.isoformat(), "days": days}


def _suspicious_times(ts: np.ndarray) -> dict[str, int]:
    """How many times are negative (before 1970) or in the future (seconds since the epoch)."""
    return {"negative": int((ts < 0).sum()), "future": int((ts > time.time()).sum())}


def _spread(counts: np.ndarray) -> dict[str, float]:
    """min / median / mean / max of a count vector."""
    if len(counts) == 0:
        return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0}
    return {"min": int(counts.min()), "median": float(np.median(counts)),
            "mean": round(float(counts.mean()), 2), "max": int(counts.max())}
