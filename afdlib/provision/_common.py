"""Validation helpers and the instance prices shared by the provisioning modules."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from afdlib.costs import StepCoefficients
from afdlib.errors import AfdInputError

__all__ = ["InstancePrices", "check_coefficients", "check_scalar", "check_ratio", "as_prices"]


def check_scalar(name: str, value, *, minimum: float = 0.0, strict: bool = False) -> float:
    """A finite real number ``>= minimum`` (``> minimum`` when ``strict``), as a float.

    Raises
    ------
    AfdInputError
        Naming ``name`` when ``value`` is not a number, NaN, infinite or too small.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise AfdInputError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise AfdInputError(f"{name} must be finite, got {value}")
    if value < minimum or (strict and value == minimum):
        raise AfdInputError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value:g}")
    return value


def check_coefficients(coeffs) -> StepCoefficients:
    """Make sure ``coeffs`` is a :class:`afdlib.costs.StepCoefficients` (validated on creation)."""
    if not isinstance(coeffs, StepCoefficients):
        raise AfdInputError(
            f"coefficients must be afdlib.costs.StepCoefficients, got {type(coeffs).__name__}")
    return coeffs


def check_ratio(ratio) -> np.ndarray:
    """Ratios as a float array; every entry finite and > 0."""
    arr = np.asarray(ratio, dtype=float)
    if arr.size and not np.all(np.isfinite(arr)):
        raise AfdInputError("ratio must be finite")
    if arr.size and np.any(arr <= 0):
        raise AfdInputError(f"ratio must be > 0, got {float(arr.min()):g}")
    return arr


@dataclass(frozen=True)
class InstancePrices:
    """Prices of an Attention instance and of an FFN instance (any common unit, e.g. $/h).

    The cost-weighted objective divides the bundle's token rate by its price,
    ``r * attention + ffn``. With both prices equal to 1 it is the throughput per
    instance of the paper.

    Parameters
    ----------
    attention : float
        Price of one Attention instance, > 0.
    ffn : float
        Price of one FFN instance, > 0.
    """

    attention: float = 1.0
    ffn: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "attention",
                           check_scalar("attention price", self.attention, strict=True))
        object.__setattr__(self, "ffn", check_scalar("FFN price", self.ffn, strict=True))

    @property
    def ratio(self) -> float:
        """``ffn / attention``: how many Attention instances one FFN instance costs."""
        return self.ffn / self.attention

    @property
    def is_uniform(self) -> bool:
        """True when both prices are equal (throughput per instance, up to a constant)."""
        return self.ffn == self.attention

    def bundle_cost(self, ratio):
        """Price of an rA-1F bundle, ``ratio * attention + ffn`` (price units)."""
        return self.attention * np.asarray(ratio, dtype=float) + self.ffn

    def throughput(self, ratio, batch, step_time):
        """Tokens/s per price unit, ``r B / ((r p_A + p_F) tau)``; with equal prices of 1,
        the throughput per instance ``r B / ((r + 1) tau)``."""
        return ratio * batch / (self.bundle_cost(ratio) * step_time)


def as_prices(prices) -> InstancePrices:
    """``None`` means equal prices; otherwise an :class:`InstancePrices`."""
    if prices is None:
        return InstancePrices()
    if not isinstance(prices, InstancePrices):
        raise AfdInputError(f"prices must be InstancePrices, got {type(prices).__name__}")
    return prices
