"""Preset operating points at any batch, and predicted step-time quantiles against the
simulator's.

:func:`preset_points` gives the ``point_at(B)`` that
:func:`afdlib.provision.joint_search` takes: the preset rebuilt at each batch (its curves
linearized there, its Attention instance the smallest that holds the batch's KV cache
unless given), with the per-GPU objective. :func:`quantile_check` sets the exact and
Gaussian predictions of a bundle's p50 and p99 step time beside those of independent
simulations (their per-step records).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from afdlib.costs import build_preset
from afdlib.model import InstanceGPUs, Objective, OperatingPoint
from afdlib.provision import (
    LOAD_BINS,
    step_time_quantile_exact,
    step_time_quantile_gaussian,
    worker_load_law,
)
from afdlib.sim import Bundle, simulate
from afdlib.validate import check_int

__all__ = ["preset_points", "QuantileCheck", "quantile_check"]


def preset_points(model: str, hardware: str, *, theta: float, load_std: float,
                  objective: str = "gpu", gpus: InstanceGPUs | None = None,
                  routing: str = "balanced"):
    """``point_at(B)``: the operating point of a preset at batch B.

    Parameters
    ----------
    model, hardware : str
        Presets (see :func:`afdlib.costs.build_preset`).
    theta, load_std : float
        The workload's per-slot load mean and standard deviation (tokens).
    objective : {"gpu", "instance"}
        The objective of the points (and of the linearization).
    gpus : InstanceGPUs, optional
        Fixed instance sizes (default: the preset sizes them at each batch).
    routing : str
        MoE routing of the measured expert tables.

    Returns
    -------
    callable
        ``point_at(B) -> OperatingPoint``; its ``presets`` attribute holds the
        :class:`afdlib.costs.PresetResult` of each batch built so far.
    """
    sizes = {} if gpus is None else {"attention_gpus": gpus.attention, "ffn_gpus": gpus.ffn}
    built = {}

    def point_at(batch: int) -> OperatingPoint:
        batch = check_int("batch", batch, minimum=1)
        pre = build_preset(model, hardware, batch=batch, theta=theta, objective=objective,
                           routing=routing, **sizes)
        built[batch] = pre
        goal = Objective(kind=objective, gpus=pre.gpus)
        return OperatingPoint(coeffs=pre.coefficients, theta=theta, load_std=load_std,
                              batch=batch, objective=goal)

    point_at.presets = built
    return point_at


@dataclass(frozen=True)
class QuantileCheck:
    """Predicted and simulated step-time quantiles of one bundle (s).

    Attributes
    ----------
    batch, ratio : int
    quantiles : tuple of float
        The levels, e.g. (0.5, 0.99).
    exact, gaussian : ndarray
        Predictions of the exact and the Gaussian law, one per level.
    simulated, simulated_se : ndarray
        Mean over independent runs of the per-step sample quantile, and its standard error.
    rest_of_step : float
        ``G = max(t_C, t_F)``: a quantile above it is set by attention (the barrier).
    runs, steps : int
    """

    batch: int
    ratio: int
    quantiles: tuple
    exact: np.ndarray
    gaussian: np.ndarray
    simulated: np.ndarray
    simulated_se: np.ndarray
    rest_of_step: float
    runs: int
    steps: int

    def error(self, method: str = "exact") -> np.ndarray:
        """Relative error of a prediction against the simulation, per level."""
        pred = self.exact if method == "exact" else self.gaussian
        return pred / self.simulated - 1.0

    @property
    def relative_se(self) -> np.ndarray:
        """The simulation's standard error relative to its mean, per level."""
        return self.simulated_se / self.simulated


def quantile_check(workload, point: OperatingPoint, ratio: int, *, steps: int = 200_000,
                   runs: int = 6, seed: int = 0, quantiles=(0.5, 0.99),
                   bins: int = LOAD_BINS) -> QuantileCheck:
    """Predicted step-time quantiles of a bundle against independent simulations.

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
    point : OperatingPoint
        Coefficients and integer batch of the bundle.
    ratio : int
        Attention workers r.
    steps : int
        Steps of each run (a twentieth is warm-up).
    runs : int
        Independent runs (seeds ``seed, seed + 1, ...``), >= 2.
    seed : int
    quantiles : sequence of float
    bins : int
        Grid of one slot's load law (see :func:`afdlib.provision.worker_load_law`).

    Returns
    -------
    QuantileCheck
    """
    runs = check_int("runs", runs, minimum=2)
    steps = check_int("steps", steps, minimum=100)
    ratio = check_int("ratio", ratio, minimum=1)
    batch = point.integer_batch()
    law = worker_load_law(workload, batch, bins=bins)
    qs = tuple(float(q) for q in quantiles)
    exact = np.array([float(step_time_quantile_exact(point, law, ratio, q)) for q in qs])
    gauss = np.array([float(step_time_quantile_gaussian(point, ratio, q)) for q in qs])
    sims = []
    for k in range(runs):
        res = simulate(workload, Bundle.at(point, ratio), steps=steps, seed=seed + k,
                       warmup=steps // 20, record=True)
        sims.append(np.quantile(res.records.step_time[res.warmup:], qs))
    sims = np.array(sims)
    return QuantileCheck(batch=batch, ratio=ratio, quantiles=qs, exact=exact, gaussian=gauss,
                         simulated=sims.mean(axis=0),
                         simulated_se=sims.std(axis=0, ddof=1) / math.sqrt(runs),
                         rest_of_step=float(point.coeffs.rest_of_step(batch=batch, ratio=ratio)),
                         runs=runs, steps=steps)
