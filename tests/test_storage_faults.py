"""A write the file system refuses (disk full, read-only) at any of a run's files is one clear
error naming the file; the run folder and cache stay consistent (no temporary files, no partial
metrics.json), and the same run afterwards finishes with the metrics of an undisturbed one."""

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.errors import StorageError
from recdistill.run.spine import run
from recdistill.utils import atomic

TINY = ["+experiment=synthetic_kd", "dataset.synthetic.n_users=60", "trainer.teacher.epochs=2",
        "trainer.student.epochs=2", "evaluator.latency_repeats=1", "device=cpu"]
#: (file whose write is refused, the refusal): the run's claim, a training state, the teacher in the
#: cache, the extracted knowledge, the distilled student, the results, the report.
FAULTS = [("run_key.json", errno.EROFS), ("last.pt", errno.ENOSPC), ("teachers", errno.ENOSPC),
          ("teacher_knowledge.pt", errno.EROFS), ("student_kd.pt", errno.ENOSPC), ("metrics.json", errno.ENOSPC),
          ("report.md", errno.EROFS)]


def compose_run(cache: Path):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name="config", overrides=[*TINY, f"cache_dir={cache}"])


def metrics_of(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {role: block["test"] for role, block in metrics.items() if role != "run"}


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("undisturbed")
    torch.set_num_threads(1)
    run(compose_run(folder / "cache"), folder / "run")
    return metrics_of(folder / "run")


@pytest.mark.slow
@pytest.mark.parametrize("target, code", FAULTS, ids=[f"{t}-{errno.errorcode[c]}" for t, c in FAULTS])
def test_a_refused_write_is_one_error_and_the_same_run_then_finishes(tmp_path, monkeypatch, undisturbed, target, code):
    torch.set_num_threads(1)
    real_replace = os.replace

    def refuse(source, destination):
        if target in Path(destination).parts or Path(destination).name == target:
            raise OSError(code, os.strerror(code), str(destination))
        real_replace(source, destination)

    monkeypatch.setattr(atomic.os, "replace", refuse)
    cfg, run_dir = compose_run(tmp_path / "cache"), tmp_path / "run"
    with pytest.raises(StorageError, match=rf"could not write \S*{target}\S*: {os.strerror(code)} "
                                           rf"\({errno.errorcode[code]}\); nothing was half-written"):
        run(cfg, run_dir)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    if (run_dir / "metrics.json").exists():  # written before the refused file: whole
        json.loads((run_dir / "metrics.json").read_text())
    monkeypatch.setattr(atomic.os, "replace", real_replace)  # space freed: the same run again
    run(cfg, run_dir)
    assert metrics_of(run_dir) == undisturbed
