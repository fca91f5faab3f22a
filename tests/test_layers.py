"""The layering of DESIGN.md is a checked contract: `lint-imports` runs the [tool.importlinter]
contracts of pyproject.toml, and this test fails with its report when one breaks.

The contracts (see pyproject.toml): the layer stack, with every package and top-level module on
it (`exhaustive`); reporting imports nothing of recdistill but the metric catalogue, utils and
errors; reporting never imports torch or hydra itself; no import cycle between siblings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter (the dev extra; Python >= 3.11) runs the layer contracts")
import tomllib  # import-linter needs Python >= 3.11, which has tomllib

ROOT = Path(__file__).resolve().parent.parent

# What reporting may import of recdistill; everything else must be on its forbidden list.
REPORTING_MAY_IMPORT = {"recdistill.evaluation.metrics", "recdistill.utils", "recdistill.errors"}


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on cwd's pyproject.toml, finding the `recdistill` package in cwd."""
    command = ("import sys; from importlinter.cli import lint_imports_command; "
               "sys.exit(lint_imports_command())")
    return subprocess.run([sys.executable, "-c", command, "--no-cache", "--no-logo", "pyproject.toml"],
                          cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "200", "NO_COLOR": "1"})


def contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def children(package: str) -> set[str]:
    """Subpackages and modules directly below `package`, from the files."""
    folder = ROOT.joinpath(*package.split("."))
    found = {f"{package}.{path.stem}" for path in folder.glob("*.py") if path.stem != "__init__"}
    found |= {f"{package}.{path.name}" for path in folder.iterdir() if (path / "__init__.py").exists()}
    return found


def test_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    if result.returncode != 0:
        pytest.fail(f"import contracts broken (lint-imports exit {result.returncode}); move the import, or, if a "
                    f"lower layer needs something from above, declare a protocol in the lower layer and pass an "
                    f"implementation in (as transfer/protocols.py does):\n{result.stdout}\n{result.stderr}")


def test_every_module_has_a_layer() -> None:
    """`exhaustive` makes lint-imports fail on a package or top-level module missing from the stack."""
    layers = contracts()["layers"]
    assert layers["containers"] == ["recdistill"] and layers["exhaustive"] is True


def test_reporting_contract_forbids_everything_else() -> None:
    """The forbidden list is written out (import-linter has no "only these"); it must cover every
    other package, top-level module and evaluation module, so a new one cannot slip through."""
    expected = (children("recdistill") | children("recdistill.evaluation")) - {"recdistill.evaluation"}
    expected = {m for m in expected if not m.startswith("recdistill.reporting")
                and not any(m == allowed or m.startswith(allowed + ".") for allowed in REPORTING_MAY_IMPORT)}
    forbidden = set(contracts()["reporting-reads-files"]["forbidden_modules"])
    assert forbidden == expected, (f"add to forbidden_modules: {sorted(expected - forbidden)}; "
                                   f"remove: {sorted(forbidden - expected)}")


VIOLATIONS = {
    # an upward import, hidden inside a function: utils (bottom) -> models
    "recdistill/utils/atomic.py": "\n\ndef _upward():\n    from recdistill.models import registry  # noqa\n",
    # legal for the layers (evaluation is below reporting), not for reporting
    "recdistill/reporting/significance.py": "\nfrom recdistill.evaluation import predict  # noqa\n",
    # reporting importing torch itself, even lazily
    "recdistill/reporting/plots.py": "\n\ndef _tensor():\n    import torch  # noqa\n",
    # a cycle between two siblings of recdistill.data
    "recdistill/data/fetch.py": "\nimport recdistill.data.tables  # noqa\n",
    "recdistill/data/tables.py": "\nimport recdistill.data.fetch  # noqa\n",
    # a new package that has no layer
    "recdistill/newpackage/__init__.py": "",
}


def test_contracts_catch_violations(tmp_path: Path) -> None:
    """Each contract breaks on a scratch copy of the package with one violation of each kind."""
    shutil.copytree(ROOT / "recdistill", tmp_path / "recdistill",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for file, code in VIOLATIONS.items():
        path = tmp_path / file
        path.parent.mkdir(exist_ok=True)
        path.write_text((path.read_text() if path.exists() else "") + textwrap.dedent(code))

    result = lint_imports(tmp_path)
    report = " ".join(result.stdout.split())  # lint-imports wraps long lines
    assert result.returncode == 1, report
    names = {c["id"]: " ".join(c["name"].split()) for c in contracts().values()}
    for contract_id in ("layers", "reporting-reads-files", "reporting-no-torch", "no-cycles"):
        assert f"{names[contract_id]} BROKEN" in report, (contract_id, report)
    for expected in ("recdistill.utils.atomic -> recdistill.models.registry",
                     "recdistill.reporting.significance -> recdistill.evaluation.predict",
                     "recdistill.reporting.plots -> torch",
                     "not listed as layers: - recdistill.newpackage",
                     "No cycles are allowed in recdistill.data."):
        assert expected in report, (expected, report)
