"""Rating models honour the shared contract and their documented behaviour."""

import torch

from recdistill.models.base import RatingOutput
from recdistill.models.biased_mf import BiasedMF, BiasedMFConfig
from recdistill.models.checkpoint import load_model, save_model
from recdistill.models.rating_transformer import RatingTransformer, RatingTransformerConfig
from recdistill.models.registry import build_model, model_classes
from tests.helpers import small_examples


def test_every_model_returns_the_contract_shapes():
    examples, shape = small_examples()
    batch = examples["train"].batch(torch.arange(7))
    assert set(model_classes()) >= {"rating_transformer", "biased_mf"}
    for name in model_classes():
        torch.manual_seed(0)
        model = build_model({"name": name, "dim": 8}, shape)
        output = model(batch)
        assert isinstance(output, RatingOutput)
        assert output.logits.shape == (7, 5) and output.rating.shape == (7,)
        assert output.hidden.shape == (7, model.hidden_dim)
        total = sum(model.loss(batch, output).values())
        total.backward()  # every loss term is differentiable


def test_transformer_prediction_does_not_depend_on_padding_or_masked_slots():
    examples, shape = small_examples(history_length=6)
    model = RatingTransformer(RatingTransformerConfig(dim=8, dropout=0.0), shape).eval()
    batch = examples["test"].batch(torch.arange(5))
    altered = dict(batch)
    # garbage in masked slots must not change anything
    altered["hist_items"] = torch.where(batch["hist_mask"], batch["hist_items"], 3)
    altered["hist_ratings"] = torch.where(batch["hist_mask"], batch["hist_ratings"], 2)
    torch.testing.assert_close(model(batch).logits, model(altered).logits)


def test_transformer_text_embeddings_change_item_inputs():
    _, shape = small_examples()
    model = RatingTransformer(RatingTransformerConfig(dim=8, text_dim=3), shape)
    text = torch.randn(shape.n_items, 3)
    model.set_text_embeddings(text)
    torch.testing.assert_close(model.text_embeddings[1:], text)
    assert torch.count_nonzero(model.text_embeddings[0]) == 0  # padding row stays zero


def test_biased_mf_argmax_is_the_class_nearest_its_prediction():
    examples, shape = small_examples()
    model = BiasedMF(BiasedMFConfig(dim=4), shape).eval()
    with torch.no_grad():
        model.item_bias.weight.uniform_(-2, 2)
        output = model(examples["train"].batch(torch.arange(30)))
    nearest = output.rating.round().clamp(1, 5).long() - 1
    assert torch.equal(output.logits.argmax(-1), nearest)


def test_checkpoint_rebuilds_the_model_alone(tmp_path):
    examples, shape = small_examples()
    torch.manual_seed(1)
    model = RatingTransformer(RatingTransformerConfig(dim=8, text_dim=2), shape).eval()
    model.set_text_embeddings(torch.randn(shape.n_items, 2))
    save_model(tmp_path / "m.pt", model, extra={"note": 1})
    loaded, extra = load_model(tmp_path / "m.pt")
    batch = examples["valid"].batch(torch.arange(4))
    torch.testing.assert_close(loaded.eval()(batch).logits, model(batch).logits)
    assert extra == {"note": 1}
