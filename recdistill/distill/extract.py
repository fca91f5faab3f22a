"""Stage 2, extraction: turn a trained teacher into the `TeacherKnowledge` a strategy declared it needs.

Two kinds of knowledge exist, one per model family:
- per training example (rating models): the teacher's class logits and hidden state for every
  target of the training split, row i = training row i;
- per user and item (ranking models): each user's teacher top-K list with the user's training
  items excluded, and, for teachers that score by a dot product, the user and item vectors.
The artifact is saved in the run folder and reused on resume when it came from the same teacher.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from recdistill.data.batching import TrainingSequences
from recdistill.data.ranking_data import RankingData
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.errors import ConfigError
from recdistill.evaluation.predict import predict
from recdistill.evaluation.ranking_eval import full_ranking_topk
from recdistill.models.base import RatingModel
from recdistill.models.ranking_base import RankingModel

log = logging.getLogger(__name__)


def load_or_extract(path: Path, teacher_key: str, needs: frozenset[str], meta: dict,
                    compute: Callable[[], dict[str, torch.Tensor]]) -> TeacherKnowledge:
    """The knowledge saved at `path` when it holds `needs` of the same teacher with the same `meta`
    settings; otherwise `compute()` it (a dict holding at least `needs`) and save it there."""
    if path.exists():
        knowledge = TeacherKnowledge.load(path)
        same_settings = all(knowledge.meta.get(k) == v for k, v in meta.items())
        if knowledge.teacher_key == teacher_key and needs <= set(knowledge.tensors) and same_settings:
            log.info("extract: reusing %s", path)
            return knowledge
    tensors = compute()
    knowledge = TeacherKnowledge(teacher_key=teacher_key, tensors={kind: tensors[kind] for kind in sorted(needs)},
                                 meta=meta)
    knowledge.save(path)
    log.info("extract: %s -> %s", sorted(needs) or "nothing", path)
    return knowledge


def per_example_knowledge(teacher: RatingModel, train: TrainingSequences, needs: frozenset[str],
                          batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """`logits` (N_train, C) and `hidden` (N_train, D_teacher) of every training target, as needed."""
    output = predict(teacher, train, batch_size, device)
    return {kind: getattr(output, kind) for kind in needs}


def per_user_knowledge(teacher: RankingModel, lists: RankingData, needs: frozenset[str], topk: int,
                       batch_size: int, item_chunk: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Each user's teacher top-`topk` list (`topk_items` (U, K), -1 padded; `topk_scores` (U, K),
    -inf padded), training items excluded; and `user_repr` (U, D), `item_repr` (I, D) as needed.

    Raises ConfigError when representations are needed from a teacher that does not score by a
    dot product of user and item vectors."""
    wants_repr = needs & {"user_repr", "item_repr"}
    if wants_repr and not teacher.dot_product_scores:
        raise ConfigError(f"distillation needs {sorted(wants_repr)}, but teacher {teacher.config.name!r} does not "
                          "score by a dot product of user and item vectors; choose another teacher or strategy")
    users = lists.eval_users("train")
    tensors: dict[str, torch.Tensor] = {}
    if needs & {"topk_items", "topk_scores"}:
        ranked = full_ranking_topk(teacher, lists, "train", topk, users=users, batch_size=batch_size,
                                   item_chunk=item_chunk, mask_history=True, device=device)
        tensors["topk_items"] = torch.full((lists.n_users, topk), -1, dtype=torch.long)
        tensors["topk_items"][ranked.users] = ranked.items
        tensors["topk_scores"] = torch.full((lists.n_users, topk), float("-inf"))
        tensors["topk_scores"][ranked.users] = ranked.scores.float()
    if wants_repr:
        tensors.update(_representations(teacher, lists, users, batch_size, device))
    return tensors


@torch.no_grad()
def _representations(teacher: RankingModel, lists: RankingData, users: torch.Tensor, batch_size: int,
                     device: torch.device) -> dict[str, torch.Tensor]:
    was_training = teacher.training
    teacher.eval()
    states = [teacher(lists.user_batch(users[i:i + batch_size], "train", device)).state.cpu()
              for i in range(0, len(users), batch_size)]
    user_repr = torch.zeros(lists.n_users, states[0].shape[1])
    user_repr[users] = torch.cat(states).float()
    item_repr = teacher.item_vectors(torch.arange(lists.n_items, device=device)).float().cpu()
    teacher.train(was_training)
    return {"user_repr": user_repr, "item_repr": item_repr}
