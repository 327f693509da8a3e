"""Execute chapter notebooks in place, top to bottom, storing their outputs.

Chapters are committed with outputs (nbval compares them with a fresh run), so after
editing a chapter run::

    .venv/bin/python scripts/execute_chapters.py chapters/slots_renewal.ipynb

with no argument every chapter is executed. The working directory is ``chapters/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
SLOW_CELL = 20.0  # seconds: cells slower than this are reported


def execute(path: Path, timeout: int) -> float:
    """Execute one notebook in place; returns the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    started = {}

    def cell_start(cell, cell_index):
        started[cell_index] = time.perf_counter()

    def cell_complete(cell, cell_index):
        seconds = time.perf_counter() - started.pop(cell_index, start)
        if seconds > SLOW_CELL:  # so that a stalled or slow cell is named, not guessed
            print(f"{path.name}: cell {cell_index} took {seconds:.1f} s", file=sys.stderr)

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            store_widget_state=True, on_cell_start=cell_start,
                            on_cell_complete=cell_complete)
    client.execute()
    elapsed = time.perf_counter() - start
    for cell in nb.cells:  # execution timestamps only add noise to the notebooks' diffs
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout (s)")
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb"))
    for path in paths:
        print(f"{path}: {execute(path, args.timeout):.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
