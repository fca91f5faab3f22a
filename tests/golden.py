"""Golden results: fixed synthetic runs whose numbers are pinned in tests/golden/<case>.json.

Each case composes one synthetic experiment (plus overrides) in a fresh cache, runs it on one CPU thread and
keeps what must not change when the run code is reorganised: every role's valid and test metrics, its parameter
count and size, and the loss formula. Latency and throughput vary from run to run and are left out.

(Re)write the pinned files with the current code, all of them or the named cases:

    python -m tests.golden --write [NAME ...]

and compare a fresh run with them (prints the wall time of each case):

    python -m tests.golden --check [NAME ...]
"""

from recdistill.run.spine import run as run_experiment

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recdistill.cli import config_dir
from recdistill.config_schema import register_schemas
from recdistill.evaluation.metrics import is_metric_column

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
TOLERANCE = 1e-6  # absolute, on every number
#: Appended to every case: the pinned numbers were computed on the CPU.
BASE_OVERRIDES = ("device=cpu",)


@dataclass(frozen=True)
class GoldenCase:
    name: str  # the file tests/golden/<name>.json
    experiment: str  # configs/experiment/<experiment>.yaml, composed as +experiment=<experiment>
    overrides: tuple[str, ...] = ()
    slow: bool = False  # pytest -m slow only (CI): over ~8 s, or what it runs a fast case runs too

    @property
    def path(self) -> Path:
        return GOLDEN_DIR / f"{self.name}.json"


# Warm ranking distillation between matrix factorisations (BPR-MF dim 32 -> 16). synthetic_rank_kd cannot take
# `teacher=bpr_mf_large student=bpr_mf_small`: it sets SASRec keys (n_layers, n_heads) that the BPR-MF schema
# refuses. So the BPR-MF pair of the cold-item experiment, turned into the warm leave-one-out study.
MF_WARM = ("split=leave_one_out", "transfer=none", "students=true", "baselines=[]", "teacher.dim=32")

# About 5 s a case on one free core (cold-item zero-shot about 9 s). `slow` marks the long ones and those whose
# code paths a fast case already runs, so the fast ones stay under a minute together.
CASES = (
    # rating distillation (rating Transformer pair)
    GoldenCase("rating_hybrid", "synthetic_kd"),
    GoldenCase("rating_soft", "synthetic_kd", ("distill=soft",), slow=True),
    GoldenCase("rating_hard", "synthetic_kd", ("distill=hard",), slow=True),
    GoldenCase("rating_kl", "synthetic_kd", ("distill=kl",)),
    GoldenCase("rating_feature", "synthetic_kd", ("distill=feature",)),
    # top-K ranking distillation (SASRec pair)
    GoldenCase("ranking_rrd", "synthetic_rank_kd", slow=True),  # its roles are in ranking_baselines too
    GoldenCase("ranking_score_kd", "synthetic_rank_kd", ("distill=score_kd",)),
    GoldenCase("ranking_cd", "synthetic_rank_kd", ("distill=cd",)),
    GoldenCase("ranking_rd", "synthetic_rank_kd", ("distill=rd",)),
    GoldenCase("ranking_de", "synthetic_rank_kd", ("distill=de",), slow=True),
    GoldenCase("ranking_de_rrd", "synthetic_rank_kd", ("distill=de_rrd",)),
    GoldenCase("ranking_ftd", "synthetic_rank_kd", ("distill=ftd",), slow=True),
    GoldenCase("ranking_htd", "synthetic_rank_kd", ("distill=htd",), slow=True),
    GoldenCase("ranking_baselines", "synthetic_rank_kd", ("baselines=[popularity,random,oracle_popularity]",)),
    # BPR-MF pair: the representation strategies on pos/neg batches instead of the teacher's top-K
    GoldenCase("ranking_mf_de_rrd", "synthetic_coldstart_item", (*MF_WARM, "distill=de_rrd"), slow=True),
    GoldenCase("ranking_mf_htd", "synthetic_coldstart_item", (*MF_WARM, "distill=htd")),
    # cold start
    GoldenCase("coldstart_item_zero_shot", "synthetic_coldstart_item", slow=True),
    GoldenCase("coldstart_user_meta", "synthetic_meta"),
    # transfer
    GoldenCase("transfer_shared_weights", "synthetic_transfer"),
)
CASES_BY_NAME = {case.name: case for case in CASES}


def compose_case(case: GoldenCase, cache_dir: Path):
    """The case's config, composed like `recdistill train +experiment=... cache_dir=... OVERRIDES`."""
    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            return compose(config_name="config", overrides=[f"+experiment={case.experiment}",
                                                            f"cache_dir={cache_dir}", *BASE_OVERRIDES,
                                                            *case.overrides])
    finally:
        GlobalHydra.instance().clear()


def run_case(case: GoldenCase, root: Path) -> dict[str, Any]:
    """Run `case` in `root` (a fresh folder: cache and run folder inside) on one thread; return metrics.json."""
    root = Path(root)
    cfg = compose_case(case, root / "cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_experiment(cfg, root / "run")
    finally:
        torch.set_num_threads(threads)


def golden_view(metrics: dict[str, Any]) -> dict[str, Any]:
    """What is pinned of a metrics.json: per role the valid and test metrics, params and size; the loss formula."""
    view: dict[str, Any] = {"run": {"loss_formula": metrics["run"]["loss_formula"]}}
    for role, block in metrics.items():
        if role == "run":
            continue
        view[role] = {split: block[split] for split in ("valid", "test") if split in block}
        view[role]["efficiency"] = {key: block["efficiency"][key] for key in ("params", "size_bytes")}
    return view


def differences(expected: Any, actual: Any, where: str = "", tolerance: float = TOLERANCE) -> list[str]:
    """Every place where `actual` differs from `expected`: keys, strings and None exactly, numbers within
    `tolerance` (absolute; NaN equals NaN)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        added = {key for key in set(actual) - set(expected) if is_metric_column(key)}  # a metric file added later
        if set(expected) != set(actual) - added:
            found.append(f"{where or '<top>'}: keys {sorted(expected)} != {sorted(set(actual) - added)}")
        for key in sorted(set(expected) & set(actual)):
            found += differences(expected[key], actual[key], f"{where}.{key}" if where else key, tolerance)
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} items != {len(actual)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual))
                for d in differences(e, a, f"{where}[{i}]", tolerance)]
    numbers = (int, float)
    if (isinstance(expected, numbers) and isinstance(actual, numbers)
            and not isinstance(expected, bool) and not isinstance(actual, bool)):
        if math.isnan(expected) and math.isnan(actual):
            return []
        if abs(expected - actual) <= tolerance:
            return []
        return [f"{where}: expected {expected!r}, got {actual!r} (diff {actual - expected:.3g})"]
    if type(expected) is not type(actual) or expected != actual:
        return [f"{where}: expected {expected!r}, got {actual!r}"]
    return []


def read_golden(case: GoldenCase) -> dict[str, Any]:
    return json.loads(case.path.read_text())


def write_golden(case: GoldenCase, view: dict[str, Any]) -> None:
    case.path.parent.mkdir(parents=True, exist_ok=True)
    case.path.write_text(json.dumps(view, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="run the cases and (re)write their golden JSON")
    mode.add_argument("--check", action="store_true", help="run the cases and compare them with the golden JSON")
    mode.add_argument("--list", action="store_true", help="list the cases")
    parser.add_argument("names", nargs="*", metavar="NAME", help="cases to run (default: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in CASES_BY_NAME]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; valid: {list(CASES_BY_NAME)}")
    cases = [CASES_BY_NAME[name] for name in args.names] or list(CASES)
    if args.list:
        for case in cases:
            print(f"{case.name:28} +experiment={case.experiment} {' '.join(case.overrides)}"
                  f"{'  [slow]' if case.slow else ''}")
        return 0
    failed = []
    for case in cases:
        with tempfile.TemporaryDirectory(prefix=f"golden_{case.name}_") as root:
            clock = time.perf_counter()
            view = golden_view(run_case(case, Path(root)))
            seconds = time.perf_counter() - clock
        if args.write:
            write_golden(case, view)
            print(f"GOLDEN {case.name}: wrote {case.path} ({seconds:.1f} s)", flush=True)
        else:
            found = differences(read_golden(case), view)
            failed += [case.name] if found else []
            print(f"GOLDEN {case.name}: {'DIFFERS' if found else 'same'} ({seconds:.1f} s)", flush=True)
            for line in found[:20]:
                print(f"    {line}", flush=True)
    if failed:
        print(f"GOLDEN differs: {failed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
