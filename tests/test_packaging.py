"""Packaging: every subpackage ships, and the presets load from an installed copy."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "afdlib").rglob("__init__.py")}
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    assert "afdlib._data" in listed


def test_package_data_covers_every_preset_file():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["afdlib._data"]
    data = ROOT / "data"
    files = {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()}
    covered = {f for f in files if any(Path(f).match(pat) for pat in patterns)}
    assert files == covered, f"not shipped: {sorted(files - covered)}"
