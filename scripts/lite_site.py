"""Prepare the JupyterLite part of the book: the notebooks it serves and the wheels it installs.

The book's Sphinx extension (``_ext/afd_book.py``) calls :func:`prepare` at the end of the
HTML build, just before jupyterlite-sphinx runs ``jupyter lite build``. It writes, under a
staging folder:

- ``contents/chapters/NAME.ipynb``: every chapter of the toc, and
  ``contents/student/NAME.ipynb``: its student edition (solutions removed), each with one
  setup cell first that, in JupyterLite only, installs ``afdlib`` from the wheel below;
- ``lite/pypi/``: the ``afdlib`` wheel built from this checkout, plus the pure-Python wheels
  whose versions must match the site's JavaScript (``ipywidgets`` and ``jupyterlab_widgets``,
  as installed in the build environment) and ``comm`` and ``pooch``, which Pyodide does not
  ship; piplite installs from this folder first;
- ``lite/jupyter_lite_config.json``.

At read time the browser fetches Pyodide itself and its numpy, scipy, matplotlib (and
other compiled packages) from Pyodide's CDN; see README.md.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import student_edition  # noqa: E402

from afdlib.widgets import selftest  # noqa: E402

#: Pure-Python wheels the lite site carries, at the build environment's versions.
PINNED = ("ipywidgets", "jupyterlab_widgets", "comm", "pooch")

SETUP_TAG = "afd-lite-setup"
SETUP_SOURCE = '''\
# JupyterLite setup (runs in your browser): install afdlib, the wheel built with this book.
# Outside JupyterLite this cell does nothing.
import sys

if sys.platform == "emscripten":
    import piplite

    await piplite.install(["afdlib", "ipywidgets"]{extra})
    try:
        import myst_nb  # noqa: F401  (the book build's glue; not installable here)
    except ImportError:
        import types

        from IPython.display import display as _display

        def _glue(name, variable, display=True):
            """Show a glued value (in the book, glue stores it for the prose)."""
            if display:
                _display(variable)

        sys.modules["myst_nb"] = types.SimpleNamespace(glue=_glue)
    print("afdlib is installed; run the cells below in order.")
'''

PYODIDE_KERNELSPEC = {"name": "python", "display_name": "Python (Pyodide)",
                      "language": "python"}


def setup_source(*, kernel_tables: bool = False) -> str:
    """The setup cell's code; with ``kernel_tables`` it also installs fastparquet."""
    extra = ' + ["fastparquet"]' if kernel_tables else ""
    return SETUP_SOURCE.replace("{extra}", extra)


def _needs_kernel_tables(nb: nbformat.NotebookNode) -> bool:
    """Whether a notebook reads the measured kernel tables (parquet upstream)."""
    return any("kerneldb" in cell.source for cell in nb.cells if cell.cell_type == "code")


#: What a frame slider's stored output becomes in the lite notebooks.
FRAMES_NOTE = ("*On the book's page this figure is a slider over {frames} precomputed frames. "
               "Here, run the cells: the live version below has continuous sliders (running "
               "this cell redraws every frame in your browser, which takes a while).*")


def _frame_count(html: str) -> int:
    return html.count("data:image/png;base64,")


def _without_frames(cell) -> None:
    """Replace a frame slider's stored output (its pictures, a megabyte, whose controls an
    untrusted notebook would not run) by a note on where the sliders are."""
    for i, output in enumerate(cell.get("outputs", [])):
        html = output.get("data", {}).get("text/html", "")
        html = "".join(html) if isinstance(html, list) else html
        if 'class="afd-frame-slider"' in html:
            note = FRAMES_NOTE.format(frames=_frame_count(html))
            cell.outputs[i] = nbformat.v4.new_output(
                "display_data", data={"text/markdown": note, "text/plain": note})


def lite_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A chapter notebook as the lite site serves it: a setup cell first, Pyodide kernel.

    The setup cell installs afdlib and ipywidgets, and fastparquet (from Pyodide's
    distribution) only where the notebook reads kernel tables: the other chapters do not
    load pandas. Frame sliders' stored pictures give way to a note (:data:`FRAMES_NOTE`).
    """
    out = copy.deepcopy(nb)
    for cell in out.cells:
        if cell.cell_type == "code":
            _without_frames(cell)
    cell = nbformat.v4.new_code_cell(setup_source(kernel_tables=_needs_kernel_tables(nb)))
    cell.id = SETUP_TAG
    cell.metadata["tags"] = [SETUP_TAG, "remove-cell"]
    out.cells.insert(0, cell)
    out.metadata["kernelspec"] = dict(PYODIDE_KERNELSPEC)
    return out


def _run(command: list[str]) -> None:
    """Run a command quietly; on failure show its output and raise."""
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise subprocess.CalledProcessError(proc.returncode, command)


def selftest_notebook(part: str) -> nbformat.NotebookNode:
    """The live self-test of one part: each question, and a cell to check an answer."""
    title = selftest.PARTS[part]
    cells = [nbformat.v4.new_markdown_cell(
        f"# Self-test: {title}\n\nAnswer in the code cell under each question, run it, and "
        "`check` says whether you are right (the book's self-test page hides the answers).")]
    cells.append(nbformat.v4.new_code_cell("from afdlib.widgets.selftest import check"))
    for n, q in enumerate(selftest.questions(part), start=1):
        text = f"**Question {n}.** {q.text}"
        if q.choices:
            text += "\n\n" + "\n".join(f"- ({chr(ord('a') + k)}) {c}"
                                        for k, c in enumerate(q.choices))
        cells.append(nbformat.v4.new_markdown_cell(text))
        hint = '"a"' if q.choices else "0.0"
        cells.append(nbformat.v4.new_code_cell(f'check("{q.key}", {hint})  # your answer'))
    for k, cell in enumerate(cells):
        cell.id = f"selftest-{part}-{k}"
    nb = nbformat.v4.new_notebook(cells=cells)
    return lite_notebook(nb)


def build_wheels(repo: Path, pypi: Path) -> list[Path]:
    """Build the afdlib wheel and fetch the pinned wheels into ``pypi``; returns the files."""
    pypi.mkdir(parents=True, exist_ok=True)
    for old in pypi.glob("afdlib-*.whl"):
        old.unlink()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "-w", str(pypi), str(repo)])
    wanted = [f"{name}=={metadata.version(name)}" for name in PINNED]
    missing = [w for w in wanted
               if not list(pypi.glob(w.split("==")[0].replace("-", "_") + "-"
                                     + w.split("==")[1] + "-*.whl"))]
    if missing:
        _run([*pip, "download", "--no-deps", "--only-binary=:all:", "-d", str(pypi), *missing])
    return sorted(pypi.glob("*.whl"))


def prepare(repo: Path, stage: Path, chapters: list[Path]) -> dict:
    """Write the lite site's notebooks, wheels and configuration under ``stage``.

    Parameters
    ----------
    repo : Path
        The repository root (built into the afdlib wheel).
    stage : Path
        Staging folder (``contents/`` and ``lite/`` are written inside it).
    chapters : list of Path
        The chapter notebooks, in toc order.

    Returns
    -------
    dict
        ``{"wheels": [...], "chapters": [...], "student": {name: [removed labels]}}``.
    """
    contents = stage / "contents"
    if contents.exists():
        shutil.rmtree(contents)
    (contents / "chapters").mkdir(parents=True)
    (contents / "student").mkdir()
    removed = {}
    for path in chapters:
        nb = nbformat.read(path, as_version=4)
        student, labels = student_edition.strip_solutions(nb)
        removed[path.name] = labels
        nbformat.write(lite_notebook(nb), contents / "chapters" / path.name)
        nbformat.write(lite_notebook(student), contents / "student" / path.name)
    (contents / "selftests").mkdir()
    for part in selftest.PARTS:
        nbformat.write(selftest_notebook(part), contents / "selftests" / f"{part}.ipynb")
    lite = stage / "lite"
    wheels = build_wheels(repo, lite / "pypi")
    config = {"LiteBuildConfig": {"no_sourcemaps": True}}
    (lite / "jupyter_lite_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {"wheels": [w.name for w in wheels], "chapters": [p.name for p in chapters],
            "student": removed}
