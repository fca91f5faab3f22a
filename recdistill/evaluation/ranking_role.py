"""Evaluation of ranking models as a role of the run: valid/test metrics, per-user metrics,
efficiency of full-catalogue scoring, the test top-K lists, and how many users' lists the tie
rule decides (`tied_users`).

Protocol (from the evaluator config, written next to every number by the ranking task): full
ranking over every item (or the split's item pool) or the sampled protocol; the user's input
history masked or not; cut-offs `ks`.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch

from recdistill.data.ranking_data import RankingData
from recdistill.evaluation.efficiency import efficiency_report
from recdistill.evaluation.ranking_eval import TopK, evaluate_ranking, topk_frame
from recdistill.evaluation.result import RoleResult
from recdistill.models.ranking_base import RankingModel

log = logging.getLogger(__name__)


def evaluate_split(model: RankingModel, lists: RankingData, split: str, evaluator: Any, seed: int,
                   device: torch.device, candidates: torch.Tensor | None = None
                   ) -> tuple[dict[str, float], pd.DataFrame, TopK]:
    """`evaluate_ranking` of `split` under the evaluator config's protocol (ks, protocol,
    mask_history, n_negatives, user_batch_size, item_chunk); `seed` draws sampled negatives."""
    return evaluate_ranking(model, lists, split, ks=tuple(evaluator.ks), protocol=evaluator.protocol,
                            mask_history=evaluator.mask_history, n_negatives=evaluator.n_negatives,
                            seed=seed, batch_size=evaluator.user_batch_size, item_chunk=evaluator.item_chunk,
                            device=device, candidates=candidates)


def evaluate_ranking_role(role: str, model: RankingModel, lists: RankingData, evaluator: Any, seed: int,
                          device: torch.device, candidates: dict[str, torch.Tensor]) -> RoleResult:
    """Valid/test metrics, per-user test metrics, efficiency and test top-K lists of one model;
    `candidates[split]`, where present, is the item pool that split ranks over."""
    block: dict[str, Any] = {"model": model.config.name}
    block["valid"], _, valid_topk = evaluate_split(model, lists, "valid", evaluator, seed, device,
                                                   candidates.get("valid"))
    block["test"], per_user, topk = evaluate_split(model, lists, "test", evaluator, seed, device,
                                                   candidates.get("test"))
    # users whose lists hold equal scores within the top max(ks) + 1: their metrics follow the tie rule
    block["tied_users"] = {"valid": valid_topk.tied_users, "valid_users": len(valid_topk.users),
                           "test": topk.tied_users, "test_users": len(topk.users)}
    if topk.tied_users:
        log.info("evaluate %s: %d of %d test users have tied scores in their top %d (ordered by the tie key)",
                 role, topk.tied_users, len(topk.users), max(evaluator.ks) + 1)
    per_user.insert(0, "role", role)
    users = lists.eval_users("test")[: evaluator.latency_batch_size]
    batch = lists.user_batch(users, "test", device)
    all_items = torch.arange(lists.n_items, device=device)
    block["efficiency"] = efficiency_report(model, batch, forward=lambda m, b: m.score_items(m(b).state, all_items),
                                            n_warmup=evaluator.latency_warmup, n_repeats=evaluator.latency_repeats)
    log.info("evaluate %s: test %s", role, {k: round(v, 4) for k, v in block["test"].items() if "@10" in k})
    frame = topk_frame(topk)
    frame.insert(0, "role", role)
    return RoleResult(block, per_user, topk=frame)
