"""Validation of the inputs every layer takes, with one message style.

Each check returns the value in its canonical type (an ``int``, a ``float``, a float
array) or raises :class:`afdlib.errors.AfdInputError` whose message names the parameter and
whose ``parameter`` attribute is the parameter's bare name (the first word of ``name``:
``"batch B"`` -> ``"batch"``), so that the command line can point at its own option.

The workload, costs, provisioning and simulation layers and the command line all use these
functions; checks that need a layer's own types (a workload, a bundle) live in that layer
and are built from these.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from afdlib.errors import AfdInputError

__all__ = ["check_int", "check_number", "check_choice", "check_array", "check_type",
           "fail"]


def fail(name: str, message: str) -> AfdInputError:
    """The error for parameter ``name``: ``AfdInputError(message, parameter=first word)``."""
    return AfdInputError(message, parameter=name.split()[0] if name.split() else None)


def check_int(name: str, value, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``.

    Integral floats (``3.0``) and numpy integers are accepted; booleans, NaN, infinities
    and fractions are not.

    Raises
    ------
    AfdInputError
        ``"{name} must be an integer, got ..."`` or ``"{name} must be >= {minimum}, got ..."``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, f"{name} must be an integer, got {value!r}")
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise fail(name, f"{name} must be an integer, got {value!r}")
    if minimum is not None and int(value) < minimum:
        raise fail(name, f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and int(value) > maximum:
        raise fail(name, f"{name} must be <= {maximum}, got {value!r}")
    return int(value)


def check_number(name: str, value, *, minimum: float | None = None, strict: bool = False,
                 maximum: float | None = None, unit: str = "") -> float:
    """``value`` as a finite float ``>= minimum`` (``> minimum`` when ``strict``).

    Parameters
    ----------
    name : str
        The parameter, as the message should name it (``"theta"``, ``"coefficient beta_F"``).
    value : real number (Python or numpy)
    minimum, maximum : float, optional
        Bounds (``maximum`` is inclusive).
    strict : bool
        Exclude ``minimum`` itself.
    unit : str
        Unit for the message (e.g. ``"tokens"``).

    Raises
    ------
    AfdInputError
        ``"{name} must be a number, got ..."``, ``"{name} must be finite, got ..."`` or
        ``"{name} must be >= {minimum}, got ..."``.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, f"{name} must be a number, got {value!r}")
    value = float(value)
    suffix = f" {unit}" if unit else ""
    if not math.isfinite(value):
        raise fail(name, f"{name} must be finite, got {value}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise fail(name, f"{name} must be {'>' if strict else '>='} {minimum:g}{suffix}, "
                         f"got {value:g}")
    if maximum is not None and value > maximum:
        raise fail(name, f"{name} must be <= {maximum:g}{suffix}, got {value:g}")
    return value


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices`` (a tuple of the library's constants).

    Raises
    ------
    AfdInputError
        ``"{name} must be one of a, b, c, got ..."``.
    """
    if value not in choices:
        raise fail(name, f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def check_array(name: str, value, *, minimum: float | None = None, strict: bool = False,
                integer: bool = False, nonempty: bool = False) -> np.ndarray:
    """``value`` as a float array, every entry finite (and ``>= minimum``, or ``>``).

    Raises
    ------
    AfdInputError
        Naming ``name`` and the first offending entry.
    """
    arr = np.asarray(value, dtype=float)
    if nonempty and arr.size == 0:
        raise fail(name, f"{name} must not be empty")
    if arr.size and not np.all(np.isfinite(arr)):
        raise fail(name, f"{name} must be finite")
    if integer and arr.size and np.any(arr != np.round(arr)):
        raise fail(name, f"{name} must be integers, got {float(arr[arr != np.round(arr)][0]):g}")
    if minimum is not None and arr.size:
        low = arr <= minimum if strict else arr < minimum
        if np.any(low):
            raise fail(name, f"{name} must be {'>' if strict else '>='} {minimum:g}, got "
                             f"{float(arr.min()):g}")
    return arr


def check_type(name: str, value, kind: type | tuple[type, ...], what: str | None = None):
    """``value`` if it is an instance of ``kind``.

    Raises
    ------
    AfdInputError
        ``"{name} must be {what}, got {type}"``.
    """
    if not isinstance(value, kind):
        if what is None:
            kinds = kind if isinstance(kind, tuple) else (kind,)
            what = " or ".join(k.__name__ for k in kinds)
        raise fail(name, f"{name} must be {what}, got {type(value).__name__}")
    return value
