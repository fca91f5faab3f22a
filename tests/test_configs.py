"""Every config composes, builds, and user mistakes fail at composition with a clear message."""

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.distill.objective import build_objective
from recdistill.evaluation.efficiency import count_parameters
from recdistill.models.base import DataShape
from recdistill.models.ranking_base import RankingModel, RankingShape
from recdistill.models.registry import build_model, get_model_class

CONFIGS = config_dir()
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
ML100K = DataShape(n_users=943, n_items=1682, history_length=32)
ML100K_RANKING = RankingShape(n_users=943, n_items=1682, max_length=50)


def shape_for(model_cfg):
    """The data shape a model of this config is built with: rating or ranking."""
    ranking = issubclass(get_model_class(model_cfg.name), RankingModel)
    return ML100K_RANKING if ranking else ML100K


def compose_run(overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(config_name="config", overrides=overrides)


def options(group):
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_builds(experiment):
    cfg = compose_run([f"+experiment={experiment}"])
    assert cfg.experiment_name == experiment
    for role in ("teacher", "student"):
        build_model(cfg[role], shape_for(cfg[role]))
    build_objective(cfg.distill, task=cfg.task)


@pytest.mark.parametrize("group", ["teacher", "student", "distill", "dataset", "split", "trainer", "evaluator"])
def test_every_group_option_composes(group):
    for option in options(group):
        cfg = compose_run([f"{group}={option}"])
        if group in ("teacher", "student"):
            build_model(cfg[group], shape_for(cfg[group]))
        if group == "distill":
            build_objective(cfg.distill)


def test_teacher_is_at_least_ten_times_the_student():
    cfg = compose_run(["+experiment=movielens_kd"])
    teacher = count_parameters(build_model(cfg.teacher, ML100K))
    student = count_parameters(build_model(cfg.student, ML100K))
    assert teacher >= 10 * student, (teacher, student)


def test_feature_combines_with_another_strategy():
    cfg = compose_run(["distill=feature", "+distill.terms.soft={weight: 2.0}"])
    objective = build_objective(cfg.distill)
    assert objective.needs == {"hidden", "logits"}
    assert "2.0 * soft" in objective.formula() and "feature" in objective.formula()


@pytest.mark.parametrize("override, message", [
    (["teacher.dimm=3"], "Could not override 'teacher.dimm'"),
    (["trainer.student.epochs=many"], "Value 'many' of type 'str' could not be converted to Integer"),
    (["seed=x"], "Value 'x' of type 'str' could not be converted to Integer"),
    (["datasett.name=x"], "datasett"),
])
def test_user_mistakes_fail_at_composition(override, message):
    with pytest.raises(Exception) as raised:
        compose_run(override)
    assert message in f"{raised.value} {raised.value.__cause__}"


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "recdistill.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_cli_unknown_option_lists_choices_without_traceback(tmp_path):
    result = run_cli("train", "teacher=huge", cwd=tmp_path)
    assert result.returncode != 0
    assert "Available options in 'teacher'" in result.stderr
    assert "rating_transformer_large" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_misspelt_key_names_it_without_traceback(tmp_path):
    result = run_cli("train", "+experiment=synthetic_kd", "student.dimm=4", cwd=tmp_path)
    assert result.returncode != 0
    assert "dimm" in result.stderr and "Traceback" not in result.stderr


def test_cli_prints_the_job_config(tmp_path):
    result = run_cli("train", "+experiment=movielens_kd", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cfg = OmegaConf.create(result.stdout)
    assert cfg.experiment_name == "movielens_kd" and cfg.teacher.text_dim == 384


def test_model_keys_cover_what_determines_each_cached_model_and_nothing_else():
    from recdistill.run.cache import model_key

    key = lambda role, *o: model_key(compose_run(["+experiment=movielens_kd", *o]), "split", role)  # noqa: E731
    teacher, student = key("teacher"), key("student")
    assert teacher != student
    assert key("teacher", "seed=1") == teacher  # a sweep over student seeds trains one teacher
    assert key("teacher", "distill=soft") == teacher and key("teacher", "student.dim=16") == teacher
    assert key("teacher", "trainer.student.lr=0.1") == teacher
    assert key("teacher", "teacher_seed=1") != teacher
    assert key("teacher", "cache_dir=/elsewhere") == teacher and key("teacher", "dataset.source=recbole") == teacher
    assert key("teacher", "teacher.dim=64") != teacher and key("teacher", "trainer.teacher.lr=0.1") != teacher
    assert key("teacher", "evaluator.history_length=16") != teacher
    # the student-alone baseline is shared by a sweep over strategies, not over seeds or student sizes
    assert key("student", "distill=soft") == student and key("student", "teacher.dim=64") == student
    assert key("student", "seed=1") != student and key("student", "student.dim=16") != student
    assert key("student", "trainer.student.lr=0.1") != student
    assert model_key(compose_run(["+experiment=movielens_kd"]), "other", "teacher") != teacher
    assert key("teacher", "evaluator.latency_repeats=3") == teacher  # reporting settings select no epoch
