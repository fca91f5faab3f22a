"""Figures: the accuracy-cost frontier of a comparison, a metric against a swept parameter, and a
run's training curves. Built on matplotlib's object API (Agg canvas, no pyplot global state)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recdistill.reporting.runs import MISSING, ROLE_ORDER, as_number, higher_is_better
from recdistill.utils.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: One colour per role, the same in every figure.
ROLE_COLOURS = {"teacher": "tab:blue", "student": "tab:orange", "student_kd": "tab:green"}


def _figure(n_panels: int) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(5.6 * n_panels, 4.4), layout="constrained")


def _direction(metric: str) -> str:
    """Axis label of a metric column with its direction from the catalogue: `mae (lower is better)`."""
    return f"{metric} ({'higher' if higher_is_better(metric) else 'lower'} is better)"


def save_figure(figure: Figure, path: Path) -> None:
    """Write the figure as PNG in one rename (the temporary file has no .png suffix, so say the format)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)


def numeric_key(summary: pd.DataFrame, keys: list[str]) -> str | None:
    """The one group key whose values are numbers (at least two of them), else None."""
    numeric = []
    for key in keys:
        values = [v for v in summary[key].unique() if v != MISSING]
        if len(values) >= 2 and all(as_number(v) is not None for v in values):
            numeric.append(key)
    return numeric[0] if len(numeric) == 1 else None


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key's shortest dotted suffix that no other key ends with (`distill.terms.kl.weight` -> `weight`)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for size in range(1, len(parts) + 1):
            suffix = ".".join(parts[-size:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                break
        names[key] = suffix
    return names


def _group_label(row: pd.Series, keys: list[str]) -> str:
    """Values alone for one key (the key is in the panel title), else short `key=value` pairs."""
    if len(keys) == 1:
        return str(row[keys[0]])
    names = short_names(keys)
    return ", ".join(f"{names[k]}={row[k]}" for k in keys)


def _near_points(points: list[tuple[float, float]], log_x: bool, tolerance: float = 0.02) -> list[list[int]]:
    """Indices of points grouped when they lie within `tolerance` of the axis spans (one label each)."""
    xs = np.log10(np.maximum([p[0] for p in points], 1e-12)) if log_x else np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points])
    span_x, span_y = max(np.ptp(xs), 1e-12), max(np.ptp(ys), 1e-12)
    clusters: list[list[int]] = []
    for i in range(len(points)):
        for cluster in clusters:
            j = cluster[0]
            if abs(xs[i] - xs[j]) <= tolerance * span_x and abs(ys[i] - ys[j]) <= tolerance * span_y:
                cluster.append(i)
                break
        else:
            clusters.append([i])
    return clusters


def _frontier(axes: Axes, summary: pd.DataFrame, keys: list[str], metric: str, cost: str, title: str,
              log_x: bool) -> None:
    """One marker per group: metric (mean ± std over seeds) against a cost; groups at one spot share a label."""
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    roles = [r for r in ROLE_ORDER if r in set(summary["role"])]
    for role in roles:
        part = summary[summary["role"] == role]
        axes.errorbar(part[f"{cost}_mean"], part[f"{metric}_mean"], yerr=part[f"{metric}_std"].fillna(0),
                      fmt="o", color=ROLE_COLOURS.get(role), label=role, capsize=3)
    if keys:
        points = list(zip(summary[f"{cost}_mean"].astype(float), summary[f"{metric}_mean"].astype(float)))
        totals = summary["role"].value_counts()
        for cluster in _near_points(points, log_x):
            by_role: dict[str, list[str]] = {}
            for i in cluster:
                by_role.setdefault(summary.at[i, "role"], []).append(_group_label(summary.iloc[i], keys))
            lines = [f"{role}: " + ("all" if len(names) == totals[role] > 1 else ", ".join(names))
                     for role in roles if (names := by_role.get(role))]
            axes.annotate("\n".join(lines), points[cluster[0]], fontsize=7, xytext=(5, 3),
                          textcoords="offset points", va="bottom")
        axes.set_title("labels: " + ", ".join(keys) if len(keys) == 1 else "", fontsize=8)
    if log_x:
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(EngFormatter(sep=""))
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.margins(x=0.25, y=0.12)
    axes.set_xlabel(title)
    axes.set_ylabel(_direction(metric))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)


def _sweep(axes: Axes, summary: pd.DataFrame, keys: list[str], key: str, metric: str) -> None:
    """Metric against the swept parameter, error bars = std over seeds, one line per role (and other keys).

    Distilled-student groups without the parameter (e.g. `distill=none` in a weight sweep) are drawn
    as dashed levels: the reference the sweep should beat.
    """
    others = [k for k in keys if k != key]
    names = short_names(others)
    styles = ["-", ":", "-.", "--"]
    combos = list(dict.fromkeys(tuple(row[k] for k in others) for _, row in summary.iterrows()))
    for values, part in summary.groupby(["role", *others], sort=False):
        role, rest = values[0], tuple(values[1:])
        name = ", ".join([role, *(f"{names[k]}={v}" for k, v in zip(others, rest))])
        colour = ROLE_COLOURS.get(role)
        present = part[part[key] != MISSING].copy()
        if not present.empty:
            present["x"] = [as_number(v) for v in present[key]]
            present = present.sort_values("x")
            axes.errorbar(present["x"], present[f"{metric}_mean"], yerr=present[f"{metric}_std"].fillna(0),
                          marker="o", capsize=3, color=colour, linestyle=styles[combos.index(rest) % len(styles)],
                          label=name)
        if role == "student_kd":
            for _, row in part[part[key] == MISSING].iterrows():
                axes.axhline(row[f"{metric}_mean"], linestyle="--", color="grey", label=f"{name} (no {key})")
    axes.set_xlabel(key)
    axes.set_ylabel(_direction(metric))
    axes.set_title(f"{metric} against {key}", fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))


def comparison_figure(summary: pd.DataFrame, keys: list[str], metric: str, split: str) -> Figure:
    """Frontier of `metric` against parameters and latency; plus metric against a swept number if one varies."""
    swept = numeric_key(summary, keys)
    figure = _figure(3 if swept else 2)
    panels = figure.subplots(1, 3 if swept else 2)
    _frontier(panels[0], summary, keys, metric, "params", "parameters (log scale)", log_x=True)
    _frontier(panels[1], summary, keys, metric, "latency_ms_median", "scoring latency, median ms", log_x=False)
    if swept:
        _sweep(panels[2], summary, keys, swept, metric)
    figure.suptitle(f"{split} {metric}: mean ± std over seeds")
    return figure


def training_curves_figure(history: pd.DataFrame, monitor: str | None = None) -> Figure:
    """Train loss per epoch and, when given, a validation column (`valid_ndcg@10`), one line per role."""
    from matplotlib.ticker import MaxNLocator

    columns = ["train_loss"] + ([monitor] if monitor else [])
    figure = _figure(len(columns))
    panels = figure.subplots(1, len(columns), squeeze=False)[0]
    for axes, column in zip(panels, columns):
        for role in [r for r in ROLE_ORDER if r in set(history["role"])]:
            part = history[history["role"] == role].sort_values("epoch")
            if column in part and part[column].notna().any():
                axes.plot(part["epoch"], part[column], marker="o", color=ROLE_COLOURS.get(role), label=role)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel(column)
        axes.set_title(column.replace("_", " "))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return figure
