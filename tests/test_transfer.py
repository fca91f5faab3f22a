"""Transfer: shared weights copy, freeze and rescale exactly what is configured; the zero-shot
mapper builds content features correctly and maps unseen items better than the mean vector."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from recdistill.errors import ConfigError
from recdistill.models.base import DataShape
from recdistill.models.biased_mf import BiasedMF, BiasedMFConfig
from recdistill.models.bpr_mf import BPRMF, BPRMFConfig
from recdistill.models.ranking_base import RankingShape
from recdistill.models.rating_transformer import RatingTransformer, RatingTransformerConfig
from recdistill.transfer.config import TransferConfig, check_transfer_config
from recdistill.transfer.shared_weights import (apply_shared_weights, freeze_parameters, parameter_groups,
                                                transfer_parameters)
from recdistill.transfer.zero_shot import fit_mapper, item_content_features, zero_shot_item_vectors

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "transfer"
SHAPE = DataShape(n_users=10, n_items=20, history_length=4)


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: small models train far faster, and without contention with parallel test runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def transformer(seed: int, dim: int = 16, n_layers: int = 1, text_dim: int = 0) -> RatingTransformer:
    torch.manual_seed(seed)
    return RatingTransformer(RatingTransformerConfig(dim=dim, n_layers=n_layers, text_dim=text_dim), SHAPE)


def biased_mf(seed: int) -> BiasedMF:
    torch.manual_seed(seed)
    return BiasedMF(BiasedMFConfig(dim=8), SHAPE)


def bpr_mf(seed: int) -> BPRMF:
    torch.manual_seed(seed)
    return BPRMF(BPRMFConfig(dim=8), RankingShape(n_users=SHAPE.n_users, n_items=SHAPE.n_items))


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


# ---------------------------------------------------------------- shared weights: what is copied


def test_exactly_the_named_modules_are_copied():
    source, target = transformer(0, n_layers=2), transformer(1, n_layers=1)
    before = snapshot(target)
    copied = transfer_parameters(source, target, ["item_embedding", "blocks.0"])
    expected = [n for n in source.state_dict() if n.startswith(("item_embedding.", "blocks.0."))]
    assert copied == expected and "blocks.0.query.weight" in copied
    source_state = source.state_dict()
    for name, tensor in target.state_dict().items():
        if name in copied:
            assert torch.equal(tensor, source_state[name]), name
        else:
            assert torch.equal(tensor, before[name]), name
    assert not torch.equal(before["item_embedding.weight"], target.item_embedding.weight)


def test_no_modules_copies_every_name_and_shape_in_common():
    source, target = bpr_mf(0), biased_mf(1)  # BPR factors initialise a biased MF
    before = snapshot(target)
    assert transfer_parameters(source, target, []) == ["user_factors.weight", "item_factors.weight"]
    assert torch.equal(target.user_factors.weight, source.user_factors.weight)
    assert torch.equal(target.item_factors.weight, source.item_factors.weight)
    for name in ("user_bias.weight", "item_bias.weight", "global_mean", "log_scale"):
        assert torch.equal(target.state_dict()[name], before[name]), name
    # a 2-layer teacher with text into a 1-layer student without: blocks.1 and the text buffer are left out
    teacher, student = transformer(0, n_layers=2, text_dim=6), transformer(1, n_layers=1)
    copied = transfer_parameters(teacher, student, [])
    assert "text_embeddings" not in copied and not any(n.startswith("blocks.1.") for n in copied)
    assert "blocks.0.ff.0.weight" in copied and "classifier.bias" in copied


def test_prefixes_match_whole_components():
    source, target = transformer(0), transformer(1)
    with pytest.raises(ConfigError, match="'block' matches no parameter"):
        transfer_parameters(source, target, ["block"])
    assert transfer_parameters(source, target, ["blocks.0.query.weight"]) == ["blocks.0.query.weight"]


def test_mismatched_shapes_name_the_tensor_shapes_and_fitting_prefixes():
    source, target = transformer(0, dim=16), transformer(1, dim=8)
    with pytest.raises(ConfigError) as error:
        transfer_parameters(source, target, ["item_embedding"])
    message = str(error.value)
    assert "'item_embedding.weight'" in message and "(21, 16)" in message and "(21, 8)" in message
    assert message.endswith("prefixes that fit both: text_embeddings, class_values, blocks.0.distance_bias, "
                            "classifier.bias")


def test_a_prefix_missing_from_the_target_lists_what_fits():
    source, target = transformer(0, n_layers=2), transformer(1, n_layers=1)
    with pytest.raises(ConfigError, match=r"'blocks\.1\.distance_bias'.*missing from the target") as error:
        transfer_parameters(source, target, ["blocks"])
    assert str(error.value).endswith("prefixes that fit both: start, text_embeddings, class_values, item_embedding, "
                                     "rating_embedding, blocks.0, final_norm, classifier")


def test_unknown_prefixes_list_the_top_level_names():
    source, target = transformer(0), transformer(1)
    with pytest.raises(ConfigError, match="'encoder' matches no parameter of RatingTransformer") as error:
        transfer_parameters(source, target, ["encoder"])
    assert str(error.value).endswith("its top-level names: start, text_embeddings, class_values, item_embedding, "
                                     "rating_embedding, blocks, final_norm, classifier")
    with pytest.raises(ConfigError, match=r"transfer.freeze prefix 'decoder'.*user_factors, item_factors"):
        freeze_parameters(biased_mf(0), ["decoder"])


# ---------------------------------------------------------------- shared weights: freezing and lr


def _step(model: BiasedMF, optimizer: torch.optim.Optimizer) -> None:
    users, items = torch.arange(10), torch.arange(10) * 2
    ratings = torch.tensor([1.0, 2, 3, 4, 5, 5, 4, 3, 2, 1])
    batch = {"user": users, "item": items, "rating": ratings, "label": ratings.long() - 1}
    loss = sum(model.loss(batch, model(batch)).values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_frozen_parameters_stay_and_copied_ones_learn_at_the_scaled_rate():
    source, target = bpr_mf(0), biased_mf(1)
    cfg = TransferConfig(mode="shared_weights", freeze=["user_factors"], lr_scale=0.1)
    summary = apply_shared_weights(source, target, cfg, lr=0.01)
    assert summary["copied"] == ["user_factors.weight", "item_factors.weight"]
    assert summary["frozen"] == ["user_factors.weight"] and summary["copied_values"] == 10 * 8 + 20 * 8
    assert not target.user_factors.weight.requires_grad and target.item_factors.weight.requires_grad
    groups = parameter_groups(target, 0.01, summary["copied"], cfg.lr_scale)
    assert [(g["name"], g["lr"]) for g in groups] == [("transferred", pytest.approx(0.001)), ("new", 0.01)]
    assert [p is target.item_factors.weight for p in groups[0]["params"]] == [True]
    assert {id(p) for p in groups[1]["params"]} == {id(target.user_bias.weight), id(target.item_bias.weight),
                                                    id(target.global_mean), id(target.log_scale)}
    assert [(g["name"], g["lr"], g["tensors"]) for g in summary["lr_groups"]] == [
        ("transferred", pytest.approx(0.001), 1), ("new", 0.01, 4)]
    optimizer = torch.optim.AdamW(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(0.001), 0.01]
    before = snapshot(target)
    _step(target, optimizer)
    after = target.state_dict()
    assert torch.equal(after["user_factors.weight"], before["user_factors.weight"])
    for name in ("item_factors.weight", "user_bias.weight", "item_bias.weight", "global_mean"):
        assert not torch.equal(after[name], before[name]), name
    # AdamW's first step moves each touched value by about its group's lr
    moved = lambda name: (after[name] - before[name]).abs().max().item()  # noqa: E731
    assert moved("item_factors.weight") < 0.0015 < 0.005 < moved("item_bias.weight")


def test_freezing_a_parameter_that_was_not_copied_is_an_error():
    cfg = TransferConfig(mode="shared_weights", freeze=["user_bias"])
    with pytest.raises(ConfigError, match="not copied from the source.*user_bias.weight"):
        apply_shared_weights(bpr_mf(0), biased_mf(1), cfg, lr=0.01)


# ---------------------------------------------------------------- config group


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_transfer_option_fits_the_schema(path):
    cfg = OmegaConf.merge(OmegaConf.structured(TransferConfig), OmegaConf.load(path))
    check_transfer_config(cfg)
    assert cfg.mode == path.stem


@pytest.mark.parametrize("change, message", [
    ({"mode": "distill"}, "transfer.mode='distill' unknown; valid: none, shared_weights, zero_shot, meta"),
    ({"mapper_loss": "l1"}, "transfer.mapper_loss='l1' unknown; valid: mse, cosine"),
    ({"content": ["text", "poster"]}, "transfer.content has 'poster'; valid: text, genres, year"),
    ({"content": ["year", "year"]}, "repeats ['year']"),
    ({"lr_scale": -1.0}, "transfer.lr_scale=-1.0 must be"),
    ({"freeze": [""]}, "transfer.freeze has ''"),
    ({"mapper_epochs": 0}, "transfer.mapper_epochs=0 must be >= 1"),
])
def test_bad_values_name_the_key_and_valid_choices(change, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        check_transfer_config(TransferConfig(**change))


# ---------------------------------------------------------------- zero-shot content mapping


def hand_items() -> pd.DataFrame:
    return pd.DataFrame({"title": ["A", "B", "C", "D"],
                         "year": pd.array([1990, None, 2000, 2010], dtype="Int64"),
                         "genres": ["Comedy|Drama", "", "Drama", "Action|Comedy"]})


def test_content_features_concatenate_text_genres_and_year():
    text = torch.randn(4, 3)
    features = item_content_features(hand_items(), text, ["text", "genres", "year"])
    assert features.shape == (4, 3 + 3 + 2) and features.dtype == torch.float32
    assert torch.equal(features[:, :3], text)
    assert features[:, 3:6].tolist() == [[0, 1, 1], [0, 0, 0], [0, 0, 1], [1, 1, 0]]  # Action, Comedy, Drama
    spread = np.std([1990, 2000, 2010])
    expected_year = torch.tensor([-10 / spread, 0.0, 0.0, 10 / spread], dtype=torch.float32)
    assert torch.allclose(features[:, 6], expected_year) and features[:, 7].tolist() == [0, 1, 0, 0]
    assert item_content_features(hand_items(), None, ["year", "genres"]).shape == (4, 5)


def test_content_features_need_what_they_read():
    with pytest.raises(ConfigError, match="includes 'text' but no item text embeddings"):
        item_content_features(hand_items(), None, ["text"])
    with pytest.raises(ConfigError, match=r"'year' needs item column\(s\) \['year'\]"):
        item_content_features(hand_items().drop(columns="year"), None, ["year"])


def test_mapper_learns_a_linear_map_and_beats_the_mean_on_cold_items():
    rng = np.random.default_rng(0)
    n_items, warm_count = 240, 200
    names = np.array(["Action", "Comedy", "Drama", "Horror", "Sci-Fi", "War"])
    genres = ["|".join(names[rng.random(len(names)) < 0.3]) for _ in range(n_items)]
    years = pd.array(np.where(rng.random(n_items) < 0.1, None, rng.integers(1950, 2000, n_items)), dtype="Int64")
    items = pd.DataFrame({"title": [f"t{i}" for i in range(n_items)], "year": years, "genres": genres})
    text = torch.from_numpy(rng.normal(size=(n_items, 12)).astype("float32"))
    features = item_content_features(items, text, ["text", "genres", "year"])  # (I, F)
    weights = torch.from_numpy(rng.normal(size=(features.shape[1], 6)).astype("float32"))
    truth = features @ weights  # (I, 6)
    targets = truth.clone()
    targets[warm_count:] = float("nan")  # cold items' vectors are unknown: reading them would poison the fit
    cfg = TransferConfig(mode="zero_shot", mapper_hidden=64, mapper_epochs=400, mapper_lr=1e-2, mapper_patience=50)
    rng_state = torch.get_rng_state()
    mapper, summary = fit_mapper(features, targets, torch.arange(warm_count), cfg, seed=0)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert summary["n_train"] == 180 and summary["n_valid"] == 20
    assert summary["valid_loss"] < 0.2 * summary["mean_valid_loss"]
    cold = torch.arange(warm_count, n_items)
    predicted = zero_shot_item_vectors(mapper, features, cold)  # (40, 6)
    assert predicted.shape == (40, 6)
    mapped_error = ((predicted - truth[cold]) ** 2).mean()
    mean_error = ((truth[:warm_count].mean(0) - truth[cold]) ** 2).mean()
    assert mapped_error < 0.2 * mean_error, (mapped_error, mean_error)
    again, _ = fit_mapper(features, targets, torch.arange(warm_count), cfg, seed=0)
    assert torch.equal(zero_shot_item_vectors(again, features, cold), predicted)
