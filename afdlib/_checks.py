"""Validation of scalar parameters shared by the layers (one message style everywhere)."""

from __future__ import annotations

import math
import numbers

from afdlib.errors import AfdInputError

__all__ = ["check_int"]


def check_int(name: str, value, *, minimum: int) -> int:
    """``value`` as an int ``>= minimum``, or :class:`AfdInputError` naming ``name``.

    Integral floats (``3.0``) are accepted; booleans, NaN, infinities and fractions are not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AfdInputError(f"{name} must be an integer, got {value!r}")
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise AfdInputError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise AfdInputError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)
