"""A regular (non-editable) install ships every subpackage and the configs."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "recdistill").rglob("__init__.py")}
    assert on_disk <= listed, f"add to pyproject.toml [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert "recdistill.configs" in listed


def test_package_data_covers_every_config_file():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "recdistill.configs"]
    configs = ROOT / "configs"
    covered = {p for pattern in patterns for p in configs.glob(pattern)}
    assert set(configs.rglob("*.yaml")) == covered
