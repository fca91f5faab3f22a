"""`Recommender`: top-K lists for known users and for new users given their history.

    recommender = Recommender.open("outputs/.../export/student_kd")   # an export: onnxruntime
    recommender = Recommender.open("outputs/...", role="student_kd")  # a run folder: the PyTorch checkpoint
    recommender.recommend(user="42", k=10)                             # a known user, seen items excluded
    recommender.recommend(history=["1", "7", "19"], k=10)              # a user the model never saw
    recommender.recommend_users(["42", "7"], k=10)                     # a batch, as one long table
    recommender.rank_users(np.array([0, 1]), k=10)                     # (items, scores) arrays of internal ids

Both sources give the same lists: the same catalog (raw ids, histories of train + valid + test, tie
seed), the same inputs, the same top-K function (`recdistill.serving.topk`); only the scores come
from onnxruntime or PyTorch. A new user is read as a history by sequence models and folded in by
ID models (`recdistill.serving.fold_in`). Raw ids the model never saw raise `UnknownIdError`
(a ConfigError) naming them all, before anything is scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from recdistill.errors import ConfigError
from recdistill.serving.catalog import Catalog
from recdistill.serving.fold_in import DEFAULT_RIDGE, ridge_fold_in
from recdistill.serving.manifest import is_export, read_manifest
from recdistill.serving.onnx_scorer import OnnxScorer
from recdistill.serving.run_source import open_run
from recdistill.serving.scorers import Scorer, TorchScorer
from recdistill.serving.topk import mask_seen, top_items

#: Users scored at once by `recommend_users`.
BATCH_SIZE = 256


@dataclass
class Recommendations:
    """One user's top-K list, best first: raw item ids, their titles (None without titles) and scores."""

    user: str | None  # raw id of a known user; None for a user given by their history
    items: list[str]
    scores: list[float]
    titles: list[str | None] | None = None
    history: list[str] | None = None  # the given history of a new user

    def to_records(self) -> list[dict[str, Any]]:
        """[{rank, item, title, score}, ...] (title only where the catalog has titles)."""
        records = []
        for rank, (item, score) in enumerate(zip(self.items, self.scores), start=1):
            record: dict[str, Any] = {"rank": rank, "item": item}
            if self.titles is not None:
                record["title"] = self.titles[rank - 1]
            records.append({**record, "score": score})
        return records

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: user (or history) and the list."""
        head = {"user": self.user} if self.history is None else {"history": self.history}
        return {**head, "k": len(self.items), "recommendations": self.to_records()}

    def to_frame(self) -> pd.DataFrame:
        """One row per rank: rank, item, (title,) score."""
        return pd.DataFrame(self.to_records(), columns=["rank", "item", *(["title"] if self.titles is not None else []),
                                                        "score"])


@dataclass
class Recommender:
    """A served model: a scorer (onnxruntime or PyTorch) with its catalog (see the module docstring)."""

    scorer: Scorer
    catalog: Catalog
    role: str
    max_length: int  # history slots a sequence model reads
    ridge: float = DEFAULT_RIDGE  # fold-in weight of dot-product models
    source: dict[str, Any] = field(default_factory=dict)  # where it was opened from (path, kind of source)

    @classmethod
    def open(cls, path: str | Path, role: str | None = None, cache_dir: str | Path | None = None,
             threads: int | None = None) -> "Recommender":
        """An export folder (onnxruntime, `threads` intra-op threads) or a run folder (the checkpoint of
        `role`, default student_kd; cached roles looked up in `cache_dir`, default the run's)."""
        path = Path(path).expanduser().resolve()
        if is_export(path):
            manifest = read_manifest(path)
            if role is not None and role != manifest["role"]:
                raise ConfigError(f"{path} is an export of {manifest['role']!r}, not {role!r}; export that role "
                                  "or recommend from the run folder")
            serving = manifest["serving"]
            catalog = Catalog.read(path, manifest["ties"]["seed"])
            ridge = serving.get("fold_in", {}).get("ridge", DEFAULT_RIDGE)
            return cls(OnnxScorer(path, serving["kind"], threads), catalog, manifest["role"], serving["max_length"],
                       ridge, {"path": str(path), "source": "onnx export"})
        run = open_run(path, role or "student_kd", cache_dir)
        return cls(TorchScorer(run.model), run.catalog(), run.role, run.model.shape.max_length, DEFAULT_RIDGE,
                   {"path": str(path), "source": "checkpoint", "checkpoint": str(run.checkpoint)})

    @property
    def kind(self) -> str:
        """"sequence" or "dot_product" (see `recdistill.serving.scorers`)."""
        return self.scorer.kind

    def known_user_scores(self, users: np.ndarray) -> np.ndarray:
        """(B, I) scores of known users (internal ids) from their serving histories or vectors."""
        if self.kind == "sequence":
            return self.scorer.score_sequences(self.catalog.sequences(users, self.max_length))
        return self.scorer.score_users(users)

    def history_scores(self, items: np.ndarray) -> np.ndarray:
        """(1, I) scores of a new user whose history is `items` (internal ids, oldest first)."""
        if self.kind == "sequence":
            tail = items[-self.max_length:]
            seq = np.zeros((1, self.max_length), dtype=np.int64)  # left-padded, as known users' rows
            seq[0, self.max_length - len(tail):] = tail + 1
            return self.scorer.score_sequences(seq)
        state = ridge_fold_in(self.scorer.item_vectors(items), self.ridge)  # (D,)
        return self.scorer.score_states(state[None, :])

    def recommend(self, user: str | None = None, *, history: Sequence[str] | None = None, k: int = 10,
                  exclude_seen: bool = True) -> Recommendations:
        """The top-k list of a known `user` (raw id) or of a new user given their `history` (raw item
        ids, oldest first); seen items (the user's history) are excluded unless `exclude_seen` is False."""
        if (user is None) == (history is None):
            raise ConfigError("give either a known user or a history of items, not both and not neither")
        check_k(k, self.catalog.n_items)
        if user is not None:
            index = self.catalog.user_indices([user])
            scores = self.known_user_scores(index)
            seen = self.catalog.seen(index)
            tie_user = index
        else:
            if len(history) == 0:
                raise ConfigError("the history is empty; give at least one item id")
            items = self.catalog.item_indices(history)
            scores = self.history_scores(items)
            seen = (np.zeros(len(items), dtype=np.int64), items)
            tie_user = np.array([self.catalog.new_user])
        if exclude_seen:
            scores = mask_seen(scores, *seen)
        ranked, values = top_items(scores, k, tie_user, self.catalog.ties)
        keep = ranked[0] >= 0
        return Recommendations(user, [str(self.catalog.item_ids[i]) for i in ranked[0][keep]],
                               [float(v) for v in values[0][keep]], self.catalog.titles(ranked[0][keep]),
                               None if history is None else [str(h) for h in history])

    def rank_users(self, users: np.ndarray, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(items, scores), each (B, k), of known `users` (B,) (internal ids): one scorer call and one
        top-k over the whole batch, no loop per user; item -1 and score -inf pad a short list."""
        scores = self.known_user_scores(users)  # (B, I)
        if exclude_seen:
            scores = mask_seen(scores, *self.catalog.seen(users))
        return top_items(scores, k, users, self.catalog.ties)

    def recommend_users(self, users: Sequence[str], k: int = 10, exclude_seen: bool = True,
                        batch_size: int = BATCH_SIZE) -> pd.DataFrame:
        """Top-k lists of known `users` (raw ids) as one table: user, rank, item, (title,) score;
        UnknownIdError naming every unknown user before anything is scored."""
        check_k(k, self.catalog.n_items)
        index = self.catalog.user_indices(users)
        frames = []
        for start in range(0, len(index), batch_size):
            batch = index[start:start + batch_size]
            ranked, values = self.rank_users(batch, k, exclude_seen)  # (B, k) each
            keep = ranked >= 0
            row = np.nonzero(keep)[0]
            frame = {"user": self.catalog.user_ids[batch[row]].astype(str),
                     "rank": (np.argwhere(keep)[:, 1] + 1).astype(np.int64),
                     "item": self.catalog.item_ids[ranked[keep]].astype(str)}
            titles = self.catalog.titles(ranked[keep])
            if titles is not None:
                frame["title"] = titles
            frames.append(pd.DataFrame({**frame, "score": values[keep].astype(np.float32)}))
        columns = ["user", "rank", "item", *(["title"] if self.catalog.titles(np.zeros(0, np.int64)) is not None
                                              else []), "score"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def check_k(k: int, n_items: int) -> int:
    """`k` if it is a whole number in 1..n_items (a longer list than the catalogue cannot be filled);
    ConfigError naming the value and the range otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ConfigError(f"k must be a whole number in 1..{n_items}, got {k!r}")
    if not 1 <= k <= n_items:
        raise ConfigError(f"k={k} is out of range: give 1..{n_items} (the number of items the model ranks)")
    return int(k)
