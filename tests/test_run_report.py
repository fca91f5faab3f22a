"""report.md and training_curves.png from a fabricated run folder's files alone."""

import json

import matplotlib.image
import pytest

from recdistill.errors import RecdistillError
from recdistill.reporting.run_report import curve_column, markdown_table, write_run_report
from tests.test_compare import write_run


def test_the_report_holds_protocol_metrics_loss_and_timings(tmp_path):
    run_dir = write_run(tmp_path / "run", seed=3, distill="kl", mae={"student_kd": 0.7125})
    write_run_report(run_dir)
    report = (run_dir / "report.md").read_text()
    assert report.startswith("# synthetic_kd — seed 3")
    assert "- `split.name`: chrono_ratio" in report and "- `split.ratios`: [0.8, 0.1, 0.1]" in report
    metrics_rows = {line.split(" | ")[0].lstrip("| "): line for line in report.splitlines()
                    if line.startswith(("| teacher", "| student"))}
    assert set(metrics_rows) == {"teacher", "student", "student_kd"}
    kd = next(line for line in report.splitlines() if line.startswith("| student_kd | rating_transformer"))
    cells = [c.strip() for c in kd.strip("|").split("|")]
    assert cells[2:8] == ["0.2975", "0.7225", "0.9225", "0.2875", "0.7125", "0.9125"]  # valid = test + 0.01
    assert cells[8:11] == ["9,000", "35", "0.50"]
    assert "`loss = 0.5 * ce + 0.5 * kl`" in report
    assert "| extract | 0.25 |" in report and "| **total** | 10.75 |" in report
    assert "![training curves](training_curves.png)" in report
    assert (run_dir / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(run_dir / "training_curves.png").shape[1] > 800
    assert not list(run_dir.glob(".*.tmp"))


def test_a_run_without_baseline_or_history_still_gets_a_report(tmp_path):
    run_dir = write_run(tmp_path / "run", roles=("teacher", "student_kd"))
    (run_dir / "history.csv").write_text("")
    write_run_report(run_dir)
    report = (run_dir / "report.md").read_text()
    assert "| student_kd |" in report and "| student |" not in report
    assert "training_curves" not in report and not (run_dir / "training_curves.png").exists()


def test_a_folder_without_metrics_is_a_clean_error(tmp_path):
    with pytest.raises(RecdistillError, match="metrics.json not found"):
        write_run_report(tmp_path)


def test_markdown_tables_escape_pipes():
    assert markdown_table(["a", "b"], [["x|y", 1]]).splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | 1 |"]


def test_the_report_reads_a_metrics_file_of_the_real_layout(tmp_path):
    run_dir = write_run(tmp_path / "run")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["student_kd"]["training"]["best_valid"] = 0.75  # a plain number is shown as is
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    write_run_report(run_dir)
    assert "| student_kd | 2 | 0.75 | 3 | 1.5 | no |" in (run_dir / "report.md").read_text()


def test_the_curves_show_the_monitored_metric_else_a_headline_one():
    metrics = {"run": {"config": {"trainer": {"student": {"monitor": "ndcg@10"}}}},
               "teacher": {"valid": {"hr@10": 0.2, "ndcg@10": 0.1, "coverage@10": 0.5}}}
    columns = ["role", "epoch", "train_loss", "valid_hr@10", "valid_ndcg@10"]
    assert curve_column(metrics, columns) == "valid_ndcg@10"
    metrics["run"] = {}  # an old metrics.json without the config: the first headline metric with a column
    assert curve_column(metrics, columns) == "valid_ndcg@10"
    assert curve_column(metrics, ["role", "epoch", "train_loss", "valid_hr@10"]) == "valid_hr@10"
    assert curve_column(metrics, ["role", "epoch", "train_loss"]) is None


def test_a_history_without_validation_columns_draws_the_loss_alone(tmp_path):
    run_dir = write_run(tmp_path / "run")
    history = (run_dir / "history.csv")
    history.write_text("role,epoch,train_loss\nteacher,1,1.0\nteacher,2,0.5\n")
    write_run_report(run_dir)
    assert matplotlib.image.imread(run_dir / "training_curves.png").shape[1] < 800  # one panel
