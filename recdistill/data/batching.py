"""Turn split interactions into model-ready tensors for the rating task.

Input protocol: to predict one interaction, a model reads the same user's *visible* interactions
that came earlier in time (at most `history_length` of them). Which splits are visible is the
evaluation protocol: training targets see earlier training interactions, validation targets see
training ones, test targets see training and validation ones — never a test rating.

Every batch is a set of rows of time-ordered interaction slots (see `recdistill.models.base`):
a slot may be *visible* (its rating can be read by later slots of the row) and/or a *target* (its
rating is predicted). Two layouts produce such rows:

- `RatingWindows` (evaluation, extraction): one row per target, its `history_length` latest
  visible interactions followed by the target itself. Exact protocol, any split.
- `UserRows` (evaluation, when a split allows it): one row per user, the latest visible history
  followed by all of the user's targets, which cannot read each other. Valid when no visible
  interaction falls between a user's targets (chronological splits); every target then has the
  same history as its window, at a fraction of the cost.
- `TrainingSequences` (training): each user's training interactions cut into chunks of
  `history_length + 1` slots, every slot visible and a target. A causal model predicts all slots
  of a chunk in one pass, each from the slots before it, which is ~history_length times cheaper
  than one window per target. Chunk boundaries shift by half a chunk on odd epochs.

Everything is gathered with tensor index operations, no per-row Python.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch

from recdistill.data.rating_scale import RatingScale

FIVE_STARS = RatingScale(1.0, 5.0, 1.0)  # the default scale (MovieLens-100K's)

#: Which splits each target split may read as input history (the default protocol).
VISIBLE_SPLITS = {"train": ("train",), "valid": ("train",), "test": ("train", "valid")}

#: Per-target fields of a batch, flattened over its target slots in row-major order.
TARGET_FIELDS = ("index", "user", "item", "rating", "label")


def time_order(interactions: pd.DataFrame) -> np.ndarray:
    """Rank of each row when sorted by (user, timestamp, row): a global key for 'earlier' (data
    without a timestamp column: by (user, row), the file order standing in for time)."""
    times = (interactions["timestamp"].to_numpy() if "timestamp" in interactions.columns
             else np.zeros(len(interactions), dtype=np.int64))
    order = np.lexsort((interactions["row"].to_numpy(), times, interactions["user"].to_numpy()))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _target_fields(frame: pd.DataFrame, scale: RatingScale) -> dict[str, torch.Tensor]:
    rating = torch.from_numpy(frame["rating"].to_numpy().astype(np.float32))
    label = torch.from_numpy(scale.labels(frame["rating"].to_numpy()))  # (N,) class 0..C-1
    assert len(label) == 0 or (int(label.min()) >= 0 and int(label.max()) < scale.n_classes), (
        f"ratings must be on the rating scale {scale}")
    return {
        "index": torch.arange(len(frame)),
        "user": torch.from_numpy(frame["user"].to_numpy().astype(np.int64)),
        "item": torch.from_numpy(frame["item"].to_numpy().astype(np.int64)),
        "rating": rating,
        "label": label,
    }


def trim_left_padding(items: torch.Tensor, classes: torch.Tensor, readable: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded histories (B, L) each without their leading columns that no row reads: rating
    models ignore unreadable slots wherever they are, so this only saves their cost."""
    used = readable.any(0)  # (L,)
    start = int(used.int().argmax()) if bool(used.any()) else readable.shape[1]
    return items[:, start:], classes[:, start:], readable[:, start:]


class RatingWindows:
    """One row per target: its latest visible history, left-padded, then the target slot.

    Histories are gathered per batch from the visible interactions (V,) and each target's slice
    [start, end) of them, so memory grows with the number of interactions, not L times it."""

    def __init__(self, targets: dict[str, torch.Tensor], visible_items: torch.Tensor, visible_classes: torch.Tensor,
                 start: torch.Tensor, end: torch.Tensor, history_length: int, time_key: torch.Tensor) -> None:
        self.targets = targets  # TARGET_FIELDS, (N,) each
        self.visible_items, self.visible_classes = visible_items, visible_classes  # (V,) item id, class 1..C
        self.start = start  # (N,) the target's user's first visible slot
        self.history_length = history_length  # L
        self.time_key = time_key  # (N,) global time-order key of each target
        self.visible_before = end  # (N,) visible interactions (all users) earlier than each target

    def __len__(self) -> int:
        return len(self.targets["label"])

    def history(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(items + 1, classes, readable), each (B, L): the latest L visible interactions of each
        target in `rows`, left-padded with 0 / 0 / False."""
        positions = self.visible_before[rows, None] + torch.arange(-self.history_length, 0)  # (B, L)
        mask = positions >= self.start[rows, None]  # (B, L)
        safe = positions.clamp(min=0)
        if len(self.visible_items) == 0:  # nothing visible: every slot is masked, gather from a dummy row
            safe = torch.zeros_like(safe)
            items = classes = torch.zeros(1, dtype=torch.long)
        else:
            items, classes = self.visible_items, self.visible_classes
        return torch.where(mask, items[safe] + 1, 0), torch.where(mask, classes[safe], 0), mask

    @property
    def hist_items(self) -> torch.Tensor:
        """(N, L) every target's history items + 1 (materialised: for inspection and tests)."""
        return self.history(torch.arange(len(self)))[0]

    @property
    def hist_ratings(self) -> torch.Tensor:
        """(N, L) every target's history classes (materialised)."""
        return self.history(torch.arange(len(self)))[1]

    @property
    def hist_mask(self) -> torch.Tensor:
        """(N, L) which history slots are readable (materialised)."""
        return self.history(torch.arange(len(self)))[2]

    def batch(self, rows: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The batch for targets `rows`, on `device`; history columns that no row reads are dropped."""
        n = len(rows)
        last = torch.ones(n, 1, dtype=torch.bool)
        items, classes, mask = trim_left_padding(*self.history(rows))  # (B, L') each, L' <= L
        batch = {
            "seq_items": torch.cat([items, self.targets["item"][rows, None] + 1], 1),  # (B, L+1)
            "seq_ratings": torch.cat([classes, torch.zeros(n, 1, dtype=torch.long)], 1),
            "seq_visible": torch.cat([mask, ~last], 1),
            "seq_target": torch.cat([torch.zeros_like(mask), last], 1),
            **{name: tensor[rows] for name, tensor in self.targets.items()},
        }
        return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}

    def batches(self, batch_size: int, device: torch.device | str = "cpu",
                generator: torch.Generator | None = None, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of `batch_size` targets, in order or shuffled by `generator`."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, batch_size):
            yield self.batch(order[start : start + batch_size], device)


def build_windows(targets: pd.DataFrame, visible: pd.DataFrame, order_of_row: np.ndarray,
                  history_length: int, scale: RatingScale = FIVE_STARS) -> RatingWindows:
    """Windows for `targets`, each with the user's `visible` interactions earlier than it.

    `order_of_row[row]` is the global time-order key from `time_order` (indexed by original row).
    """
    visible_key = order_of_row[visible["row"].to_numpy()]
    sort = np.argsort(visible_key, kind="stable")
    visible_key = torch.from_numpy(visible_key[sort])
    visible_user = torch.from_numpy(visible["user"].to_numpy().astype(np.int64)[sort])
    visible_item = torch.from_numpy(visible["item"].to_numpy().astype(np.int64)[sort])
    visible_class = torch.from_numpy(scale.labels(visible["rating"].to_numpy()[sort]) + 1)  # 1..C

    fields = _target_fields(targets, scale)
    target_key = torch.from_numpy(order_of_row[targets["row"].to_numpy()])
    end = torch.searchsorted(visible_key, target_key)  # (N,) first visible slot not earlier
    start = torch.searchsorted(visible_user, fields["user"])  # (N,) the user's first visible slot
    return RatingWindows(fields, visible_item, visible_class, start, end, history_length, target_key)


class UserRows:
    """One row per user: the history shared by all of the user's targets, then the targets."""

    def __init__(self, windows: RatingWindows, first: torch.Tensor, table: torch.Tensor) -> None:
        self.windows = windows
        self.targets = windows.targets
        self.first = first  # (U,) each row's first target, whose window holds the shared history
        self.table = table  # (U, T) target rows of each user in time order, -1 = none; most targets first

    def __len__(self) -> int:
        return len(self.targets["label"])

    def batches(self, batch_size: int, device: torch.device | str = "cpu",
                generator: torch.Generator | None = None, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of whole users holding about `batch_size` targets, in order (no shuffling); history
        columns that no user of the batch reads are dropped."""
        counts = (self.table >= 0).sum(1)  # (U,) descending
        batch_of_user = (torch.cumsum(counts, 0) - counts) // batch_size
        bounds = torch.searchsorted(batch_of_user, torch.arange(int(batch_of_user[-1]) + 2)) if len(counts) else []
        windows = self.windows
        for begin, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            first = self.first[begin:end]
            slots = self.table[begin:end, : int(counts[begin])]  # (B, T)
            filled = slots >= 0
            items = torch.where(filled, self.targets["item"][slots.clamp(min=0)] + 1, 0)
            history_items, history_classes, readable = trim_left_padding(*windows.history(first))  # (B, L') each
            batch = {
                "seq_items": torch.cat([history_items, items], 1),  # (B, L + T)
                "seq_ratings": torch.cat([history_classes, torch.zeros_like(items)], 1),
                "seq_visible": torch.cat([readable, torch.zeros_like(filled)], 1),
                "seq_target": torch.cat([torch.zeros_like(readable), filled], 1),
                **{name: tensor[slots[filled]] for name, tensor in self.targets.items()},
            }
            yield {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}


def build_user_rows(windows: RatingWindows) -> UserRows | None:
    """Per-user rows for `windows`' targets, or None when a visible interaction falls between two
    targets of one user (their histories differ, so each needs its own window)."""
    if len(windows) == 0:
        return None
    order = torch.from_numpy(np.lexsort((windows.time_key.numpy(), windows.targets["user"].numpy())))
    user = windows.targets["user"][order]
    first_of_user = torch.searchsorted(user, user)  # (N,) sorted slot of the user's first target
    before = windows.visible_before[order]
    if not torch.equal(before, before[first_of_user]):
        return None
    position = torch.arange(len(user)) - first_of_user  # (N,) target's place among its user's targets
    starts = position == 0
    rank = torch.cumsum(starts.long(), 0) - 1  # (N,) row of the target's user
    counts = torch.bincount(rank)
    by_count = torch.argsort(counts, descending=True, stable=True)  # rows with most targets first
    row_of_rank = torch.empty_like(by_count)
    row_of_rank[by_count] = torch.arange(len(by_count))
    table = torch.full((len(counts), int(counts.max())), -1, dtype=torch.long)
    table[row_of_rank[rank], position] = order
    return UserRows(windows, first=order[starts][by_count], table=table)


class TrainingSequences:
    """A split's interactions as per-user chunks where every slot is visible and a target."""

    def __init__(self, frame: pd.DataFrame, order_of_row: np.ndarray, chunk_length: int,
                 scale: RatingScale = FIVE_STARS) -> None:
        key = order_of_row[frame["row"].to_numpy()]
        self.sort = torch.from_numpy(np.argsort(key, kind="stable"))  # split rows in (user, time) order
        self.targets = _target_fields(frame, scale)
        user = self.targets["user"][self.sort]
        first = torch.searchsorted(user, user)  # (N,) slot of the user's first interaction
        self.position = torch.arange(len(user)) - first  # (N,) position within the user's sequence
        self.chunk_length = chunk_length

    def __len__(self) -> int:
        return len(self.targets["label"])

    def layout(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(chunk id, slot) of every interaction in sorted order for this epoch's chunking: a user's
        sequence cut every `chunk_length` interactions, the cuts shifted by half a chunk in odd
        epochs; slots count from each chunk's first interaction (rows are left-aligned)."""
        offset = (epoch % 2) * (self.chunk_length // 2)
        chunk_in_user = (self.position + offset) // self.chunk_length
        user = self.targets["user"][self.sort]
        boundary = torch.ones(len(user), dtype=torch.bool)
        boundary[1:] = (user[1:] != user[:-1]) | (chunk_in_user[1:] != chunk_in_user[:-1])
        chunk = torch.cumsum(boundary.long(), 0) - 1  # (N,) consecutive chunk ids
        first = torch.nonzero(boundary).squeeze(1)  # (R,) sorted index of each chunk's first interaction
        return chunk, torch.arange(len(user)) - first[chunk]

    def batches(self, batch_size: int, device: torch.device | str = "cpu",
                generator: torch.Generator | None = None, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of whole chunks holding `batch_size` targets give or take one chunk (each chunk
        joins the batch in which the running count of targets reaches its last target). Chunks are
        bucketed by length (ties broken by `generator`) and the batches shuffled by `generator`; a
        batch is as wide as its longest chunk, so rows carry little padding. Without `generator`
        (extraction, evaluation) the order is fixed."""
        chunk, slot = self.layout(epoch)
        n_chunks = int(chunk[-1]) + 1 if len(chunk) else 0
        rows = self.sort  # split row of each sorted interaction
        table = torch.full((n_chunks, self.chunk_length), -1, dtype=torch.long)
        table[chunk, slot] = rows  # (R, S) split row per slot, -1 = empty
        sizes = torch.bincount(chunk, minlength=n_chunks)  # (R,) targets per chunk
        # length buckets: chunks sorted by length (ties in random order), so a batch's rows are about as
        # long as each other and carry little padding; then the batches are shuffled
        tie_break = torch.rand(n_chunks, generator=generator) if generator is not None else torch.zeros(n_chunks)
        order = torch.argsort(sizes.double() + tie_break * 0.5, stable=True)
        batch_of_chunk = (torch.cumsum(sizes[order], 0) - 1) // batch_size
        _, per_batch = torch.unique_consecutive(batch_of_chunk, return_counts=True)
        batches = list(zip(torch.split(order, per_batch.tolist()), torch.split(sizes[order], per_batch.tolist())))
        if generator is not None:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        for chunks, widths in batches:
            slots = table[chunks, : int(widths.max())]  # (B, S') S' = the longest chunk of the batch
            filled = slots >= 0
            safe = slots.clamp(min=0)
            batch = {
                "seq_items": torch.where(filled, self.targets["item"][safe] + 1, 0),
                "seq_ratings": torch.where(filled, self.targets["label"][safe] + 1, 0),
                "seq_visible": filled,
                "seq_target": filled,
                **{name: tensor[slots[filled]] for name, tensor in self.targets.items()},
            }
            yield {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}


def time_order_of_rows(frames: list[pd.DataFrame]) -> np.ndarray:
    """(max row + 1,) the global time-order key (`time_order`) of every original row of `frames`."""
    all_interactions = pd.concat(frames, ignore_index=True)
    order_of_row = np.empty(int(all_interactions["row"].max()) + 1, dtype=np.int64)
    order_of_row[all_interactions["row"].to_numpy()] = time_order(all_interactions)
    return order_of_row


def build_split_data(
    splits: dict[str, pd.DataFrame],
    history_length: int,
    visible_splits: dict[str, tuple[str, ...]] = VISIBLE_SPLITS,
    scale: RatingScale = FIVE_STARS,
) -> tuple[TrainingSequences, dict[str, RatingWindows]]:
    """Training sequences for the train split and evaluation windows for every split; rating classes
    follow `scale` (class c = rating scale.low + c * scale.step)."""
    order_of_row = time_order_of_rows(list(splits.values()))
    windows = {}
    for name, targets in splits.items():
        visible = pd.concat([splits[source] for source in visible_splits[name]], ignore_index=True)
        windows[name] = build_windows(targets, visible, order_of_row, history_length, scale)
    return TrainingSequences(splits["train"], order_of_row, history_length + 1, scale), windows
