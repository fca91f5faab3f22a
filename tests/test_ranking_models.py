"""Top-K ranking models honour the ranking contract, learn toy patterns, and save and load."""

import numpy as np
import pandas as pd
import pytest
import torch

from recdistill.data.ranking_data import RankingData
from recdistill.errors import ConfigError
from recdistill.models import item_knn
from recdistill.models.checkpoint import load_model, save_model
from recdistill.models.item_knn import ItemKNN, ItemKNNConfig
from recdistill.models.ranking_base import RankingModel, RankingOutput, RankingShape
from recdistill.models.registry import build_model, model_classes

RANKING_MODELS = {  # small configs for every ranking model
    "bpr_mf": {"dim": 8},
    "lightgcn": {"dim": 8, "n_layers": 2},
    "sasrec": {"dim": 16, "n_layers": 2, "n_heads": 2, "dropout": 0.1},
    "gru4rec": {"dim": 16, "gru_dim": 16, "dropout": 0.1},
    "popularity": {},
    "item_knn": {"k_neighbors": 5},
}


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: small models train far faster, and without contention with parallel test runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def frames_from_lists(items_per_user: list[list[int]], n_valid: int = 1, n_test: int = 1
                      ) -> dict[str, pd.DataFrame]:
    """Chronological train/valid/test frames: each user's last items go to valid, then test."""
    rows = [(user, item, t) for user, items in enumerate(items_per_user) for t, item in enumerate(items)]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    frame["row"] = np.arange(len(frame))
    from_end = frame.groupby("user").cumcount(ascending=False)
    held_out = n_valid + n_test
    return {"train": frame[from_end >= held_out], "valid": frame[(from_end < held_out) & (from_end >= n_test)],
            "test": frame[from_end < n_test]}


def ranking_data(items_per_user: list[list[int]], n_items: int, max_length: int = 8
                 ) -> tuple[RankingData, RankingShape]:
    """RankingData and its shape for the given per-user item sequences."""
    frames = frames_from_lists(items_per_user)
    data = RankingData(frames, len(items_per_user), n_items, max_length)
    return data, RankingShape(n_users=len(items_per_user), n_items=n_items, max_length=max_length)


def next_item_data(n_users: int = 24, n_items: int = 12, length: int = 8) -> tuple[RankingData, RankingShape]:
    """Every user's next item is the previous item + 1 (mod n_items), from a per-user start."""
    return ranking_data([[(u + t) % n_items for t in range(length)] for u in range(n_users)], n_items)


def cluster_data(n_clusters: int = 4, per_cluster: int = 8, users_per_cluster: int = 6
                 ) -> tuple[RankingData, RankingShape]:
    """User u reads the items of cluster u % n_clusters in a random order (6 train, 1 valid, 1 test)."""
    rng = np.random.default_rng(0)
    sequences = [list(int(i) for i in (u % n_clusters) * per_cluster + rng.permutation(per_cluster))
                 for u in range(n_clusters * users_per_cluster)]
    return ranking_data(sequences, n_clusters * per_cluster)


def new_model(name: str, shape: RankingShape, data: RankingData, **overrides) -> RankingModel:
    """A seeded model of `name` with the small test config, fitted to the training lists."""
    torch.manual_seed(0)
    model = build_model({"name": name, **RANKING_MODELS[name], **overrides}, shape)
    model.fit(data.lists["train"])
    return model


def train_steps(model: RankingModel, data: RankingData, epochs: int, lr: float, batch_size: int) -> list[float]:
    """Adam on the model's own loss over its training batches; the total loss of every step."""
    batches = data.training_batches(model.input_kind, batch_size, getattr(model.config, "n_negatives", 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator, losses = torch.Generator().manual_seed(0), []
    model.train()
    for epoch in range(epochs):
        for batch in batches.batches(None, "cpu", generator, epoch):
            total = sum(model.loss(batch, model(batch)).values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            losses.append(total.item())
    return losses


@torch.no_grad()
def ranked_first(model: RankingModel, data: RankingData, split: str) -> torch.Tensor:
    """Each user's top item for `split`, history masked."""
    model.eval()
    users = torch.arange(data.n_users)
    scores = model(data.user_batch(users, split)).score(torch.arange(data.n_items))  # (U, I)
    row, item = data.history(users, split)
    scores[row, item] = float("-inf")
    return scores.argmax(1)


def test_every_ranking_model_is_registered():
    assert set(model_classes()) >= set(RANKING_MODELS)


@pytest.mark.parametrize("name", sorted(RANKING_MODELS))
def test_contract_shapes_and_both_item_layouts_agree(name):
    data, shape = cluster_data()
    model = new_model(name, shape, data).eval()
    users = torch.tensor([0, 3, 5, 7, 11])
    output = model(data.user_batch(users, "valid"))
    assert isinstance(output, RankingOutput) and output.model is model
    assert output.state.shape == (5, model.hidden_dim)
    items = torch.tensor([0, 4, 9, 17, 31, 2])
    shared = output.score(items)  # (B, n)
    per_row = output.score(items.expand(5, -1))  # (B, n)
    assert shared.shape == per_row.shape == (5, 6)
    torch.testing.assert_close(shared, per_row)
    assert torch.isfinite(shared).all()
    if model.dot_product_scores:
        torch.testing.assert_close(shared, output.state @ model.item_vectors(items).T)
    if model.input_kind != "none":
        batch = next(data.training_batches(model.input_kind, 32).batches(None, "cpu", torch.Generator()))
        model.train()
        terms = model.loss(batch, model(batch))
        assert all(torch.isfinite(term) and term.dim() == 0 for term in terms.values()), terms
        sum(terms.values()).backward()


@pytest.mark.parametrize("name", ["bpr_mf", "lightgcn"])
def test_pair_models_learn_clusters(name):
    data, shape = cluster_data()
    model = new_model(name, shape, data)
    losses = train_steps(model, data, epochs=60, lr=0.05, batch_size=32)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), (losses[:5], losses[-5:])
    top = ranked_first(model, data, "valid")
    cluster_of_user = torch.arange(data.n_users) % 4
    assert (top // 8 == cluster_of_user).float().mean() >= 0.9


@pytest.mark.parametrize("name, loss, layout", [
    ("sasrec", "ce", {}), ("sasrec", "sampled", {}), ("sasrec", "bce", {}),
    ("sasrec", "ce", {"layer_norm": "post"}), ("gru4rec", "ce", {}), ("gru4rec", "sampled", {}),
])
def test_sequence_models_learn_the_next_item(name, loss, layout):
    data, shape = next_item_data()
    model = new_model(name, shape, data, loss=loss, n_negatives=6, **layout)
    losses = train_steps(model, data, epochs=30, lr=0.01, batch_size=64)
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), (losses[:3], losses[-3:])
    top = ranked_first(model, data, "valid")
    truth = data.targets("valid").items  # one valid item per user, users in order
    assert (top == truth).float().mean() >= 0.9


@pytest.mark.parametrize("name, layout", [("sasrec", {}), ("sasrec", {"layer_norm": "post"}), ("gru4rec", {})])
def test_sequence_models_are_causal_and_ignore_padding(name, layout):
    data, shape = next_item_data()
    model = new_model(name, shape, data, dropout=0.0, **layout).eval()
    seq = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0],  # no items at all
                        [0, 0, 0, 0, 0, 0, 3, 4],
                        [0, 0, 0, 5, 6, 7, 8, 9],
                        [1, 2, 3, 4, 5, 6, 7, 8]])
    batch = {"user": torch.arange(4), "seq": seq, "final": torch.ones(4, dtype=torch.bool)}
    output = model(batch)
    assert torch.isfinite(output.extras["slots"]).all() and torch.isfinite(output.state).all()
    # the same items behind less padding (a narrower row) give the same outputs
    rows = slice(1, 3)  # rows 1 and 2 lose only padding
    narrow = model({"user": batch["user"][rows], "seq": seq[rows, 3:], "final": batch["final"][rows]})
    torch.testing.assert_close(narrow.state, output.state[rows])
    filled = seq[rows, 3:] > 0
    torch.testing.assert_close(narrow.extras["slots"][filled], output.extras["slots"][rows, 3:][filled])
    # changing a later slot leaves every earlier slot's output unchanged
    changed = seq.clone()
    changed[:, 5:] = torch.where(changed[:, 5:] > 0, 12 - changed[:, 5:] + 1, 0)
    altered = model({**batch, "seq": changed}).extras["slots"]
    torch.testing.assert_close(altered[:, :5], output.extras["slots"][:, :5])
    assert not torch.allclose(altered[:, 5:], output.extras["slots"][:, 5:])
    # padded slots stay finite through training, and so do the gradients
    model.train()
    target = torch.where(seq > 0, seq % 12 + 1, 0)
    train_batch = {**batch, "target": target}
    sum(model.loss(train_batch, model(train_batch)).values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_sasrec_post_layout_is_recboles_normalisation_and_initialisation():
    data, shape = next_item_data()
    pre = new_model("sasrec", shape, data)
    post = new_model("sasrec", shape, data, layer_norm="post")
    assert isinstance(pre.final_norm, torch.nn.LayerNorm) and isinstance(pre.embedding_norm, torch.nn.Identity)
    assert isinstance(post.final_norm, torch.nn.Identity) and isinstance(post.embedding_norm, torch.nn.LayerNorm)
    linear = torch.cat([m.weight.flatten() for m in post.blocks.modules() if isinstance(m, torch.nn.Linear)])
    assert abs(linear.std().item() - 0.02) < 0.002 and abs(linear.mean().item()) < 0.002
    assert all((m.bias == 0).all() for m in post.blocks.modules() if isinstance(m, torch.nn.Linear))
    with pytest.raises(ConfigError, match="layer_norm must be one of"):
        new_model("sasrec", shape, data, layer_norm="middle")


def test_lightgcn_propagates_over_the_normalised_graph():
    # users: u0 {0}, u1 {0, 1} (twice: repeats are one edge); degrees u0 1, u1 2, i0 2, i1 1
    data, shape = ranking_data([[0, 2, 2], [0, 1, 1, 2, 2]], n_items=3)
    model = new_model("lightgcn", shape, data, n_layers=1)
    half = 2**-0.5
    expected = torch.zeros(5, 5)  # nodes: u0, u1, i0, i1, i2
    for user, item, weight in [(0, 2, half), (1, 2, 0.5), (1, 3, half)]:
        expected[user, item] = expected[item, user] = weight
    torch.testing.assert_close(model.adjacency.to_dense(), expected)
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])  # (5, D)
    final = (ego + expected @ ego) / 2  # mean of layers 0 and 1
    state = model(data.user_batch(torch.arange(2), "valid")).state
    torch.testing.assert_close(state, final[:2])
    torch.testing.assert_close(model.item_vectors(torch.arange(3)), final[2:])
    assert set(model.state_dict()) == {"user_embedding.weight", "item_embedding.weight"}  # no graph saved


def test_lightgcn_caches_propagation_in_eval_until_the_weights_change():
    data, shape = cluster_data()
    model = new_model("lightgcn", shape, data).eval()
    items = torch.arange(shape.n_items)
    with torch.no_grad():
        model.item_vectors(items)
        cached = model._cache
        model(data.user_batch(torch.arange(3), "valid"))
        assert model._cache is cached  # served from the cache
        model.user_embedding.weight.mul_(2.0)  # an in-place change, as an optimiser step or load makes
        refreshed = model(data.user_batch(torch.arange(3), "valid")).state
        assert model._cache is not cached
        torch.testing.assert_close(refreshed, model.propagate()[0][:3])
    model.train()
    assert model._cache is None


def test_popularity_ranks_by_training_count():
    data, shape = ranking_data([[0, 1, 2, 4, 4], [1, 2, 4, 4], [2, 3, 4, 4], [2, 4, 4]], n_items=5)
    model = new_model("popularity", shape, data).eval()  # train counts: 0:1, 1:2, 2:4, 3:1, 4:0
    torch.testing.assert_close(model.counts, torch.tensor([1.0, 2.0, 4.0, 1.0, 0.0]))
    scores = model(data.user_batch(torch.arange(4), "valid")).score(torch.arange(5))
    assert scores.shape == (4, 5) and (scores == scores[0]).all()
    assert scores[0].argsort(descending=True)[:2].tolist() == [2, 1]
    raw = new_model("popularity", shape, data, log_counts=False)
    torch.testing.assert_close(raw.score_items(torch.zeros(1, 1), torch.arange(5))[0], model.counts)


def test_item_knn_matches_hand_computed_cosine():
    # users: u0 {0, 1}, u1 {0, 1, 2}, u2 {2, 3}; each list ends with two filler items for valid/test
    data, shape = ranking_data([[0, 1, 4, 4], [0, 1, 2, 4, 4], [2, 3, 4, 4]], n_items=5)
    model = ItemKNN(ItemKNNConfig(k_neighbors=2), shape)
    model.fit(data.lists["train"])
    assert model.neighbors[0].tolist() == [1, 2]  # cos(0, 1) = 2 / (sqrt 2 sqrt 2) = 1, cos(0, 2) = 1 / 2
    torch.testing.assert_close(model.similarities[0], torch.tensor([1.0, 0.5]))
    assert model.neighbors[3, 0].item() == 2  # cos(2, 3) = 1 / (sqrt 2 * 1)
    torch.testing.assert_close(model.similarities[3], torch.tensor([2**-0.5, 0.0]))
    shrunk = ItemKNN(ItemKNNConfig(k_neighbors=2, shrink=1.0), shape)
    shrunk.fit(data.lists["train"])
    torch.testing.assert_close(shrunk.similarities[0], torch.tensor([2 / 3, 1 / 3]))
    # a user who read items 0, 1 and 3 scores item 2 by its neighbours among them: 3 (0.71), then 0 or 1 (0.5)
    seq = torch.tensor([[1, 2, 4]])
    state = model({"user": torch.tensor([0]), "seq": seq, "final": torch.ones(1, dtype=torch.bool)}).state
    torch.testing.assert_close(model.score_items(state, torch.tensor([2])), torch.tensor([[2**-0.5 + 0.5]]))


def test_item_knn_chunked_fit_and_scores_equal_the_dense_computation(monkeypatch):
    rng = np.random.default_rng(1)
    n_users, n_items = 30, 17
    sequences = [list(rng.integers(0, n_items, rng.integers(3, 12))) for _ in range(n_users)]
    data, shape = ranking_data(sequences, n_items=n_items)
    monkeypatch.setattr(item_knn, "CHUNK_ELEMENTS", 3 * n_items)  # chunks of 3 target items
    model = ItemKNN(ItemKNNConfig(k_neighbors=n_items, shrink=0.5), shape)
    model.fit(data.lists["train"])
    row, item = data.lists["train"].flat(torch.arange(n_users))
    matrix = torch.zeros(n_users, n_items)
    matrix[row, item] = 1.0  # (U, I) binarised
    norms = matrix.sum(0).sqrt()
    dense = (matrix.T @ matrix) / (norms[:, None] * norms[None, :] + 0.5).clamp(min=1e-12)  # (I, I)
    dense.fill_diagonal_(0.0)
    fitted = torch.zeros(n_items, n_items)
    fitted.scatter_add_(1, model.neighbors, model.similarities)  # fitted[j, i] = sim(i, j); empty slots add 0
    torch.testing.assert_close(fitted, dense.T)
    small = ItemKNN(ItemKNNConfig(k_neighbors=4, shrink=0.5), shape)
    small.fit(data.lists["train"])
    torch.testing.assert_close(small.similarities, dense.topk(4, dim=0).values.T)
    batch = data.user_batch(torch.arange(n_users), "test")
    history = torch.zeros(n_users, n_items + 1)
    history.scatter_(1, batch["seq"], 1.0)  # (U, I + 1) repeated items once
    kept = torch.zeros(n_items, n_items)
    kept.scatter_add_(1, small.neighbors, small.similarities)  # (I, I) kept[j, i] = sim(i, j) if i is a neighbour of j
    expected = history[:, 1:] @ kept.T  # (U, I)
    state = small(batch).state
    torch.testing.assert_close(small.score_items(state, torch.arange(n_items)), expected)
    some = torch.tensor(rng.integers(0, n_items, (n_users, 5)))
    torch.testing.assert_close(small.score_items(state, some), expected.gather(1, some))


@pytest.mark.parametrize("name", sorted(RANKING_MODELS))
def test_save_load_round_trips_scores(name, tmp_path):
    data, shape = cluster_data()
    model = new_model(name, shape, data)
    if model.input_kind != "none":
        train_steps(model, data, epochs=1, lr=0.01, batch_size=64)
    model.eval()
    batch = data.user_batch(torch.arange(data.n_users), "test")
    with torch.no_grad():
        before = model(batch).score(torch.arange(shape.n_items))
    save_model(tmp_path / "model.pt", model)
    loaded, _ = load_model(tmp_path / "model.pt")
    if name == "lightgcn":  # the graph is not saved: the pipeline calls fit(train lists) after loading
        loaded.fit(data.lists["train"])
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).score(torch.arange(shape.n_items)), before)


RANKING_CONFIGS = {
    "teacher": ["bpr_mf_large", "gru4rec", "item_knn", "lightgcn", "popularity", "sasrec", "sasrec_large"],
    "student": ["bpr_mf_small", "gru4rec", "item_knn", "lightgcn", "popularity", "sasrec", "sasrec_small"],
}


def test_ranking_model_configs_compose_and_build():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from recdistill.cli import config_dir
    from recdistill.config_schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    shape = RankingShape(n_users=50, n_items=40, max_length=50)
    built = {}
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        for teacher, student in zip(RANKING_CONFIGS["teacher"], RANKING_CONFIGS["student"]):
            cfg = compose(config_name="config", overrides=[f"teacher={teacher}", f"student={student}"])
            built[teacher], built[student] = build_model(cfg.teacher, shape), build_model(cfg.student, shape)
    GlobalHydra.instance().clear()
    assert all(isinstance(model, RankingModel) for model in built.values())
    size = {name: sum(p.numel() for p in model.parameters()) for name, model in built.items()}
    assert size["sasrec_large"] >= 8 * size["sasrec_small"], size  # 4x wider, 2x deeper: ~9x


def test_bpr_mf_factors_start_at_the_configured_standard_deviation():
    shape = RankingShape(n_users=2000, n_items=3000, max_length=4)
    model = build_model({"name": "bpr_mf", "dim": 50, "init_std": 0.01}, shape)
    for table in (model.user_factors.weight.detach(), model.item_factors.weight.detach()):
        assert float(table.std()) == pytest.approx(0.01, rel=0.02)
        assert abs(float(table.mean())) < 1e-3
