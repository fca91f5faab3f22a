"""The shared training loop: it learns, stops early, and resumes to identical results."""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

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


def test_select_last_trains_every_epoch_and_keeps_the_last(tmp_path):
    train, windows, shape = small_data()
    config = LoopConfig(epochs=5, batch_size=16, lr=5e-2, patience=1, select="last")
    model, result = fit(tmp_path, config, (train, windows), shape)
    assert result.history["epoch"].tolist() == [1, 2, 3, 4, 5]  # patience 1 stops nothing
    assert result.best_epoch == 5
    assert result.best_valid == {k[len("valid_"):]: v for k, v in result.history.iloc[-1].items()
                                 if k.startswith("valid_")}
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(result.best_state[name], tensor, rtol=0, atol=0)


def test_validate_every_validates_every_nth_and_the_last_epoch(tmp_path):
    train, windows, shape = small_data()
    config = LoopConfig(epochs=5, batch_size=16, lr=1e-2, patience=10, validate_every=2)
    _, result = fit(tmp_path, config, (train, windows), shape)
    validated = result.history.dropna(subset=["valid_mae"])["epoch"].tolist()
    assert validated == [2, 4, 5]
    assert result.best_epoch in validated


def _one_step(tmp_path, **loop):
    """The model's gradients after one optimiser step on the whole training set as one batch."""
    train, windows, shape = small_data()
    config = LoopConfig(epochs=1, batch_size=10_000, lr=1e-3, patience=10, grad_clip=0.0, **loop)
    model, _ = fit(tmp_path, config, (train, windows), shape)
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, len(train)


def test_sum_reduction_multiplies_the_gradient_by_the_batch_targets(tmp_path):
    mean, targets = _one_step(tmp_path / "mean", loss_reduction="mean")
    summed, _ = _one_step(tmp_path / "sum", loss_reduction="sum")
    assert targets > 1
    for name, grad in mean.items():
        torch.testing.assert_close(summed[name], grad * targets, rtol=1e-4, atol=1e-6)


def test_adam_couples_weight_decay_into_the_gradient_and_adamw_decouples_it():
    # A parameter whose loss gradient is 0: coupled L2 makes Adam's normalised step about lr in size,
    # AdamW's decoupled decay shrinks it by lr * weight_decay only.
    moved = {}
    for name in ("adam", "adamw"):
        weight = nn.Parameter(torch.ones(3))
        optimizer, _ = loop._optimizer(nn.ParameterList([weight]), build_objective(NO_DISTILL), None,
                                       LoopConfig(lr=0.1, weight_decay=0.01, optimizer=name))
        (weight * 0).sum().backward()
        optimizer.step()
        moved[name] = float(1 - weight.detach()[0])
    assert moved["adam"] == pytest.approx(0.1, rel=1e-3)
    assert moved["adamw"] == pytest.approx(0.1 * 0.01, rel=1e-3)


def test_cosine_schedule_decays_each_group_from_its_own_rate():
    weight, other = nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1))
    optimizer = torch.optim.AdamW([{"params": [weight]}, {"params": [other], "lr": 0.01}], lr=0.1)
    config = LoopConfig(lr=0.1, lr_schedule="cosine")
    for progress, factor in ((0.0, 1.0), (0.5, 0.5), (0.75, 0.5 * (1 + math.cos(0.75 * math.pi))), (1.0, 0.0)):
        loop._schedule_lr(optimizer, config, progress)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1 * factor, 0.01 * factor])
    loop._schedule_lr(optimizer, LoopConfig(lr=0.1), 0.5)  # constant: the base rates
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.01])


def test_cosine_schedule_spans_the_epoch_budget(tmp_path, monkeypatch):
    seen = []
    real = loop._schedule_lr
    monkeypatch.setattr(loop, "_schedule_lr", lambda opt, config, progress: (seen.append(progress),
                                                                            real(opt, config, progress)))
    train, windows, shape = small_data()
    fit(tmp_path, LoopConfig(epochs=2, batch_size=16, lr=1e-2, patience=10, lr_schedule="cosine"),
        (train, windows), shape)
    assert seen[0] == 0 and seen == sorted(seen) and 0.9 < seen[-1] < 1  # one pass through the budget
    assert seen.count(0.5) == 1  # the second epoch starts half way


def test_stop_after_without_validation_keeps_that_epoch_under_the_full_schedule(tmp_path):
    train, windows, shape = small_data()
    config = LoopConfig(epochs=4, batch_size=16, lr=1e-2, patience=1, lr_schedule="cosine")
    torch.manual_seed(0)
    model = RatingTransformer(RatingTransformerConfig(dim=8), shape)
    result = loop.train(model, build_objective(NO_DISTILL), train, None, config, torch.device("cpu"), seed=0,
                        checkpoint_dir=tmp_path, label="refit", stop_after=2)
    assert result.history["epoch"].tolist() == [1, 2] and result.best_epoch == 2 and result.best_valid == {}
    assert not [c for c in result.history.columns if c.startswith("valid_")]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(result.best_state[name], tensor, rtol=0, atol=0)
    # the same first two epochs as a run of the whole 4-epoch budget
    _, whole = fit(tmp_path / "whole", config.__class__(**{**config.__dict__, "patience": 10}), (train, windows),
                   shape)
    assert whole.history["train_loss"].tolist()[:2] == pytest.approx(result.history["train_loss"].tolist())
