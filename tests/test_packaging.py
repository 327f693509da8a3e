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


def test_numba_is_required_everywhere_but_in_the_browser():
    # the compiled loops' dependency must not stop piplite installing afdlib in Pyodide
    from packaging.requirements import Requirement

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    numba = [Requirement(r) for r in config["project"]["dependencies"]
             if Requirement(r).name == "numba"]
    assert len(numba) == 1 and numba[0].marker is not None
    assert numba[0].marker.evaluate({"sys_platform": "linux"})
    assert not numba[0].marker.evaluate({"sys_platform": "emscripten"})


def test_the_simulator_runs_without_numba():
    # as in the browser: numba cannot be imported, the numpy code runs
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['numba'] = None\n"
        "from afdlib.costs import StepCoefficients\n"
        "from afdlib.sim import Bundle, kernels, simulate_step\n"
        "from afdlib.workload import Geometric, IndependentLengths, JointLengths\n"
        "import numpy as np\n"
        "c = StepCoefficients(alpha_A=2e-8, beta_A=2e-3, alpha_F=2e-6, beta_F=5e-3)\n"
        "trace = JointLengths(np.arange(1, 50), np.arange(1, 50) % 7 + 1)\n"
        "a = simulate_step(trace, Bundle(3, 8, c), steps=500, seed=1)\n"
        "b = simulate_step(trace, Bundle(3, 8, c), steps=500, init='cold', replay=True)\n"
        "print(kernels.enabled(), 'numba' in sys.modules and sys.modules['numba'] is not None,"
        " a.requests > 0, b.requests > 0)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    assert out == ["False", "False", "True", "True"]
