"""Every rule at one operating point: :func:`provision`, what ``afd provision`` reports.

The mean-field closed form and its integer, the Gaussian barrier, with a worker-load law the
exact-load barrier, the step time's p50 and p99 at every ratio, and with a target the best
ratio that meets it (:mod:`afdlib.provision.latency`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.model import PER_INSTANCE, Objective, OperatingPoint, best_integer_ratio, maximize_ratio
from afdlib.provision.barrier import (
    BarrierRatio,
    barrier_ratio,
    expected_step_time,
    throughput_barrier,
)
from afdlib.provision.exact import ExactRatio, WorkerLoadLaw, _check_law, expected_step_time_exact
from afdlib.provision.latency import (
    LatencyChoice,
    check_quantile,
    slo_ratio,
    step_time_quantile,
    step_time_quantile_exact,
    step_time_quantile_gaussian,
)
from afdlib.provision.meanfield import (
    MeanFieldRatio,
    check_point,
    mean_field_ratio,
    mean_field_step_time,
    throughput_mean_field,
)
from afdlib.provision.pipelined import (
    expected_cycle_time,
    gaussian_microbatch_laws,
    mean_load_cycle_time,
)
from afdlib.validate import check_int

__all__ = ["MAX_DEFAULT_RATIO", "RULE_NAMES", "default_max_ratio", "ProvisionResult",
           "provision"]

#: Upper end of the default integer range.
MAX_DEFAULT_RATIO = 4096


def default_max_ratio(r_star_mean_field: float, r_star_barrier: float) -> int:
    """Default largest ratio of the table: ``max(32, ceil(2 max(r*_mf, r*_barrier)))``, <= 4096.

    Twice the larger continuous optimum keeps both integer optima well inside the range.
    """
    top = max(r_star_mean_field, r_star_barrier)
    return int(min(max(32, math.ceil(2.0 * top)), MAX_DEFAULT_RATIO))


#: Names of the rules in a provisioning table, in the order they are reported.
RULE_NAMES = ("mean_field", "barrier", "exact_load")


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
        The objective (throughput per instance, per GPU or per price unit) at each ratio.
    mean_step_times : dict of str -> ndarray
        ``E[tau]`` (s) at each ratio under each rule (``mean_field``, ``barrier`` and, with
        a worker-load law, ``exact_load``): every objective follows from these.
    exact : ExactRatio or None
        The exact-load barrier rule, when a worker-load law was given.
    quantile_method : {"exact", "gaussian", "none"}
        How the step-time quantiles were predicted (exact with a law).
    step_time_p50, step_time_p99 : ndarray
        Predicted median and 99th percentile of the step time at each ratio (s).
    step_time_p99_gaussian : ndarray
        The Gaussian model's 99th percentile (s), also when the exact one is reported.
    slo : LatencyChoice or None
        The best ratio under the latency target, when one was given.
    pipeline : dict or None
        With ``m`` microbatches: ``{"microbatches": m, "intercepts": mode}``. The tables
        are then the pipeline-aware rules' (:mod:`afdlib.provision.pipelined`): the cycle
        time at mean loads (``mean_field``), the quasi-static cycle time over normal
        microbatch loads (``barrier``) and over their exact laws (``exact_load``), and the
        best integer ratios are theirs; the closed-form quantities (``mean_field``,
        ``barrier`` fields) stay those of the step model.
    """

    point: OperatingPoint
    mean_field: MeanFieldRatio
    r_star_numeric: float
    r_int_mean_field: int
    barrier: BarrierRatio
    ratios: np.ndarray
    throughput_mean_field: np.ndarray
    throughput_barrier: np.ndarray
    mean_step_times: dict = field(default_factory=dict)
    exact: ExactRatio | None = None
    quantile_method: str = "gaussian"
    step_time_p50: np.ndarray | None = None
    step_time_p99: np.ndarray | None = None
    step_time_p99_gaussian: np.ndarray | None = None
    slo: LatencyChoice | None = None
    pipeline: dict | None = None

    @property
    def max_ratio(self) -> int:
        """Largest ratio of the table."""
        return int(self.ratios[-1])

    @property
    def rules(self) -> tuple[str, ...]:
        """The rules of the table, in :data:`RULE_NAMES` order."""
        return tuple(n for n in RULE_NAMES if n in self.mean_step_times)

    @property
    def best_rule(self) -> str:
        """The most faithful rule available: ``exact_load`` with a law, else ``barrier``."""
        return "exact_load" if "exact_load" in self.mean_step_times else "barrier"

    def r_int(self, rule: str) -> int:
        """Best integer ratio of ``rule`` under the point's objective."""
        if self.pipeline is not None:  # the pipeline-aware tables decide
            return self.best_ratios(self.point.objective).get(rule)
        return {"mean_field": self.r_int_mean_field, "barrier": self.barrier.r_int,
                "exact_load": None if self.exact is None else self.exact.r_int}[rule]

    def objective_table(self, objective: Objective | None = None) -> dict:
        """Rule -> the objective at each ratio (default: the point's objective)."""
        objective = objective if objective is not None else self.point.objective
        return {rule: objective.throughput(self.ratios, self.point.batch, tau)
                for rule, tau in self.mean_step_times.items()}

    def best_ratios(self, objective: Objective) -> dict:
        """Rule -> best integer ratio under another ``objective`` (first on ties)."""
        return {rule: int(self.ratios[int(np.argmax(v))])
                for rule, v in self.objective_table(objective).items()}

    def to_dict(self) -> dict:
        """The JSON object of ``afd provision --json`` (numbers as Python floats and ints).

        ``throughput_per_instance`` maps each ratio to the throughput per instance of each
        rule (``mean_field``, ``barrier``, ``exact_load`` with a law), and next to them
        ``throughput_per_gpu`` (where the GPU counts are known), ``objective`` and the step
        time (``mean_step_time``, ``step_time_p50``, ``step_time_p99``) of the most faithful
        rule (:attr:`best_rule`).
        """
        mf, point = self.mean_field, self.point
        b = point.batch
        per_instance = self.objective_table(PER_INSTANCE)
        chosen = self.objective_table()
        per_gpu_obj = point.objective.per_gpu()
        per_gpu = self.objective_table(per_gpu_obj) if per_gpu_obj is not None else None
        best = self.best_rule
        table = {}
        for i, r in enumerate(self.ratios):
            row = {rule: float(per_instance[rule][i]) for rule in self.rules}
            if "exact_load" in row:
                row["exact"] = row["exact_load"]          # the name of earlier versions
            if per_gpu is not None:
                row["throughput_per_gpu"] = float(per_gpu[best][i])
            row["objective"] = float(chosen[best][i])
            row["mean_step_time"] = float(self.mean_step_times[best][i])
            if self.step_time_p99 is not None:
                row["step_time_p50"] = float(self.step_time_p50[i])
                row["step_time_p99"] = float(self.step_time_p99[i])
                row["step_time_p99_gaussian"] = float(self.step_time_p99_gaussian[i])
            table[str(int(r))] = row
        out = {
            "theta": point.theta,
            "load_std": point.load_std,
            "batch": b,
            "r_A": mf.r_A,
            "r_C": mf.r_C,
            "r_FC": mf.r_FC,
            "r_CA": mf.r_CA,
            "r_peak": mf.r_peak,
            "r_star": mf.r_star,
            "regime": mf.regime,
            "r_int_mean_field": self.r_int("mean_field"),
            "r_int_barrier": self.r_int("barrier"),
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
            "r_int_at_max_ratio": {"mean_field": self.r_int("mean_field") == self.max_ratio,
                                   "barrier": self.r_int("barrier") == self.max_ratio},
            "prices": {"attention": point.prices.attention, "ffn": point.prices.ffn},
            "objective": point.objective.to_dict(),
            "throughput_unit": point.objective.unit,
            "gpus": None if point.objective.gpus is None else point.objective.gpus.to_dict(),
            "table_rule": best,
            "step_time_quantiles": self.quantile_method,
        }
        if self.exact is not None:
            out["r_int_exact"] = self.exact.r_int
            out["r_int_at_max_ratio"]["exact_load"] = self.exact.r_int == self.max_ratio
        out["microbatches"] = None if self.pipeline is None else self.pipeline["microbatches"]
        if self.pipeline is not None:
            out["intercepts"] = self.pipeline["intercepts"]
            out["pipeline_rules"] = ("mean_field: cycle time at mean loads; barrier: "
                                     "quasi-static cycle time over normal microbatch loads; "
                                     "exact_load: over their exact laws (max cycle mean)")
        if not point.objective.per_instance:
            out["r_int_per_instance"] = self.best_ratios(PER_INSTANCE)
        if per_gpu_obj is not None and point.objective.kind != "gpu":
            out["r_int_per_gpu"] = self.best_ratios(per_gpu_obj)
        if self.slo is not None:
            out["r_int_slo"] = self.slo.r_int
            out["tpot_p99"] = self.slo.target
            out["slo"] = self.slo.to_dict()
        return out


def provision(point: OperatingPoint, *, max_ratio: int | None = None,
              law: WorkerLoadLaw | None = None, tpot_p99: float | None = None,
              quantile: float = 0.99, microbatches: int | None = None,
              intercepts: str = "per_microbatch", workload=None) -> ProvisionResult:
    """Mean-field, barrier and (with a law) exact-load provisioning for one operating point.

    Parameters
    ----------
    point : OperatingPoint
        Coefficients, theta and load_std (tokens), an integer batch B >= 1, the objective.
    max_ratio : int, optional
        Largest integer ratio of the table and of the integer search (default
        :func:`default_max_ratio`).
    law : WorkerLoadLaw, optional
        The exact law of a worker's load at this batch
        (:func:`afdlib.provision.exact.worker_load_law`): adds the exact-load rule and makes
        the step-time quantiles exact.
    tpot_p99 : float, optional
        Latency target (s): the largest allowed ``quantile`` of the step time (the time per
        output token). Adds :attr:`ProvisionResult.slo`.
    quantile : float
        Level of the latency target (default 0.99: p99).
    microbatches : int, optional
        Microbatches per Attention worker ``m``: the rules become pipeline-aware (see
        :attr:`ProvisionResult.pipeline`). The step-time quantiles and the latency target
        are not predicted for a pipeline (an error with ``tpot_p99``).
    intercepts : {"per_microbatch", "per_step"}
        With ``microbatches``: each microbatch pays the full intercepts, or ``1/m``.
    workload : IndependentLengths or JointLengths, optional
        With ``microbatches``, the requests whose exact microbatch-load laws give the
        pipelined ``exact_load`` rule (the law of a worker is not enough there).

    Returns
    -------
    ProvisionResult
    """
    point = check_point(point)
    point.integer_batch()
    quantile = check_quantile(quantile)
    if microbatches is not None and tpot_p99 is not None:
        raise AfdInputError("a latency target is not predicted for a pipelined bundle "
                            "(microbatches): leave out one of them", parameter="tpot_p99")
    if law is not None:
        law = _check_law(point, law)
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
    taus = {"mean_field": mean_field_step_time(point, ratios),
            "barrier": expected_step_time(point, ratios)}
    exact = None
    if law is not None:
        taus["exact_load"] = expected_step_time_exact(point, law, ratios)
        lam_exact = point.throughput(ratios, taus["exact_load"])
        k = int(np.argmax(lam_exact))
        exact = ExactRatio(int(ratios[k]), float(lam_exact[k]), ratios, lam_exact)
    if microbatches is not None:
        return _pipelined(point, mf, r_num, r_int_mf, br, ratios, table_mf, workload,
                          microbatches, intercepts)
    gaussian_p99 = step_time_quantile_gaussian(point, ratios, 0.99)
    p50 = step_time_quantile(point, ratios, 0.5, law=law)
    p99 = gaussian_p99 if law is None else step_time_quantile_exact(point, law, ratios, 0.99)
    slo = None
    if tpot_p99 is not None:
        rule = "exact_load" if law is not None else "barrier"
        lam = point.throughput(ratios, taus[rule])
        tq = p99 if quantile == 0.99 else step_time_quantile(point, ratios, quantile, law=law)
        slo = slo_ratio(ratios, lam, tq, tpot_p99, quantile=quantile,
                        method="exact" if law is not None else "gaussian")
    return ProvisionResult(
        point=point, mean_field=mf, r_star_numeric=r_num, r_int_mean_field=r_int_mf,
        barrier=br, ratios=ratios, throughput_mean_field=table_mf,
        throughput_barrier=throughput_barrier(point, ratios), mean_step_times=taus,
        exact=exact, quantile_method="exact" if law is not None else "gaussian",
        step_time_p50=p50, step_time_p99=p99, step_time_p99_gaussian=gaussian_p99, slo=slo)


def _pipelined(point, mf, r_num, r_int_mf, br, ratios, table_mf, workload, microbatches,
               intercepts) -> ProvisionResult:
    """The pipeline-aware tables of :func:`provision` (``microbatches`` given)."""
    m = check_int("microbatches", microbatches, minimum=1)
    taus = {"mean_field": mean_load_cycle_time(point, ratios, microbatches=m,
                                               intercepts=intercepts),
            "barrier": expected_cycle_time(point, gaussian_microbatch_laws(point, microbatches=m),
                                           ratios, microbatches=m, intercepts=intercepts)}
    exact = None
    if workload is not None:
        taus["exact_load"] = expected_cycle_time(point, workload, ratios, microbatches=m,
                                                 intercepts=intercepts)
        lam = point.throughput(ratios, taus["exact_load"])
        k = int(np.argmax(lam))
        exact = ExactRatio(int(ratios[k]), float(lam[k]), ratios, lam)
    return ProvisionResult(
        point=point, mean_field=mf, r_star_numeric=r_num, r_int_mean_field=r_int_mf,
        barrier=br, ratios=ratios, throughput_mean_field=table_mf,
        throughput_barrier=throughput_barrier(point, ratios), mean_step_times=taus,
        exact=exact, quantile_method="none", pipeline={"microbatches": m,
                                                       "intercepts": intercepts})
