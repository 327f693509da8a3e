"""Numbers a chapter shows, at the precision that carries meaning.

The chapters are stored with their outputs and nbval compares a fresh run with them, so
every number a chapter glues into its prose or prints must mean the same on every machine:
not a float's last digits (they move with the CPU and the BLAS kernel), not an optimizer's
residual or a rounding residue, and never a signed zero. This module is the one place
where that is done:

* :func:`rounded` -- a number as a plain Python ``int`` or ``float``, rounded to ``sig``
  significant digits or to ``decimals`` decimal places, ``-0.0`` turned into ``0.0``;
  NaN and infinities are refused;
* :func:`glue` -- :func:`myst_nb.glue` of a rounded number (ints and text pass through);
  state the precision the prose shows (``{glue:text}`key:.1f``` needs ``decimals=1``);
* :func:`below` -- a stated bound for a residual: ``limit`` if ``|value| < limit``, an error
  otherwise, so that the prose can say "below 1e-6" and the claim is checked on every run;
* :func:`fmt` -- text for printing: a number or a sequence of numbers formatted with a
  format spec, with no negative zeros.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from afdlib.errors import AfdInputError

__all__ = ["rounded", "glue", "below", "fmt"]


def _plain(value, name: str):
    """``value`` as a Python int, float or str (numpy scalars and 0-d arrays unwrapped)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AfdInputError(f"{name}: expected a number or text, got {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        raise AfdInputError(f"{name}: refusing to show {value} (NaN or infinite)")
    return value


def rounded(value, *, sig: int | None = None, decimals: int | None = None,
            name: str = "value") -> int | float:
    """``value`` rounded to ``sig`` significant digits or ``decimals`` decimal places.

    Parameters
    ----------
    value : int or float (Python or numpy)
        The number.
    sig : int, optional
        Significant digits to keep, >= 1.
    decimals : int, optional
        Decimal places to keep (negative values round to tens, hundreds, ...).
    name : str
        What the number is, for error messages.

    Returns
    -------
    int or float
        Integers unchanged (as ``int``); floats rounded, as ``float``, with ``-0.0`` made
        ``0.0``.

    Raises
    ------
    AfdInputError
        If ``value`` is NaN, infinite or not a number; if a float is given neither or both
        of ``sig`` and ``decimals``.
    """
    value = _plain(value, name)
    if isinstance(value, str):
        raise AfdInputError(f"{name}: expected a number, got text {value!r}")
    if isinstance(value, int):
        return value
    if (sig is None) == (decimals is None):
        raise AfdInputError(f"{name}: give exactly one of sig= and decimals= for a float "
                            f"(the precision the text shows), got {value!r}")
    if sig is not None:
        if isinstance(sig, bool) or not isinstance(sig, int) or sig < 1:
            raise AfdInputError(f"{name}: sig must be an integer >= 1, got {sig!r}")
        if value == 0.0:
            return 0.0
        decimals = sig - 1 - math.floor(math.log10(abs(value)))
    elif isinstance(decimals, bool) or not isinstance(decimals, int):
        raise AfdInputError(f"{name}: decimals must be an integer, got {decimals!r}")
    out = float(round(value, decimals))
    return 0.0 if out == 0.0 else out


def glue(name: str, value, *, sig: int | None = None, decimals: int | None = None) -> None:
    """Glue a number (or a short text) for the chapter's prose, rounded as stated.

    Parameters
    ----------
    name : str
        The glue key (prefixed with the chapter's slug).
    value : int, float or str
        Integers and text are glued as they are; floats need ``sig`` or ``decimals``
        (see :func:`rounded`), matching the format spec of the ``{glue:text}`` role.
    sig, decimals : int, optional
        Precision of a float.

    Raises
    ------
    AfdInputError
        As :func:`rounded`.
    """
    from myst_nb import glue as myst_glue

    value = _plain(value, name)
    if not isinstance(value, str):
        value = rounded(value, sig=sig, decimals=decimals, name=name)
    myst_glue(name, value, display=False)


def below(value, limit: float, *, name: str = "value") -> float:
    """The stated bound ``limit`` for a residual ``value``, after checking ``|value| < limit``.

    Glue or print this instead of the residual itself (an optimizer's tolerance or a
    rounding error, whose digits differ from machine to machine): the prose states the
    bound, and every run of the chapter checks it.

    Raises
    ------
    AfdInputError
        If ``|value| >= limit`` (the claim does not hold), or either is not a finite number.
    """
    value = _plain(value, name)
    limit = _plain(limit, "limit")
    if isinstance(value, str) or isinstance(limit, str) or not limit > 0:
        raise AfdInputError(f"{name}: need a number and a positive limit, got {value!r}, "
                            f"{limit!r}")
    if not abs(value) < limit:
        raise AfdInputError(f"{name} = {value!r} is not below the stated bound {limit!r}")
    return float(limit)


def fmt(value, spec: str = "") -> str:
    """``format(value, spec)`` without negative zeros; sequences as ``[a, b, ...]``.

    Parameters
    ----------
    value : number, str or sequence of numbers
    spec : str
        A format spec, e.g. ``".2f"``, ``",.0f"`` or ``"+.1%"``.

    Returns
    -------
    str
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(fmt(v, spec) for v in np.asarray(value).ravel().tolist()) + "]"
    value = _plain(value, "value")
    if isinstance(value, str):
        return format(value, spec)
    text = format(value, spec)
    mantissa = text.split("e")[0].split("E")[0]
    if math.copysign(1.0, value) < 0 and not any(ch in "123456789" for ch in mantissa):
        text = format(0.0, spec)  # a negative number that shows as zero: no sign
    return text
