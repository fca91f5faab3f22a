"""How `recdistill recommend` shows its lists: a rich table, JSON or CSV on stdout, parquet for batches;
and how it reads a batch of users from a file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from recdistill.errors import ConfigError, DataError
from recdistill.serving.recommend import Recommendations, Recommender
from recdistill.utils.atomic import write_parquet

#: Output formats of single lists.
FORMATS = ("table", "json", "csv")


def render(recommendations: Recommendations, recommender: Recommender, output_format: str = "table",
           console: Console | None = None) -> str | None:
    """The list as JSON or CSV text; for "table", print a rich table to `console` and return None."""
    if output_format == "json":
        return json.dumps(recommendations.to_dict(), ensure_ascii=False, indent=2)
    if output_format == "csv":
        return recommendations.to_frame().to_csv(index=False)
    if output_format != "table":
        raise ConfigError(f"--format {output_format!r} unknown; valid: {', '.join(FORMATS)}")
    who = (f"user {recommendations.user}" if recommendations.user is not None
           else f"a new user with {len(recommendations.history)} items")
    source = recommender.source.get("source", "")
    table = Table(title=f"top {len(recommendations.items)} for {who} ({recommender.role}, {source})")
    table.add_column("rank", justify="right")
    table.add_column("item")
    if recommendations.titles is not None:
        table.add_column("title")
    table.add_column("score", justify="right")
    for record in recommendations.to_records():
        title = [str(record["title"] or "")] if recommendations.titles is not None else []
        table.add_row(str(record["rank"]), record["item"], *title, f"{record['score']:.4f}")
    (console or Console()).print(table)
    return None


def read_users(path: str | Path) -> list[str]:
    """Raw user ids from a file: parquet or CSV with a `user` column (or a single column), else one id
    per line; ids are read as text, exactly as written."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"--users {path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".csv"):
        frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
        if "user" not in frame.columns and frame.shape[1] != 1:
            raise DataError(f"{path} has columns {list(frame.columns)}; give a `user` column (or a single column)")
        column = frame["user"] if "user" in frame.columns else frame.iloc[:, 0]
        return [str(user) for user in column]
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line != ""]


def write_batch(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a `recommend_users` table as parquet (atomically); returns the path."""
    path = Path(path).expanduser()
    if path.suffix.lower() != ".parquet":
        raise ConfigError(f"--out {path}: batch recommendations are written as parquet; name a .parquet file")
    write_parquet(path, frame)
    return path
