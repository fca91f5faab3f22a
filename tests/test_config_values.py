"""Values out of their domain fail right after composition with one message naming the key, the value
and the allowed range (`check_run_config`); devices are known and present or a clear error."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from typing import Dict, List

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from recdistill.cli import config_dir
from recdistill.config_schema import RunConfig, check_run_config, register_schemas
from recdistill.data.readers.registry import dataset_readers
from recdistill.data.split_config import SPLIT_SCHEMAS
from recdistill.distill.registry import available_strategies
from recdistill.errors import ConfigError
from recdistill.evaluation.config import EVALUATOR_SCHEMAS
from recdistill.models.registry import model_classes
from recdistill.training.config import LoopConfig, TrainerConfig
from recdistill.utils.config_checks import (
    DOMAIN_KEY,
    Domain,
    Rule,
    at_most,
    bounded,
    check_values,
    declared_domains,
    find_violations,
    value_rules,
)
from recdistill.utils.runinfo import resolve_device

CONFIGS = config_dir()
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
GROUPS = ("dataset", "split", "teacher", "student", "distill", "evaluator", "trainer", "transfer")


def compose_many(*override_lists: list[str]) -> list:
    """Compose the root config once per override list (one Hydra initialisation for all)."""
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return [compose(config_name="config", overrides=list(overrides)) for overrides in override_lists]


def first_line(overrides: list[str]) -> str:
    """The first line of the ConfigError that check_run_config raises for the composed overrides."""
    with pytest.raises(ConfigError) as raised:
        check_run_config(compose_many(overrides)[0])
    return str(raised.value).splitlines()[0]


@pytest.fixture
def no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without CUDA or MPS, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


RANK = ["+experiment=synthetic_rank_kd"]
RATIOS = "a list of 3 numbers, each in [0, 1], summing to 1 (train, valid, test; e.g. [0.8, 0.1, 0.1])"
DEVICE_FORMS = "auto (CUDA when available, else CPU), cpu, cuda, cuda:N (N = GPU index), mps"
# (overrides, the first line of the message: key=value must be range)
BAD_VALUES = [
    (["trainer.student.lr=-1"], "trainer.student.lr=-1.0 must be a finite number > 0"),
    (["trainer.teacher.lr=nan"], "trainer.teacher.lr=nan must be a finite number > 0"),
    (["trainer.teacher.weight_decay=inf"], "trainer.teacher.weight_decay=inf must be a finite number >= 0"),
    (["trainer.student.epochs=0"], "trainer.student.epochs=0 must be >= 1"),
    (["trainer.student.batch_size=0"], "trainer.student.batch_size=0 must be >= 1"),
    (["trainer.teacher.grad_clip=-1"], "trainer.teacher.grad_clip=-1.0 must be a finite number >= 0 (0 = off)"),
    (["trainer.eval_batch_size=0"], "trainer.eval_batch_size=0 must be >= 1"),
    (["evaluator.history_length=0"], "evaluator.history_length=0 must be >= 1"),
    (["evaluator.latency_warmup=-1"], "evaluator.latency_warmup=-1 must be >= 0"),
    ([*RANK, "evaluator.ks=[0]"], "evaluator.ks=[0] must be one or more cut-offs K >= 1, e.g. [5, 10, 20]"),
    ([*RANK, "evaluator.ks=[]"], "evaluator.ks=[] must be one or more cut-offs K >= 1, e.g. [5, 10, 20]"),
    ([*RANK, "evaluator.n_negatives=0"], "evaluator.n_negatives=0 must be >= 1"),
    (["split.ratios=[0.5,0.1,0.1]"], "split.ratios=[0.5, 0.1, 0.1] must be " + RATIOS),
    (["split.ratios=[1.2,-0.1,-0.1]"], "split.ratios=[1.2, -0.1, -0.1] must be " + RATIOS),
    (["split.ratios=[0.0,0.5,0.5]"], "split.ratios=[0.0, 0.5, 0.5] must have a train share (the first) > 0"),
    (["split=cold_user", "split.test_users=1.5"], "split.test_users=1.5 must be in (0, 1)"),
    (["split=cold_user", "split.support_size=12"], "split.support_size=12 must be <= split.max_support (10)"),
    (["split=cold_user", "split.valid_users=0.5", "split.test_users=0.5"],
     "split.test_users=0.5 must be < 1 - split.valid_users (0.5): together they leave no warm users"),
    (["split=domain_time", "split.time_quantile=1"], "split.time_quantile=1.0 must be in (0, 1)"),
    (["split=domain_time", "split.target_fraction=0"], "split.target_fraction=0.0 must be in (0, 1]"),
    (["distill.base_weight=-1"], "distill.base_weight=-1.0 must be a finite number >= 0"),
    (["distill.teacher_topk=0"], "distill.teacher_topk=0 must be >= 1"),
    (["distill.terms.soft.temperature=0"], "distill.terms.soft.temperature=0.0 must be a finite number > 0"),
    (["distill.terms.soft.weight=inf"], "distill.terms.soft.weight=inf must be a finite number >= 0"),
    ([*RANK, "distill=htd", "distill.terms.htd.alpha=2"], "distill.terms.htd.alpha=2.0 must be in [0, 1]"),
    ([*RANK, "distill=de", "distill.terms.de.final_temperature=2"],
     "distill.terms.de.final_temperature=2.0 must be <= distill.terms.de.initial_temperature (1.0)"),
    (["teacher.dim=0"], "teacher.dim=0 must be >= 1"),
    (["teacher.n_heads=5"], "teacher.n_heads=5 must divide teacher.dim (128)"),
    (["student.dropout=1.5"], "student.dropout=1.5 must be in [0, 1)"),
    ([*RANK, "teacher.loss=softmax"], "teacher.loss='softmax' must be one of ce, sampled, bce"),
    (["dataset.min_user_interactions=-1"], "dataset.min_user_interactions=-1 must be >= 0"),
    (["dataset.source=web"], "dataset.source='web' must be one of auto, grouplens, recbole, local"),
    (["dataset=synthetic", "dataset.synthetic.n_items=0"], "dataset.synthetic.n_items=0 must be >= 1"),
    (["transfer=zero_shot", "transfer.mapper_lr=0"], "transfer.mapper_lr=0.0 must be a finite number > 0"),
    (["seed=-1"], "seed=-1 must be >= 0"),
    (["trainer.teacher.optimizer=sgd"], "trainer.teacher.optimizer='sgd' must be one of adamw, adam"),
    (["trainer.student.loss_reduction=max"], "trainer.student.loss_reduction='max' must be one of mean, sum"),
    (["trainer.student.select=first"], "trainer.student.select='first' must be one of best, last"),
    (["trainer.student.validate_every=0"], "trainer.student.validate_every=0 must be >= 1"),
    (["+experiment=citeulike_td", "student.init_std=0"], "student.init_std=0.0 must be a finite number > 0"),
    (["task=ctr"], "task='ctr' must be one of ranking, rating"),
    (["device=gpu"], "device='gpu' must be one of " + DEVICE_FORMS),
    (["device=cuda"], "device='cuda' but CUDA is not available on this machine"),
    (["device=cuda:7"], "device='cuda:7' but CUDA is not available on this machine"),
    (["device=mps"], "device='mps' but MPS (Apple GPU) is not available on this machine; use device=auto"),
]


@pytest.mark.usefixtures("no_accelerator")
@pytest.mark.parametrize("overrides, message", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_a_value_out_of_range_is_one_message_naming_key_value_and_range(overrides: list[str], message: str) -> None:
    assert first_line(overrides).startswith(message)


def test_every_violation_is_a_line_of_one_message() -> None:
    cfg = compose_many(["trainer.student.lr=-1", "teacher.dim=0", "split.ratios=[0.5,0.1,0.1]"])[0]
    with pytest.raises(ConfigError) as raised:
        check_run_config(cfg)
    lines = str(raised.value).splitlines()
    assert [line.split("=")[0] for line in lines] == ["split.ratios", "teacher.dim", "trainer.student.lr"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_passes_as_composed(experiment: str) -> None:
    run = check_run_config(compose_many([f"+experiment={experiment}"])[0])
    assert isinstance(run, RunConfig) and run.experiment_name == experiment


def test_every_group_option_is_in_its_declared_domains() -> None:
    """No false positive: each config file of each group, composed on the defaults, violates nothing."""
    overrides = [[f"{group}={path.stem}"] for group in GROUPS for path in sorted((CONFIGS / group).glob("*.yaml"))]
    assert len(overrides) > 40
    for option, cfg in zip(overrides, compose_many(*overrides)):
        assert find_violations(OmegaConf.to_object(cfg)) == [], option


# ---------------------------------------------------------------- devices


def test_valid_devices_resolve_where_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=re.escape("device='cuda:2' but this machine has 2 CUDA device(s), "
                                                    "cuda:0..cuda:1; use device=cuda, device=auto or device=cpu")):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=re.escape("device='cuda:1' but this machine has 1 CUDA device(s), cuda:0;")):
        resolve_device("cuda:1")


@pytest.mark.usefixtures("no_accelerator")
def test_without_an_accelerator_auto_is_the_cpu_and_the_rest_say_what_to_use() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:0", "mps"):
        with pytest.raises(ConfigError, match=r"not available on this machine.*use device=auto .* or device=cpu"):
            resolve_device(name)
    for name in ("gpu", "CUDA", "cuda:", "cuda:x", "cuda:0:1", "tpu", ""):
        with pytest.raises(ConfigError, match=re.escape(f"device={name!r} must be one of auto")):
            resolve_device(name)


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recdistill.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, check=False, env={**os.environ, "RECDISTILL_CACHE_DIR": str(cwd / "cache")})


def test_cli_unknown_device_is_one_message_and_exit_2(tmp_path) -> None:
    result = run_cli("train", "+experiment=synthetic_kd", "device=gpu", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "device='gpu' must be one of auto" in output and "Traceback" not in output


def test_cli_bad_learning_rate_stops_before_training(tmp_path) -> None:
    result = run_cli("train", "+experiment=synthetic_kd", "trainer.student.lr=-1", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "trainer.student.lr=-1.0 must be a finite number > 0" in output and "Traceback" not in output
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob("*.pt"))  # nothing ran


# ---------------------------------------------------------------- declaring and walking domains


def test_bounded_is_a_plain_field_that_structured_configs_read() -> None:
    lr = next(f for f in dataclasses.fields(LoopConfig) if f.name == "lr")
    assert lr.default == 1e-3 and lr.metadata[DOMAIN_KEY] == Domain(gt=0)
    node = OmegaConf.structured(LoopConfig)
    assert OmegaConf.to_object(node) == LoopConfig()
    node.lr = 0.5
    with pytest.raises(Exception, match="could not be converted"):
        node.epochs = "many"


@pytest.mark.parametrize("domain, text", [
    (Domain(gt=0), "a finite number > 0"),
    (Domain(ge=1, integer=True), ">= 1"),
    (Domain(ge=0, lt=1), "in [0, 1)"),
    (Domain(gt=0, le=1), "in (0, 1]"),
    (Domain(le=5, note="5 = all"), "a finite number <= 5 (5 = all)"),
    (Domain(choices=("a", "b")), "one of a, b"),
    (Domain(ge=1, min_len=1, integer=True), "a list of one or more integers, each >= 1"),
    (Domain(ge=0, le=1, length=3, total=1.0), "a list of 3 numbers, each in [0, 1], summing to 1"),
    (Domain(gt=0, must="a positive rate"), "a positive rate"),
])
def test_domains_describe_their_range(domain: Domain, text: str) -> None:
    assert domain.describe() == text


@pytest.mark.parametrize("domain, good, bad", [
    (Domain(gt=0), [1e-9, 3, 1e300], [0, -1.0, math.nan, math.inf, "1", True]),
    (Domain(ge=0, lt=1), [0, 0.999], [1, -1e-9, math.nan]),
    (Domain(choices=("ce", "bce")), ["ce", "bce"], ["CE", "", 1]),
    (Domain(ge=1, min_len=1), [[1], [1, 5, 10]], [[], [0], [5, 0], 3]),
    (Domain(ge=0, le=1, length=3, total=1.0), [[0.8, 0.1, 0.1], [1, 0, 0], [0.7, 0.2, 0.1 + 5e-7]],
     [[0.8, 0.1], [0.5, 0.1, 0.1], [1.2, -0.1, -0.1], [0.8, 0.1, 0.1 + 1e-5], [math.nan, 0.5, 0.5]]),
])
def test_domains_hold_for_their_values_only(domain: Domain, good: list, bad: list) -> None:
    assert [value for value in good if not domain.holds(value)] == []
    assert [value for value in bad if domain.holds(value)] == []
    assert domain.holds(None)  # an unset optional


@value_rules(at_most("low", "high"), Rule("high", lambda c: c.high != 7, "not be 7"))
@dataclass
class Pair:
    low: int = bounded(1, ge=0)
    high: int = bounded(2, ge=0)


@dataclass
class Outer:
    loop: LoopConfig = field(default_factory=LoopConfig)
    pairs: List[Pair] = field(default_factory=list)
    by_name: Dict[str, Pair] = field(default_factory=dict)
    rate: float = bounded(0.5, gt=0, lt=1)


def test_the_walker_finds_domains_and_rules_in_nested_groups_with_full_keys() -> None:
    cfg = Outer(loop=LoopConfig(lr=-1.0), pairs=[Pair(), Pair(low=3)], by_name={"x": Pair(high=7)}, rate=1.0)
    assert find_violations(cfg, "top.") == [
        "top.loop.lr=-1.0 must be a finite number > 0",
        "top.pairs[1].low=3 must be <= top.pairs[1].high (2)",
        "top.by_name.x.high=7 must not be 7",
        "top.rate=1.0 must be in (0, 1)",
    ]
    assert find_violations(Outer()) == []
    with pytest.raises(ConfigError, match=re.escape("top.loop.lr=-1.0 must be a finite number > 0\ntop.pairs[1]")):
        check_values(cfg, "top.")


def test_rules_wait_until_their_fields_are_in_range() -> None:
    assert find_violations(Pair(low=-1, high=-2)) == ["low=-1 must be >= 0", "high=-2 must be >= 0"]


def test_the_root_walk_reaches_every_group() -> None:
    run = check_run_config(compose_many(["+experiment=synthetic_rank_kd"])[0])
    run.trainer.teacher.patience = 0
    run.dataset.synthetic.noise = -1.0
    run.evaluator.item_chunk = 0
    assert [line.split("=")[0] for line in find_violations(run)] == [
        "dataset.synthetic.noise", "evaluator.item_chunk", "trainer.teacher.patience"]


# Numeric fields that any value of their type suits.
FREE = {"RandomScoresConfig.seed"}


def registered_schemas() -> list[type]:
    """Every dataclass a composed config or a distillation term is typed by, nested ones included."""
    roots = [RunConfig, TrainerConfig, *SPLIT_SCHEMAS.values(), *EVALUATOR_SCHEMAS.values()]
    roots += [cls.Config for cls in model_classes().values()]
    roots += [reader.Config for reader in dataset_readers().values()]
    roots += [cls.Params for cls in available_strategies().values()]
    found: list[type] = []
    while roots:
        schema = roots.pop()
        if schema in found:
            continue
        found.append(schema)
        for hint in typing.get_type_hints(schema).values():
            if dataclasses.is_dataclass(hint):
                roots.append(hint)
    return found


def test_every_numeric_field_of_every_registered_schema_declares_a_domain() -> None:
    missing = []
    schemas = registered_schemas()
    assert len(schemas) > 30
    for schema in schemas:
        hints = typing.get_type_hints(schema)
        declared = declared_domains(schema)
        for f in dataclasses.fields(schema):
            numeric = hints[f.name] in (int, float, List[int], List[float])
            if numeric and f.name not in declared and f"{schema.__name__}.{f.name}" not in FREE:
                missing.append(f"{schema.__qualname__}.{f.name}")
    assert missing == []


KD = ["+experiment=synthetic_kd"]
# (overrides, the start of the message): what the schema cannot catch at composition
MISMATCHES = [
    (KD + ["+split.support_size=3"], "split.support_size is not a key of split; valid: name, ratios"),
    (KD + ["+trainer.student.lrr=1"], "trainer.student.lrr is not a key of trainer.student; valid: epochs,"),
    (RANK + ["+evaluator.kss=[5]"], "evaluator.kss is not a key of evaluator; valid: name, history_length,"),
    (KD + ["+transfer.foo=1"], "transfer.foo is not a key of transfer; valid: mode,"),
    (KD + ["student=sasrec_small"], "student.name='sasrec' is not a model of the rating task; valid: biased_mf,"),
    (["task=ranking", "evaluator=ranking", "trainer=ranking_debug", "distill=rrd", "teacher=biased_mf",
      "student=bpr_mf_small"], "teacher.name='biased_mf' is not a model of the ranking task; valid: bpr_mf,"),
    (KD + ["trainer.student.monitor=ndcg@10"], "unknown metric 'ndcg@10' (trainer.student.monitor)"),
]


@pytest.mark.parametrize("overrides, message", MISMATCHES, ids=[" ".join(o[-1:]) for o, _ in MISMATCHES])
def test_keys_models_and_monitors_that_do_not_fit_the_run_are_refused(overrides: list[str], message: str) -> None:
    assert first_line(overrides).startswith(message)
