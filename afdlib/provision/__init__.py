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

from afdlib.model import (
    InstanceGPUs,
    InstancePrices,
    Objective,
    OperatingPoint,
    best_integer_ratio,
    maximize_ratio,
)
from afdlib.provision.barrier import (
    BarrierRatio,
    attention_limited_ratio,
    barrier_moments,
    barrier_ratio,
    excess_by_quadrature,
    expected_excess,
    expected_max_normal,
    expected_step_time,
    gaussian_barrier_overhead,
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
    attention_bound_theta,
    best_integer_mean_field,
    check_point,
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
    perturb,
)
from afdlib.validate import check_int

__all__ = [
    "InstancePrices", "InstanceGPUs", "Objective", "OperatingPoint",
    "REGIMES", "MeanFieldRatio", "BarrierRatio", "ProvisionResult",
    "PARAMETERS", "Sensitivity",
    "step_components", "mean_field_step_time", "throughput_mean_field", "mean_field_ratio",
    "maximize_ratio", "best_integer_ratio", "best_integer_mean_field", "attention_bound_theta",
    "expected_max_normal", "expected_excess", "max_normal_median", "barrier_moments",
    "expected_step_time", "step_time_decomposition", "throughput_barrier", "barrier_ratio",
    "attention_limited_ratio", "gaussian_barrier_overhead", "excess_by_quadrature",
    "mean_field_sensitivities", "numerical_sensitivities", "perturb", "provision",
    "default_max_ratio",
    "WorkerLoadLaw", "ExactRatio", "worker_load_law", "expected_step_time_exact",
    "throughput_exact", "exact_ratio",
]

#: Upper end of the default integer range.
MAX_DEFAULT_RATIO = 4096


def default_max_ratio(r_star_mean_field: float, r_star_barrier: float) -> int:
    """Default largest ratio of the table: ``max(32, ceil(2 max(r*_mf, r*_barrier)))``, <= 4096.

    Twice the larger continuous optimum keeps both integer optima well inside the range.
    """
    top = max(r_star_mean_field, r_star_barrier)
    return int(min(max(32, math.ceil(2.0 * top)), MAX_DEFAULT_RATIO))


@dataclass(frozen=True)
class ProvisionResult:
    """Everything ``afd provision`` reports for one operating point.

    Attributes
    ----------
    point : OperatingPoint
        Coefficients, theta and load_std (tokens), batch B (slots) and the objective.
    mean_field : MeanFieldRatio
        Closed-form optimum and regime.
    r_star_numeric : float
        Maximizer of the mean-field objective over ``[1e-4, 1e9]`` found by direct numerical
        search (log grid and Brent), a check on the closed form.
    r_int_mean_field : int
        Best integer ratio of the mean-field model in ``1 .. max_ratio``.
    barrier : BarrierRatio
        Optimum of the barrier model.
    ratios : ndarray
        ``1 .. max_ratio``.
    throughput_mean_field, throughput_barrier : ndarray
        The objective (throughput per instance, or per price unit) at each ratio.
    """

    point: OperatingPoint
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
        mf, point = self.mean_field, self.point
        table = {str(int(r)): {"mean_field": float(a), "barrier": float(b)}
                 for r, a, b in zip(self.ratios, self.throughput_mean_field,
                                    self.throughput_barrier, strict=True)}
        return {
            "theta": point.theta,
            "load_std": point.load_std,
            "batch": point.batch,
            "r_A": mf.r_A,
            "r_C": mf.r_C,
            "r_FC": mf.r_FC,
            "r_CA": mf.r_CA,
            "r_peak": mf.r_peak,
            "r_star": mf.r_star,
            "regime": mf.regime,
            "r_int_mean_field": self.r_int_mean_field,
            "r_int_barrier": self.barrier.r_int,
            "throughput_per_instance": table,
            "coeffs": point.coeffs.to_dict(),
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
            "prices": {"attention": point.prices.attention, "ffn": point.prices.ffn},
            "throughput_unit": point.objective.unit,
        }


def provision(point: OperatingPoint, *, max_ratio: int | None = None) -> ProvisionResult:
    """Mean-field and barrier provisioning for one operating point.

    Parameters
    ----------
    point : OperatingPoint
        Coefficients, theta and load_std (tokens), an integer batch B >= 1, the objective.
    max_ratio : int, optional
        Largest integer ratio of the table and of the integer search (default
        :func:`default_max_ratio`).

    Returns
    -------
    ProvisionResult
    """
    point = check_point(point)
    point.integer_batch()
    mf = mean_field_ratio(point)

    def lam_mf(r):
        return throughput_mean_field(point, r)

    r_num, _ = maximize_ratio(lam_mf, 1e-4, 1e9)   # direct search, blind to the closed form
    if max_ratio is None:
        coarse = barrier_ratio(point, max_ratio=1)
        max_ratio = default_max_ratio(mf.r_star, coarse.r_star)
    max_ratio = check_int("max_ratio", max_ratio, minimum=1)
    br = barrier_ratio(point, max_ratio=max_ratio)
    r_int_mf, table_mf = best_integer_ratio(lam_mf, max_ratio)
    ratios = np.arange(1, br.max_ratio + 1)
    return ProvisionResult(
        point=point, mean_field=mf, r_star_numeric=r_num, r_int_mean_field=r_int_mf,
        barrier=br, ratios=ratios, throughput_mean_field=table_mf,
        throughput_barrier=throughput_barrier(point, ratios))
