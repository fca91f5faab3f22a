"""`RankingStrategy`: what top-K ranking distillation strategies share.

Ranking knowledge is per user and item, not per training row, and only batch rows with `final`
True carry the user's full-history state that matches it. So every strategy here reads the
batch's *final rows* (or *final users*: each user once, with their first final row's state),
gathers the teacher's rows for them on the CPU and moves only those to the student's device.

Sampling is reproducible: `on_epoch_start(epoch)` builds a `torch.Generator` seeded from the
strategy's name and the epoch, draws that epoch's per-user samples (`resample`), and per-batch
draws continue from the same generator, so the same epoch (and batch order) gives the same samples.

Reductions follow the authors' code, rescaled to this project's base losses: the papers add
`lambda * (sum over the batch)` to a base loss *summed* over the batch's rows, while the base
losses here are *means* over rows. So each term is the authors' batch sum divided by the number of
final rows (`n_final`), and the authors' lambda carries over unchanged as the term's weight.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import torch

from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.strategy import Strategy
from recdistill.errors import ConfigError
from recdistill.models.ranking_base import RankingOutput

#: Rounds of redrawing before `sample_outside` gives up (each round keeps a fraction N/I of draws).
MAX_REDRAWS = 1000
#: Users whose per-user teacher item vectors `teacher_scores` gathers at once.
TEACHER_ROWS_PER_GATHER = 64
#: `teacher_scores` reads a (U, I) table of every teacher score, computed once (the teacher is frozen), up
#: to this many cells (128 MB in float32; ML-1M's 6,040 x 3,706 is 22M).
TEACHER_SCORE_TABLE_CELLS = 1 << 25
#: Above it, `teacher_scores` scores the whole catalogue with one matmul, then picks each row's items, when the
#: catalogue has at most this many items per candidate: gathering (F, n, Dt) vectors moves memory at a
#: far lower rate than a matmul does arithmetic (one thread, F = 1024, n = Dt = 200: 85 -> 39 ms at
#: 3,706 items (18.5 per candidate), about even at 55, gathering faster at 125: 129 vs 213 ms).
FULL_CATALOGUE_RATIO = 32
#: `sample_outside` tests draws against a dense (U, I) bool mask up to this many cells (64 MB), and
#: by binary search in the sorted exclusions above it; both give the same samples.
DENSE_EXCLUSION_CELLS = 1 << 26


def rank_discount_sample(valid: torch.Tensor, n: int, temperature: float,
                         generator: torch.Generator) -> torch.Tensor:
    """(U, n) ranks drawn per row without replacement, P(rank r) ∝ exp(-(r + 1) / temperature)
    among the row's valid ranks (`valid` (U, N) bool), sorted best first.

    Gumbel top-n: top-n of log p + Gumbel noise is exactly successive sampling without
    replacement, and stays finite for any temperature. Rows with fewer than n valid ranks get
    invalid ranks last; callers mask them by `item >= 0`."""
    n_rows, n_ranks = valid.shape
    assert 0 < n <= n_ranks, f"cannot draw {n} ranks from a top-{n_ranks} list"
    log_weight = -(torch.arange(n_ranks, dtype=torch.float64) + 1) / temperature  # (N,)
    uniform = torch.rand(n_rows, n_ranks, generator=generator, dtype=torch.float64)  # (U, N)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-300, 1 - 1e-16)))  # (U, N)
    # Invalid ranks go below every valid one, in rank order (distinct keys keep the draw deterministic).
    last = -1e300 * (1 + 1e-3 * torch.arange(n_ranks, dtype=torch.float64))  # (N,)
    keys = torch.where(valid, log_weight + gumbel, last)  # (U, N)
    return keys.topk(n, dim=1).indices.sort(dim=1).values  # (U, n)


def sample_outside(excluded: torch.Tensor, n: int, n_items: int, generator: torch.Generator) -> torch.Tensor:
    """(U, n) items drawn uniformly, with replacement, among those not in the row of `excluded`
    (U, N) (entries -1 exclude nothing); redraws until no draw is excluded."""
    n_rows, n_excluded = excluded.shape
    assert n_items > n_excluded, f"no items left to sample: {n_items} items, {n_excluded} excluded per user"
    is_excluded = _exclusion_test(excluded, n_items)
    samples = torch.randint(n_items, (n_rows, n), generator=generator)  # (U, n)
    for _ in range(MAX_REDRAWS):
        hit = is_excluded(samples)  # (U, n)
        if not hit.any():
            return samples
        samples[hit] = torch.randint(n_items, (int(hit.sum()),), generator=generator)
    raise RuntimeError(f"sample_outside: draws still excluded after {MAX_REDRAWS} rounds")


def _exclusion_test(excluded: torch.Tensor, n_items: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function (U, n) items -> (U, n) bool, True where the item is in its row of `excluded` (U, N)."""
    n_rows, n_excluded = excluded.shape
    if n_rows * n_items <= DENSE_EXCLUSION_CELLS:
        # A dense mask costs one scatter; each redraw round is then a gather (a binary search per
        # draw took 3.5 ms per round for 1,024 x 100 draws among 3,706 items).
        mask = torch.zeros(n_rows, n_items + 1, dtype=torch.bool)  # (U, I + 1); column I takes the -1 entries
        mask.scatter_(1, torch.where(excluded >= 0, excluded, n_items), True)
        return lambda items: mask.gather(1, items)
    ordered = excluded.sort(dim=1).values.contiguous()  # (U, N)
    return lambda items: ordered.gather(1, torch.searchsorted(ordered, items).clamp(max=n_excluded - 1)) == items


class RankingStrategy(Strategy):
    """Base class for distillation strategies on the top-K ranking task (see module docstring).

    Subclasses implement `loss` and, when they sample once per epoch, `resample`; `check_knowledge`
    checks params against the knowledge. `setup` calls `on_epoch_start(0)`, so a strategy has
    samples right after setup.
    """

    task = "ranking"

    def __init__(self, params: object | None = None) -> None:
        super().__init__(params)
        self.n_users = 0
        self.n_items = 0
        self.epoch = 0
        self.generator = torch.Generator()
        self._device_tables: dict[tuple[str, torch.device], torch.Tensor] = {}

    def setup(self, knowledge: TeacherKnowledge, student_hidden_dim: int) -> None:
        """Keep the needed teacher tensors and the catalogue sizes, then draw epoch 0's samples."""
        super().setup(knowledge, student_hidden_dim)
        self.n_users = int(knowledge.meta["n_users"])
        self.n_items = int(knowledge.meta["n_items"])
        self._device_tables = {}
        self.check_knowledge()
        self.on_epoch_start(0)

    def check_knowledge(self) -> None:
        """Check the params against the kept knowledge (called by `setup`)."""
        self.check_ranks(self.teacher["topk_items"].shape[1] if "topk_items" in self.teacher else None)

    def ranks_needed(self) -> dict[str, int]:
        """{param: ranks} the teacher's top lists must hold for this strategy's params; none by default."""
        return {}

    def check_ranks(self, stored: int | None) -> None:
        """ConfigError when a parameter asks for more ranks than lists of `stored` items hold (run
        before any training from distill.teacher_topk, and again on the knowledge itself)."""
        for what, ranks in self.ranks_needed().items():
            if stored is not None and ranks > stored:
                raise ConfigError(f"distill.terms.{self.name}.{what}={ranks}, but the teacher knowledge keeps only "
                                  f"the top {stored} items (distill.teacher_topk); raise distill.teacher_topk to at "
                                  f"least {ranks} or lower {what}")

    def on_epoch_start(self, epoch: int) -> None:
        """Reseed the generator from the epoch and draw the epoch's samples."""
        self.epoch = epoch
        self.generator = self.epoch_generator(epoch)
        self.resample(self.generator)

    def resample(self, generator: torch.Generator) -> None:
        """Draw this epoch's per-user samples from `generator`; nothing by default."""

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """A CPU generator seeded from the strategy's name and `epoch` (same epoch, same draws)."""
        return torch.Generator().manual_seed(zlib.crc32(self.name.encode()) * 1_000_003 + epoch)

    # --- batch and teacher rows -------------------------------------------------------------------

    @staticmethod
    def n_final(batch: dict[str, torch.Tensor]) -> int:
        """Number of final rows in the batch (the denominator of every term)."""
        return int(batch["final"].sum())

    @staticmethod
    def final_rows(output: RankingOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(users (R,), states (R, D)) of every final row, repeated users included."""
        rows = batch["final"].bool().nonzero().squeeze(1)  # (R,)
        return batch["user"][rows], output.state[rows]  # (R,), (R, D)

    @staticmethod
    def final_users(output: RankingOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(users (F,), states (F, D)): each user with a final row once (sorted), with the state of
        their first final row; F = 0 when the batch has no final row."""
        rows = batch["final"].bool().nonzero().squeeze(1)  # (F_rows,)
        users = batch["user"][rows]  # (F_rows,)
        unique, inverse = torch.unique(users, return_inverse=True)  # (F,), (F_rows,)
        order = torch.arange(len(rows), device=rows.device)  # (F_rows,)
        first = torch.full_like(unique, len(rows)).scatter_reduce(0, inverse, order, "amin")  # (F,)
        return unique, output.state[rows[first]]  # (F,), (F, D)

    @staticmethod
    def student_scores(output: RankingOutput, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(F, n) the student's scores of items (n,) or (F, n) for the final users' `state` (F, D)."""
        return output.model.score_items(state, items)

    @staticmethod
    def zero(output: RankingOutput) -> torch.Tensor:
        """A zero that keeps the graph valid (for batches without final rows)."""
        return output.state.sum() * 0

    def teacher_for(self, kind: str, users: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The teacher's `kind` rows (per user) for `users`, gathered on the CPU, moved to `device`."""
        assert kind in self.teacher, (
            f"strategy {self.name!r} has no teacher {kind!r}: call setup() first (it needs {sorted(self.needs)})"
        )
        table = self.teacher[kind]  # (U, ...)
        return table[users.to(table.device)].to(device)  # (F, ...)

    def teacher_topk(self, users: torch.Tensor, device: torch.device, topk: int | None = None) -> torch.Tensor:
        """(F, topk) the teacher's best items for `users`, best first; -1 where there is none."""
        items = self.teacher_for("topk_items", users, device)  # (F, N)
        return items if topk is None else items[:, :topk]  # (F, topk)

    def teacher_items(self, items: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(*items.shape, Dt) the teacher's item vectors of `items` (any shape, all >= 0)."""
        table = self.teacher["item_repr"]  # (I, Dt)
        return table[items.to(table.device)].to(device)  # (..., Dt)

    def teacher_item_table(self, device: torch.device) -> torch.Tensor:
        """(I, Dt) every teacher item vector on `device`, copied there once (not a buffer: it stays
        out of checkpoints)."""
        key = ("item_repr", device)
        if key not in self._device_tables:
            self._device_tables[key] = self.teacher["item_repr"].to(device)
        return self._device_tables[key]

    def teacher_score_table(self, device: torch.device) -> torch.Tensor:
        """(U, I) every teacher score user_repr . item_repr on `device`, computed once."""
        key = ("scores", device)
        if key not in self._device_tables:
            self._device_tables[key] = self.teacher["user_repr"].to(device) @ self.teacher_item_table(device).T
        return self._device_tables[key]

    def teacher_scores(self, users: torch.Tensor, items: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(F, n) teacher scores user_repr[u] . item_repr[i]; items (n,) shared or (F, n) per user."""
        if items.dim() == 2 and len(self.teacher["user_repr"]) * self.n_items <= TEACHER_SCORE_TABLE_CELLS:
            rows = self.teacher_score_table(device).index_select(0, users.to(device))  # (F, I)
            return rows.gather(1, items.to(device))  # (F, n); 2x faster than advanced indexing on a CPU
        user_repr = self.teacher_for("user_repr", users, device)  # (F, Dt)
        if items.dim() == 1:
            return user_repr @ self.teacher_items(items, device).T  # (F, n)
        if self.n_items <= FULL_CATALOGUE_RATIO * items.shape[1]:
            return (user_repr @ self.teacher_item_table(device).T).gather(1, items.to(device))  # (F, I) -> (F, n)
        # Gathered in blocks of rows: all (F, n, Dt) vectors at once are 164 MB for 1024 x 200 x 200,
        # out of every cache; a block's products are the same numbers as the whole batch's.
        scores = user_repr.new_empty(items.shape)  # (F, n)
        for start in range(0, len(items), TEACHER_ROWS_PER_GATHER):
            rows = slice(start, start + TEACHER_ROWS_PER_GATHER)
            scores[rows] = torch.einsum("fd,fnd->fn", user_repr[rows], self.teacher_items(items[rows], device))
        return scores

    def batch_items(self, batch: dict[str, torch.Tensor], users: torch.Tensor, topk: int) -> list[torch.Tensor]:
        """The items the batch touches, as groups of unique ids: [pos, neg] of the final rows for pair
        batches (neg only if present), else [the teacher's top-`topk` of `users`]."""
        final = batch["final"].bool()  # (B,)
        if "pos" in batch:
            groups = [batch["pos"][final].unique()]
            if "neg" in batch:
                groups.append(batch["neg"][final].unique())
            return groups
        items = self.teacher_topk(users, users.device, topk)  # (F, topk)
        return [items[items >= 0].unique()]


