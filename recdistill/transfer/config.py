"""Typed schema of the `transfer` config group and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recdistill.errors import ConfigError
from recdistill.utils.config_checks import bounded, check_values

#: Valid values of `transfer.mode`.
TRANSFER_MODES = ("none", "shared_weights", "zero_shot", "meta")
#: Item content features the zero-shot mapper can read (`transfer.content`).
CONTENT_FEATURES = ("text", "genres", "year")
#: Losses the zero-shot mapper can be fitted on (`transfer.mapper_loss`).
MAPPER_LOSSES = ("mse", "cosine")


@dataclass
class TransferConfig:
    """How knowledge moves from a source model to the target: copied weights or a content mapper."""

    mode: str = "none"  # none | shared_weights | zero_shot | meta
    # shared_weights: parameter-name prefixes copied from source to target ([] = every name and shape in common)
    modules: List[str] = field(default_factory=list)
    freeze: List[str] = field(default_factory=list)  # prefixes of copied parameters kept fixed during fine-tuning
    lr_scale: float = bounded(1.0, ge=0)  # learning-rate multiplier of copied, unfrozen parameters (1.0 = as new ones)
    source_epochs: int = bounded(0, ge=0, note="0 = trainer.teacher.epochs")  # epochs of the source model's training
    # zero_shot: item content that feeds the mapper, concatenated in this order
    content: List[str] = field(default_factory=lambda: ["text", "genres", "year"])
    mapper_hidden: int = bounded(256, ge=1)  # hidden width of the content -> item-vector MLP
    mapper_epochs: int = bounded(200, ge=1)  # upper bound on full-batch AdamW steps of the mapper
    mapper_lr: float = bounded(1e-3, gt=0)  # AdamW learning rate of the mapper
    mapper_loss: str = "mse"  # mse | cosine: what the mapper minimises against the warm items' vectors
    mapper_patience: int = bounded(20, ge=1)  # steps without held-out improvement before the mapper stops


def _choices(key: str, values: list[str], valid: tuple[str, ...]) -> None:
    """ConfigError naming the first value of `values` that is not in `valid`, or a repeated one."""
    for value in values:
        if value not in valid:
            raise ConfigError(f"transfer.{key} has {value!r}; valid: {', '.join(valid)}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"transfer.{key}={values} repeats {repeated}; list each once")


def _prefixes(key: str, values: list[Any]) -> None:
    """ConfigError unless every entry of `values` is a non-empty parameter-name prefix."""
    for value in values:
        if not isinstance(value, str) or not value.strip(".").strip():
            raise ConfigError(f"transfer.{key} has {value!r}; entries must be parameter-name prefixes "
                              "such as 'item_embedding' or 'blocks.0'")


def check_transfer_config(cfg: TransferConfig | Any) -> None:
    """Fail with a ConfigError naming the key, its value and the valid choices when `cfg` is invalid.

    Numeric ranges are the domains declared on TransferConfig; choices and prefixes are checked here."""
    if not isinstance(cfg, TransferConfig):  # a composed node or a mapping
        try:
            cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TransferConfig), cfg))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"transfer: {exc}") from exc
    if cfg.mode not in TRANSFER_MODES:
        raise ConfigError(f"transfer.mode={cfg.mode!r} unknown; valid: {', '.join(TRANSFER_MODES)}")
    _prefixes("modules", list(cfg.modules))
    _prefixes("freeze", list(cfg.freeze))
    content = list(cfg.content)
    _choices("content", content, CONTENT_FEATURES)
    if cfg.mode == "zero_shot" and not content:
        raise ConfigError(f"transfer.content is empty; zero_shot needs some of: {', '.join(CONTENT_FEATURES)}")
    if cfg.mapper_loss not in MAPPER_LOSSES:
        raise ConfigError(f"transfer.mapper_loss={cfg.mapper_loss!r} unknown; valid: {', '.join(MAPPER_LOSSES)}")
    check_values(cfg, "transfer.")
