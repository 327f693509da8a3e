"""The JSON coefficient file of the linear step-time model.

The model itself (:class:`afdlib.model.StepCoefficients`, its stage times and the step
time) lives in :mod:`afdlib.model`; this module reads and writes its file, the JSON
object ::

    {"alpha_A": ..., "beta_A": ..., "alpha_F": ..., "beta_F": ...,
     "alpha_C": ..., "beta_C": ..., "comm_scales_with": "B" | "rB"}

with intercepts (``beta_*``) in seconds and slopes (``alpha_*``) in seconds per token.
"""

from __future__ import annotations

import json
from pathlib import Path

from afdlib.errors import AfdInputError
from afdlib.model import StepCoefficients

__all__ = ["StepCoefficients", "load_coefficients", "save_coefficients"]


def load_coefficients(path: str | Path) -> StepCoefficients:
    """Read a JSON coefficient file.

    Parameters
    ----------
    path : str or Path
        File holding one JSON object with the keys of :class:`StepCoefficients`.

    Raises
    ------
    AfdInputError
        If the file is missing, unreadable, not JSON, or holds bad coefficients.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AfdInputError(f"{path}: no such coefficient file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AfdInputError(f"{path}: cannot read coefficient file ({exc})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise AfdInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:
        raise AfdInputError(f"{path}: {exc}") from None
    return StepCoefficients.from_dict(data, source=str(path))


def save_coefficients(coeffs: StepCoefficients, path: str | Path) -> None:
    """Write ``coeffs`` as a JSON coefficient file (overwrites ``path``)."""
    Path(path).write_text(json.dumps(coeffs.to_dict(), indent=2) + "\n", encoding="utf-8")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid coefficient")
