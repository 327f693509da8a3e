"""The JSON coefficient file of the linear step-time model.

The model itself (:class:`afdlib.model.StepCoefficients`, its stage times and the step
time) lives in :mod:`afdlib.model`; this module reads and writes its file, the JSON
object ::

    {"alpha_A": ..., "beta_A": ..., "alpha_F": ..., "beta_F": ...,
     "alpha_C": ..., "beta_C": ..., "comm_scales_with": "B" | "rB",
     "gpus": {"attention": n, "ffn": n}}

with intercepts (``beta_*``) in seconds and slopes (``alpha_*``) in seconds per token, and
optionally the GPUs of one Attention instance and of the FFN instance (for a per-GPU
objective; :func:`load_coefficient_file` returns them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from afdlib.errors import AfdInputError
from afdlib.model import InstanceGPUs, StepCoefficients

__all__ = ["StepCoefficients", "CoefficientFile", "load_coefficients", "load_coefficient_file",
           "save_coefficients"]


@dataclass(frozen=True)
class CoefficientFile:
    """What a coefficient file holds.

    Attributes
    ----------
    coefficients : StepCoefficients
    gpus : InstanceGPUs or None
        The file's ``"gpus"`` object, if it has one.
    path : str
        The file.
    """

    coefficients: StepCoefficients
    gpus: InstanceGPUs | None
    path: str


def load_coefficients(path: str | Path) -> StepCoefficients:
    """Read a JSON coefficient file's coefficients (see :func:`load_coefficient_file`).

    Parameters
    ----------
    path : str or Path
        File holding one JSON object with the keys of :class:`StepCoefficients`.

    Raises
    ------
    AfdInputError
        If the file is missing, unreadable, not JSON, or holds bad coefficients.
    """
    return load_coefficient_file(path).coefficients


def load_coefficient_file(path: str | Path) -> CoefficientFile:
    """Read a JSON coefficient file: the coefficients and, if given, the GPU counts.

    Raises
    ------
    AfdInputError
        If the file is missing, unreadable, not JSON, or holds bad coefficients or GPU
        counts (the message names the file and the field).
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
    gpus = None
    if isinstance(data, dict) and "gpus" in data:
        data = dict(data)
        gpus = InstanceGPUs.from_dict(data.pop("gpus"), source=f"{path}: gpus")
    return CoefficientFile(StepCoefficients.from_dict(data, source=str(path)), gpus, str(path))


def save_coefficients(coeffs: StepCoefficients, path: str | Path, *,
                      gpus: InstanceGPUs | None = None) -> None:
    """Write ``coeffs`` (and ``gpus``, if given) as a JSON coefficient file (overwrites)."""
    data = coeffs.to_dict()
    if gpus is not None:
        data["gpus"] = gpus.to_dict()
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid coefficient")
