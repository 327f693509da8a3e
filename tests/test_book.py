"""The chapters' number helpers: rounding, signed zeros, refused NaN, bounds, printing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from afdlib import book
from afdlib.errors import AfdInputError


@pytest.mark.parametrize(("value", "kwargs", "expected"), [
    (7.350083709915169, {"decimals": 1}, 7.4),
    (7.350084238832307, {"decimals": 1}, 7.4),
    (0.48943284308406826, {"decimals": 2}, 0.49),
    (2790.963595499958, {"sig": 3}, 2790.0),
    (2790.963595499958, {"decimals": -2}, 2800.0),
    (1.1324274851176597e-14, {"sig": 1}, 1e-14),
    (-123.456, {"sig": 2}, -120.0),
    (0.0, {"sig": 3}, 0.0),
])
def test_rounded_keeps_the_stated_precision(value, kwargs, expected):
    assert book.rounded(value, **kwargs) == expected


def test_rounded_turns_negative_zero_into_zero():
    out = book.rounded(-0.0004, decimals=2)
    assert out == 0.0 and math.copysign(1.0, out) == 1.0
    out = book.rounded(-0.0, sig=2)
    assert math.copysign(1.0, out) == 1.0


def test_rounded_gives_plain_python_numbers():
    out = book.rounded(np.float64(2.567), decimals=1)
    assert type(out) is float and repr(out) == "2.6"
    assert type(book.rounded(np.int64(5))) is int
    assert type(book.rounded(np.array(3.25), decimals=1)) is float


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_rounded_refuses_nan_and_infinities(value):
    with pytest.raises(AfdInputError, match="NaN or infinite"):
        book.rounded(value, decimals=1)


def test_a_float_needs_exactly_one_precision():
    with pytest.raises(AfdInputError, match="exactly one of sig= and decimals="):
        book.rounded(1.5)
    with pytest.raises(AfdInputError, match="exactly one of sig= and decimals="):
        book.rounded(1.5, sig=2, decimals=1)
    with pytest.raises(AfdInputError, match="sig must be an integer >= 1"):
        book.rounded(1.5, sig=0)
    with pytest.raises(AfdInputError, match="expected a number"):
        book.rounded(True, decimals=1)


def test_below_states_the_bound_and_checks_it():
    assert book.below(2.9e-7, 1e-5) == 1e-5
    assert book.below(-2.9e-7, 1e-5) == 1e-5
    with pytest.raises(AfdInputError, match="not below the stated bound"):
        book.below(3e-5, 1e-5, name="gap")
    with pytest.raises(AfdInputError, match="NaN or infinite"):
        book.below(math.nan, 1e-5)


@pytest.mark.parametrize(("value", "spec", "expected"), [
    (-0.0001, ".2f", "0.00"),
    (-0.0001, ">8.2f", "    0.00"),
    (-0.0001, "+.1f", "+0.0"),
    (-0.0, ".1f", "0.0"),
    (-0.02, ".2f", "-0.02"),
    (-1e-5, ".0e", "-1e-05"),
    (np.float64(1234.5678), ",.1f", "1,234.6"),
    ([0.14, -2.25, -0.001], ".2f", "[0.14, -2.25, 0.00]"),
    (np.array([[1.0, -0.0]]), ".1f", "[1.0, 0.0]"),
    ("text", ">6", "  text"),
])
def test_fmt_prints_without_negative_zeros(value, spec, expected):
    assert book.fmt(value, spec) == expected


def test_glue_stores_the_rounded_python_number(monkeypatch):
    pytest.importorskip("myst_nb")
    import myst_nb

    seen = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: seen.update(
        {name: (value, display)}))
    book.glue("x_ratio", np.float64(7.350084238832307), decimals=1)
    book.glue("x_count", np.int64(45))
    book.glue("x_case", "mooncake, B = 8")
    assert seen == {"x_ratio": (7.4, False), "x_count": (45, False),
                    "x_case": ("mooncake, B = 8", False)}
    assert repr(seen["x_ratio"][0]) == "7.4" and type(seen["x_count"][0]) is int
    with pytest.raises(AfdInputError, match="x_bad: give exactly one"):
        book.glue("x_bad", 0.5)


def test_every_chapter_glues_through_the_helper():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for path in sorted((root / "chapters").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "myst_nb" not in code, f"{path.name} imports myst_nb directly"
        assert "display=False" not in code, f"{path.name} calls myst_nb's glue"
