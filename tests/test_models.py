"""Rating models honour the shared contract and their documented behaviour."""

import torch

from recdistill.models.base import RatingModel, RatingOutput
from recdistill.models.biased_mf import BiasedMF, BiasedMFConfig
from recdistill.models.checkpoint import load_model, save_model
from recdistill.models.rating_transformer import RatingTransformer, RatingTransformerConfig
from recdistill.models.registry import build_model, model_classes
from tests.helpers import small_data


def test_every_model_returns_the_contract_shapes():
    _, windows, shape = small_data()
    batch = windows["train"].batch(torch.arange(7))
    assert set(model_classes()) >= {"rating_transformer", "biased_mf"}
    rating_models = [name for name, cls in model_classes().items()
                     if issubclass(cls, RatingModel) and not getattr(cls, "fitted_by_counting", False)]
    for name in rating_models:
        torch.manual_seed(0)
        model = build_model({"name": name, "dim": 8}, shape)
        output = model(batch)
        assert isinstance(output, RatingOutput)
        assert output.logits.shape == (7, 5) and output.rating.shape == (7,)
        assert output.hidden.shape == (7, model.hidden_dim)
        total = sum(model.loss(batch, output).values())
        total.backward()  # every loss term is differentiable


def test_transformer_ignores_unreadable_slots_and_the_targets_own_rating():
    _, windows, shape = small_data(history_length=6)
    model = RatingTransformer(RatingTransformerConfig(dim=8, n_layers=2, dropout=0.0), shape).eval()
    batch = windows["test"].batch(torch.arange(5))
    altered = dict(batch)
    readable = batch["seq_visible"]
    altered["seq_items"] = torch.where(readable | batch["seq_target"], batch["seq_items"], 3)
    altered["seq_ratings"] = torch.where(readable, batch["seq_ratings"], 2)  # incl. the target's own slot
    torch.testing.assert_close(model(batch).logits, model(altered).logits)


def test_a_slot_never_sees_its_own_or_later_ratings_in_a_training_chunk():
    train, _, shape = small_data(history_length=6)
    model = RatingTransformer(RatingTransformerConfig(dim=8, n_layers=2, dropout=0.0), shape).eval()
    batch = next(train.batches(64))
    logits = model(batch).logits
    altered = dict(batch)
    ratings = batch["seq_ratings"].clone()
    ratings[:, 3:] = torch.where(ratings[:, 3:] > 0, 6 - ratings[:, 3:], 0)  # flip ratings from slot 3 on
    altered["seq_ratings"] = ratings
    first_slots = batch["seq_target"].clone()
    first_slots[:, 4:] = False  # targets at slots 0..3 read only slots before them
    changed = model(altered).logits
    torch.testing.assert_close(changed[first_slots[batch["seq_target"]]], logits[first_slots[batch["seq_target"]]])
    assert not torch.allclose(changed, logits)  # later slots do read earlier ratings


def test_training_chunks_and_evaluation_windows_agree_on_the_same_history():
    train, windows, shape = small_data(history_length=5)
    torch.manual_seed(0)
    model = RatingTransformer(RatingTransformerConfig(dim=8, n_layers=2, dropout=0.0), shape).eval()
    from recdistill.evaluation.predict import predict

    from_chunks = predict(model, train, 64, "cpu").logits  # epoch 0: each user's first chunk starts at slot 0
    from_windows = predict(model, windows["train"], 64, "cpu").logits
    # a user's first history_length + 1 training interactions have the same history in both layouts
    position = train.position[torch.argsort(train.sort)]  # position of each split row in its user's sequence
    same = position <= 5
    torch.testing.assert_close(from_chunks[same], from_windows[same], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(from_chunks[~same], from_windows[~same])  # later ones lose context at chunk starts


def test_transformer_output_does_not_depend_on_where_the_row_puts_the_chunk():
    # training rows are left-aligned and trimmed to the batch's longest chunk: padding moved to the
    # other end of a row, or added, must not change any prediction
    train, _, shape = small_data(history_length=5)
    torch.manual_seed(0)
    model = RatingTransformer(RatingTransformerConfig(dim=8, n_layers=2, dropout=0.0), shape).eval()
    batch = next(train.batches(10_000, epoch=1))
    pad = 3
    shifted = {**batch, **{name: torch.nn.functional.pad(batch[name], (pad, 0))
                           for name in ("seq_items", "seq_ratings", "seq_visible", "seq_target")}}
    assert batch["seq_target"][:, 0].all() and not shifted["seq_target"][:, :pad].any()
    torch.testing.assert_close(model(shifted).logits, model(batch).logits, atol=1e-5, rtol=1e-5)


def test_transformer_text_embeddings_change_item_inputs():
    _, _, shape = small_data()
    model = RatingTransformer(RatingTransformerConfig(dim=8, text_dim=3), shape)
    text = torch.randn(shape.n_items, 3)
    model.set_text_embeddings(text)
    torch.testing.assert_close(model.text_embeddings[1:], text)
    assert torch.count_nonzero(model.text_embeddings[0]) == 0  # padding row stays zero


def test_biased_mf_argmax_is_the_class_nearest_its_prediction():
    _, windows, shape = small_data()
    model = BiasedMF(BiasedMFConfig(dim=4), shape).eval()
    with torch.no_grad():
        model.item_bias.weight.uniform_(-2, 2)
        output = model(windows["train"].batch(torch.arange(30)))
    nearest = output.rating.round().clamp(1, 5).long() - 1
    assert torch.equal(output.logits.argmax(-1), nearest)


def test_checkpoint_rebuilds_the_model_alone(tmp_path):
    _, windows, shape = small_data()
    torch.manual_seed(1)
    model = RatingTransformer(RatingTransformerConfig(dim=8, text_dim=2), shape).eval()
    model.set_text_embeddings(torch.randn(shape.n_items, 2))
    save_model(tmp_path / "m.pt", model, extra={"note": 1})
    loaded, extra = load_model(tmp_path / "m.pt")
    batch = windows["valid"].batch(torch.arange(4))
    torch.testing.assert_close(loaded.eval()(batch).logits, model(batch).logits)
    assert extra == {"note": 1}


def test_per_user_evaluation_rows_give_exactly_the_window_predictions():
    from recdistill.data.batching import build_user_rows
    from recdistill.evaluation.predict import predict

    _, windows, shape = small_data(history_length=5)
    torch.manual_seed(0)
    model = RatingTransformer(RatingTransformerConfig(dim=8, n_layers=2, dropout=0.0), shape).eval()
    for split in ("valid", "test"):
        rows = build_user_rows(windows[split])
        assert rows is not None and len(rows) == len(windows[split])
        by_rows = predict(model, rows, 7, "cpu")  # small batches: users split across several batches
        by_windows = predict(model, windows[split], 7, "cpu")
        torch.testing.assert_close(by_rows.logits, by_windows.logits, atol=1e-5, rtol=1e-5)


def test_rating_mse_weight_adds_the_squared_error_of_the_expected_rating():
    train, _, shape = small_data()
    batch = next(train.batches(64))
    torch.manual_seed(0)
    plain = RatingTransformer(RatingTransformerConfig(dim=8), shape).eval()
    weighted = RatingTransformer(RatingTransformerConfig(dim=8, rating_mse_weight=0.5), shape).eval()
    weighted.load_state_dict(plain.state_dict())
    output = weighted(batch)
    terms = weighted.loss(batch, output)
    assert plain.loss(batch, plain(batch)).keys() == {"ce"}
    true_rating = torch.tensor(shape.rating_values or (1.0, 2.0, 3.0, 4.0, 5.0))[batch["label"]]
    assert torch.allclose(true_rating, batch["rating"])
    expected = (output.logits.softmax(-1) * torch.arange(1.0, 6.0)).sum(-1)  # by hand, classes 1..5
    torch.testing.assert_close(terms["mse"], 0.5 * (expected - batch["rating"]).pow(2).mean())
    torch.testing.assert_close(terms["ce"], torch.nn.functional.cross_entropy(output.logits, batch["label"]))


def test_attention_block_adds_each_heads_distance_bias_and_reads_only_allowed_keys():
    import math

    from recdistill.models.rating_transformer import EarlierSlotsBlock

    torch.manual_seed(0)
    batch, length, dim, heads, max_distance = 3, 6, 8, 2, 4
    block = EarlierSlotsBlock(dim, heads, ff_mult=2, dropout=0.0, max_distance=max_distance).eval()
    torch.nn.init.normal_(block.distance_bias, std=1.0)
    states, ratings = torch.randn(batch, length, dim), torch.randn(batch, length, dim)
    recency = torch.randint(0, max_distance + 1, (batch, length, length))
    allowed = torch.rand(batch, length, length) > 0.4
    allowed[:, :, 0] = True  # every query reads something
    allowed[:, :, 3] = False  # and none reads slot 3
    bias_index = torch.where(allowed, recency, block.blocked)

    def split(x):
        return x.view(batch, length, heads, dim // heads).transpose(1, 2)

    query = split(block.query(block.norm_query(states)))
    key, value = (split(x) for x in block.key_value(block.norm_memory(states + ratings)).chunk(2, dim=-1))
    scores = query @ key.transpose(-1, -2) / math.sqrt(dim // heads)  # (B, H, S, S)
    scores = scores + torch.stack([block.distance_bias[h][recency] for h in range(heads)], dim=1)
    scores = scores.masked_fill(~allowed.unsqueeze(1), float("-inf"))
    attended = (scores.softmax(-1) @ value).transpose(1, 2).reshape(batch, length, dim)
    expected = states + block.out(attended)
    expected = expected + block.ff(block.norm_ff(expected))
    with torch.no_grad():
        torch.testing.assert_close(block(states, ratings, bias_index), expected, atol=1e-5, rtol=1e-5)
        moved = ratings.clone()
        moved[:, 3] += 1.0
        torch.testing.assert_close(block(states, moved, bias_index), block(states, ratings, bias_index))
