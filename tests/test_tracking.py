"""Experiment tracking (`logger=none|tensorboard|mlflow`): the group is typed like every other, and a
seconds-long ranking study logs its epochs, final metrics and config into local stores that are read
back here (TensorBoard's EventAccumulator, MLflow's client on a file store). A failing tracker costs
the run nothing but a warning."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import OmegaConf

from recdistill import config_schema
from recdistill.cli import config_dir
from recdistill.config_schema import LoggerConfig, check_run_config, register_schemas
from recdistill.errors import ConfigError, DependencyError
from recdistill.run import tracking
from recdistill.run.spine import run
from recdistill.distill.objective import build_objective
from recdistill.evaluation.rating_eval import rating_validator
from recdistill.models.rating_transformer import RatingTransformer, RatingTransformerConfig
from recdistill.training import loop
from recdistill.training.config import LoopConfig
from recdistill.utils.config_checks import find_violations
from tests.helpers import small_data

LOGGERS = sorted(p.stem for p in (config_dir() / "logger").glob("*.yaml"))
# A seconds-long ranking study: 2 epochs per role (ranking_debug), no student-alone baseline.
TINY = ["+experiment=synthetic_rank_kd", "dataset.synthetic.n_users=80",
        "train_student_alone=false", "evaluator.latency_repeats=1"]


@pytest.fixture(autouse=True)
def offline_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow sends no usage data from tests (it also stays quiet under pytest by itself)."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


def compose_run(*overrides: str):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def study(tmp_path: Path, *overrides: str) -> tuple[dict, Path]:
    """Run the tiny study with `overrides`; (metrics, run folder)."""
    run_dir = tmp_path / "run"
    return run(compose_run(*TINY, f"cache_dir={tmp_path / 'cache'}", *overrides), run_dir), run_dir


# ---------------------------------------------------------------- the config group


def test_the_logger_group_has_none_tensorboard_and_mlflow_and_none_is_the_default() -> None:
    assert LOGGERS == ["mlflow", "none", "tensorboard"]
    assert compose_run().logger.name == "none"
    for name in LOGGERS:
        cfg = compose_run(f"logger={name}")
        typed = check_run_config(cfg)
        assert typed.logger == LoggerConfig(name=name) and find_violations(typed) == []
        assert OmegaConf.get_type(cfg.logger) is LoggerConfig


def test_an_unknown_logger_fails_at_composition_naming_the_choices() -> None:
    with pytest.raises(HydraException) as raised:
        compose_run("logger=wandb")
    message = str(raised.value)
    assert "logger/wandb" in message and all(name in message for name in LOGGERS)


def test_an_unknown_logger_key_fails_at_composition() -> None:
    with pytest.raises(HydraException, match="uri"):
        compose_run("logger=mlflow", "logger.uri=http://host:5000")
    with pytest.raises(ConfigError, match="logger.uri is not a key of logger; valid: name, tracking_uri, experiment"):
        check_run_config(compose_run("+logger.uri=http://host:5000"))


def test_a_wrong_logger_value_names_the_valid_choices() -> None:
    with pytest.raises(ConfigError) as raised:
        check_run_config(compose_run("logger.name=wandb"))
    assert str(raised.value).splitlines()[0] == "logger.name='wandb' must be one of none, tensorboard, mlflow"


def test_a_tracker_whose_package_is_missing_stops_the_run_before_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_schema, "find_spec", lambda name: None)
    check_run_config(compose_run("logger=none"))  # needs nothing
    with pytest.raises(DependencyError, match=r"logger=mlflow needs the mlflow package: pip install 'recdistill\[track\]'"):
        check_run_config(compose_run("logger=mlflow"))


# ---------------------------------------------------------------- the loop's epoch observer


def test_the_loop_tells_its_observer_every_epoch_row(tmp_path: Path) -> None:
    train, windows, shape = small_data()
    torch.manual_seed(0)
    validate = rating_validator(windows["valid"], 4096, torch.device("cpu"))
    objective = build_objective(OmegaConf.create({"name": "none", "base_weight": 1.0, "terms": {}}))

    def fit(folder: str, **observer):
        model = RatingTransformer(RatingTransformerConfig(dim=8), shape)
        return loop.train(model, objective, train, validate, LoopConfig(epochs=2, batch_size=64, patience=5),
                          torch.device("cpu"), 0, tmp_path / folder, "teacher", **observer)

    given, installed, outside = [], [], []
    with loop.observing_epochs(lambda label, row: installed.append((label, row))):
        result = fit("given", on_epoch=lambda label, row: given.append((label, row)))  # the parameter wins
        fit("installed")
    fit("outside", on_epoch=None)
    assert [row for _, row in given] == result.history.to_dict(orient="records")
    assert [label for label, _ in given] == ["teacher", "teacher"] and len(installed) == 2
    assert {"epoch", "train_loss", "valid_mae", "seconds"} <= set(given[0][1])
    assert outside == []  # the block's observer is gone after it


# ---------------------------------------------------------------- names and parameters


def test_the_config_becomes_flat_dotted_parameters_without_resume() -> None:
    cfg = compose_run(*TINY)
    parameters = tracking.config_parameters(cfg)
    assert parameters["trainer.teacher.lr"] == cfg.trainer.teacher.lr
    assert parameters["dataset.synthetic.n_users"] == 80 and parameters["logger.name"] == "none"
    assert parameters["evaluator.ks"] == json.dumps(list(cfg.evaluator.ks))  # lists as JSON text
    assert parameters["logger.tracking_uri"] == "null" and "resume" not in parameters
    assert all(isinstance(value, (str, int, float, bool)) for value in parameters.values())


def test_mlflow_names_keep_their_meaning() -> None:
    assert tracking.mlflow_name("student_kd/test/ndcg@10") == "student_kd/test/ndcg_at_10"
    assert tracking.mlflow_name("teacher (fine-tune)/train_loss") == "teacher fine-tune/train_loss"
    assert tracking.mlflow_name("distill.terms.rrd.weight") == "distill.terms.rrd.weight"


def final_values(metrics: dict) -> dict[str, float]:
    """What both trackers must hold as final metrics: every role's valid/test metric of metrics.json."""
    return {f"{role}/{split}/{name}": value for role in ("teacher", "student_kd") for split in ("valid", "test")
            for name, value in metrics[role][split].items() if isinstance(value, float)}


def history(run_dir: Path, role: str) -> pd.DataFrame:
    """The role's rows of the run's history.csv, one per epoch."""
    table = pd.read_csv(run_dir / "history.csv")
    return table[table["role"] == role].reset_index(drop=True)


# ---------------------------------------------------------------- the stores, read back


def test_tensorboard_holds_every_epoch_the_final_metrics_and_the_config(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    metrics, run_dir = study(tmp_path, "logger=tensorboard")
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for role in ("teacher", "student_kd"):  # the loop's history row per epoch, under the role's name
        epochs = metrics[role]["training"]["epochs"]
        assert [e.step for e in events.Scalars(f"{role}/train_loss")] == list(range(1, epochs + 1))
        assert [e.step for e in events.Scalars(f"{role}/valid_ndcg@10")] == list(range(1, epochs + 1))
    assert {"student_kd/train_ce", "student_kd/train_rrd"} <= scalars  # each loss term of the objective
    expected = history(run_dir, "teacher")["valid_ndcg@10"].tolist()
    assert [e.value for e in events.Scalars("teacher/valid_ndcg@10")] == pytest.approx(expected)
    for tag, value in final_values(metrics).items():
        assert events.Scalars(tag)[-1].value == pytest.approx(value, rel=1e-6), tag
    assert events.Scalars("teacher/efficiency/params")[-1].value == metrics["teacher"]["efficiency"]["params"]
    # the config: as hparams (TensorBoard's HPARAMS dashboard) and as text
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.hparams["trainer.teacher.lr"].number_value == pytest.approx(1e-2)
    assert start.hparams["student.name"].string_value == "sasrec"
    [text] = events.Tensors("config/text_summary")
    assert "experiment_name: synthetic_rank_kd" in text.tensor_proto.string_val[0].decode()


def test_mlflow_holds_a_run_with_parameters_epochs_final_metrics_and_the_run_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # no tracking_uri: a local file store in ./outputs/mlruns
    metrics, run_dir = study(tmp_path, "logger=mlflow")
    store = tmp_path / "outputs" / "mlruns"
    assert store.is_dir()
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("synthetic_rank_kd")
    [found] = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED" and found.data.tags["run_dir"] == str(run_dir.absolute())
    assert found.info.run_name == run_dir.name
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"] == found.info.run_id
    params = found.data.params
    assert params["trainer.teacher.lr"] == "0.01" and params["distill.name"] == "rrd"
    assert params["logger.name"] == "mlflow" and len(params) > 50
    for tag, value in final_values(metrics).items():
        assert found.data.metrics[tracking.mlflow_name(tag)] == pytest.approx(value, rel=1e-9), tag
    for role in ("teacher", "student_kd"):
        epochs = metrics[role]["training"]["epochs"]
        losses = client.get_metric_history(found.info.run_id, f"{role}/train_loss")
        assert [m.step for m in losses] == list(range(1, epochs + 1))
        valid = client.get_metric_history(found.info.run_id, f"{role}/valid_ndcg_at_10")
        expected = history(run_dir, role)["valid_ndcg@10"].tolist()
        assert [m.value for m in valid] == pytest.approx(expected)


def test_mlflow_takes_an_explicit_tracking_uri_and_experiment(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    store = tmp_path / "elsewhere"
    study(tmp_path, "logger=mlflow", f"logger.tracking_uri={store.as_uri()}", "logger.experiment=kd_study",
          "trainer.teacher.epochs=1", "trainer.student.epochs=1")
    experiment = MlflowClient(tracking_uri=store.as_uri()).get_experiment_by_name("kd_study")
    assert experiment is not None and not (tmp_path / "outputs").exists()


def test_a_resumed_run_folder_continues_its_mlflow_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    store, run_dir = (tmp_path / "mlruns").as_uri(), tmp_path / "run"
    run_dir.mkdir()
    for overrides, epoch, failed in (([], 1, True), ([f"resume={run_dir}"], 2, False)):  # interrupted, resumed
        cfg = compose_run(*TINY, "logger=mlflow", f"logger.tracking_uri={store}", *overrides)
        with pytest.raises(KeyboardInterrupt) if failed else contextlib.nullcontext():
            with tracking.tracking(check_run_config(cfg).logger, cfg, run_dir) as tracker:
                tracker.epoch("teacher", {"epoch": epoch, "train_loss": 1.0 / epoch})
                if failed:
                    raise KeyboardInterrupt
    client = MlflowClient(tracking_uri=store)
    [found] = client.search_runs([client.get_experiment_by_name("synthetic_rank_kd").experiment_id])
    assert found.info.status == "FINISHED" and "resume" not in found.data.params
    assert [m.step for m in client.get_metric_history(found.info.run_id, "teacher/train_loss")] == [1, 2]


# ---------------------------------------------------------------- failures


def test_a_tracker_that_cannot_start_costs_the_run_nothing_but_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="recdistill.run.tracking"):
        metrics, run_dir = study(tmp_path, "logger=mlflow", "logger.tracking_uri=nowhere-scheme://store",
                                 "trainer.teacher.epochs=1", "trainer.student.epochs=1")
    assert json.loads((run_dir / "metrics.json").read_text())["student_kd"]["test"] == metrics["student_kd"]["test"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "logger=mlflow could not start" in warnings[0]
    assert str(run_dir) in warnings[0]


def test_a_tracker_failing_mid_run_is_dropped_after_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(self, label, row):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tracking.TensorBoardBackend, "epoch", full_disk)
    with caplog.at_level(logging.WARNING, logger="recdistill.run.tracking"):
        _, run_dir = study(tmp_path, "logger=tensorboard", "trainer.teacher.epochs=1", "trainer.student.epochs=1")
    assert (run_dir / "metrics.json").exists() and (run_dir / "report.md").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "logger=tensorboard could not log an epoch (OSError" in warnings[0]


def test_the_logger_is_no_part_of_a_runs_identity(tmp_path: Path) -> None:
    # Tracking a finished run (or resuming one with a tracker) must neither refuse its folder nor train it again.
    from recdistill.cli import completed_metrics
    from recdistill.run.record import claim_run_dir

    metrics, run_dir = study(tmp_path)
    same = (*TINY, f"cache_dir={tmp_path / 'cache'}")
    tracked = compose_run(*same, "logger=tensorboard")
    claim_run_dir(tracked, run_dir)  # the same key: no ConfigError
    assert completed_metrics(run_dir, tracked) == metrics
    assert completed_metrics(run_dir, compose_run(*same, "seed=1")) is None  # a real change still counts
