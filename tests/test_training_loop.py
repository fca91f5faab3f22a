"""The shared training loop: it learns, stops early, and resumes to identical results."""

import pytest
import torch
from omegaconf import OmegaConf

from recdistill.distill.objective import build_objective
from recdistill.evaluation.rating_eval import rating_validator
from recdistill.models.rating_transformer import RatingTransformer, RatingTransformerConfig
from recdistill.training import loop
from recdistill.training.config import LoopConfig
from tests.helpers import small_data

NO_DISTILL = OmegaConf.create({"name": "none", "base_weight": 1.0, "terms": {}})


def fit(checkpoint_dir, config, data, shape):
    train, windows = data
    torch.manual_seed(0)
    model = RatingTransformer(RatingTransformerConfig(dim=8), shape)
    validate = rating_validator(windows["valid"], 4096, torch.device("cpu"))
    result = loop.train(model, build_objective(NO_DISTILL), train, validate, config,
                        torch.device("cpu"), seed=0, checkpoint_dir=checkpoint_dir, label="test")
    return model, result


def test_training_reduces_the_loss(tmp_path):
    train, windows, shape = small_data()
    _, result = fit(tmp_path, LoopConfig(epochs=6, batch_size=16, lr=1e-2, patience=10), (train, windows), shape)
    losses = result.history["train_loss"].tolist()
    assert losses[-1] < losses[0]
    assert result.best_epoch == int(result.history["valid_mae"].idxmin()) + 1


def test_training_flushes_denormal_floats_to_zero(tmp_path):
    # Denormals (tiny Gumbel-softmax gradients and their squares in Adam) slowed DE epochs 9x on CPU.
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    train, windows, shape = small_data()
    torch.set_flush_denormal(False)
    assert torch.tensor([1e-40]).item() != 0.0
    fit(tmp_path, LoopConfig(epochs=1, batch_size=16, lr=1e-2, patience=10), (train, windows), shape)
    assert torch.tensor([1e-40]).item() == 0.0


def test_interrupted_training_resumes_to_the_same_result(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    train, windows, shape = small_data()
    config = LoopConfig(epochs=4, batch_size=16, lr=1e-2, patience=10)
    _, full = fit(tmp_path / "full", config, (train, windows), shape)

    calls = {"n": 0}
    real_save = loop.torch_save

    def save_then_crash(path, obj):
        real_save(path, obj)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed right after epoch 2's checkpoint

    monkeypatch.setattr(loop, "torch_save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "cut", config, (train, windows), shape)
    monkeypatch.setattr(loop, "torch_save", real_save)
    _, resumed = fit(tmp_path / "cut", config, (train, windows), shape)

    assert resumed.history["epoch"].tolist() == [1, 2, 3, 4]
    assert resumed.best_valid == full.best_valid
    for name, tensor in full.best_state.items():
        torch.testing.assert_close(resumed.best_state[name], tensor, rtol=0, atol=0)


def test_unknown_monitor_is_a_config_error(tmp_path):
    train, windows, shape = small_data()
    from recdistill.errors import ConfigError

    with pytest.raises(ConfigError, match="valid"):
        fit(tmp_path, LoopConfig(monitor="ndcg"), (train, windows), shape)
