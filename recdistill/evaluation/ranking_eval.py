"""Top-K ranking evaluation: rank items for users, then score the lists against a split.

Two protocols:

    full     every item of the catalogue is ranked (the default and the one to report); items
             the split's input history holds are masked out when `mask_history` is on
    sampled  each user's candidates are their ground-truth `split` items plus `n_negatives`
             items drawn uniformly, without replacement, among the items the user has not
             interacted with in any split; only the candidates are ranked

Equal scores are ordered by a key of (seed, raw user id, raw item id) (`recdistill.data.tie_keys`),
so a ranking depends neither on the user batch size, the item chunk size nor the internal ids. An item scored -inf (masked, or by the model) is never recommended: lists
with fewer than k rankable items are padded with item -1 and score -inf. NaN scores are an error.

Memory stays bounded by batch_size x (item_chunk + 2k) scores on the device (each chunk's top-k
is merged with the running top-k); only each batch's final (B, k) lists go to the CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from recdistill.data.ranking_data import RankingData
from recdistill.data.tie_keys import TieKeys
from recdistill.evaluation.ranking_metrics import (hit_matrix, per_user_ranking_metrics, relevant_counts,
                                                   summarize_ranking)
from recdistill.models.ranking_base import RankingModel

log = logging.getLogger(__name__)

PROTOCOLS = ("full", "sampled")


@dataclass
class TopK:
    """Each user's top-k items, best first, on the CPU; padding is item -1 with score -inf."""

    users: torch.Tensor  # (U,) int64 user ids
    items: torch.Tensor  # (U, k) int64
    scores: torch.Tensor  # (U, k) float32
    #: users whose lists hold equal finite scores within ranks 1..k+1, i.e. whose metrics the tie rule
    #: decides; set by `evaluate_ranking`, None when not counted
    tied_users: int | None = None

    @property
    def k(self) -> int:
        """Length of each list."""
        return self.items.shape[1]

    def head(self, k: int) -> "TopK":
        """The first `k` entries of each list, counting `tied_users` over all k + 1 entries kept before."""
        scores = self.scores[:, :k + 1]  # (U, <=k+1)
        tied = (scores[:, 1:] == scores[:, :-1]) & (scores[:, 1:] > float("-inf"))  # (U, <=k)
        return TopK(self.users, self.items[:, :k], self.scores[:, :k], int(tied.any(1).sum()))


_LOWEST_KEY = torch.iinfo(torch.int64).min


def _columns(items: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Item ids at `index` (R, M) of the columns `items`, (N,) shared by every row or (R, N)."""
    return items[index] if items.dim() == 1 else items.gather(1, index)


def _seats_by_key(scores: torch.Tensor, kth: torch.Tensor, keys: torch.Tensor, k: int) -> torch.Tensor:
    """(R, k) indices of the k best of each row of `scores` (R, N) whose k-th best score `kth` (R,)
    is tied across the cut: every score above it, then the tied ones of largest `keys` (R, N)."""
    above = (scores > kth[:, None]) | scores.isnan()  # (R, N) certainly in (NaN, as torch.topk puts it first)
    tied = scores == kth[:, None]  # (R, N) in while seats are left, largest key first
    seats = k - above.sum(1, keepdim=True)  # (R, 1), >= 1
    tied_keys = keys.masked_fill(~tied, _LOWEST_KEY)  # (R, N)
    threshold = tied_keys.topk(k, dim=1).values.gather(1, seats - 1)  # (R, 1) the seats-th largest tied key
    strict = tied & (tied_keys > threshold)
    at_threshold = tied & (tied_keys == threshold)  # one item unless two keys collide (p ~ N^2 / 2^64)
    left = seats - strict.sum(1, keepdim=True)  # (R, 1)
    take = above | strict | (at_threshold & (torch.cumsum(at_threshold, 1) <= left))  # (R, N) exactly k per row
    return take.nonzero()[:, 1].view(-1, k)  # (R, k)


def tie_topk(scores: torch.Tensor, k: int, users: torch.Tensor, items: torch.Tensor, ties: TieKeys,
             floor: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices), each (B, min(k, N)), of the k largest of each row of `scores` (B, N), best
    first; equal scores are ordered by the tie key of (user, item), larger first (`TieKeys`).

    users: (B,) internal user id of each row; items: internal item id of each column, (N,) for all
    rows or (B, N). Ties at -inf, or below `floor` (B,) when given, may be resolved arbitrarily
    (the caller drops them): a chunk's ties below the k-th score already kept cannot enter."""
    rows, width = scores.shape
    if width <= k:
        index = torch.arange(width, device=scores.device).expand(rows, width)  # (B, N)
    else:
        top = scores.topk(k + 1, dim=1)  # (B, k + 1)
        index = top.indices[:, :k]  # (B, k)
        kth = top.values[:, k - 1]  # (B,)
        ambiguous = (kth == top.values[:, k]) & (kth > float("-inf"))  # (B,) which side of the cut is arbitrary
        if floor is not None:
            ambiguous &= kth >= floor
        if bool(ambiguous.any()):
            row = ambiguous.nonzero().squeeze(1)  # (R,)
            row_items = items if items.dim() == 1 else items[row]
            index[row] = _seats_by_key(scores[row], kth[row], ties.pairs(users[row], row_items), k)
    keys = ties.pairs(users, _columns(items, index))  # (B, k)
    order = keys.argsort(dim=1, descending=True)  # (B, k) by key, then stably by score below
    index = index.gather(1, order)
    values = scores.gather(1, index)  # (B, k)
    order = values.sort(dim=1, descending=True, stable=True).indices
    return values.gather(1, order), index.gather(1, order)


def _pad(values: torch.Tensor, items: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (B, n <= k) lists to (B, k) and turn -inf entries into padding (item -1)."""
    missing = k - values.shape[1]
    if missing > 0:
        values = torch.cat([values, values.new_full((values.shape[0], missing), float("-inf"))], 1)  # (B, k)
        items = torch.cat([items, items.new_full((items.shape[0], missing), -1)], 1)  # (B, k)
    return values, torch.where(values == float("-inf"), -1, items)


def _model_device(model: RankingModel) -> torch.device:
    parameter = next(iter(model.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _batches(users: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    assert batch_size >= 1, f"batch_size must be >= 1, got {batch_size}"
    return list(torch.split(users, batch_size))


def _check_finite(model: RankingModel, scores: torch.Tensor, users: torch.Tensor) -> None:
    """NaN scores rank above everything in torch.topk, so any NaN of a row reaches its final list."""
    bad = scores.isnan().any(1)  # (B,)
    if bool(bad.any()):
        raise ValueError(f"{type(model).__name__} gave NaN scores for {int(bad.sum())} users "
                         f"(first: user {int(users[bad.cpu()][0])}); cannot rank them")


def _finish(users: torch.Tensor, items: list[torch.Tensor], scores: list[torch.Tensor], k: int) -> TopK:
    if not items:
        return TopK(users, torch.zeros((0, k), dtype=torch.long), torch.zeros((0, k)))
    return TopK(users, torch.cat(items), torch.cat(scores))


def full_ranking_topk(model: RankingModel, data: RankingData, split: str, k: int, *,
                      users: torch.Tensor | None = None, batch_size: int = 1024, item_chunk: int = 65536,
                      mask_history: bool = True, device: torch.device | str | None = None,
                      candidates: torch.Tensor | None = None) -> TopK:
    """Each user's top-k items over the whole catalogue (or over the item pool `candidates`, e.g.
    the cold items of a cold-start split), under `split`'s input protocol."""
    assert k >= 1 and item_chunk >= 1, f"k and item_chunk must be >= 1, got k={k}, item_chunk={item_chunk}"
    device = torch.device(device) if device is not None else _model_device(model)
    users = (data.eval_users(split) if users is None else users).cpu().long()
    pool = None if candidates is None else torch.unique(candidates.cpu().long())  # (P,) sorted item ids
    n_pool = data.n_items if pool is None else len(pool)
    starts = list(range(0, n_pool, item_chunk))
    was_training = model.training
    model.eval()
    top_items, top_scores = [], []
    try:
        with torch.no_grad():
            for batch_users in _batches(users, batch_size):
                state = model(data.user_batch(batch_users, split, device)).state
                if mask_history:  # history sorted by item, so each chunk's pairs are one slice
                    row, item = data.history(batch_users, split)  # (nnz,), (nnz,)
                    if pool is not None:  # positions in the pool; history items outside it need no mask
                        position = torch.searchsorted(pool, item).clamp(max=max(n_pool - 1, 0))
                        inside = pool[position] == item
                        row, item = row[inside], position[inside]
                    item, order = torch.sort(item)
                    row = row[order]
                    bounds = torch.searchsorted(item, torch.tensor(starts + [n_pool])).tolist()
                    row, item = row.to(device), item.to(device)
                user_device = batch_users.to(device)
                best = torch.zeros((len(batch_users), 0), device=device)  # (B, <=k) running best scores
                best_items = torch.zeros((len(batch_users), 0), dtype=torch.long, device=device)  # (B, <=k)
                for chunk, start in enumerate(starts):
                    stop = min(start + item_chunk, n_pool)
                    chunk_items = (torch.arange(start, stop) if pool is None else pool[start:stop]).to(device)
                    scores = model.score_items(state, chunk_items).float()  # (B, C)
                    if mask_history:
                        lo, hi = bounds[chunk], bounds[chunk + 1]
                        scores = scores.contiguous()  # a model may return an expanded view: never write into it
                        scores[row[lo:hi], item[lo:hi] - start] = float("-inf")
                    # once k items are kept, chunk items below the k-th kept score cannot enter
                    floor = best[:, -1] if best.shape[1] == k else None  # (B,)
                    chunk_best, position = tie_topk(scores, k, user_device, chunk_items, data.ties, floor)
                    merged = torch.cat([best, chunk_best], 1)  # (B, <=2k)
                    merged_items = torch.cat([best_items, chunk_items[position]], 1)  # (B, <=2k)
                    best, position = tie_topk(merged, k, user_device, merged_items, data.ties)  # (B, <=k)
                    best_items = merged_items.gather(1, position)  # (B, <=k)
                _check_finite(model, best, batch_users)
                best, best_items = _pad(best, best_items, k)
                top_scores.append(best.cpu())
                top_items.append(best_items.cpu())
    finally:
        model.train(was_training)
    return _finish(users, top_items, top_scores, k)


def _padded_lists(row: torch.Tensor, item: torch.Tensor, n_rows: int) -> torch.Tensor:
    """(n_rows, width) items of each row from (row, item) pairs sorted by row, padded with -1."""
    counts = torch.bincount(row, minlength=n_rows)  # (B,)
    width = int(counts.max()) if len(counts) else 0
    slot = torch.arange(len(row)) - (torch.cumsum(counts, 0) - counts)[row]  # (nnz,) position in its row
    lists = torch.full((n_rows, width), -1, dtype=torch.long)  # (B, T)
    lists[row, slot] = item
    return lists


def _distinct_ranks(n_free: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """(B, n) distinct ranks drawn uniformly in [0, n_free[b]) for each row, -1 where n_free[b] < n."""
    ranks = torch.full((len(n_free), n), -1, dtype=torch.long)  # (B, n)
    small = n_free <= 2 * n  # few free items: a random permutation of them all
    if bool(small.any()):
        free = n_free[small]  # (S,)
        width = int(free.max())
        keys = torch.rand((len(free), width), generator=generator)  # (S, W)
        keys[torch.arange(width)[None, :] >= free[:, None]] = 2.0  # past a row's free items: last
        order = keys.argsort(1)[:, :n]  # (S, min(n, W))
        ranks[small, :order.shape[1]] = torch.where(order < free[:, None], order, -1)
    large = ~small  # many free items: draw with replacement, redraw repeats until none is left
    if bool(large.any()):
        free = n_free[large][:, None].double()  # (L, 1)
        draws = (torch.rand((len(free), n), generator=generator, dtype=torch.float64) * free).long()  # (L, n)
        while True:  # a symmetric process over the free items, so each n-subset is equally likely
            draws = draws.sort(1).values  # (L, n)
            repeat = torch.zeros_like(draws, dtype=torch.bool)
            repeat[:, 1:] = draws[:, 1:] == draws[:, :-1]  # (L, n)
            if not bool(repeat.any()):
                break
            row = repeat.nonzero()[:, 0]  # (R,)
            fresh = torch.rand(len(row), generator=generator, dtype=torch.float64) * free[row, 0]  # (R,)
            draws[repeat] = fresh.long()
        ranks[large] = draws
    return ranks


def sample_negatives(data: RankingData, users: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """(B, n) items per user drawn uniformly without replacement among those the user has not
    interacted with in any split; -1 where a user has fewer than n such items. Items are enumerated
    in `data.ties.item_order`, so the draw does not depend on internal item ids."""
    n_items, n_rows = data.n_items, len(users)
    pairs = [lists.flat(users) for lists in data.lists.values()]
    rank = data.ties.item_rank  # (I,) ranks stand in for item ids below
    keys = torch.unique(torch.cat([row * n_items + rank[item] for row, item in pairs]))  # (nnz,) sorted, distinct
    counts = torch.bincount(keys // n_items, minlength=n_rows)  # (B,) interacted items per user
    first = torch.cumsum(counts, 0) - counts  # (B,) where each user's keys begin
    ranks = _distinct_ranks(n_items - counts, n, generator)  # (B, n) ranks among each user's free items
    # The r-th free item is r + #{interacted s_i : s_i - i <= r}, i = s_i's position in its row.
    position = torch.arange(len(keys)) - torch.repeat_interleave(first, counts)  # (nnz,) i within its row
    shifted = keys - position  # (nnz,) row * n_items + s_i - i, nondecreasing
    query = torch.arange(n_rows)[:, None] * n_items + ranks.clamp(min=0)  # (B, n)
    below = torch.searchsorted(shifted, query, right=True) - first[:, None]  # (B, n)
    return torch.where(ranks >= 0, data.ties.item_order[(ranks + below).clamp(min=0)], -1)


def sampled_ranking_topk(model: RankingModel, data: RankingData, split: str, k: int, n_negatives: int = 100,
                         seed: int = 0, *, users: torch.Tensor | None = None, batch_size: int = 1024,
                         device: torch.device | str | None = None) -> TopK:
    """Each user's top-k among their `split` items plus `n_negatives` sampled non-interacted items
    (reproducible for a given seed and batch_size). Users are drawn for in `data.ties.user_order`, so
    a user's negatives do not depend on internal ids; the lists come back in the order of `users`."""
    assert k >= 1 and n_negatives >= 0, f"need k >= 1 and n_negatives >= 0, got k={k}, n_negatives={n_negatives}"
    device = torch.device(device) if device is not None else _model_device(model)
    given = (data.eval_users(split) if users is None else users).cpu().long()
    order = data.ties.user_order(given)  # (U,)
    users = given[order]
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    top_items, top_scores, short = [], [], 0
    try:
        with torch.no_grad():
            for batch_users in _batches(users, batch_size):
                row, item = data.targets(split).flat(batch_users)
                truth_keys = torch.unique(row * data.n_items + item)  # (nnz,) sorted, distinct
                truth = _padded_lists(truth_keys // data.n_items, truth_keys % data.n_items, len(batch_users))
                negatives = sample_negatives(data, batch_users, n_negatives, generator)  # (B, n)
                short += int((negatives < 0).any(1).sum())
                candidates = torch.cat([truth, negatives], 1).to(device)  # (B, T + n)
                state = model(data.user_batch(batch_users, split, device)).state
                scores = model.score_items(state, candidates.clamp(min=0)).float()  # (B, T + n)
                scores = scores.masked_fill(candidates < 0, float("-inf"))  # (B, T + n)
                best, position = tie_topk(scores, k, batch_users.to(device), candidates, data.ties)  # (B, <=k)
                _check_finite(model, best, batch_users)
                best, best_items = _pad(best, candidates.gather(1, position), k)
                top_scores.append(best.cpu())
                top_items.append(best_items.cpu())
    finally:
        model.train(was_training)
    if short:
        log.warning("%s: %d of %d users have fewer than %d items they never interacted with; their candidates "
                    "hold fewer negatives", split, short, len(users), n_negatives)
    lists = _finish(users, top_items, top_scores, k)
    back = torch.argsort(order)  # (U,) rows back in the order of `given`
    return TopK(given, lists.items[back], lists.scores[back])


def evaluate_ranking(model: RankingModel, data: RankingData, split: str, ks: Sequence[int] = (5, 10, 20),
                     protocol: str = "full", mask_history: bool = True, *, users: torch.Tensor | None = None,
                     n_negatives: int = 100, seed: int = 0, batch_size: int = 1024, item_chunk: int = 65536,
                     device: torch.device | str | None = None, candidates: torch.Tensor | None = None
                     ) -> tuple[dict[str, float], pd.DataFrame, TopK]:
    """(mean metrics, per-user metrics with a `user` column, top-K lists) of `model` on `split`;
    with `candidates` (full protocol only) the ranking is over that item pool. The lists count
    `tied_users`, the users whose metrics the tie rule decides."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown ranking protocol {protocol!r} (evaluator.protocol); valid: {list(PROTOCOLS)}")
    ks = [int(k) for k in ks]
    assert ks and min(ks) >= 1, f"evaluator.ks must be positive cut-offs, got {ks}"
    truth = data.targets(split)
    users = (data.eval_users(split) if users is None else users).cpu().long()
    has_truth = truth.counts(users) > 0
    if not bool(has_truth.all()):
        log.warning("%s: %d of %d users have no %s items and are left out of the ranking metrics",
                    split, int((~has_truth).sum()), len(users), split)
        users = users[has_truth]
    assert len(users) > 0, f"no user has {split} items to rank against"
    k = max(ks) + 1  # one more than reported, to count the users whose cut falls within a tie
    if protocol == "full":
        topk = full_ranking_topk(model, data, split, k, users=users, batch_size=batch_size, item_chunk=item_chunk,
                                 mask_history=mask_history, device=device, candidates=candidates)
    else:
        assert candidates is None, "the sampled protocol draws its own candidates; an item pool needs protocol=full"
        topk = sampled_ranking_topk(model, data, split, k, n_negatives, seed, users=users, batch_size=batch_size,
                                    device=device)
    topk = topk.head(max(ks))
    hits = hit_matrix(topk.items, topk.users, truth, data.n_items)  # (U, K)
    per_user = per_user_ranking_metrics(hits, relevant_counts(topk.users, truth, data.n_items), ks)
    metrics = summarize_ranking(per_user, topk.items, data.n_items, ks)
    frame = pd.DataFrame({"user": topk.users.numpy(), **{name: value.numpy() for name, value in per_user.items()}})
    return metrics, frame, topk


def topk_frame(topk: TopK, user_ids: Sequence | None = None) -> pd.DataFrame:
    """Long table user, rank (1-based), item, score of the lists, padding dropped; `user_ids`
    (indexed by user) replaces internal user indices with original ids when given."""
    n_users, k = topk.items.shape
    users = topk.users.numpy().repeat(k)  # (U * k,)
    if user_ids is not None:
        users = np.asarray(user_ids)[users]
    frame = pd.DataFrame({"user": users, "rank": torch.arange(1, k + 1).repeat(n_users).numpy(),
                          "item": topk.items.reshape(-1).numpy(), "score": topk.scores.reshape(-1).numpy()})
    return frame[frame["item"] >= 0].reset_index(drop=True)
