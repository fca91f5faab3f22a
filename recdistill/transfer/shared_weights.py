"""Shared weights: copy named tensors from a trained source model into a target model, freeze some of
them, and give the copied ones their own learning rate during fine-tuning.

A prefix matches whole dotted components: `blocks.0` selects `blocks.0.query.weight` but not
`blocks.01.query.weight`, and a full name selects that tensor alone. What is copied is the source's
state dict -- parameters and persistent buffers -- so the target starts from the source's values.
"""

from __future__ import annotations

import logging
from typing import Any, Collection, Iterable, Sequence

import torch
from torch import nn

from recdistill.errors import ConfigError
from recdistill.transfer.config import TransferConfig

log = logging.getLogger(__name__)


def matches(name: str, prefix: str) -> bool:
    """Whether parameter `name` lies under `prefix`, compared by whole dotted components."""
    prefix = prefix.strip(".")
    return name == prefix or name.startswith(prefix + ".")


def top_level_names(names: Iterable[str]) -> list[str]:
    """First dotted component of each name, once each, in order."""
    return list(dict.fromkeys(name.split(".")[0] for name in names))


def compatible_prefixes(source: nn.Module, target: nn.Module) -> list[str]:
    """Shallowest prefixes whose every source tensor exists in the target with the same shape."""
    source_state, target_state = source.state_dict(), target.state_dict()
    fits = {name: name in target_state and target_state[name].shape == tensor.shape
            for name, tensor in source_state.items()}
    verdict: dict[str, bool] = {}  # prefix -> all tensors under it fit
    for name, fit in fits.items():
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            verdict[prefix] = verdict.get(prefix, True) and fit
    shallowest = []
    for prefix, fit in verdict.items():
        parts = prefix.split(".")
        if fit and not any(verdict[".".join(parts[:depth])] for depth in range(1, len(parts))):
            shallowest.append(prefix)
    return shallowest


def _select(names: Sequence[str], prefixes: Sequence[str], key: str, model: nn.Module) -> list[str]:
    """Names under any of `prefixes`, in prefix order; ConfigError for a prefix that selects nothing."""
    selected: list[str] = []
    for prefix in prefixes:
        hits = [name for name in names if matches(name, prefix)]
        if not hits:
            raise ConfigError(f"transfer.{key} prefix {prefix!r} matches no parameter of {type(model).__name__}; "
                              f"its top-level names: {', '.join(top_level_names(names))}")
        selected += [name for name in hits if name not in selected]
    return selected


def transfer_parameters(source: nn.Module, target: nn.Module, modules: Sequence[str]) -> list[str]:
    """Copy the source's parameters and buffers under `modules` into the target; returns the names copied.

    With no prefixes, every name the two models share with equal shapes is copied (shared names of
    different shapes are skipped and logged). A named prefix must fit: each tensor it selects must
    exist in the target with the same shape, else ConfigError listing the prefixes that do fit."""
    source_state = source.state_dict()  # detached views of the source's tensors
    target_state = target.state_dict(keep_vars=True)  # the target's live parameters and buffers
    source_name, target_name = type(source).__name__, type(target).__name__
    if not modules:
        shared = [name for name in source_state if name in target_state]
        names = [name for name in shared if source_state[name].shape == target_state[name].shape]
        skipped = [name for name in shared if name not in names]
        if skipped:
            log.info("Shared weights: skipping %d tensors whose shapes differ: %s", len(skipped), ", ".join(skipped))
        if not names:
            raise ConfigError(f"transfer.modules=[] but {source_name} and {target_name} share no parameter of equal "
                              f"name and shape; source names: {', '.join(top_level_names(source_state))}; "
                              f"target names: {', '.join(top_level_names(target_state))}")
    else:
        names = _select(list(source_state), modules, "modules", source)
        for name in names:
            if name in target_state and target_state[name].shape == source_state[name].shape:
                continue
            found = (f"has shape {tuple(target_state[name].shape)} in the target {target_name}"
                     if name in target_state else f"is missing from the target {target_name}")
            raise ConfigError(
                f"transfer.modules={list(modules)}: {name!r} has shape {tuple(source_state[name].shape)} in the source "
                f"{source_name} but {found}; prefixes that fit both: {', '.join(compatible_prefixes(source, target))}"
            )
    with torch.no_grad():
        for name in names:
            target_state[name].copy_(source_state[name])
    return names


def freeze_parameters(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Set requires_grad False on the parameters under `prefixes`; returns their names."""
    parameters = dict(model.named_parameters())
    frozen = _select(list(parameters), prefixes, "freeze", model)
    for name in frozen:
        parameters[name].requires_grad_(False)
    return frozen


def parameter_groups(model: nn.Module, lr: float, transferred: Collection[str], lr_scale: float
                     ) -> list[dict[str, Any]]:
    """AdamW parameter groups: trainable `transferred` parameters at lr * lr_scale, other trainable
    ones at lr; frozen parameters are left out, and so is a group that would be empty."""
    transferred = set(transferred)
    copied: list[nn.Parameter] = []
    new: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (copied if name in transferred else new).append(parameter)
    groups = [{"params": copied, "lr": lr * lr_scale, "name": "transferred"},
              {"params": new, "lr": lr, "name": "new"}]
    return [group for group in groups if group["params"]]


def apply_shared_weights(source: nn.Module, target: nn.Module, cfg: TransferConfig | Any, lr: float
                         ) -> dict[str, Any]:
    """Copy `cfg.modules` from source to target and freeze `cfg.freeze`; returns a JSON-ready summary.

    Build the target's optimiser from `parameter_groups(target, lr, summary["copied"], cfg.lr_scale)`;
    the summary's `lr_groups` describes those groups. Freezing a parameter that was not copied
    (it would stay at its random initialisation) is a ConfigError."""
    copied = transfer_parameters(source, target, list(cfg.modules))
    parameter_names = [name for name, _ in target.named_parameters()]
    to_freeze = _select(parameter_names, list(cfg.freeze), "freeze", target)
    not_copied = [name for name in to_freeze if name not in copied]
    if not_copied:
        raise ConfigError(f"transfer.freeze={list(cfg.freeze)} selects parameters not copied from the source, which "
                          f"would stay random: {', '.join(not_copied)}; copied: {', '.join(top_level_names(copied))}")
    frozen = freeze_parameters(target, list(cfg.freeze))
    sizes = dict(target.state_dict())
    groups = parameter_groups(target, lr, copied, cfg.lr_scale)
    summary = {
        "copied": copied,
        "frozen": frozen,
        "copied_values": int(sum(sizes[name].numel() for name in copied)),
        "lr_groups": [{"name": group["name"], "lr": group["lr"], "tensors": len(group["params"]),
                       "values": int(sum(p.numel() for p in group["params"]))} for group in groups],
    }
    log.info("Shared weights %s -> %s: copied %d tensors (%d values), froze %d; lr groups %s",
             type(source).__name__, type(target).__name__, len(copied), summary["copied_values"], len(frozen),
             ", ".join(f"{g['name']}@{g['lr']:g}" for g in summary["lr_groups"]))
    return summary
