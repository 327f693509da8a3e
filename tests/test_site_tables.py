"""afdlib.plots.tables: one formatting, shown as an HTML table and as aligned text."""

from __future__ import annotations

import re

import numpy as np
import pytest

from afdlib.errors import AfdInputError
from afdlib.plots.tables import table


def test_dict_rows_become_an_html_table_with_formatted_numbers():
    rows = [{"gpu": "h100", "alpha_A": 2.4567e-8, "ratio": 8},
            {"gpu": "h20", "alpha_A": np.float64(1.1e-8), "ratio": None}]
    t = table(rows, headers={"alpha_A": "alpha_A [s/token]"}, formats={"alpha_A": ".3g"},
              caption="Coefficients.")
    html = t._repr_html_()
    assert html.count("<tr>") == 3 and "<caption>Coefficients.</caption>" in html
    assert '<th style="text-align:right">alpha_A [s/token]</th>' in html
    assert '<td style="text-align:right">2.46e-08</td>' in html
    assert '<td style="text-align:right">1.1e-08</td>' in html  # numpy scalars too
    assert '<td style="text-align:right">--</td>' in html  # missing value
    assert '<td style="text-align:left">h100</td>' in html
    assert "overflow-x:auto" in html  # wide tables scroll


def test_text_form_has_the_same_cells_aligned():
    t = table([["a", 1.5], ["bbb", 10.25]], ["name", "x [s]"], formats={"x [s]": ".2f"})
    lines = repr(t).splitlines()
    assert lines[0].split() == ["name", "x", "[s]"]
    assert lines[2] == "a      1.50" and lines[3] == "bbb   10.25"  # numbers right-aligned
    assert len({len(line) for line in lines[1:]}) == 1  # aligned


def test_html_is_escaped_and_functions_format():
    t = table([{"k": "<b>", "v": 3}], formats={"v": lambda v: f"{v} GPUs"})
    assert "&lt;b&gt;" in t._repr_html_() and "3 GPUs" in t._repr_html_()


def test_bad_rows_name_the_problem():
    with pytest.raises(AfdInputError, match="columns"):
        table([[1, 2]])
    with pytest.raises(AfdInputError, match=re.escape("rows[1]")):
        table([[1, 2], [3]], ["a", "b"])
    assert repr(table([], ["a"])).splitlines()[0] == "a"
