"""Schemas of the `evaluator` config group, one per task: the evaluation protocol, written next to every result.

Each is stored in Hydra's ConfigStore as `evaluator_schema/<name>` (recdistill/config_schema.py) and
`configs/evaluator/<name>.yaml` starts from it, so a ranking key on the rating evaluator
(`evaluator.ks=[5]`) fails at composition. `to_evaluator_config(cfg.evaluator)` gives the stages
the checked dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any, List, Mapping, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recdistill.errors import ConfigError
from recdistill.utils.config_checks import bounded, check_values

#: Valid values of `evaluator.input_history`.
INPUT_HISTORIES = ("earlier_visible",)
#: Valid values of `evaluator.protocol` (ranking).
RANKING_PROTOCOLS = ("full", "sampled")


@dataclass
class EvaluatorConfig:
    """What every task's evaluator reads: the model inputs it may see and the latency measurement."""

    name: str = "rating"  # the task evaluator; set by the schema, not by hand
    history_length: int = bounded(32, ge=1)  # most recent visible interactions a model reads per prediction
    # which earlier interactions of the same user a prediction may read: train targets read
    # earlier train ones, valid targets read train, test targets read train + valid; never test
    input_history: str = "earlier_visible"
    latency_batch_size: int = bounded(256, ge=1)  # batch size for the scoring-latency measurement
    latency_repeats: int = bounded(20, ge=1)  # timed repeats (median and p90 are reported)
    latency_warmup: int = bounded(3, ge=0)  # untimed calls before the timed repeats


@dataclass
class RatingEvaluatorConfig(EvaluatorConfig):
    """Rating prediction: Accuracy (argmax class), MAE and RMSE (expected rating), plus efficiency."""

    name: str = "rating"  # the task evaluator; set by the schema, not by hand


@dataclass
class RankingEvaluatorConfig(EvaluatorConfig):
    """Top-K ranking: HR, NDCG, Recall, Precision, MRR, MAP at each K plus item coverage, and efficiency."""

    name: str = "ranking"  # the task evaluator; set by the schema, not by hand
    history_length: int = bounded(50, ge=1)  # most recent visible interactions a sequential model reads
    # cut-offs of HR, NDCG, Recall, ... @K
    ks: List[int] = bounded(factory=lambda: [5, 10, 20], ge=1, min_len=1,
                            must="one or more cut-offs K >= 1, e.g. [5, 10, 20]")
    protocol: str = "full"  # full: rank every item | sampled: the truth among n_negatives sampled items
    mask_history: bool = True  # drop the items a user's input history holds from their ranking
    n_negatives: int = bounded(100, ge=1)  # sampled protocol only: negatives per user
    user_batch_size: int = bounded(1024, ge=1)  # users scored per forward pass
    item_chunk: int = bounded(65536, ge=1)  # items scored at once; bounds memory on large catalogues


EvaluatorSchema = Union[RatingEvaluatorConfig, RankingEvaluatorConfig]

#: Evaluator name -> schema; the ConfigStore holds each as `evaluator_schema/<name>`.
EVALUATOR_SCHEMAS: dict[str, type] = {"rating": RatingEvaluatorConfig, "ranking": RankingEvaluatorConfig}
#: Every field of the one evaluator schema used before per-task schemas; a record holding all of
#: them was written by that schema, and keeps only the fields of its task.
FLAT_FIELDS = ("name", "history_length", "input_history", "latency_batch_size", "latency_repeats", "ks",
               "protocol", "mask_history", "n_negatives", "user_batch_size", "item_chunk")


def to_evaluator_config(cfg: Any) -> EvaluatorSchema:
    """The checked evaluator dataclass of `cfg`: a composed `cfg.evaluator` node, a dataclass or a mapping.

    A plain mapping is typed against the schema its `name` picks; a key that evaluator lacks, or a
    value out of range, raises ConfigError naming it and the valid values.
    """
    if type(cfg) in EVALUATOR_SCHEMAS.values():
        evaluator = cfg
    elif isinstance(cfg, DictConfig) and OmegaConf.get_type(cfg) in EVALUATOR_SCHEMAS.values():
        evaluator = OmegaConf.to_object(cfg)
    elif is_dataclass(cfg) and not isinstance(cfg, type):
        evaluator = _from_record({f.name: getattr(cfg, f.name) for f in fields(cfg)})
    elif isinstance(cfg, (DictConfig, Mapping)):
        record = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        evaluator = _from_record(record)  # type: ignore[arg-type]
    else:
        raise ConfigError(f"cannot read an evaluator config of type {type(cfg).__name__}")
    check_evaluator_config(evaluator)
    return evaluator  # type: ignore[return-value]


def check_evaluator_config(cfg: EvaluatorSchema) -> None:
    """ConfigError naming the key, its value and the valid range when a value is out of range."""
    task = type(cfg).name  # type: ignore[attr-defined]
    if cfg.name != task:
        raise ConfigError(f"evaluator.name={cfg.name!r} does not match the {task} evaluator's schema; "
                          f"choose it with `evaluator=<name>` ({', '.join(EVALUATOR_SCHEMAS)})")
    if cfg.input_history not in INPUT_HISTORIES:
        raise ConfigError(f"evaluator.input_history={cfg.input_history!r}; valid: {', '.join(INPUT_HISTORIES)}")
    if isinstance(cfg, RankingEvaluatorConfig) and cfg.protocol not in RANKING_PROTOCOLS:
        raise ConfigError(f"evaluator.protocol={cfg.protocol!r}; valid: {', '.join(RANKING_PROTOCOLS)}")
    check_values(cfg, "evaluator.")  # the ranges declared on the schema


def _from_record(record: dict[str, Any]) -> EvaluatorSchema:
    """The dataclass of a plain record, typed by OmegaConf against the schema its `name` picks."""
    name = record.get("name")
    if name not in EVALUATOR_SCHEMAS:
        raise ConfigError(f"evaluator.name={name!r} is not one of {', '.join(EVALUATOR_SCHEMAS)}")
    schema = EVALUATOR_SCHEMAS[name]
    keys = [f.name for f in fields(schema)]
    flat = set(FLAT_FIELDS) <= set(record)  # written by the single schema: every task's fields
    foreign = [key for key in record if key not in keys and not flat]
    if foreign:
        raise ConfigError(f"evaluator.{foreign[0]} is not a key of the {name} evaluator; its keys: {', '.join(keys)}")
    values = {key: record[key] for key in keys if key in record}
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"evaluator ({name}): {exc}") from exc
