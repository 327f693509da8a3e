"""Write the student edition of chapter notebooks: the exercise solutions removed.

A solution in a chapter is the run of cells from a markdown cell that opens
```` ```{solution-start} ex-... ```` through the cell that holds ```` ```{solution-end} ````
(sphinx-exercise's gated solutions). The student edition drops those cells and leaves a
short markdown cell in their place, so the exercise reads "solution removed" instead of
vanishing. Everything else (text, code, outputs) is kept.

The book build calls :func:`write_editions` (see ``_ext/afd_book.py``); by hand::

    python scripts/student_edition.py OUTDIR chapters/*.ipynb
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

# A solution opens with the solution-start directive (its options and closing fence follow)
# and ends with the solution-end directive and its closing fence.
MARKER = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|:{3,})\{(?P<kind>solution-start|solution-end)\}[ \t]*(?P<label>\S*)"
    r"[^\n]*\n?", re.M)

PLACEHOLDER = "*(The solution to exercise {label} is removed in the student edition.)*"


class SolutionMarkupError(ValueError):
    """A solution-start without its solution-end (or the reverse) in a notebook."""


def _closing_fence(src: str, pos: int, fence: str) -> int:
    """Position just after the directive's closing fence at or after ``pos``."""
    m = re.compile(rf"^[ \t]*{re.escape(fence)}[ \t]*$\n?", re.M).search(src, pos)
    return m.end() if m else len(src)


def strip_solutions(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """Return a copy of ``nb`` without its solutions, and the labels of those exercises.

    Markdown outside a solution is kept (an exercise often shares a cell with the end of
    the previous solution); code cells inside a solution are dropped, and a one-line note
    stands where each solution was.

    Raises
    ------
    SolutionMarkupError
        When the solution-start / solution-end markers do not pair up.
    """
    out = copy.deepcopy(nb)
    cells, removed, inside = [], [], None
    for index, cell in enumerate(out.cells):
        if cell.cell_type != "markdown":
            if inside is None:
                cells.append(cell)
            continue
        src, kept, pos = cell.source, [], 0
        for m in MARKER.finditer(src):
            if m.start() < pos:
                continue  # inside a closing fence already consumed
            if m.group("kind") == "solution-start":
                if inside is not None:
                    raise SolutionMarkupError(
                        f"cell {index}: solution-start inside the solution to {inside}")
                inside = m.group("label")
                kept.append(src[pos:m.start()])
                kept.append(PLACEHOLDER.format(label=inside) + "\n")
                removed.append(inside)
                pos = _closing_fence(src, m.end(), m.group("fence"))
            else:
                if inside is None:
                    raise SolutionMarkupError(f"cell {index}: solution-end without solution-start")
                inside = None
                pos = _closing_fence(src, m.end(), m.group("fence"))
        if inside is None:
            kept.append(src[pos:])
        text = "".join(kept).strip()
        if text:
            cell.source = text
            cells.append(cell)
    if inside is not None:
        raise SolutionMarkupError(f"the solution to {inside} has no solution-end")
    out.cells = cells
    out.metadata["afd_edition"] = "student"
    return out, removed


def write_editions(notebooks: list[Path], outdir: Path) -> dict[str, list[str]]:
    """Write the student edition of each notebook into ``outdir`` (same file names).

    Returns
    -------
    dict
        File name -> labels of the exercises whose solutions were removed.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    report = {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        student, removed = strip_solutions(nb)
        nbformat.write(student, outdir / path.name)
        report[path.name] = removed
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        report = write_editions(args.notebooks, args.outdir)
    except SolutionMarkupError as exc:
        print(f"student_edition: {exc}", file=sys.stderr)
        return 2
    for name, removed in report.items():
        print(f"{name}: {len(removed)} solutions removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
