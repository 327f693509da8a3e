"""The validation module every layer uses: messages name the parameter, and the error
carries its bare name for the command line."""

from __future__ import annotations

import numpy as np
import pytest

from afdlib.errors import AfdInputError
from afdlib.validate import check_array, check_choice, check_int, check_number, check_type


def test_check_int_accepts_integral_values_and_names_the_parameter():
    assert check_int("steps", 3.0, minimum=1) == 3
    assert check_int("steps", np.int64(7), minimum=1) == 7
    for bad, fragment in [(True, "steps must be an integer"), (2.5, "steps must be an integer"),
                          (float("nan"), "steps must be an integer"), (0, "steps must be >= 1"),
                          ("3", "steps must be an integer")]:
        with pytest.raises(AfdInputError, match=fragment) as info:
            check_int("steps", bad, minimum=1)
        assert info.value.parameter == "steps"
    with pytest.raises(AfdInputError, match="batch B must be <= 4"):
        check_int("batch B", 5, maximum=4)


def test_check_number_bounds_and_messages():
    assert check_number("theta", np.float64(2.5), minimum=0.0) == 2.5
    with pytest.raises(AfdInputError, match="theta must be finite, got nan"):
        check_number("theta", float("nan"))
    with pytest.raises(AfdInputError, match="theta must be > 0 tokens, got 0"):
        check_number("theta", 0, minimum=0.0, strict=True, unit="tokens")
    with pytest.raises(AfdInputError, match="efficiency hbm must be <= 1, got 1.5"):
        check_number("efficiency hbm", 1.5, maximum=1.0)
    with pytest.raises(AfdInputError, match="coefficient beta_A must be a number") as info:
        check_number("coefficient beta_A", "1e-3")
    assert info.value.parameter == "coefficient"


def test_check_choice_array_and_type():
    assert check_choice("engine", "step", ("step", "pipeline")) == "step"
    with pytest.raises(AfdInputError, match="engine must be one of step, pipeline, got 'warp'"):
        check_choice("engine", "warp", ("step", "pipeline"))
    np.testing.assert_array_equal(check_array("ratio", [1, 2], minimum=0.0, strict=True), [1, 2])
    with pytest.raises(AfdInputError, match="ratio must be > 0, got 0"):
        check_array("ratio", [1, 0], minimum=0.0, strict=True)
    with pytest.raises(AfdInputError, match="ratio must be finite"):
        check_array("ratio", [1, np.inf])
    with pytest.raises(AfdInputError, match="ratio must be integers, got 2.5"):
        check_array("ratio", [1, 2.5], integer=True)
    with pytest.raises(AfdInputError, match="ratio must not be empty"):
        check_array("ratio", [], nonempty=True)
    with pytest.raises(AfdInputError, match="point must be an OperatingPoint, got dict"):
        check_type("point", {}, int, "an OperatingPoint")
