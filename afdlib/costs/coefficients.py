"""The linear step-time model of an AFD bundle and its JSON coefficient file.

One decode step of an rA-1F bundle with B slots per Attention worker costs

* attention on a worker with token load T:  ``t_A(T) = alpha_A * T + beta_A``
* communication:  ``t_C = alpha_C * B + beta_C`` (``comm_scales_with="B"``, per-worker
  traffic, the first version of the paper) or ``alpha_C * r * B + beta_C``
  (``comm_scales_with="rB"``, traffic through the FFN side grows with the bundle)
* FFN on the aggregated batch of r*B tokens:  ``t_F = alpha_F * r * B + beta_F``

All intercepts (``beta_*``) are in seconds, all slopes (``alpha_*``) in seconds per
token. The coefficient file is the JSON object ::

    {"alpha_A": ..., "beta_A": ..., "alpha_F": ..., "beta_F": ...,
     "alpha_C": ..., "beta_C": ..., "comm_scales_with": "B" | "rB"}
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np

from afdlib.errors import AfdInputError

__all__ = ["StepCoefficients", "load_coefficients", "save_coefficients"]

CommScaling = Literal["B", "rB"]
_NUMERIC = ("alpha_A", "beta_A", "alpha_F", "beta_F", "alpha_C", "beta_C")


@dataclass(frozen=True)
class StepCoefficients:
    """Coefficients of the linear step-time model.

    Parameters
    ----------
    alpha_A : float
        Attention time per cached token read on one worker (s/token), > 0.
    beta_A : float
        Attention time of a step that reads no cache (s), >= 0.
    alpha_F : float
        FFN time per token of the aggregated batch (s/token), > 0.
    beta_F : float
        FFN time independent of the batch, e.g. streaming the weights (s), >= 0.
    alpha_C : float
        Communication time per token (s/token), >= 0.
    beta_C : float
        Communication latency per step (s), >= 0.
    comm_scales_with : {"B", "rB"}
        Whether communication time grows with the worker's batch B or with the
        whole bundle's batch r*B.

    Raises
    ------
    AfdInputError
        If a coefficient is missing, not a finite number, negative, or a slope that
        the provisioning rules divide by (alpha_A, alpha_F) is zero.
    """

    alpha_A: float
    beta_A: float
    alpha_F: float
    beta_F: float
    alpha_C: float = 0.0
    beta_C: float = 0.0
    comm_scales_with: CommScaling = "B"

    def __post_init__(self) -> None:
        for name in _NUMERIC:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise AfdInputError(f"coefficient {name} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise AfdInputError(f"coefficient {name} must be finite, got {value}")
            if value < 0:
                raise AfdInputError(f"coefficient {name} must be >= 0, got {value}")
            object.__setattr__(self, name, value)
        for name in ("alpha_A", "alpha_F"):
            if getattr(self, name) == 0.0:
                raise AfdInputError(
                    f"coefficient {name} must be > 0: the provisioning rules divide by it"
                )
        if self.comm_scales_with not in ("B", "rB"):
            raise AfdInputError(
                f"comm_scales_with must be 'B' or 'rB', got {self.comm_scales_with!r}"
            )

    # -- step-time components -------------------------------------------------
    def attention_time(self, load):
        """Attention time (s) of a worker whose slots hold ``load`` cached tokens in all."""
        return self.alpha_A * np.asarray(load, dtype=float) + self.beta_A

    def ffn_time(self, ratio, batch):
        """FFN time (s) for the aggregated batch of ``ratio * batch`` tokens."""
        return self.alpha_F * np.asarray(ratio, dtype=float) * batch + self.beta_F

    def comm_time(self, ratio, batch):
        """Communication time (s) of one step for ``ratio`` workers of ``batch`` slots."""
        ratio = np.asarray(ratio, dtype=float)
        tokens = batch * ratio if self.comm_scales_with == "rB" else batch * np.ones_like(ratio)
        return self.alpha_C * tokens + self.beta_C

    def to_dict(self) -> dict:
        """The coefficient file's JSON object."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "coefficients") -> StepCoefficients:
        """Build from a mapping with the keys of the coefficient file.

        Unknown keys are rejected so that a typo (``"alpha_a"``) is not silently ignored;
        keys starting with an underscore (comments, provenance) are allowed and ignored.
        """
        if not isinstance(data, dict):
            raise AfdInputError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in data if k not in known and not str(k).startswith("_"))
        if unknown:
            raise AfdInputError(f"{source}: unknown key(s) {', '.join(unknown)}")
        missing = [k for k in ("alpha_A", "beta_A", "alpha_F", "beta_F") if k not in data]
        if missing:
            raise AfdInputError(f"{source}: missing key(s) {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except AfdInputError as exc:
            raise AfdInputError(f"{source}: {exc}") from None


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
