"""Next-item losses shared by the sequential models (SASRec, GRU4Rec).

Every slot of a `sequences` batch that has a target (target > 0, item id + 1) contributes one
prediction: its output vector scored against item vectors. Only those slots are gathered, so the
full softmax costs (slots with a target, n_items), never (B * L, n_items).

    ce       full softmax cross-entropy over every item (RecBole's `loss_type: CE`)
    sampled  softmax over the target and `n_negatives` items drawn uniformly, shared by the batch;
             an accidental hit (a negative equal to the row's target) is masked out. Uniform
             sampling needs no logQ correction: log Q is the same constant for every item and
             cancels in the softmax.
    bce      one uniformly drawn negative per slot, binary cross-entropy on target vs negative, as
             in the SASRec paper (a negative equal to the target is left out of the mean)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Valid values of the sequential models' `loss` option.
NEXT_ITEM_LOSSES = ("ce", "sampled", "bce")


def check_loss_name(loss: str) -> None:
    """Fail with the valid choices when `loss` is not a known next-item loss."""
    assert loss in NEXT_ITEM_LOSSES, f"unknown next-item loss {loss!r}; valid: {', '.join(NEXT_ITEM_LOSSES)}"


def next_item_loss(slots: torch.Tensor, target: torch.Tensor, item_table: torch.Tensor, loss: str,
                   n_negatives: int = 100) -> dict[str, torch.Tensor]:
    """Named next-item loss term of per-slot outputs slots (B, L, D) against target (B, L) (item
    id + 1, 0 = no target), scored by dot product with item_table (n_items, D), row i = item i."""
    check_loss_name(loss)
    has_target = target > 0  # (B, L)
    assert has_target.any(), "a sequences batch without any target has no next-item loss"
    hidden = slots[has_target]  # (M, D) only the slots that predict something
    truth = target[has_target] - 1  # (M,) item ids
    n_items = item_table.shape[0]
    if loss == "ce":
        logits = hidden @ item_table.T  # (M, I)
        return {"ce": F.cross_entropy(logits, truth)}
    if loss == "sampled":
        assert n_negatives > 0, f"sampled softmax needs n_negatives > 0, got {n_negatives}"
        negatives = torch.randint(n_items, (n_negatives,), device=hidden.device)  # (S,) shared by the batch
        positive = (hidden * item_table[truth]).sum(-1, keepdim=True)  # (M, 1)
        negative = hidden @ item_table[negatives].T  # (M, S)
        negative = negative.masked_fill(negatives[None, :] == truth[:, None], float("-inf"))
        logits = torch.cat([positive, negative], dim=1)  # (M, 1 + S), the target is column 0
        return {"sampled_ce": F.cross_entropy(logits, torch.zeros_like(truth))}
    negatives = torch.randint(n_items, truth.shape, device=hidden.device)  # (M,) one per slot
    positive = (hidden * item_table[truth]).sum(-1)  # (M,)
    negative = (hidden * item_table[negatives]).sum(-1)  # (M,)
    keep = (negatives != truth).float()  # (M,)
    per_slot = -F.logsigmoid(positive) - F.logsigmoid(-negative) * keep  # (M,)
    return {"bce": per_slot.mean()}
