"""Shared builders for tests: small random rating splits and their model inputs."""

import numpy as np
import pandas as pd

from recdistill.data.batching import build_split_data
from recdistill.models.base import DataShape


def random_split_frames(n_users: int = 20, per_user: int = 12, n_items: int = 30, seed: int = 0):
    """Per-user chronological 8/2/2 frames with learnable structure (rating depends on item)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.integers(0, n_items, len(users))
    ratings = (1 + (items % 5)).astype("float32")
    frame = pd.DataFrame({"row": np.arange(len(users)), "user": users, "item": items, "rating": ratings,
                          "timestamp": np.tile(np.arange(per_user), n_users)})
    position = frame.groupby("user").cumcount()
    train = frame[position < per_user - 4]
    valid = frame[(position >= per_user - 4) & (position < per_user - 2)]
    test = frame[position >= per_user - 2]
    return {"train": train, "valid": valid, "test": test}


def small_data(history_length: int = 4, **kwargs):
    """(training sequences, windows per split, DataShape) for a small random dataset."""
    frames = random_split_frames(**kwargs)
    n_users = int(max(f["user"].max() for f in frames.values())) + 1
    n_items = int(max(f["item"].max() for f in frames.values())) + 1
    shape = DataShape(n_users=n_users, n_items=n_items, history_length=history_length,
                      rating_mean=float(frames["train"]["rating"].mean()))
    train, windows = build_split_data(frames, history_length)
    return train, windows, shape


def crash_in_second_epoch_of(role, monkeypatch):
    """Make the training loop raise KeyboardInterrupt right after `role` saves its second epoch;
    returns a function that restores normal saving."""
    from recdistill.training import loop

    saves = {"n": 0}
    real_save = loop.torch_save

    def save_then_crash(path, obj):
        real_save(path, obj)
        if role in str(path):
            saves["n"] += 1
            if saves["n"] == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(loop, "torch_save", save_then_crash)
    return lambda: monkeypatch.setattr(loop, "torch_save", real_save)
