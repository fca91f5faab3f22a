"""What a model costs: parameter count, serialised size, and forward latency / throughput."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements, trainable and frozen; buffers are not counted.

    Shared (tied) parameters count once, as `model.parameters()` yields each tensor once.
    """
    return sum(parameter.numel() for parameter in model.parameters())


def size_on_disk_bytes(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())`, written to memory (includes buffers)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    fn: Callable[[], Any],
    n_warmup: int = 3,
    n_repeats: int = 20,
    device: torch.device | str = "cpu",
) -> dict[str, float | int]:
    """Wall time of `fn()` in ms: median and p90 over `n_repeats` calls after `n_warmup` calls.

    On CUDA the device is synchronised around each call so queued kernels are timed too.
    """
    assert n_repeats >= 1 and n_warmup >= 0, f"need n_repeats >= 1, n_warmup >= 0; got {n_repeats}, {n_warmup}"
    device = torch.device(device)
    for _ in range(n_warmup):
        fn()
    times_ms: list[float] = []
    for _ in range(n_repeats):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times_ms.append((time.perf_counter() - start) * 1000.0)
    return {
        "median_ms": float(np.median(times_ms)),
        "p90_ms": float(np.percentile(times_ms, 90)),
        "n_repeats": n_repeats,
    }


def _batch_size(batch: Any) -> int:
    """Rows in a batch: a tensor's first dimension, or that of a dict's first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    assert isinstance(batch, Mapping), f"batch must be a tensor or a dict of tensors, got {type(batch).__name__}"
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    raise AssertionError(f"batch has no tensor to take its size from; keys {sorted(batch)}")


def efficiency_report(
    model: nn.Module,
    batch: Any,
    forward: Callable[[nn.Module, Any], Any] | None = None,
    n_warmup: int = 3,
    n_repeats: int = 20,
) -> dict[str, float | int]:
    """params, size_bytes, latency_ms_median, latency_ms_p90, throughput_per_s, batch_size.

    `forward(model, batch)` is timed (default `model(batch)`) in eval mode under inference mode;
    the model's training flag is restored afterwards. The device is that of the model's first
    parameter (CPU for a parameterless model); `batch` must already be on it.
    """
    call = forward if forward is not None else (lambda module, inputs: module(inputs))
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    batch_size = _batch_size(batch)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            latency = measure_latency(lambda: call(model, batch), n_warmup, n_repeats, device)
    finally:
        model.train(was_training)
    median_s = latency["median_ms"] / 1000.0
    return {
        "params": count_parameters(model),
        "size_bytes": size_on_disk_bytes(model),
        "latency_ms_median": latency["median_ms"],
        "latency_ms_p90": latency["p90_ms"],
        "throughput_per_s": batch_size / median_s if median_s > 0 else float("inf"),
        "batch_size": batch_size,
    }


def training_throughput(model: nn.Module, batches: Any, steps: int, device: torch.device | str,
                        targets_of: Callable[[dict], int], lr: float = 1e-3) -> float:
    """Training targets/s of `model` (forward, `model.loss`, backward, AdamW step) over `steps`
    batches of the iterator `batches`, after one untimed warm-up step."""
    device = torch.device(device)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    targets, elapsed = 0, 0.0
    for step in range(steps + 1):
        batch = next(batches)
        _synchronize(device)
        start = time.perf_counter()
        output = model(batch)
        loss = sum(model.loss(batch, output).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _synchronize(device)
        if step > 0:  # the first step warms up kernels and allocators
            elapsed += time.perf_counter() - start
            targets += targets_of(batch)
    return targets / elapsed
