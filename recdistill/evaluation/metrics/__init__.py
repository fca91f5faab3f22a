"""The metric catalogue: one module per metric, found automatically (see `catalogue`).

Import the API from here: `from recdistill.evaluation.metrics import get_metric, higher_is_better`.
"""

from recdistill.evaluation.metrics.catalogue import (
    TASK_INPUTS,
    TASKS,
    Column,
    Example,
    Metric,
    RankingInputs,
    RatingInputs,
    all_metrics,
    columns_for,
    discover,
    get_metric,
    headline_columns,
    higher_is_better,
    hit_rows,
    is_metric_column,
    is_per_user,
    metric_of,
    metrics_for,
    parse_column,
    valid_forms,
)

__all__ = ["TASK_INPUTS", "TASKS", "Column", "Example", "Metric", "RankingInputs", "RatingInputs", "all_metrics",
           "columns_for", "discover", "get_metric", "headline_columns", "higher_is_better", "hit_rows",
           "is_metric_column", "is_per_user", "metric_of", "metrics_for", "parse_column", "valid_forms"]
