"""Data-parallel training under torchrun: every rank slices the same global batch, the share-weighted
slice gradients are the global batch's, and two gloo processes end a run with the metrics of one,
rank 0 alone writing the run folder and the caches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from recdistill.data.ranking_data import RankingData
from recdistill.distill.knowledge import TeacherKnowledge
from recdistill.distill.objective import build_objective
from recdistill.models.bpr_mf import BPRMF, BPRMFConfig
from recdistill.models.ranking_base import RankingShape
from recdistill.models.rating_transformer import RatingTransformer, RatingTransformerConfig
from recdistill.models.sasrec import SASRec, SASRecConfig
from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.training import distributed
from recdistill.utils.runinfo import resolve_device
from tests.helpers import small_data

ROOT = Path(__file__).resolve().parents[1]
# Small synthetic runs, dropout-free, two epochs per role: seconds each. Ranking: a BPR-MF pair with RRD;
# rating: rating Transformers with soft labels and feature distillation (a learnable projection).
RUN = ["+experiment=movielens_rank_kd_mf", "dataset=synthetic", "trainer=ranking_debug", "teacher.dim=32",
       "dataset.synthetic.n_users=100", "dataset.synthetic.n_items=80", "distill.teacher_topk=20",
       "distill.terms.rrd.n_interesting=10", "distill.terms.rrd.n_uninteresting=10", "evaluator.latency_repeats=1",
       "device=cpu"]
RATING_RUN = ["+experiment=synthetic_kd", "distill=feature", "+distill.terms.soft={weight:1.0}", "teacher.dropout=0",
              "student.dropout=0", "dataset.synthetic.n_users=50", "dataset.synthetic.interactions_per_user=20",
              "evaluator.latency_repeats=1", "device=cpu"]
ROLES = ("teacher", "student", "student_kd")


# --- slicing and weighting, in one process --------------------------------------------------------------


def ranking_data(max_length: int = 6) -> RankingData:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(0, 12, 240), "item": rng.integers(0, 30, 240),
                          "timestamp": np.arange(240)}).drop_duplicates(["user", "item"])
    frame["row"] = np.arange(len(frame))
    last = frame.groupby("user").cumcount(ascending=False)
    frames = {"train": frame[last >= 2], "valid": frame[last == 1], "test": frame[last == 0]}
    return RankingData(frames, n_users=12, n_items=30, max_length=max_length)


def first_batch(batches, batch_size: int) -> dict[str, torch.Tensor]:
    return next(iter(batches.batches(batch_size, "cpu", torch.Generator().manual_seed(0), 1)))


def rating_case():
    train, _, shape = small_data(history_length=4)
    torch.manual_seed(0)
    model = RatingTransformer(RatingTransformerConfig(dim=8, dropout=0.0), shape)
    generator = torch.Generator().manual_seed(1)
    knowledge = TeacherKnowledge("teacher", {"logits": torch.randn(len(train), shape.n_classes, generator=generator),
                                             "hidden": torch.randn(len(train), 12, generator=generator)}, {})
    objective = build_objective(OmegaConf.create({"name": "mix", "base_weight": 1.0, "terms": {
        "soft": {"weight": 1.0, "temperature": 2.0}, "feature": {"weight": 0.5, "normalize": True}}}), task="rating")
    torch.manual_seed(0)
    objective.setup(knowledge, model.hidden_dim)  # the feature projection: a learnable part to synchronise
    return model, objective, first_batch(train, 24)


def ranking_case(model_name: str):
    """BPR-MF pairs with RRD (a sum over the batch's distinct users over its rows: exact when a user's rows
    stay on one rank); SASRec sequences with its own loss only (the ranking strategies divide by a
    batch's final rows, not its targets: on sequence batches they are not split exactly)."""
    data = ranking_data()
    torch.manual_seed(0)
    shape = RankingShape(n_users=data.n_users, n_items=data.n_items, max_length=data.max_length)
    model = (BPRMF(BPRMFConfig(dim=8), shape) if model_name == "bpr_mf"
             else SASRec(SASRecConfig(dim=8, n_layers=1, dropout=0.0), shape))
    model.fit(data.lists["train"])
    topk = torch.stack([torch.randperm(data.n_items, generator=torch.Generator().manual_seed(u))[:8]
                        for u in range(data.n_users)])
    knowledge = TeacherKnowledge("teacher", {"topk_items": topk}, {"n_users": data.n_users, "n_items": data.n_items,
                                                                   "topk": 8})
    terms = {"rrd": {"weight": 0.5, "n_interesting": 4, "n_uninteresting": 4, "temperature": 2.0}}
    objective = build_objective(OmegaConf.create({"name": "rrd", "base_weight": 1.0,
                                                  "terms": terms if model_name == "bpr_mf" else {}}), task="ranking")
    objective.setup(knowledge, model.hidden_dim)
    objective.on_epoch_start(1)
    batches = data.training_batches(model.input_kind, 64)
    return model, objective, first_batch(batches, 64 if model_name == "bpr_mf" else 36)


CASES = {"rating transformer, soft + feature": rating_case, "bpr_mf pairs, rrd": lambda: ranking_case("bpr_mf"),
         "sasrec sequences": lambda: ranking_case("sasrec")}


def gradients(model, objective, batch, scale: float) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    objective.zero_grad(set_to_none=True)
    output = model(batch)
    (objective(model.loss(batch, output), output, batch)["loss"] * scale).backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in [*model.parameters(), *objective.parameters()]]


def targets(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["n_targets"]) if "n_targets" in batch else len(batch["user"])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("parts", [2, 3])
def test_slices_partition_the_batch_and_keep_each_ranking_user_on_one_rank(case, parts):
    _, _, batch = CASES[case]()
    sliced = [distributed.slice_batch(batch, part, parts) for part in range(parts)]
    assert sum(count for _, count in sliced) == targets(batch)
    for part, count in sliced:
        assert targets(part) == count if count else True
    if "seq_target" in batch:  # rating: per-target rows in order, per-row slots in order
        assert torch.equal(torch.cat([part["index"] for part, _ in sliced]), batch["index"])
        assert torch.equal(torch.cat([part["seq_items"] for part, _ in sliced]), batch["seq_items"])
    else:
        users = [set(part["user"].tolist()) for part, _ in sliced]
        assert sum(len(u) for u in users) == len(set(batch["user"].tolist()))  # disjoint users
        assert sum(len(part["user"]) for part, _ in sliced) == len(batch["user"])


@pytest.mark.parametrize("case", list(CASES))
def test_share_weighted_slice_gradients_are_the_global_batch_gradient(case):
    """What DDP sums (each rank's loss times its share of the targets) is the single-process gradient,
    model and learnable strategy parts alike (dropout 0)."""
    model, objective, batch = CASES[case]()
    expected = gradients(model, objective, batch, 1.0)
    total = targets(batch)
    for parts in (2, 3):
        summed = [torch.zeros_like(g) for g in expected]
        for part in range(parts):
            sliced, count = distributed.slice_batch(batch, part, parts)
            if count:
                summed = [s + g for s, g in zip(summed, gradients(model, objective, sliced, count / total))]
        for got, want in zip(summed, expected):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_an_unknown_batch_layout_is_refused():
    batch = {"user": torch.arange(4), "pos": torch.arange(4), "odd": torch.zeros(3)}
    with pytest.raises(ValueError, match="'odd'"):
        distributed.slice_batch(batch, 0, 2)
    with pytest.raises(ValueError, match="n_targets=5"):
        distributed.slice_batch({"user": torch.arange(4), "n_targets": torch.tensor(5)}, 0, 2)


def test_without_torchrun_every_helper_is_the_identity(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.active() and distributed.is_main() and distributed.local_rank() is None
    assert distributed.share({"a": 1}) == {"a": 1} and distributed.sum_across({"x": 2.0}) == {"x": 2.0}
    distributed.barrier()
    with distributed.main_first(), distributed.writable(tmp_path) as folder:
        assert folder == tmp_path
    assert not torch.distributed.is_initialized()


def test_torchrun_ranks_take_the_gpu_of_their_local_rank_and_refuse_a_fixed_one():
    assert resolve_device("cpu", local_rank=1) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto", local_rank=1) == torch.device("cpu")
        return
    assert resolve_device("auto", local_rank=0) == torch.device("cuda:0")
    with pytest.raises(Exception, match="one GPU"):
        resolve_device("cuda:0", local_rank=0)


def test_torchrun_refuses_a_sweep_and_only_rank_zero_prints_help(monkeypatch, capsys):
    from recdistill.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit) as stopped:
        main(["train", "-m", "+experiment=synthetic_kd", "seed=0,1"])
    assert stopped.value.code == 2 and "a sweep (-m) cannot run under it" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")
    main(["train", "--help"])  # rank 0 prints Hydra's help; the others return at once
    assert capsys.readouterr() == ("", "") and not torch.distributed.is_initialized()


# --- two processes through torchrun ----------------------------------------------------------------------


def environment(tmp_path: Path, cache: Path) -> dict[str, str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {"RECDISTILL_CACHE_DIR": str(cache), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "COLUMNS": "200", "TMPDIR": str(tmp_path / "tmp")}


def torchrun(*args: str) -> list[str]:
    """`torchrun --nproc_per_node=2 --standalone -m recdistill train ARGS` (torchrun is torch.distributed.run)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "recdistill",
            "train", *args]


def single_process_reference(tmp_path: Path, *overrides: str) -> dict:
    """The run in this process, without torchrun: into tmp_path/one, cache tmp_path/cache_one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from recdistill.run.spine import run

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="config", overrides=[*overrides, f"cache_dir={tmp_path / 'cache_one'}"])
    return run(cfg, tmp_path / "one")


def close(expected: Path, actual: Path) -> None:
    """The runs in folders `expected` and `actual` have the same valid/test metrics and per-epoch loss
    terms and validation values for each role, within 1e-5."""
    want, got = (json.loads((folder / "metrics.json").read_text()) for folder in (expected, actual))
    for role in ROLES:
        for split in ("valid", "test"):
            for name, value in want[role][split].items():
                assert got[role][split][name] == pytest.approx(value, abs=1e-5), (role, split, name)
    want, got = (pd.read_csv(folder / "history.csv") for folder in (expected, actual))
    columns = [c for c in want.columns if c.startswith(("train_", "valid_"))]
    assert list(got["role"]) == list(want["role"]) and columns
    np.testing.assert_allclose(got[columns].to_numpy(), want[columns].to_numpy(), rtol=0, atol=1e-5)


def files_below(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("overrides", [RUN, RATING_RUN], ids=["ranking bpr_mf rrd", "rating soft feature"])
def test_two_gloo_processes_end_with_the_metrics_of_one_and_only_rank_zero_writes(tmp_path, overrides):
    reference = single_process_reference(tmp_path, *overrides)
    work, cache = tmp_path / "work", tmp_path / "cache_two"
    work.mkdir()
    result = subprocess.run(torchrun(*overrides), cwd=work, env=environment(tmp_path, cache), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    folders = list((work / "outputs" / reference["run"]["experiment"]).iterdir())
    assert len(folders) == 1, f"one run folder for both processes (rank 0's time stamp), got {folders}"
    run_dir = folders[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"]["processes"] == 2 and reference["run"]["processes"] == 1
    close(tmp_path / "one", run_dir)
    # The same files as the single-process run, each written once: no second .hydra/ or checkpoint set
    assert files_below(run_dir) == files_below(tmp_path / "one") | {".hydra/config.yaml", ".hydra/hydra.yaml",
                                                                    ".hydra/overrides.yaml", "run.log"}
    assert files_below(cache) == files_below(tmp_path / "cache_one")  # one split, one teacher, one student
    assert not list((tmp_path / "tmp").glob("recdistill-rank*")), "rank 1's scratch folders are removed"
    log = (run_dir / "run.log").read_text()
    assert log.count("teacher epoch 2:") == 1  # rank 1 writes nothing to the run log


def run_until(args: list[str], env: dict, cwd: Path, marker: str, log: list[str]) -> bool:
    """Run `args`, appending its output lines to `log`; SIGTERM torchrun (which stops its workers, as a
    scheduler's preemption does) as soon as a line holds `marker`. Returns whether it was stopped."""
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in process.stdout:
            log.append(line)
            if marker in line:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=120)
                return True
        assert process.wait(timeout=300) == 0, "".join(log[-40:])
        return False
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow  # ~45-75 s of subprocesses: runs in CI's slow pass
def test_an_interrupted_two_process_run_resumes_to_the_same_metrics(tmp_path):
    three_epochs = ("trainer.student.epochs=3", "trainer.student.patience=3")  # stopped in epoch 2 or 3
    single_process_reference(tmp_path, *RUN, *three_epochs)
    work, env, log = tmp_path / "work", environment(tmp_path, tmp_path / "cache_two"), []
    work.mkdir()
    assert run_until(torchrun(*RUN, *three_epochs), env, work, "student epoch 2:", log), "ended before the marker"
    (run_dir,) = (work / "outputs" / "movielens_rank_kd_mf").iterdir()
    assert not (run_dir / "metrics.json").exists()
    log.clear()
    assert not run_until(torchrun(f"resume={run_dir}"), env, work, "never printed", log)
    text = "".join(log)
    assert "found in cache" in text and "student: resuming from" in text  # the teacher is not trained again
    close(tmp_path / "one", run_dir)
    assert not list((tmp_path / "tmp").glob("recdistill-rank*"))
