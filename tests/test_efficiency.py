"""Efficiency measurements: parameter count, serialised size, latency."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recdistill.evaluation.efficiency import (
    count_parameters,
    efficiency_report,
    measure_latency,
    size_on_disk_bytes,
)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


def mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))


def test_count_parameters_of_linear_stack() -> None:
    # Linear(4, 8): 4*8 + 8 = 40; Linear(8, 2): 8*2 + 2 = 18; total 58.
    assert count_parameters(mlp(8)) == 58


def test_count_includes_frozen_parameters_but_not_buffers() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    model[0].requires_grad_(False)
    # Linear 40 (frozen) + BatchNorm affine 8 + 8 = 56; running stats are buffers and not counted.
    assert count_parameters(model) == 56


def test_size_grows_with_parameters() -> None:
    small, large = size_on_disk_bytes(mlp(8)), size_on_disk_bytes(mlp(256))
    assert 0 < small < large
    # float32: the file holds at least 4 bytes per parameter, (4*256 + 256 + 256*2 + 2) * 4 = 7176.
    assert large >= 1794 * 4


def test_measure_latency_returns_positive_ordered_numbers() -> None:
    calls: list[int] = []
    latency = measure_latency(lambda: calls.append(1) or sum(range(1000)), n_warmup=2, n_repeats=5)
    assert len(calls) == 7
    assert 0 < latency["median_ms"] <= latency["p90_ms"]
    assert latency["n_repeats"] == 5


def test_efficiency_report_for_dict_batch_restores_training_mode() -> None:
    model = mlp(16)
    batch = {"index": torch.arange(32), "x": torch.randn(32, 4)}
    report = efficiency_report(model, batch, lambda module, inputs: module(inputs["x"]), n_warmup=1, n_repeats=5)
    assert set(report) == {
        "params", "size_bytes", "latency_ms_median", "latency_ms_p90", "throughput_per_s", "batch_size",
    }
    assert report["params"] == count_parameters(model) and report["batch_size"] == 32
    assert report["latency_ms_median"] > 0 and report["latency_ms_p90"] >= report["latency_ms_median"]
    assert report["throughput_per_s"] == pytest.approx(32 / (report["latency_ms_median"] / 1000))
    assert model.training


def test_efficiency_report_default_forward_on_tensor_batch() -> None:
    model = mlp(8).eval()
    report = efficiency_report(model, torch.randn(10, 4), n_warmup=0, n_repeats=3)
    assert report["batch_size"] == 10 and report["size_bytes"] > 0
    assert not model.training


def test_efficiency_report_makes_warmup_plus_repeat_calls() -> None:
    calls = []
    model = nn.Linear(3, 2)
    efficiency_report(model, torch.zeros(4, 3), forward=lambda m, b: calls.append(m(b)), n_warmup=1, n_repeats=2)
    assert len(calls) == 3
