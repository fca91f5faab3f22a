"""`recdistill train|data|compare`: the command line. `train` hands its arguments to Hydra."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from importlib import resources
from pathlib import Path
from typing import Any

from recdistill.errors import RecdistillError

log = logging.getLogger("recdistill")

USAGE = """usage: recdistill COMMAND [ARGS]

commands:
  train [HYDRA ARGS]        run a distillation study, e.g. `recdistill train +experiment=movielens_kd`
                            (all Hydra flags work: -m, --cfg job, --help; resume with resume=RUN_DIR)
  data fetch NAME [KEY=VALUE...]
                            download and verify a dataset into the cache, e.g. `recdistill data fetch ml-100k`
  data info NAME [KEY=VALUE...]
                            describe a dataset (KEY=VALUE: its dataset options, e.g. synthetic.n_users=50);
                            `recdistill data --help` lists every NAME the dataset readers define
  compare PATH...           one table of every metrics.json found below the paths
"""


def config_dir() -> Path:
    """The configs folder: the checkout's `configs/` (editable install) or the packaged copy."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if (checkout / "config.yaml").exists():
        return checkout
    packaged = Path(str(resources.files("recdistill") / "configs"))
    if (packaged / "config.yaml").exists():
        return packaged
    raise RecdistillError(f"configs not found in {checkout} or {packaged}; reinstall recdistill")


def _resume_arguments(args: list[str]) -> list[str]:
    """Turn `resume=RUN_DIR` into the run's saved overrides plus its folder, so Hydra recomposes it."""
    resume = [a for a in args if a.startswith("resume=")]
    if not resume:
        return args
    run_dir = Path(resume[0].split("=", 1)[1]).expanduser().resolve()
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.exists():
        raise RecdistillError(f"cannot resume {run_dir}: {overrides_file} not found (is it a run folder?)")
    others = [a for a in args if not a.startswith("resume=")]
    if others:
        raise RecdistillError(f"resume=RUN_DIR takes no other arguments (got {others}); it reuses the run's config")
    from omegaconf import OmegaConf

    saved = [str(o) for o in OmegaConf.load(overrides_file) if not str(o).startswith("resume=")]
    return [*saved, f"resume={run_dir}", f"hydra.run.dir={run_dir}"]


def completed_metrics(run_dir: Path, cfg: Any) -> dict | None:
    """The run's metrics if `run_dir` already holds complete results for exactly this config."""
    from omegaconf import OmegaConf

    path = run_dir / "metrics.json"
    if not path.exists():
        return None
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    current = OmegaConf.to_container(cfg, resolve=True)
    saved = metrics.get("run", {}).get("config", {})
    comparable = lambda config: {k: v for k, v in config.items() if k != "resume"}  # noqa: E731
    return metrics if comparable(current) == comparable(saved) else None


def train_command(args: list[str]) -> None:
    """Compose the config with Hydra and run the pipeline for each job."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from recdistill.config_schema import register_schemas
    from recdistill.run.spine import run
    from recdistill.utils.atomic import write_json

    register_schemas()

    @hydra.main(version_base=None, config_path=str(config_dir()), config_name="config")
    def train_job(cfg: DictConfig) -> float | None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        sweep = HydraConfig.get().mode.name == "MULTIRUN"
        done = completed_metrics(run_dir, cfg)
        if done is not None:
            log.info("%s already holds complete results for this config; skipping", run_dir)
            return objective_value(done, cfg)
        try:
            metrics = run(cfg, run_dir)
        except Exception as error:  # noqa: BLE001 - in a sweep one failed job must not stop the others
            if not sweep:
                if isinstance(error, RecdistillError):
                    log.error("%s", error)
                    raise SystemExit(2) from None
                raise
            log.exception("job failed; the sweep goes on")
            write_json(run_dir / "error.json", {"error": type(error).__name__, "message": str(error),
                                                "traceback": traceback.format_exc()})
            return None
        (run_dir / "error.json").unlink(missing_ok=True)
        return objective_value(metrics, cfg)

    Path("outputs").mkdir(exist_ok=True)  # the Optuna sweeper's SQLite study lives there
    sys.argv = ["recdistill train", *_resume_arguments(args)]
    train_job()


def objective_value(metrics: dict, cfg: "DictConfig") -> float:
    """What a sweeper optimises: the distilled student's validation monitor (the teacher's when the
    run trains no student)."""
    role = "student_kd" if "student_kd" in metrics else "teacher"
    return metrics[role]["valid"][cfg.trainer[role if role == "teacher" else "student"].monitor]


def data_command(args: list[str]) -> None:
    """`data fetch NAME` and `data info NAME`, for every dataset the reader registry holds."""
    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.table import Table

    from recdistill.data.loading import describe, load_dataset
    from recdistill.data.readers.registry import dataset_config, get_reader, names_and_aliases, resolve_alias

    parser = argparse.ArgumentParser(prog="recdistill data")
    parser.add_argument("action", choices=["fetch", "info"])
    parser.add_argument("name", choices=names_and_aliases(), help="a dataset (config name or alias)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dataset options, as dataset.KEY=VALUE in train (e.g. source=recbole)")
    parser.add_argument("--cache-dir", default="~/.cache/recdistill", help="cache folder (default %(default)s)")
    parser.add_argument("--source", help="shorthand for the option source=SOURCE")
    options = parser.parse_args(args)
    overrides = [*options.overrides, *([f"source={options.source}"] if options.source else [])]
    malformed = [o for o in overrides if "=" not in o]
    if malformed:
        parser.error(f"dataset options are KEY=VALUE, got {malformed}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    name = resolve_alias(options.name)
    values = {"name": name, "cache_dir": str(Path(options.cache_dir).expanduser()),
              **OmegaConf.to_container(OmegaConf.from_dotlist(overrides))}
    cfg = dataset_config(values)
    if options.action == "fetch":
        Console().print(get_reader(name).fetch(cfg))
        return
    data = load_dataset(cfg, seed=0)
    table = Table(title=f"dataset {name}")
    table.add_column("property")
    table.add_column("value", justify="right")
    for key, value in describe(data).items():
        table.add_row(str(key), str(value))
    Console().print(table)


def compare_command(args: list[str]) -> None:
    """`compare PATH...`: one table over every metrics.json below the paths."""
    from recdistill.reporting.compare import compare_main

    compare_main(args)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `recdistill` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_command, "data": data_command, "compare": compare_command}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        raise SystemExit(0 if not argv or argv[0] in ("-h", "--help") else 2)
    try:
        commands[argv[0]](argv[1:])
    except RecdistillError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
