"""`recdistill train|data|compare|export|recommend|serve`: the command line. `train` hands its arguments to Hydra."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from recdistill.errors import ConfigError, RecdistillError

log = logging.getLogger("recdistill")

USAGE = """usage: recdistill COMMAND [ARGS]

commands:
  train [HYDRA ARGS]        run a distillation study, e.g. `recdistill train +experiment=movielens_kd`
                            (all Hydra flags work: -m, --cfg job, --help; resume with resume=RUN_DIR);
                            one run on N processes: `torchrun --nproc_per_node=N -m recdistill train ...`
  data fetch NAME [KEY=VALUE...]
                            download and verify a dataset into the cache, e.g. `recdistill data fetch ml-100k`
  data info NAME [KEY=VALUE...]
                            describe a dataset (KEY=VALUE: its dataset options, e.g. synthetic.n_users=50);
                            `recdistill data --help` lists every NAME the dataset readers define
  data info dataset=NAME [dataset.KEY=VALUE... split=given split.train=FILE ...]
                            the same, with the overrides `train` takes (e.g. your own files)
  compare PATH...           one table of every metrics.json found below the paths
  export RUN_DIR [--role student_kd] [--out DIR] [--cache-dir DIR]
                            one self-contained ONNX folder of a run's model (extra `export`), checked with onnxruntime
  recommend RUN_DIR_OR_EXPORT (--user RAW_ID | --history RAW_ID,RAW_ID,... | --users FILE --out FILE.parquet)
            [-k 10] [--format table|json|csv] [--include-seen] [--role ROLE]
                            top-K items for a known user, a new user's history, or a batch of users
  serve RUN_DIR_OR_EXPORT [--host 127.0.0.1] [--port 8000] [--role ROLE] [--cache-dir DIR] [--threads N]
                            an HTTP API (extra `serve`): GET /recommend?user=RAW_ID&k=10, POST /recommend
                            {"history": [RAW_ID, ...], "k": 10}, GET /health
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
    """Turn `resume=RUN_DIR` into the run's saved overrides plus its folder, so Hydra recomposes it;
    work from the folder the run started in (relative data paths in its config point from there)."""
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
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    started_in = OmegaConf.load(hydra_file).hydra.runtime.get("cwd") if hydra_file.exists() else None
    if started_in and Path(started_in).is_dir() and Path(started_in).resolve() != Path.cwd().resolve():
        log.info("resume: working in %s, where the run started, so its relative paths mean what they meant",
                 started_in)
        os.chdir(started_in)
    return [*saved, f"resume={run_dir}", f"hydra.run.dir={run_dir}"]


#: Hydra flags that print something and run no job; under torchrun rank 0 alone runs them.
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc")


def _quoted(value: str) -> str:
    """`value` as a quoted Hydra override value (a path with spaces or `=` stays one value)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _follower_overrides(run_dir: str) -> list[str]:
    """Under torchrun, the overrides of every rank but 0: rank 0's run folder (its name holds the time
    rank 0's Hydra chose), and nothing that Hydra writes there (no .hydra/ copy, no run.log lines);
    these ranks log warnings and errors to the console only."""
    return [f"hydra.run.dir={_quoted(run_dir)}", "hydra.output_subdir=null",
            f"hydra.job_logging.handlers.file.filename={_quoted(os.devnull)}", "hydra.job_logging.root.level=WARNING"]


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
    from recdistill.utils.runinfo import run_identity

    return metrics if run_identity(current) == run_identity(saved) else None


def train_command(args: list[str]) -> None:
    """Compose the config with Hydra and run the pipeline for each job. Every configuration error,
    Hydra's (unknown key or option, wrong type, bad override) and recdistill's, leaves as one
    message with exit code 2; any other crash keeps its traceback.

    Under torchrun (WORLD_SIZE > 1) every process runs this: rank 0 composes the config and fixes the
    run folder, then broadcasts it; the others compose the same arguments with that folder (see
    `_follower_overrides`), and all train the one run together (`recdistill.training.distributed`)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import DictConfig
    from omegaconf.errors import OmegaConfBaseException

    from recdistill.config_schema import register_schemas
    from recdistill.run import sweep
    from recdistill.run.spine import run
    from recdistill.training import distributed

    parallel = distributed.active() and not any(a.split("=", 1)[0] in INFO_FLAGS for a in args)
    if distributed.active() and not parallel and not distributed.is_main():
        return  # torchrun with --help, --cfg ...: rank 0 prints it
    if parallel and any(a in ("-m", "--multirun") for a in args):
        raise RecdistillError("torchrun runs one training job on several processes; a sweep (-m) cannot run "
                              "under it: start the sweep without torchrun (hydra/launcher=submitit_slurm gives "
                              "each job its own resources)")
    register_schemas()
    sweep.register_resolver()
    crashes: list[BaseException] = []  # raised inside a job: never a composition error, whatever its type

    @hydra.main(version_base=None, config_path=str(config_dir()), config_name="config")
    def train_job(cfg: DictConfig) -> float | None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        in_sweep = HydraConfig.get().mode.name == "MULTIRUN"
        if parallel and distributed.is_main():
            distributed.share(str(run_dir))  # the other ranks wait for it before they compose
        try:
            done = distributed.share(completed_metrics(run_dir, cfg) if distributed.is_main() else None)
            if done is not None:
                log.info("%s already holds complete results for this config; skipping", run_dir)
            value = objective_value(done if done is not None else run(cfg, run_dir), cfg)
        except Exception as error:  # noqa: BLE001 - in a sweep one failed job must not stop the others
            crashes.append(error)
            if in_sweep:
                if isinstance(error, RecdistillError):
                    log.error("job failed: %s; the sweep goes on", error)
                else:
                    log.exception("job failed; the sweep goes on")
                sweep.record_outcome(run_dir, "failed", error)
                return None  # the Optuna sweeper marks the trial failed and asks for the next one
            if isinstance(error, RecdistillError):
                log.error("%s", error)  # also into the run's run.log
                raise SystemExit(2) from None
            raise
        if in_sweep:
            sweep.record_outcome(run_dir, "done" if done is None else "skipped")
        return value

    arguments = _resume_arguments(args)
    if parallel:
        distributed.init()
    if parallel and not distributed.is_main():
        run_dir = distributed.share(None)  # rank 0's run folder, once its Hydra has made it
        arguments = [a for a in arguments if not a.startswith("hydra.run.dir=")] + _follower_overrides(run_dir)
    elif any(a.startswith(("+hparams_search=", "hparams_search=", "hydra/sweeper=")) for a in arguments):
        Path("outputs").mkdir(exist_ok=True)  # the Optuna sweeper's SQLite study lives there
    sys.argv = ["recdistill train", *arguments]
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them and exiting 1
    finished = False
    try:
        train_job()
        finished = True
    except (HydraException, OmegaConfBaseException) as error:
        if any(error is crash for crash in crashes):
            raise
        raise ConfigError(hydra_error_message(error)) from None
    finally:
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error
        if parallel and not finished:
            distributed.close()
    if parallel:
        distributed.leave()


def hydra_error_message(error: Exception) -> str:
    """Hydra's message for a composition error, with the OmegaConf error behind it (key, value,
    type); without the config search path, and without Hydra's hint to add the key with `+`
    (for a misspelt key it would add a key that nothing reads)."""
    message = str(error).split("\nConfig search path:")[0]
    lines = [line for line in message.strip().splitlines() if not line.startswith("To append to your config use")]
    cause = error.__cause__
    if cause is not None and str(cause).strip() and str(cause) not in message:
        lines.append(str(cause).strip())
    return "\n".join(lines)


def objective_value(metrics: dict, cfg: "DictConfig") -> float:
    """What a sweeper optimises: the distilled student's validation monitor (the teacher's when the
    run trains no student)."""
    role = "student_kd" if "student_kd" in metrics else "teacher"
    return metrics[role]["valid"][cfg.trainer[role if role == "teacher" else "student"].monitor]


def data_command(args: list[str]) -> None:
    """`data fetch|info NAME [KEY=VALUE...]` (NAME a dataset or alias, KEY=VALUE its options) or
    `data fetch|info dataset=NAME [dataset.KEY=VALUE...] [split=given split.train=FILE ...]`, the
    overrides `train` takes; `info` of a given split describes the union of its three files."""
    from rich.console import Console
    from rich.table import Table

    from recdistill.data.given_split import load_given_union
    from recdistill.data.loading import load_dataset
    from recdistill.data.readers.registry import dataset_config, get_reader, names_and_aliases
    from recdistill.data.report import describe

    parser = argparse.ArgumentParser(prog="recdistill data", description=data_command.__doc__)
    parser.add_argument("action", choices=["fetch", "info"])
    parser.add_argument("tokens", nargs="+", metavar="NAME|KEY=VALUE",
                        help=f"a dataset ({', '.join(names_and_aliases())}) and its options KEY=VALUE, or the "
                             "overrides of `train` (dataset=NAME dataset.KEY=VALUE split=given split.train=FILE ...)")
    parser.add_argument("--cache-dir", help="cache folder (default: cache_dir of the config)")
    parser.add_argument("--source", help="shorthand for the option source=SOURCE")
    options = parser.parse_args(args)
    overrides = _data_overrides(options.tokens, names_and_aliases(), parser)
    overrides += [f"dataset.source={options.source}"] if options.source else []
    overrides += [f"cache_dir={Path(options.cache_dir).expanduser()}"] if options.cache_dir else []
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = _compose(overrides)
    name = str(cfg.dataset.name)
    if options.action == "fetch":
        Console().print(get_reader(name).fetch(dataset_config(cfg.dataset)))
        return
    given = cfg.split.name == "given"
    data = load_given_union(cfg.dataset, cfg.split) if given else load_dataset(cfg.dataset, seed=cfg.seed)
    table = Table(title=f"dataset {name}" + (" (the union of the given split's files)" if given else ""))
    table.add_column("property")
    table.add_column("value", justify="right")
    for key, value in describe(data).items():
        table.add_row(str(key), str(value))
    Console().print(table)


def _data_overrides(tokens: list[str], names: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Train-style overrides from `data` tokens: NAME [KEY=VALUE...] becomes dataset=NAME dataset.KEY=VALUE."""
    from recdistill.data.readers.registry import resolve_alias

    first, rest = tokens[0], tokens[1:]
    if "=" in first:
        if not any(t.split("=", 1)[0].lstrip("+~") == "dataset" for t in tokens):
            parser.error("name the dataset: NAME first, or dataset=NAME among the overrides")
        return list(tokens)
    if first not in names:
        parser.error(f"unknown dataset {first!r}; valid: {', '.join(names)}")
    malformed = [t for t in rest if "=" not in t]
    if malformed:
        parser.error(f"dataset options are KEY=VALUE, got {malformed}")
    scoped = ("dataset.", "dataset=", "split.", "split=", "cache_dir=", "seed=")
    return [f"dataset={resolve_alias(first)}", *(t if t.startswith(scoped) else f"dataset.{t}" for t in rest)]


def _compose(overrides: list[str]) -> "DictConfig":
    """The root config composed with `overrides`, as `train` composes it; ConfigError on a bad one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from recdistill.config_schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base=None):
            return compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(hydra_error_message(error)) from None


def compare_command(args: list[str]) -> None:
    """`compare PATH...`: one table over every metrics.json below the paths."""
    from recdistill.reporting.compare import compare_main

    compare_main(args)


def export_command(args: list[str]) -> None:
    """`export RUN_DIR [--role ROLE] [--out DIR] [--cache-dir DIR]`: one role of a finished run as a
    self-contained folder (ONNX graphs, raw id maps, titles, histories, manifest), checked with onnxruntime."""
    from recdistill.serving.export import export_run

    parser = argparse.ArgumentParser(prog="recdistill export", description=export_command.__doc__)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `recdistill train`")
    parser.add_argument("--role", default="student_kd", help="teacher, student or student_kd (default)")
    parser.add_argument("--out", help="export folder (default RUN_DIR/export/ROLE); an earlier export is replaced")
    parser.add_argument("--cache-dir", help="the model cache holding teacher and student (default: the run's)")
    options = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(export_run(options.run_dir, options.role, options.out, options.cache_dir))


def recommend_command(args: list[str]) -> None:
    """`recommend RUN_DIR_OR_EXPORT --user RAW_ID | --history RAW_ID,... | --users FILE --out FILE.parquet`:
    top-K items from an export folder (onnxruntime) or a run folder (its checkpoint); the user's
    history (train + valid + test, or the given one) is excluded unless --include-seen."""
    from recdistill.serving.present import FORMATS, read_users, render, write_batch
    from recdistill.serving.recommend import Recommender

    parser = argparse.ArgumentParser(prog="recdistill recommend", description=recommend_command.__doc__)
    parser.add_argument("source", metavar="RUN_DIR_OR_EXPORT", help="an export folder or a run folder")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="raw id of a known user, exactly as in the data")
    who.add_argument("--history", help="raw item ids of a new user, oldest first, comma-separated")
    who.add_argument("--users", metavar="FILE", help="known users: one id per line, or parquet/CSV with a user column")
    parser.add_argument("-k", type=int, default=10, help="list length (default 10)")
    parser.add_argument("--format", default="table", choices=FORMATS, help="single lists: table (default), json, csv")
    parser.add_argument("--out", help="with --users: the parquet file to write (user, rank, item, title, score)")
    parser.add_argument("--include-seen", action="store_true", help="allow items the user already has")
    parser.add_argument("--role", help="run folders: teacher, student or student_kd (default)")
    parser.add_argument("--cache-dir", help="run folders: the model cache holding teacher and student")
    options = parser.parse_args(args)
    if options.users is not None and options.out is None:
        parser.error("--users writes a parquet file: give --out FILE.parquet")
    if options.users is None and options.out is not None:
        parser.error("--out goes with --users; single lists print to stdout (--format)")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    recommender = Recommender.open(options.source, options.role, options.cache_dir)
    exclude_seen = not options.include_seen
    if options.users is not None:
        frame = recommender.recommend_users(read_users(options.users), options.k, exclude_seen)
        print(f"{frame['user'].nunique()} users, {len(frame)} rows -> {write_batch(frame, options.out)}")
        return
    history = None if options.history is None else options.history.split(",")
    text = render(recommender.recommend(options.user, history=history, k=options.k, exclude_seen=exclude_seen),
                  recommender, options.format)
    if text is not None:
        print(text, end="" if text.endswith("\n") else "\n")


def serve_command(args: list[str]) -> None:
    """`serve RUN_DIR_OR_EXPORT [--host H] [--port P] [--role ROLE] [--cache-dir DIR] [--threads N]`: open the
    model once, then answer GET /recommend?user=RAW_ID&k=10, POST /recommend {"history": [...], "k": 10} and
    GET /health until stopped (Ctrl-C)."""
    from recdistill.serving.http import serve

    parser = argparse.ArgumentParser(prog="recdistill serve", description=serve_command.__doc__)
    parser.add_argument("source", metavar="RUN_DIR_OR_EXPORT", help="an export folder (onnxruntime) or a run folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine "
                                                            "only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--role", help="run folders: teacher, student or student_kd (default)")
    parser.add_argument("--cache-dir", help="run folders: the model cache holding teacher and student")
    parser.add_argument("--threads", type=int, help="CPU threads for scoring (onnxruntime and torch; default: theirs)")
    options = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    serve(options.source, options.host, options.port, options.role, options.cache_dir, options.threads)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `recdistill` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_command, "data": data_command, "compare": compare_command, "export": export_command,
                "recommend": recommend_command, "serve": serve_command}
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
