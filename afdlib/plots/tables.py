"""Tables for the book: numbers formatted once, shown as an HTML table (or as text).

Chapters that print text tables can return :func:`table` instead: on the book's page and in
Jupyter it is an HTML table (wide ones scroll inside the column), and its text form, which
notebook tests compare too, has the same formatted numbers in aligned columns.

    table(rows, ["gpu", "alpha_A", "beta_A"], headers={"alpha_A": "alpha_A [ns/token]"},
          formats={"alpha_A": ".3g", "beta_A": ".2f"})
"""

from __future__ import annotations

import html
import numbers
from collections.abc import Callable, Mapping, Sequence

from afdlib.errors import AfdInputError

__all__ = ["Table", "table"]


class Table:
    """A formatted table; displays as HTML in Jupyter and on the book's page.

    Attributes
    ----------
    headers : list of str
        Column headers.
    cells : list of list of str
        Formatted cells, row by row.
    numeric : list of bool
        Whether each column holds numbers (right-aligned).
    caption : str or None
    """

    def __init__(self, headers: list[str], cells: list[list[str]], numeric: list[bool],
                 caption: str | None = None) -> None:
        self.headers, self.cells, self.numeric, self.caption = headers, cells, numeric, caption

    def _repr_html_(self) -> str:
        def cell(tag, text, num):
            align = ' style="text-align:right"' if num else ' style="text-align:left"'
            return f"<{tag}{align}>{html.escape(text)}</{tag}>"

        head = "".join(cell("th", h, n) for h, n in zip(self.headers, self.numeric, strict=True))
        body = "".join(
            "<tr>" + "".join(cell("td", c, n) for c, n in zip(row, self.numeric, strict=True))
            + "</tr>" for row in self.cells)
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return ('<div class="afd-table" style="max-width:100%;overflow-x:auto">'
                '<table class="afd-table" style="border-collapse:collapse;'
                'font-variant-numeric:tabular-nums">'
                f"{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")

    def __repr__(self) -> str:
        widths = [max(len(h), *(len(r[k]) for r in self.cells)) if self.cells else len(h)
                  for k, h in enumerate(self.headers)]

        def line(values):
            return "  ".join(v.rjust(w) if num else v.ljust(w)
                             for v, w, num in zip(values, widths, self.numeric, strict=True)
                             ).rstrip()

        out = [self.caption] if self.caption else []
        out += [line(self.headers), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.cells]
        return "\n".join(out)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def table(rows: Sequence[Mapping | Sequence], columns: Sequence[str] | None = None, *,
          headers: Mapping[str, str] | None = None,
          formats: Mapping[str, str | Callable[[object], str]] | None = None,
          caption: str | None = None, missing: str = "--") -> Table:
    """Format rows as a table.

    Parameters
    ----------
    rows : sequence of mappings or of sequences
        One entry per row: a dict keyed by column, or a sequence in column order.
    columns : sequence of str, optional
        Column keys, in order (default: the first row's keys; required for sequence rows).
    headers : mapping, optional
        Displayed header per column key (default: the key); put units here.
    formats : mapping, optional
        Format spec (``".3g"``) or function per column key; numbers default to ``"g"``.
    caption : str, optional
        A caption above the table.
    missing : str
        Shown for a value that is None or absent.

    Returns
    -------
    Table

    Raises
    ------
    AfdInputError
        Sequence rows without ``columns``, or a row of the wrong length.
    """
    rows = list(rows)
    if columns is None:
        if rows and not isinstance(rows[0], Mapping):
            raise AfdInputError("columns: give the column names for rows that are sequences")
        columns = list(rows[0]) if rows else []
    columns = list(columns)
    headers = dict(headers or {})
    formats = dict(formats or {})
    values = []
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            values.append([row.get(c) for c in columns])
        else:
            if len(row) != len(columns):
                raise AfdInputError(f"rows[{i}]: {len(row)} values for {len(columns)} columns")
            values.append(list(row))
    numeric = [bool(values) and all(_is_number(r[k]) or r[k] is None for r in values)
               and any(_is_number(r[k]) for r in values) for k in range(len(columns))]

    def fmt(value, key):
        if value is None:
            return missing
        spec = formats.get(key)
        if callable(spec):
            return spec(value)
        if _is_number(value):
            return format(value, spec or "g")
        return format(value, spec) if spec else str(value)

    cells = [[fmt(v, c) for v, c in zip(row, columns, strict=True)] for row in values]
    return Table([headers.get(c, c) for c in columns], cells, numeric, caption)
