"""Typed schemas of the `split` config group: one dataclass per split kind, holding only what it reads.

Each schema is stored in Hydra's ConfigStore as `split_schema/<kind>` (recdistill/config_schema.py)
and each `configs/split/<option>.yaml` starts from it, so a misspelt key, or a key of another kind
(`split.support_size=3` on a chrono split), fails at composition naming the key.

Stages never read the composed node: `to_split_config(cfg.split)` turns it into its dataclass
(a mapping, including a flat record written before these schemas, converts too).

Cross-domain splitting is two kinds, `domain_genre` and `domain_time`, not one kind with a
`domain_by` switch: each reads its own fields (target_genres or time_quantile), so a genre field on
a time split fails at composition like any foreign key. Flat records name both `domain`; the
`domain_by` they hold picks the kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, List, Mapping, Optional, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recdistill.errors import ConfigError
from recdistill.utils.config_checks import Rule, at_most, bounded, value_rules


def _ratios() -> List[float]:
    return [0.8, 0.1, 0.1]


def _ratios_field() -> List[float]:
    """The `ratios` field: train, valid, test shares in [0, 1] that sum to 1."""
    return bounded(factory=_ratios, ge=0, le=1, length=3, total=1.0, note="train, valid, test; e.g. [0.8, 0.1, 0.1]")


#: The train share must be > 0 (a valid or test share of 0 leaves that part empty).
TRAIN_SHARE = Rule("ratios", lambda cfg: cfg.ratios[0] > 0, "have a train share (the first) > 0")


def _below_one(first: str, second: str, what: str) -> Rule:
    """`first + second < 1`: some warm `what` stay."""
    return Rule(second, lambda cfg: getattr(cfg, first) + getattr(cfg, second) < 1,
                f"be < 1 - {{prefix}}{first} ({{{first}}}): together they leave no warm {what}")


@value_rules(TRAIN_SHARE)
@dataclass
class ChronoRatioSplit:
    """Per user, by time: the first share of interactions train, the next valid, the last test."""

    name: str = "chrono_ratio"  # the kind; set by the schema, not by hand
    ratios: List[float] = _ratios_field()  # train, valid, test shares of each user's history


@dataclass
class LeaveOneOutSplit:
    """Per user, by time: the last interaction test, the one before valid, the rest train."""

    name: str = "leave_one_out"  # the kind; set by the schema, not by hand


@value_rules(TRAIN_SHARE)
@dataclass
class RandomRatioSplit:
    """A seeded random share of all interactions in each part (ignores time)."""

    name: str = "random_ratio"  # the kind; set by the schema, not by hand
    ratios: List[float] = _ratios_field()  # train, valid, test shares of all interactions


@value_rules(at_most("support_size", "max_support"), _below_one("valid_users", "test_users", "users"))
@dataclass
class ColdUserSplit:
    """Held-out users, each seen through the first k of their interactions; warm users are the source."""

    name: str = "cold_user"  # the kind; set by the schema, not by hand
    support_size: int = bounded(10, ge=1)  # k: support interactions per cold user in train, 1..max_support
    # first interactions of each cold user reserved as support; the rest are the query
    max_support: int = bounded(10, ge=1)
    min_query: int = bounded(5, ge=1)  # users need >= max_support + min_query interactions to take part
    valid_users: float = bounded(0.1, ge=0, lt=1)  # share of those users held out as cold validation users
    test_users: float = bounded(0.2, gt=0, lt=1)  # share of those users held out as cold test users


@value_rules(_below_one("valid_items", "test_items", "items"))
@dataclass
class ColdItemSplit:
    """Held-out items that are never trained on; valid / test hold all their interactions."""

    name: str = "cold_item"  # the kind; set by the schema, not by hand
    valid_items: float = bounded(0.1, ge=0, lt=1)  # share of candidate items held out as cold validation items
    test_items: float = bounded(0.2, gt=0, lt=1)  # share of candidate items held out as cold test items
    min_item_interactions: int = bounded(1, ge=1)  # only items with at least this many interactions can be cold


@value_rules(TRAIN_SHARE)
@dataclass
class DomainGenreSplit:
    """Interactions with items of the target genres are the target domain, the rest the source."""

    name: str = "domain_genre"  # the kind; set by the schema, not by hand
    target_genres: List[str] = field(default_factory=list)  # items with any of these genres are target items
    ratios: List[float] = _ratios_field()  # train, valid, test of each user's target interactions
    # share of each user's target train interactions kept (valid / test never cut)
    target_fraction: float = bounded(1.0, gt=0, le=1)


@value_rules(TRAIN_SHARE)
@dataclass
class DomainTimeSplit:
    """Interactions from a quantile of all timestamps on are the target domain, earlier ones the source."""

    name: str = "domain_time"  # the kind; set by the schema, not by hand
    # interactions from this quantile of timestamps on are the target domain
    time_quantile: float = bounded(0.8, gt=0, lt=1)
    ratios: List[float] = _ratios_field()  # train, valid, test of each user's target interactions
    # share of each user's target train interactions kept (valid / test never cut)
    target_fraction: float = bounded(1.0, gt=0, le=1)


@dataclass
class GivenSplit:
    """Train, valid and test as three files give them (read with dataset=files' columns and format)."""

    name: str = "given"  # the kind; set by the schema, not by hand
    train: Optional[str] = None  # the training interactions file
    valid: Optional[str] = None  # the validation interactions file
    test: Optional[str] = None  # the test interactions file


SplitSchema = Union[ChronoRatioSplit, LeaveOneOutSplit, RandomRatioSplit, ColdUserSplit, ColdItemSplit,
                    DomainGenreSplit, DomainTimeSplit, GivenSplit]

#: Split kind (its `name`) -> schema; the ConfigStore holds each as `split_schema/<kind>`.
SPLIT_SCHEMAS: dict[str, type] = {schema.name: schema for schema in (  # type: ignore[attr-defined]
    ChronoRatioSplit, LeaveOneOutSplit, RandomRatioSplit, ColdUserSplit, ColdItemSplit,
    DomainGenreSplit, DomainTimeSplit, GivenSplit)}
#: `domain_by` of a flat record (name `domain`) -> the kind it is now.
DOMAIN_KINDS = {"genre": "domain_genre", "time": "domain_time"}
#: Every field of the flat split schema used before per-kind schemas; a record holding all of
#: them was written by that schema, and keeps only the fields of its kind.
FLAT_FIELDS = ("name", "ratios", "support_size", "max_support", "min_query", "valid_users", "test_users",
               "valid_items", "test_items", "min_item_interactions", "domain_by", "target_genres",
               "time_quantile", "target_fraction")


def to_split_config(cfg: Any) -> SplitSchema:
    """The split dataclass of `cfg`: a composed `cfg.split` node, a dataclass or a mapping.

    A node composed from `split_schema/<kind>` converts with OmegaConf.to_object; a plain mapping
    is typed against the schema its `name` picks, and a key that kind lacks raises ConfigError
    naming it (a flat record from before per-kind schemas keeps only its kind's fields instead).
    """
    if type(cfg) in SPLIT_SCHEMAS.values() or (isinstance(cfg, DictConfig)
                                               and OmegaConf.get_type(cfg) in SPLIT_SCHEMAS.values()):
        try:  # through OmegaConf even for a dataclass: values get their field's type (1 -> 1.0 for a float)
            typed = OmegaConf.to_object(OmegaConf.structured(cfg))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"split ({cfg.name}): {exc}") from exc
        return _checked_name(typed)
    if is_dataclass(cfg) and not isinstance(cfg, type):
        record = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    elif isinstance(cfg, DictConfig):
        record = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    elif isinstance(cfg, Mapping):
        record = dict(cfg)
    else:
        raise ConfigError(f"cannot read a split config of type {type(cfg).__name__}; "
                          f"pass one of {', '.join(s.__name__ for s in SPLIT_SCHEMAS.values())} or a mapping")
    return _from_record(record)


def _checked_name(cfg: Any) -> SplitSchema:
    """`cfg`, after checking that its `name` is its schema's kind (a `split.name=` override is not a kind switch)."""
    kind = type(cfg).name
    if cfg.name != kind:
        raise ConfigError(f"split.name={cfg.name!r} does not match the {kind} split's schema; "
                          f"choose the kind with `split=<option>` (kinds: {', '.join(SPLIT_SCHEMAS)})")
    return cfg


def _from_record(record: dict[str, Any]) -> SplitSchema:
    """The dataclass of a plain record, typed and checked by OmegaConf against its kind's schema."""
    flat = set(FLAT_FIELDS) <= set(record)  # written by the flat schema: every kind's fields
    name = record.get("name")
    if name == "domain":  # a flat record: domain_by picks the kind
        domain_by = record.get("domain_by", "genre")
        if domain_by not in DOMAIN_KINDS:
            raise ConfigError(f"split.domain_by={domain_by!r} is not one of {', '.join(DOMAIN_KINDS)}")
        name = DOMAIN_KINDS[domain_by]
    if name not in SPLIT_SCHEMAS:
        raise ConfigError(f"split.name={name!r} is not one of {', '.join(SPLIT_SCHEMAS)}")
    schema = SPLIT_SCHEMAS[name]
    keys = [f.name for f in fields(schema)]
    ignored = set(FLAT_FIELDS) if flat else {"domain_by"} if record.get("name") == "domain" else set()
    foreign = [key for key in record if key not in keys and key not in ignored]
    if foreign:
        raise ConfigError(f"split.{foreign[0]} is not a key of a {name} split; its keys: {', '.join(keys)}")
    values = {key: record[key] for key in keys if key in record}
    values["name"] = name
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"split ({name}): {exc}") from exc
