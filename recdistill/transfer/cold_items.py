"""Zero-shot item cold start (ranking task): items without interactions get vectors from content.

The teacher is trained on the warm items' interactions as usual. A `ContentMapper` then learns to
map each warm item's content (pretrained text embedding of title, year and genres, genre
multi-hot, year) to the teacher's own vector of that item, and writes its prediction into the
teacher's item table for every item without training interactions. No interaction of a cold item
is read: the mapper is fitted on warm items only, and cold items are scored from content alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from recdistill.data.text_embeddings import item_text_embeddings
from recdistill.errors import ConfigError
from recdistill.models.ranking_base import RankingModel
from recdistill.transfer.config import check_transfer_config
from recdistill.transfer.zero_shot import fit_mapper, item_content_features, zero_shot_item_vectors

log = logging.getLogger(__name__)


def item_table(model: RankingModel) -> tuple[nn.Embedding, int]:
    """(embedding, offset): the model's item table and the row of item 0 (1 where row 0 is padding)."""
    table = model.item_embedding_table()
    if table is None:
        raise ConfigError("transfer=zero_shot needs a teacher with an item embedding table, e.g. bpr_mf, lightgcn "
                          f"or sasrec; {model.config.name!r} has none")
    return table


@torch.no_grad()
def zero_shot_teacher(cfg: DictConfig, teacher: RankingModel, run: Any, device: torch.device, quiet: bool = False
                      ) -> dict[str, Any]:
    """Fit the content mapper on the teacher's warm item vectors and write cold items' vectors.

    Also run on a copy of the model after every training epoch, so that model selection sees the
    cold items as they will be served (`quiet` keeps those fits out of the log)."""
    check_transfer_config(cfg.transfer)
    items = run.data.items
    if items is None:
        raise ConfigError(f"transfer=zero_shot needs item content, but dataset {run.data.name!r} has no item table")
    content = list(cfg.transfer.content)
    text = None
    if "text" in content:
        text = item_text_embeddings(items, Path(str(cfg.cache_dir)).expanduser())
    features = item_content_features(items, text, content)  # (I, F)
    n_items = run.lists.n_items
    table, offset = item_table(teacher)
    vectors = table.weight[offset:offset + n_items].detach().cpu().float()  # (I, D)
    warm = torch.nonzero(torch.bincount(run.lists.lists["train"].items, minlength=n_items) > 0).squeeze(1)
    cold = torch.nonzero(torch.bincount(run.lists.lists["train"].items, minlength=n_items) == 0).squeeze(1)
    with torch.enable_grad():
        mapper, summary = fit_mapper(features, vectors, warm, cfg.transfer, seed=cfg.seed)
    mapped = zero_shot_item_vectors(mapper, features, cold).to(table.weight.device, table.weight.dtype)  # (C, D)
    table.weight[cold + offset] = mapped
    (log.debug if quiet else log.info)("zero-shot: mapper fitted on %d warm items (held-out %s loss %.4f vs %.4f for the mean vector); "
             "wrote %d cold item vectors", len(warm), cfg.transfer.mapper_loss, summary["valid_loss"],
             summary["mean_valid_loss"], len(cold))
    return {"mode": "zero_shot", "warm_items": len(warm), "cold_items": len(cold), "content": content,
            "features": int(features.shape[1]), "mapper": summary}
