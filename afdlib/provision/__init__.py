"""Provisioning rules for an rA-1F bundle: how many Attention workers per FFN worker.

Data flows workload -> costs -> **provision** -> sim. Submodules:

* :mod:`afdlib.provision.meanfield`: throughput per instance with each worker's load at
  its mean, the closed-form optimum ``r* = max(r_K, r_G)`` and its regime, for
  communication independent of r and growing with r, direct numerical maximization and
  the best integer ratio;
* :mod:`afdlib.provision.barrier`: the Gaussian barrier refinement (the slowest of r
  workers sets the step), with a robust, vectorized ``E[tau]``;
* :mod:`afdlib.provision.sensitivity`: derivatives of the optimum (analytic and numerical);
* :mod:`afdlib.provision.exact`: the barrier with the exact law of a worker's load (the
  B-fold convolution of a slot's stationary load law) instead of its normal approximation.

:func:`provision` runs everything for one operating point (what ``afd provision`` prints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.provision._common import InstancePrices
from afdlib.provision.barrier import (
    BarrierRatio,
    attention_limited_ratio,
    barrier_moments,
    barrier_ratio,
    expected_excess,
    expected_max_normal,
    expected_step_time,
    max_normal_median,
    step_time_decomposition,
    throughput_barrier,
)
from afdlib.provision.exact import (
    ExactRatio,
    WorkerLoadLaw,
    exact_ratio,
    expected_step_time_exact,
    throughput_exact,
    worker_load_law,
)
from afdlib.provision.meanfield import (
    REGIMES,
    MeanFieldRatio,
    best_integer_mean_field,
    best_integer_ratio,
    comm_grows_with_ratio,
    maximize_ratio,
    mean_field_ratio,
    mean_field_step_time,
    step_components,
    throughput_mean_field,
)
from afdlib.provision.sensitivity import (
    PARAMETERS,
    Sensitivity,
    mean_field_sensitivities,
    numerical_sensitivities,
)

__all__ = [
    "InstancePrices", "REGIMES", "MeanFieldRatio", "BarrierRatio", "ProvisionResult",
    "PARAMETERS", "Sensitivity",
    "step_components", "mean_field_step_time", "throughput_mean_field", "mean_field_ratio",
    "maximize_ratio", "best_integer_ratio", "best_integer_mean_field", "comm_grows_with_ratio",
    "expected_max_normal", "expected_excess", "max_normal_median", "barrier_moments",
    "expected_step_time", "step_time_decomposition", "throughput_barrier", "barrier_ratio",
    "attention_limited_ratio",
    "mean_field_sensitivities", "numerical_sensitivities", "provision", "default_max_ratio",
    "WorkerLoadLaw", "ExactRatio", "worker_load_law", "expected_step_time_exact",
    "throughput_exact", "exact_ratio",
]

#: Upper end of the default integer range.
_MAX_DEFAULT_RATIO = 4096


def default_max_ratio(r_star_mean_field: float, r_star_barrier: float) -> int:
    """Default largest ratio of the table: ``max(32, ceil(2 max(r*_mf, r*_barrier)))``, <= 4096.

    Twice the larger continuous optimum keeps both integer optima well inside the range.
    """
    top = max(r_star_mean_field, r_star_barrier)
    return int(min(max(32, math.ceil(2.0 * top)), _MAX_DEFAULT_RATIO))


@dataclass(frozen=True)
class ProvisionResult:
    """Everything ``afd provision`` reports for one operating point.

    Attributes
    ----------
    theta, load_std : float
        Per-slot load mean and standard deviation (tokens).
    batch : int
        Slots per Attention worker.
    coeffs : afdlib.costs.StepCoefficients
    prices : InstancePrices
    mean_field : MeanFieldRatio
        Closed-form optimum and regime.
    r_star_numeric : float
        Maximizer of the mean-field throughput over ``[1e-4, 1e9]`` found by direct numerical
        search (log grid and Brent), a check on the closed form.
    r_int_mean_field : int
        Best integer ratio of the mean-field model in ``1 .. max_ratio``.
    barrier : BarrierRatio
        Optimum of the barrier model.
    ratios : ndarray
        ``1 .. max_ratio``.
    throughput_mean_field, throughput_barrier : ndarray
        Throughput per instance (or per price unit) at each ratio.
    """

    theta: float
    load_std: float
    batch: int
    coeffs: object
    prices: InstancePrices
    mean_field: MeanFieldRatio
    r_star_numeric: float
    r_int_mean_field: int
    barrier: BarrierRatio
    ratios: np.ndarray
    throughput_mean_field: np.ndarray
    throughput_barrier: np.ndarray

    @property
    def max_ratio(self) -> int:
        """Largest ratio of the table."""
        return int(self.ratios[-1])

    def to_dict(self) -> dict:
        """The JSON object of ``afd provision --json`` (numbers as Python floats and ints)."""
        mf = self.mean_field
        table = {str(int(r)): {"mean_field": float(a), "barrier": float(b)}
                 for r, a, b in zip(self.ratios, self.throughput_mean_field,
                                    self.throughput_barrier, strict=True)}
        return {
            "theta": self.theta,
            "load_std": self.load_std,
            "batch": self.batch,
            "r_A": mf.r_A,
            "r_C": mf.r_C,
            "r_peak": mf.r_peak,
            "r_star": mf.r_star,
            "regime": mf.regime,
            "r_int_mean_field": self.r_int_mean_field,
            "r_int_barrier": self.barrier.r_int,
            "throughput_per_instance": table,
            "coeffs": self.coeffs.to_dict(),
            "comm_scales_with": mf.comm_scales_with,
            "r_star_formula": mf.formula,
            "r_crossing": mf.r_crossing,
            "r_envelope_peak": mf.r_envelope_peak,
            "r_peak_C": mf.r_peak_C,
            "r_CF": mf.r_CF,
            "r_star_numeric": self.r_star_numeric,
            "r_star_barrier": self.barrier.r_star,
            "throughput_star_mean_field": mf.throughput,
            "throughput_star_barrier": self.barrier.throughput,
            "max_ratio": self.max_ratio,
            "r_int_at_max_ratio": {"mean_field": self.r_int_mean_field == self.max_ratio,
                                   "barrier": self.barrier.at_max_ratio},
            "prices": {"attention": self.prices.attention, "ffn": self.prices.ffn},
            "throughput_unit": ("tokens/s per instance" if self.prices.is_uniform
                                and self.prices.attention == 1.0 else "tokens/s per price unit"),
        }


def provision(coeffs, theta, load_std, batch, max_ratio: int | None = None,
              prices=None) -> ProvisionResult:
    """Mean-field and barrier provisioning for one operating point.

    Parameters
    ----------
    coeffs : afdlib.costs.StepCoefficients
        Step-time coefficients (s, s/token).
    theta : float
        Per-slot stationary mean load (tokens), >= 0.
    load_std : float
        Per-slot stationary load standard deviation (tokens), >= 0.
    batch : int
        Slots per Attention worker B, >= 1.
    max_ratio : int, optional
        Largest integer ratio of the table and of the integer search (default
        :func:`default_max_ratio`).
    prices : InstancePrices, optional
        Instance prices (default: equal, giving throughput per instance).

    Returns
    -------
    ProvisionResult
    """
    from afdlib.provision._common import as_prices, check_scalar

    prices = as_prices(prices)
    if isinstance(batch, bool) or float(check_scalar("batch", batch, minimum=1.0)) != int(batch):
        raise AfdInputError(f"batch must be an integer >= 1, got {batch!r}")
    batch = int(batch)
    theta = check_scalar("theta", theta)
    load_std = check_scalar("load_std", load_std)
    mf = mean_field_ratio(coeffs, theta, batch, prices)

    def lam_mf(r):
        return throughput_mean_field(coeffs, theta, batch, r, prices)

    def lam_b(r):
        return throughput_barrier(coeffs, theta, load_std, batch, r, prices)

    r_num, _ = maximize_ratio(lam_mf, 1e-4, 1e9)   # direct search, blind to the closed form
    if max_ratio is None:
        coarse = barrier_ratio(coeffs, theta, load_std, batch, max_ratio=1, prices=prices)
        max_ratio = default_max_ratio(mf.r_star, coarse.r_star)
    br = barrier_ratio(coeffs, theta, load_std, batch, max_ratio=max_ratio, prices=prices)
    r_int_mf, table_mf = best_integer_ratio(lam_mf, max_ratio)
    ratios = np.arange(1, br.max_ratio + 1)
    return ProvisionResult(
        theta=theta, load_std=load_std, batch=batch, coeffs=coeffs, prices=prices,
        mean_field=mf, r_star_numeric=r_num, r_int_mean_field=r_int_mf, barrier=br,
        ratios=ratios, throughput_mean_field=table_mf, throughput_barrier=lam_b(ratios))
