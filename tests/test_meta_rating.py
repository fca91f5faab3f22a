"""The MAML-trained MeLU rating model: contract, causality, the inner loop and its payoff on new users."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from recdistill.data.batching import build_user_rows
from recdistill.errors import ConfigError
from recdistill.evaluation.predict import predict
from recdistill.models.base import DataShape
from recdistill.models.checkpoint import load_model, save_model
from recdistill.models.meta_rating import MetaRatingConfig, MetaRatingModel
from recdistill.models.registry import build_model
from tests.helpers import small_data

SMALL = dict(dim=8, local_hidden=[16, 8], max_categories=4, max_genres=4)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_model(shape: DataShape, seed: int = 0, **overrides) -> MetaRatingModel:
    """A seeded small model; `overrides` change the config."""
    torch.manual_seed(seed)
    return MetaRatingModel(MetaRatingConfig(**{**SMALL, **overrides}), shape)


def side_tables(shape: DataShape) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Users and items tables shaped like RecData's, with some missing values."""
    rng = np.random.default_rng(0)
    age = pd.array(rng.integers(10, 70, shape.n_users), dtype="Int64")
    age[0] = pd.NA
    users = pd.DataFrame({"age": age, "gender": rng.choice(["M", "F"], shape.n_users),
                          "occupation": rng.choice(["artist", "doctor", "student", ""], shape.n_users)})
    year = pd.array(rng.integers(1920, 2020, shape.n_items), dtype="Int64")
    year[1] = pd.NA
    items = pd.DataFrame({"title": "x", "year": year,
                          "genres": rng.choice(["Drama", "Comedy|Drama", "", "Action|Comedy"], shape.n_items)})
    return users, items


def test_contract_shapes_on_every_layout_and_a_differentiable_loss():
    train, windows, shape = small_data()
    model = small_model(shape, inner_steps=2)
    assert model.adapts_per_user  # what transfer=meta checks
    model.set_user_features(*side_tables(shape)[:1])
    model.set_item_features(side_tables(shape)[1])
    batches = [next(train.batches(40)), windows["test"].batch(torch.arange(9)),
               next(build_user_rows(windows["valid"]).batches(16))]
    for batch in batches:
        output = model(batch)
        m = len(batch["label"])
        assert output.logits.shape == (m, 5) and output.rating.shape == (m,) and output.hidden.shape == (m, 8)
        assert torch.isfinite(output.logits).all() and ((output.rating >= 1) & (output.rating <= 5)).all()
        terms = model.loss(batch, output)
        assert set(terms) == {"ce"}
        model.zero_grad()
        sum(terms.values()).backward()
        assert model.item_embedding.weight.grad.abs().sum() > 0 and model.network.out.weight.grad.abs().sum() > 0
        assert model.age_embedding.weight.grad.abs().sum() > 0  # user side information is read


def test_mse_inner_loss_and_outer_mse_term():
    train, _, shape = small_data()
    model = small_model(shape, inner_loss="mse", mse_weight=0.5)
    batch = next(train.batches(40))
    terms = model.loss(batch, model(batch))
    assert set(terms) == {"ce", "mse"} and all(torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()


def test_empty_supports_give_finite_unadapted_predictions():
    _, windows, shape = small_data()
    model = small_model(shape, inner_steps=3, inner_lr=5.0)
    batch = windows["valid"].batch(torch.arange(8))
    batch["seq_visible"] = torch.zeros_like(batch["seq_visible"])  # nothing to adapt on
    batch["seq_ratings"] = torch.zeros_like(batch["seq_ratings"])
    output = model(batch)
    assert torch.isfinite(output.logits).all() and torch.isfinite(output.hidden).all()
    unadapted = small_model(shape, inner_steps=0)(batch)
    torch.testing.assert_close(output.logits, unadapted.logits)
    model.loss(batch, output)["ce"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_target_reads_neither_its_own_nor_later_ratings():
    train, _, shape = small_data(history_length=6)
    model = small_model(shape, inner_steps=2)
    batch = next(train.batches(64))
    logits = model(batch).logits
    altered = dict(batch)
    ratings = batch["seq_ratings"].clone()
    ratings[:, 3:] = torch.where(ratings[:, 3:] > 0, 6 - ratings[:, 3:], 0)  # flip ratings from slot 3 on
    altered["seq_ratings"] = ratings
    first_slots = batch["seq_target"].clone()
    first_slots[:, 4:] = False  # targets at slots 0..3 read only slots before them; slot 3 is flipped itself
    changed = model(altered).logits
    keep = first_slots[batch["seq_target"]]
    torch.testing.assert_close(changed[keep], logits[keep])
    assert not torch.allclose(changed[~keep], logits[~keep])  # later targets do adapt on earlier ratings


def test_chunks_windows_and_user_rows_agree_on_the_same_history():
    train, windows, shape = small_data(history_length=5)
    model = small_model(shape, inner_steps=2).eval()
    from_chunks = predict(model, train, 64, "cpu").logits  # each user's first chunk starts at slot 0
    from_windows = predict(model, windows["train"], 64, "cpu").logits
    position = train.position[torch.argsort(train.sort)]
    same = position <= 5  # the first history_length + 1 interactions have the same history in both
    torch.testing.assert_close(from_chunks[same], from_windows[same], atol=1e-5, rtol=1e-5)
    by_rows = predict(model, build_user_rows(windows["test"]), 7, "cpu").logits
    torch.testing.assert_close(by_rows, predict(model, windows["test"], 7, "cpu").logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("adapt", ["decision", "all_dense"])
def test_the_inner_loop_changes_only_the_local_weights(adapt):
    train, _, shape = small_data()
    model = small_model(shape, adapt=adapt)
    items = side_tables(shape)[1]
    model.set_item_features(items.assign(genres=items["genres"].replace("", "Drama")))  # every item has a genre
    batch = next(train.batches(40))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    adapted = model.adapted_parameters(batch)
    local, fixed = model.split_parameters()
    assert set(fixed) == ({"genre.weight"} if adapt == "decision" else set())
    assert set(adapted) == set(dict(model.network.named_parameters()))
    for name in fixed:
        assert adapted[name] is fixed[name]  # global weights enter every task unchanged
    has_support = model.tasks(batch).support_mask.any(1)  # (M,)
    assert has_support.any() and not has_support.all()  # chunks start with an empty support
    for name, meta in local.items():
        per_task = adapted[name]
        assert per_task.shape == (len(batch["label"]), *meta.shape)
        moved = (per_task - meta).flatten(1).abs().amax(1) > 0  # (M,)
        assert moved[has_support].all() and not moved[~has_support].any(), name
    model(batch)
    for name, tensor in model.state_dict().items():  # embeddings and meta weights are untouched
        assert torch.equal(tensor, before[name]), name


def tiny_batch() -> dict[str, torch.Tensor]:
    """Two rows: four slots with three targets, and three slots with one target."""
    batch = {
        "seq_items": torch.tensor([[1, 2, 3, 4], [5, 6, 2, 0]]),
        "seq_ratings": torch.tensor([[5, 1, 3, 2], [2, 4, 0, 0]]),
        "seq_visible": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool),
        "seq_target": torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0]], dtype=torch.bool),
        "user": torch.tensor([0, 0, 0, 1]), "item": torch.tensor([1, 2, 3, 1]), "label": torch.tensor([0, 2, 1, 3]),
    }
    batch["rating"] = batch["label"].double() + 1
    return batch


def test_second_order_gradients_match_finite_differences_and_first_order_differ():
    shape = DataShape(n_users=2, n_items=6, history_length=4)
    batch = tiny_batch()
    grads = {}
    for first_order in (False, True):
        model = small_model(shape, dim=3, local_hidden=[5, 4], inner_steps=2, inner_lr=0.7,
                            first_order=first_order).double()
        model.loss(batch, model(batch))["ce"].backward()
        grads[first_order] = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert not torch.allclose(grads[True]["network.out.weight"], grads[False]["network.out.weight"])
    assert not torch.allclose(grads[True]["item_embedding.weight"], grads[False]["item_embedding.weight"])

    model = small_model(shape, dim=3, local_hidden=[5, 4], inner_steps=2, inner_lr=0.7).double()
    params = dict(model.named_parameters())
    eps = 1e-6
    for name, index in (("network.out.weight", (1, 2)), ("network.layers.0.bias", (3,)),
                        ("network.genre.weight", (0, 1)), ("item_embedding.weight", (2, 1))):
        with torch.no_grad():
            original = params[name][index].item()
            params[name][index] = original + eps
            up = model.loss(batch, model(batch))["ce"].item()
            params[name][index] = original - eps
            down = model.loss(batch, model(batch))["ce"].item()
            params[name][index] = original
        assert grads[False][name][index].item() == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-9), name


def test_first_order_gradient_is_the_sum_of_query_gradients_at_the_adapted_weights():
    shape = DataShape(n_users=2, n_items=6, history_length=4)
    batch = tiny_batch()
    model = small_model(shape, dim=3, local_hidden=[5, 4], inner_steps=2, inner_lr=0.7, first_order=True).double()
    model.loss(batch, model(batch))["ce"].backward()
    local, fixed = model.split_parameters()
    adapted = {name: model.adapted_parameters(batch)[name].detach().requires_grad_() for name in local}
    task = model.tasks(batch)

    def query(params, embedded, genres):
        return functional_call(model.network, {**fixed, **params}, (embedded, genres))

    logits, _ = vmap(query)(adapted, task.query_embedded, task.query_genres)
    manual = torch.autograd.grad(F.cross_entropy(logits, batch["label"]), list(adapted.values()))
    for (name, meta), per_task in zip(local.items(), manual):
        torch.testing.assert_close(meta.grad, per_task.sum(0), msg=name)


N_ITEMS = 40


def preference_family(n_users: int, n_slots: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Users rate 5 when their taste vector points towards the item's, else 1: (items, labels), (U, S) each."""
    item_vectors = torch.randn(N_ITEMS, 2, generator=torch.Generator().manual_seed(123))  # (I, 2) shared
    generator = torch.Generator().manual_seed(seed)
    taste = torch.randn(n_users, 2, generator=generator)  # (U, 2) one per user
    items = torch.rand(n_users, N_ITEMS, generator=generator).argsort(1)[:, :n_slots]  # (U, S) distinct items
    labels = torch.where((taste.unsqueeze(1) * item_vectors[items]).sum(-1) > 0, 4, 0)  # (U, S)
    return items, labels


def family_batch(items: torch.Tensor, labels: torch.Tensor, n_support: int) -> dict[str, torch.Tensor]:
    """n_support > 0: support slots then query targets (per-user rows); 0: a training chunk (all slots both)."""
    visible = torch.arange(items.shape[1]) < n_support if n_support else torch.ones(items.shape[1], dtype=torch.bool)
    visible = visible.expand_as(items)
    target = ~visible if n_support else visible
    return {"seq_items": items + 1, "seq_ratings": torch.where(visible, labels + 1, 0), "seq_visible": visible,
            "seq_target": target, "user": torch.zeros(int(target.sum()), dtype=torch.long),  # no side info
            "item": items[target], "label": labels[target], "rating": labels[target].float() + 1}


def query_loss(model: MetaRatingModel, batch: dict[str, torch.Tensor], inner_steps: int | None = None) -> float:
    """Cross-entropy on the batch's targets, with `inner_steps` inner steps (default: the config's)."""
    config = model.config
    if inner_steps is not None:
        model.config = dataclasses.replace(config, inner_steps=inner_steps)
    with torch.no_grad():
        loss = F.cross_entropy(model(batch).logits, batch["label"]).item()
    model.config = config
    return loss


def test_meta_adaptation_lowers_the_query_loss_of_new_users():
    shape = DataShape(n_users=1, n_items=N_ITEMS, history_length=16)
    config = dict(inner_steps=2, inner_lr=0.3, first_order=False)
    model, untrained = small_model(shape, **config), small_model(shape, **config)
    items, labels = preference_family(512, 12, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    generator = torch.Generator().manual_seed(2)
    for _ in range(200):
        rows = torch.randint(0, len(items), (16,), generator=generator)
        batch = family_batch(items[rows], labels[rows], 0)
        loss = model.loss(batch, model(batch))["ce"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    new_users = family_batch(*preference_family(200, 20, seed=3), n_support=10)  # 10 support, 10 query each
    adapted = query_loss(model, new_users)
    not_adapted = query_loss(model, new_users, inner_steps=0)
    untrained_adapted = query_loss(untrained, new_users)
    print(f"query CE: adapted {adapted:.3f}, no adaptation {not_adapted:.3f}, untrained {untrained_adapted:.3f}")
    assert not_adapted > np.log(2) - 0.05  # without its ratings, a new user is a coin flip
    assert adapted < not_adapted - 0.2, (adapted, not_adapted)
    assert adapted < untrained_adapted - 0.5, (adapted, untrained_adapted)


def test_side_tables_become_index_buffers():
    _, windows, shape = small_data()
    model = small_model(shape)
    users, items = side_tables(shape)
    model.set_user_features(users[["age", "occupation"]])  # a missing column stays "missing"
    assert model.user_side[0, 0] == 0 and (model.user_side[1:, 0] > 0).all()
    assert (model.user_side[:, 1] == 0).all()
    occupation = model.user_side[:, 2]
    assert torch.equal(occupation == 0, torch.tensor((users["occupation"] == "").to_numpy()))
    assert set(occupation.tolist()) <= {0, 1, 2, 3}  # artist, doctor, student in sorted order
    model.set_item_features(items)
    assert model.item_year[0] == 0 and model.item_year[2] == 0 and (model.item_year[3:] > 0).all()
    genre_count = model.item_genres[1:].sum(1)
    expected = items["genres"].map(lambda g: len([x for x in g.split("|") if x])).to_numpy()
    assert torch.equal(genre_count, torch.tensor(expected))
    batch = windows["valid"].batch(torch.arange(6))
    assert not torch.allclose(small_model(shape)(batch).logits, model(batch).logits)
    crowded = pd.DataFrame({"occupation": [f"job{i % 6}" for i in range(shape.n_users)]})
    with pytest.raises(ConfigError, match="max_categories=4"):
        model.set_user_features(crowded)


def test_invalid_options_name_the_choices():
    _, _, shape = small_data()
    with pytest.raises(ConfigError, match="decision, all_dense"):
        small_model(shape, adapt="everything")
    with pytest.raises(ConfigError, match="ce, mse"):
        small_model(shape, inner_loss="hinge")


def test_checkpoint_round_trips_predictions_and_side_tables(tmp_path):
    train, windows, shape = small_data()
    model = build_model({"name": "meta_rating", **SMALL, "inner_steps": 2}, shape)
    users, items = side_tables(shape)
    model.set_user_features(users)
    model.set_item_features(items)
    batch = next(train.batches(40))
    model.loss(batch, model(batch))["ce"].backward()  # move the weights off their initial values
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    save_model(tmp_path / "meta.pt", model)
    loaded, _ = load_model(tmp_path / "meta.pt")
    assert isinstance(loaded, MetaRatingModel) and loaded.config == model.config
    for name in ("user_side", "item_year", "item_genres"):
        assert torch.equal(getattr(loaded, name), getattr(model, name)), name
    evaluation = windows["test"].batch(torch.arange(10))
    torch.testing.assert_close(loaded.eval()(evaluation).logits, model.eval()(evaluation).logits)
    with torch.inference_mode():  # the inner loop still runs where gradients are switched off
        torch.testing.assert_close(loaded(evaluation).logits, model(evaluation).logits)
