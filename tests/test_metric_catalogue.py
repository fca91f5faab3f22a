"""The metric catalogue: every registered metric against its hand-computed example, metadata,
column parsing, errors, discovery of a new metric file, and imports without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import recdistill.evaluation.metrics as metrics_package
from recdistill.errors import ConfigError
from recdistill.evaluation.metrics import (TASK_INPUTS, all_metrics, columns_for, discover, get_metric,
                                           headline_columns, higher_is_better, is_metric_column, is_per_user,
                                           metric_of, metrics_for, parse_column)
from recdistill.evaluation.metrics.catalogue import _registry
from recdistill.evaluation.rating_metrics import per_user_rating_metrics, rating_metrics
from recdistill.evaluation.ranking_metrics import per_user_ranking_metrics, summarize_ranking

#: The built-in metrics: name -> (task, higher is better, cut at K, per-user values).
BUILT_IN = {
    "accuracy": ("rating", True, False, True),
    "mae": ("rating", False, False, True),
    "rmse": ("rating", False, False, True),
    "hr": ("ranking", True, True, True),
    "ndcg": ("ranking", True, True, True),
    "recall": ("ranking", True, True, True),
    "precision": ("ranking", True, True, True),
    "mrr": ("ranking", True, True, True),
    "map": ("ranking", True, True, True),
    "coverage": ("ranking", True, True, False),
}


def example_inputs(metric):
    """The metric's example inputs as its task's inputs object, lists turned into tensors."""
    fields = {name: torch.tensor(value) if isinstance(value, list) else value
              for name, value in metric.example.inputs.items()}
    return TASK_INPUTS[metric.task](**fields)


@pytest.mark.parametrize("name", [m.name for m in all_metrics()])
def test_every_registered_metric_matches_its_hand_computed_example(name):
    metric = get_metric(name)
    example = metric.example
    value = metric.value(example_inputs(metric), example.k)
    assert isinstance(value, float)
    assert value == pytest.approx(example.expected, abs=1e-12), name
    if metric.per_user:
        terms = metric.terms(example_inputs(metric), example.k)
        assert terms.dtype == torch.float64 and terms.dim() == 1
        if example.rows is not None:
            assert terms.tolist() == pytest.approx(list(example.rows), abs=1e-12), name
            mean = torch.tensor(list(example.rows), dtype=torch.float64).mean()
            assert metric.finish(mean).item() == pytest.approx(example.expected, abs=1e-12), name
    else:
        assert example.rows is None, f"{name} has no per-user values, so its example has no rows"


def test_built_in_metadata():
    registered = {m.name: m for m in all_metrics()}
    assert set(BUILT_IN) <= set(registered)
    for name, (task, higher, at_k, per_user) in BUILT_IN.items():
        metric = registered[name]
        assert (metric.task, metric.higher_is_better, metric.at_k, metric.per_user) == (task, higher, at_k, per_user)
        column = f"{name}@10" if at_k else name
        assert higher_is_better(column) is higher and is_per_user(column) is per_user and metric_of(column) is metric


def test_task_order_and_headlines_are_as_reported():
    built_in = lambda task: [m.name for m in metrics_for(task) if m.name in BUILT_IN]  # noqa: E731 (new files may add)
    assert built_in("rating") == ["accuracy", "mae", "rmse"]
    assert built_in("ranking") == ["hr", "ndcg", "recall", "precision", "mrr", "map", "coverage"]
    assert headline_columns("rating", 10) == ["accuracy", "mae", "rmse"]
    assert headline_columns("ranking", 10) == ["ndcg@10", "hr@10", "recall@10", "mrr@10"]
    names = [c.name for c in columns_for("ranking", (5, 10)) if c.metric.name in BUILT_IN]
    assert names[:7] == ["hr@5", "ndcg@5", "recall@5", "precision@5", "mrr@5", "map@5", "hr@10"]
    assert names[-2:] == ["coverage@5", "coverage@10"]  # list-level metrics come last


def test_evaluators_report_exactly_the_catalogue_columns():
    torch.manual_seed(0)
    logits, estimate, true = torch.randn(12, 5), torch.rand(12) * 4 + 1, torch.randint(1, 6, (12,)).float()
    assert list(rating_metrics(logits, estimate, true)) == [m.name for m in metrics_for("rating")]
    frame = per_user_rating_metrics(torch.arange(12) % 3, logits, estimate, true)
    assert list(frame.columns) == ["user", "n", *(m.name for m in metrics_for("rating") if m.per_user)]
    hits = torch.rand(4, 6) < 0.4
    per_user = per_user_ranking_metrics(hits, torch.tensor([1, 2, 3, 1]), ks=(2, 6))
    layout = columns_for("ranking", (2, 6))
    assert list(per_user) == [c.name for c in layout if c.metric.per_user]
    summary = summarize_ranking(per_user, torch.randint(0, 9, (4, 6)), 9, (2, 6))
    assert list(summary) == [c.name for c in layout]


def test_parse_column():
    assert parse_column("ndcg@10") == ("ndcg", 10)
    assert parse_column("mae") == ("mae", None)
    for bad in ("ndcg@0", "ndcg@x", "ndcg@", "ndcg@-1", "ndcg@1.5"):
        with pytest.raises(ConfigError, match="positive integer"):
            parse_column(bad)


@pytest.mark.parametrize("column", ["ndgc@10", "ndcg", "mae@10", "ndcg@0", "params", "", "@10"])
def test_unknown_columns_give_a_config_error_naming_the_value_and_the_valid_forms(column):
    with pytest.raises(ConfigError) as error:
        higher_is_better(column, source="trainer.monitor")
    message = str(error.value)
    assert repr(column) in message and "trainer.monitor" in message
    assert "accuracy, mae, rmse" in message and "ndcg@K" in message and "coverage@K" in message
    assert not is_metric_column(column)
    with pytest.raises(ConfigError):
        is_per_user(column)


def test_a_metric_of_another_task_is_refused_when_the_task_is_given():
    assert higher_is_better("ndcg@10", task="ranking")
    with pytest.raises(ConfigError, match="for the rating task; valid: ") as error:
        higher_is_better("ndcg@10", task="rating")
    assert "ndcg@K" not in str(error.value)
    assert all(metric.name in str(error.value) for metric in metrics_for("rating"))


def test_unknown_names_and_tasks():
    with pytest.raises(ConfigError, match="unknown metric 'nope'; valid: ") as error:
        get_metric("nope")
    assert all(metric.name in str(error.value) for metric in all_metrics())  # every registered name, listed
    with pytest.raises(ConfigError, match="unknown task 'ctr'; valid: \\['rating', 'ranking'\\]"):
        metrics_for("ctr")


TOY = '''
"""A toy metric: the mean predicted rating (only to test discovery)."""

from recdistill.evaluation.metrics.catalogue import Example, Metric


def estimate(inputs, k=None):
    return inputs.estimate.double()


METRIC = Metric(name="toy", task="rating", higher_is_better=True, compute=estimate,
                example=Example({"estimate": [1.0, 2.0]}, expected=1.5, rows=(1.0, 2.0)))
'''


@pytest.fixture
def toy_metric_file(tmp_path, monkeypatch):
    """A module `toy_metric.py` dropped into the metrics package (through its search path)."""
    (tmp_path / "toy_metric.py").write_text(TOY)
    monkeypatch.setattr(metrics_package, "__path__", [*metrics_package.__path__, str(tmp_path)])
    _registry.cache_clear()
    yield
    _registry.cache_clear()
    sys.modules.pop(f"{metrics_package.__name__}.toy_metric", None)


def test_a_new_metric_file_is_discovered_and_evaluated(toy_metric_file):
    toy = get_metric("toy")
    assert toy in metrics_for("rating") and higher_is_better("toy") is True
    assert toy.value(example_inputs(toy)) == pytest.approx(1.5)
    metrics = rating_metrics(torch.eye(3)[[0, 1]], torch.tensor([1.0, 4.0]), torch.tensor([1.0, 2.0]))
    assert metrics["toy"] == pytest.approx(2.5)  # the evaluator iterates the catalogue: nothing else edited
    assert list(metrics)[:3] == ["accuracy", "mae", "rmse"]


def test_discovery_skips_helpers_and_refuses_duplicates(tmp_path, monkeypatch):
    package = tmp_path / "toy_catalogue"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_shared.py").write_text("raise RuntimeError('private modules are not imported')\n")
    (package / "helper.py").write_text("VALUE = 1\n")
    (package / "first.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(discover("toy_catalogue", [str(package)])) == ["toy"]
    (package / "second.py").write_text(TOY)
    with pytest.raises(ValueError, match="metric 'toy' defined twice: in toy_catalogue.first and toy_catalogue.second"):
        discover("toy_catalogue", [str(package)])
    for name in ("toy_catalogue", "toy_catalogue.first", "toy_catalogue.second", "toy_catalogue.helper"):
        sys.modules.pop(name, None)


def test_the_catalogue_and_reporting_import_without_torch():
    code = textwrap.dedent("""
        import sys
        import recdistill.evaluation.metrics as catalogue
        import recdistill.reporting.compare, recdistill.reporting.run_report
        assert len(catalogue.all_metrics()) >= 10
        loaded = [m for m in ("torch", "matplotlib") if m in sys.modules]
        assert not loaded, loaded
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
