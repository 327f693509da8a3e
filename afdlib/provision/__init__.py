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
  B-fold convolution of a slot's stationary load law) instead of its normal approximation;
* :mod:`afdlib.provision.latency`: the step time's quantiles (the time per output token at
  p50, p99) under the exact and the Gaussian law, and the best ratio under a target;
* :mod:`afdlib.provision.joint`: the batch and the ratio chosen together, within memory
  and a latency target, with the Pareto frontier of throughput against p99 step time.

:func:`provision` runs everything for one operating point (what ``afd provision`` prints).
"""

from __future__ import annotations

from afdlib.model import (
    GPUPrices,
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
    LOAD_BINS,
    ExactRatio,
    WorkerLoadLaw,
    exact_ratio,
    expected_step_time_exact,
    throughput_exact,
    worker_load_law,
)
from afdlib.provision.joint import (
    JointPoint,
    JointResult,
    batch_grid,
    joint_search,
    pareto_front,
)
from afdlib.provision.latency import (
    LATENCY_METHODS,
    LatencyChoice,
    attention_bound_slo_ratio,
    max_load_quantile,
    max_normal_quantile,
    slo_ratio,
    step_time_cdf_exact,
    step_time_cdf_gaussian,
    step_time_quantile,
    step_time_quantile_exact,
    step_time_quantile_gaussian,
)
from afdlib.provision.meanfield import (
    REGIMES,
    MeanFieldRatio,
    attention_bound_theta,
    best_integer_mean_field,
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
from afdlib.provision.table import (
    MAX_DEFAULT_RATIO,
    RULE_NAMES,
    ProvisionResult,
    default_max_ratio,
    provision,
)

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
    "LOAD_BINS", "WorkerLoadLaw", "ExactRatio", "worker_load_law", "expected_step_time_exact",
    "throughput_exact", "exact_ratio",
    "GPUPrices", "RULE_NAMES", "LATENCY_METHODS", "LatencyChoice", "max_normal_quantile",
    "max_load_quantile", "step_time_quantile_gaussian", "step_time_quantile_exact",
    "step_time_quantile", "step_time_cdf_gaussian", "step_time_cdf_exact", "slo_ratio",
    "attention_bound_slo_ratio",
    "JointPoint", "JointResult", "batch_grid", "joint_search", "pareto_front",
    "MAX_DEFAULT_RATIO",
]
