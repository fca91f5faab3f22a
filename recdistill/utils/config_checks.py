"""Value domains declared on config schemas, and the walker that checks a config against them.

A schema declares a field's domain where it declares the field; `bounded` returns a plain
`dataclasses.field` (the domain rides in its metadata), so Hydra's structured configs read the
schema exactly as before:

    lr: float = bounded(1e-3, gt=0)  # a finite number > 0
    ks: List[int] = bounded(factory=lambda: [5, 10], ge=1, min_len=1)  # one or more, each >= 1
    ratios: List[float] = bounded(factory=_ratios, ge=0, le=1, length=3, total=1.0)
    loss: str = bounded("ce", choices=("ce", "bce"))

A check that reads several fields is a `Rule`, declared on the class with `@value_rules(...)`.
`check_values(cfg, prefix)` walks a dataclass instance (nested dataclasses, lists, dicts) and
raises one ConfigError with a line `<key>=<value> must be <range>` per violation, keys written as
the user types them (`trainer.student.lr`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from recdistill.errors import ConfigError

#: Where `bounded` keeps the domain in a field's metadata.
DOMAIN_KEY = "recdistill.domain"
#: How far the elements of a list with a `total` may sum from it.
TOTAL_TOLERANCE = 1e-6


def _number(x: float) -> str:
    return f"{x:g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def show(value: Any) -> str:
    """A value as the message shows it: strings quoted, numbers and lists as Python writes them."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, tuple):
        value = list(value)
    return str(value)


@dataclasses.dataclass(frozen=True)
class Domain:
    """The values a field may take. Bounds and choices apply to a scalar, or to each element of a list."""

    gt: float | None = None  # greater than
    ge: float | None = None  # at least
    lt: float | None = None  # less than
    le: float | None = None  # at most
    choices: tuple[Any, ...] | None = None  # one of these
    length: int | None = None  # lists: exactly this many elements
    min_len: int = 0  # lists: at least this many elements
    total: float | None = None  # lists: the elements sum to this (within TOTAL_TOLERANCE)
    integer: bool = False  # integers: the range text says no "finite number"
    must: str | None = None  # the range as messages state it, instead of the generated text
    note: str = ""  # appended to the range in parentheses, e.g. "0 = off"

    def _scalar_ok(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if not _is_number(value) or not math.isfinite(value):
            return False  # nan and inf are outside every declared numeric domain
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))

    def holds(self, value: Any) -> bool:
        """True when `value` lies in the domain (None, an unset optional, always does)."""
        if value is None:
            return True
        if isinstance(value, (list, tuple)):
            if (self.length is not None and len(value) != self.length) or len(value) < self.min_len:
                return False
            if not all(self._scalar_ok(v) for v in value):
                return False
            return self.total is None or abs(sum(value) - self.total) <= TOTAL_TOLERANCE
        if self.length is not None or self.min_len or self.total is not None:
            return False  # a list was declared
        return self._scalar_ok(value)

    def _bounds(self) -> str:
        low = f"({_number(self.gt)}" if self.gt is not None else f"[{_number(self.ge)}" if self.ge is not None else ""
        high = f"{_number(self.lt)})" if self.lt is not None else f"{_number(self.le)}]" if self.le is not None else ""
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>' if low[0] == '(' else '>='} {low[1:]}"
        if high:
            return f"{'<' if high[-1] == ')' else '<='} {high[:-1]}"
        return ""

    def _scalar_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        bounds = self._bounds()
        if self.integer or bounds.startswith("in "):
            return bounds or "an integer"
        return f"a finite number {bounds}".rstrip()

    def describe(self) -> str:
        """The allowed range in words: `> 0`, `in [0, 1)`, `one of ce, bce`, `a list of 3 numbers, ...`."""
        if self.must is not None:
            text = self.must
        elif self.length is None and not self.min_len and self.total is None:
            text = self._scalar_text()
        else:
            kind = "values" if self.choices is not None else "integers" if self.integer else "numbers"
            count = f"{self.length} " if self.length is not None else "one or more " if self.min_len == 1 else (
                f"at least {self.min_len} " if self.min_len else "")
            scalar = self._scalar_text().removeprefix("a finite number").strip()
            each = f", each {scalar}" if scalar and scalar != "an integer" else ""
            text = f"a list of {count}{kind}{each}"
            if self.total is not None:
                text += f", summing to {_number(self.total)}"
        return f"{text} ({self.note})" if self.note else text

    def message(self, key: str, value: Any) -> str:
        """`<key>=<value> must be <range>`."""
        return f"{key}={show(value)} must be {self.describe()}"


def domain(**bounds: Any) -> dict[str, Domain]:
    """Field metadata holding a Domain: `field(default=1e-3, metadata=domain(gt=0))`."""
    return {DOMAIN_KEY: Domain(**bounds)}


def bounded(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None, **bounds: Any) -> Any:
    """A dataclass field with `default` (or `factory` for lists) whose values must lie in the Domain of `bounds`.

    Whether the range text speaks of integers is read off the default (or the factory's first element).
    """
    sample = factory() if factory is not None else default
    if isinstance(sample, (list, tuple)):
        sample = sample[0] if sample else None
    bounds.setdefault("integer", isinstance(sample, int) and not isinstance(sample, bool))
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=domain(**bounds))
    return dataclasses.field(default=default, metadata=domain(**bounds))


@dataclasses.dataclass(frozen=True)
class Rule:
    """A check that reads several fields of one config: `holds(cfg)` must be true.

    The message is `<prefix><key>=<value> must <must>`; `must` is formatted with `prefix` and the
    config's fields, e.g. `"be <= {prefix}max_support ({max_support})"`.
    """

    key: str
    holds: Callable[[Any], bool]
    must: str

    def message(self, cfg: Any, prefix: str) -> str:
        values = {f.name: show(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
        return f"{prefix}{self.key}={show(getattr(cfg, self.key))} must {self.must.format(prefix=prefix, **values)}"


def at_most(key: str, other: str) -> Rule:
    """Rule: the value of `key` is at most the value of `other`."""
    return Rule(key, lambda cfg: getattr(cfg, key) <= getattr(cfg, other), f"be <= {{prefix}}{other} ({{{other}}})")


def divides(key: str, other: str) -> Rule:
    """Rule: the value of `key` divides the value of `other` (attention heads split the width)."""
    return Rule(key, lambda cfg: getattr(cfg, other) % getattr(cfg, key) == 0,
                f"divide {{prefix}}{other} ({{{other}}})")


def value_rules(*rules: Rule) -> Callable[[type], type]:
    """Class decorator: declare cross-field Rules on a config dataclass (subclasses inherit them)."""

    def declare(cls: type) -> type:
        cls.__value_rules__ = tuple(getattr(cls, "__value_rules__", ())) + rules  # type: ignore[attr-defined]
        return cls

    return declare


def declared_domains(schema: type) -> dict[str, Domain]:
    """Field name -> Domain of every field of the dataclass `schema` that declares one."""
    return {f.name: f.metadata[DOMAIN_KEY] for f in dataclasses.fields(schema) if DOMAIN_KEY in f.metadata}


def find_violations(cfg: Any, prefix: str = "") -> list[str]:
    """One message per value outside its declared domain or Rule, walking nested dataclasses, lists and dicts.

    A config's Rules run after its fields, and only when its own fields are in their domains.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        lines, own_ok = [], True
        for f in dataclasses.fields(cfg):  # in field order, each field's nested values right after it
            value = getattr(cfg, f.name)
            found = f.metadata.get(DOMAIN_KEY)
            if found is not None and not found.holds(value):
                lines.append(found.message(prefix + f.name, value))
                own_ok = False
            lines += find_violations(value, f"{prefix}{f.name}.")
        if own_ok:  # Rules may assume their fields in range
            rules = getattr(type(cfg), "__value_rules__", ())
            lines += [rule.message(cfg, prefix) for rule in rules if not rule.holds(cfg)]
        return lines
    if isinstance(cfg, Mapping):
        return [line for key, value in cfg.items() for line in find_violations(value, f"{prefix}{key}.")]
    if isinstance(cfg, (list, tuple)):
        head = prefix.removesuffix(".")
        return [line for i, value in enumerate(cfg) for line in find_violations(value, f"{head}[{i}].")]
    return []


def raise_violations(problems: Sequence[str]) -> None:
    """ConfigError with one line per problem (the first line names the first); nothing when there are none."""
    if problems:
        raise ConfigError("\n".join(problems))


def check_values(cfg: Any, prefix: str = "") -> None:
    """ConfigError naming every key of `cfg` (a dataclass instance) whose value is outside its declared domain."""
    raise_violations(find_violations(cfg, prefix))
