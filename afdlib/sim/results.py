"""What a simulation reports: throughput with a confidence interval, idle time, barrier,
step-time quantiles; and the accumulator that builds the report chunk by chunk.

Confidence intervals come from *batch means*: the measured steps are cut into
consecutive batches, whose means are nearly independent when a batch is much longer than
the correlation time of the step time (a few request lifetimes), and a Student-t
interval is taken over the batch means. By default the number of batches is chosen from
the estimated autocorrelation time, so that each batch spans at least ten of them.
Throughput is a decreasing function of the mean step time, so its interval is the image
of the step time's interval (it stays positive).

The engines hand their steps to a :class:`RunAccumulator` one chunk at a time, which keeps
only bounded summaries (:mod:`afdlib.sim.streaming`): the memory of a run does not grow
with its length, and per-step records are kept only when asked for (in memory, or passed
chunk by chunk to a writer, :mod:`afdlib.sim.records`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.sim.streaming import (
    BatchSeries,
    LogHistogram,
    Moments,
    autocorrelation_time,
    batch_means,
)

__all__ = ["SimResult", "StepRecords", "RunAccumulator", "batch_means",
           "autocorrelation_time", "idle_fraction", "predicted_halfwidth", "objective_dict",
           "COARSE_BATCHES", "MICRO_BATCHES"]

#: Micro-batches a run keeps for its batch means and correlation time (bounded memory:
#: runs of up to this many measured steps use every step, see
#: :class:`afdlib.sim.streaming.BatchSeries`).
MICRO_BATCHES = 1 << 18

#: Batch means a :class:`SimResult` keeps (:attr:`SimResult.batch_step_times`), enough to
#: form the paired batch-means intervals of a sweep.
COARSE_BATCHES = 1024


@dataclass(frozen=True, eq=False)
class StepRecords:
    """Per-step records of a run (warm-up steps included).

    Attributes
    ----------
    step_time : ndarray, shape (steps,)
        Duration of each step (s). In the pipelined engine: time between the completions
        of consecutive steps (the last microbatch's return).
    loads : ndarray, shape (steps, r)
        Token load of each Attention worker at each step (tokens).
    attention_time : ndarray, shape (steps, r)
        Attention busy time of each worker in each step (s).
    """

    step_time: np.ndarray
    loads: np.ndarray
    attention_time: np.ndarray


@dataclass(frozen=True, eq=False)
class SimResult:
    """Summary of one simulation run (statistics over the steps after the warm-up).

    Attributes
    ----------
    engine : str
        ``"step"``, ``"pipeline"`` or ``"reference"``.
    ratio, batch : int
        The bundle, ``r`` and ``B``.
    steps, warmup : int
        Steps simulated and leading steps left out of the statistics.
    init : str
        Start state, ``"stationary"`` or ``"cold"``.
    lengths : str
        ``"resample"`` (i.i.d. requests) or ``"replay"`` (trace rows in order).
    microbatches : int
        Microbatches per Attention worker (1 for the step engine).
    mean_step_time : float
        Mean step duration ``E[tau]`` (s).
    step_time_ci95 : tuple of float
        95% batch-means interval for ``E[tau]`` (s); NaN when too few steps.
    throughput_per_instance : float
        ``r B / ((r + 1) E[tau])`` (tokens/s per instance).
    throughput_ci95 : tuple of float
        Its 95% interval (tokens/s per instance).
    throughput : float
        The bundle's objective, ``r B / ((r w_A + w_F) E[tau])``: the figure the rules
        maximize (equal to ``throughput_per_instance`` for the default objective).
    objective_ci95 : tuple of float
        Its 95% interval.
    throughput_unit : str
        Unit of ``throughput`` (e.g. ``"tokens/s per price unit"``).
    attention_idle, comm_idle, ffn_idle : float
        Fraction of time an Attention worker (averaged over workers), the communication
        link, and the FFN worker are idle.
    barrier_overhead : float
        Mean over steps of the slowest worker's attention time minus the mean worker's
        (s).
    mean_load, load_std : float
        Mean and standard deviation of a worker's token load over workers and steps
        (tokens).
    requests : int
        Requests started during the run.
    records : StepRecords or None
        Per-step records when asked for.
    step_time_p50, step_time_p99 : float
        Median and 99th percentile of the step time over the measured steps (s): the
        order statistics ``x_(ceil(q n))`` within a relative error of
        ``step_time_quantile_rtol``.
    step_time_quantile_rtol : float
        Bound on the quantiles' relative error (half a bin of the histogram).
    step_time_correlation : float
        Integrated autocorrelation time of the step time (steps); NaN when too few steps.
    objective : str
        The objective's kind (``"instance"``, ``"gpu"`` or ``"price"``).
    throughput_per_gpu : float or None
        ``r B / ((r g_A + g_F) E[tau])`` (tokens/s per GPU) where the bundle's objective
        knows the GPU counts, else None.
    batch_step_times : ndarray
        Means of consecutive equal runs of measured steps, oldest first (at most
        :data:`COARSE_BATCHES`; the oldest remainder left out): runs of equal length and
        seed at different ratios have the same runs, for paired comparisons (s).
    batch_steps : int
        Steps per entry of ``batch_step_times``.
    """

    engine: str
    ratio: int
    batch: int
    steps: int
    warmup: int
    init: str
    lengths: str
    microbatches: int
    mean_step_time: float
    step_time_ci95: tuple[float, float]
    throughput_per_instance: float
    throughput_ci95: tuple[float, float]
    throughput: float
    objective_ci95: tuple[float, float]
    throughput_unit: str
    attention_idle: float
    comm_idle: float
    ffn_idle: float
    barrier_overhead: float
    mean_load: float
    load_std: float
    requests: int
    records: StepRecords | None = field(default=None, repr=False)
    step_time_p50: float = math.nan
    step_time_p99: float = math.nan
    step_time_quantile_rtol: float = math.nan
    step_time_correlation: float = math.nan
    objective: str = "price"
    throughput_per_gpu: float | None = None
    batch_step_times: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    batch_steps: int = 0

    @property
    def measured_steps(self) -> int:
        """Steps the statistics are taken over, ``steps - warmup``."""
        return self.steps - self.warmup

    @property
    def relative_halfwidth(self) -> float:
        """Half-width of the step-time interval relative to the mean (dimensionless)."""
        lo, hi = self.step_time_ci95
        return (hi - lo) / (2.0 * self.mean_step_time)

    def steps_for_precision(self, relative_halfwidth: float) -> int:
        """Measured steps needed for a 95% interval of the given relative half-width.

        The half-width of a batch-means interval shrinks like ``1 / sqrt(steps)``, so
        ``steps_needed = measured_steps * (current / target)**2``.

        Parameters
        ----------
        relative_halfwidth : float
            Target half-width divided by the mean, e.g. 0.01 for +-1%.
        """
        if not (isinstance(relative_halfwidth, (int, float)) and relative_halfwidth > 0):
            raise AfdInputError(f"relative_halfwidth must be > 0, got {relative_halfwidth!r}")
        current = self.relative_halfwidth
        if not math.isfinite(current):
            raise AfdInputError("this run has no confidence interval (too few steps)")
        return int(math.ceil(self.measured_steps * (current / relative_halfwidth) ** 2))

    def to_dict(self) -> dict:
        """The JSON-ready summary (without the per-step records and batch means)."""
        skip = ("records", "batch_step_times")
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        out["measured_steps"] = self.measured_steps
        out["step_time_ci95"] = list(self.step_time_ci95)
        out["throughput_ci95"] = list(self.throughput_ci95)
        out["objective_ci95"] = list(self.objective_ci95)
        return out


def idle_fraction(x: float) -> float:
    """An idle fraction, with rounding noise around 0 (an always busy resource) set to 0."""
    x = float(x)
    return 0.0 if abs(x) < 1e-9 else x


def predicted_halfwidth(cv: float, correlation_time: float, steps, *,
                        z: float = 1.96) -> np.ndarray:
    """Relative half-width of a confidence interval for a mean over ``steps`` correlated steps.

    ``z cv sqrt(tau_int / n)``: the variance of a mean of n steps is about
    ``Var(tau) tau_int / n`` (see :func:`autocorrelation_time`).

    Parameters
    ----------
    cv : float
        Coefficient of variation of the step time (dimensionless).
    correlation_time : float
        Integrated autocorrelation time ``tau_int`` (steps).
    steps : array_like
        Measured steps n.
    z : float
        Normal quantile (1.96 for 95%).
    """
    return z * cv * np.sqrt(correlation_time / np.asarray(steps, dtype=float))


def objective_dict(objective) -> dict:
    """The JSON form of an :class:`afdlib.model.Objective` (its ``to_dict`` where it has
    one, else its kind and unit)."""
    to_dict = getattr(objective, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return {"kind": objective.kind, "unit": objective.unit}


class RunAccumulator:
    """The statistics of a run, fed chunk by chunk, in memory that does not grow with it.

    Parameters
    ----------
    bundle : afdlib.sim.Bundle
    run : afdlib.sim.bundle.RunOptions
    attention_intercept : float
        Attention time of a worker with no load in one step (s): ``beta_A``, or ``m s
        beta_A`` for ``m`` microbatches paying ``s`` of it each. A worker's attention time
        in a step is ``alpha_A T + attention_intercept`` for its load ``T``.
    record : bool
        Keep per-step records in memory (``O(steps * r)``).
    record_to : callable, optional
        Called as ``record_to(first_step, StepRecords)`` with each chunk's records (warm-up
        steps included), e.g. a writer of :mod:`afdlib.sim.records`.
    """

    def __init__(self, bundle, run, *, attention_intercept: float, record: bool = False,
                 record_to=None) -> None:
        self.bundle, self.run = bundle, run
        self.alpha = float(bundle.coeffs.alpha_A)
        self.intercept = float(attention_intercept)
        self.series = BatchSeries(MICRO_BATCHES)
        self.quantiles = LogHistogram()
        self.load_moments = Moments()
        self._load_sum = 0.0
        self._barrier_sum = 0.0
        self._record = bool(record)
        self._record_to = record_to
        self._kept: list[StepRecords] = []

    @property
    def measured_steps(self) -> int:
        """Steps after the warm-up added so far."""
        return self.series.count

    def add(self, first: int, step_time, loads, top=None) -> None:
        """Add steps ``first .. first + L - 1``.

        Parameters
        ----------
        first : int
            Index of the chunk's first step in the run.
        step_time : ndarray, shape (L,)
            Duration of each step (s).
        loads : ndarray, shape (r, L)
            Token load of each Attention worker at each step (tokens; integers).
        top : ndarray, shape (L,), optional
            ``loads.max(axis=0)``, where the engine has it.
        """
        if self._record or self._record_to is not None:
            att = self.alpha * np.asarray(loads, dtype=float) + self.intercept
            rec = StepRecords(np.array(step_time, dtype=float),
                              np.asarray(loads, dtype=float).T.copy(), att.T.copy())
            if self._record:
                self._kept.append(rec)
            if self._record_to is not None:
                self._record_to(first, rec)
        cut = max(0, self.run.warmup - first)
        if cut >= np.size(step_time):
            return
        tau = np.asarray(step_time, dtype=float)[cut:]
        w = loads[:, cut:]
        self.series.add(tau)
        self.quantiles.add(tau)
        self.load_moments.add(w)
        total = np.sum(w)
        self._load_sum += total.item()
        if w.shape[0] > 1:
            # sum over steps of (slowest - mean worker's load), exactly for integers
            top = w.max(axis=0) if top is None else top[cut:]
            self._barrier_sum += (np.sum(top).item() * w.shape[0] - total.item()) / w.shape[0]

    def result(self, *, engine: str, microbatches: int, comm_busy: float, ffn_busy: float,
               requests: int) -> SimResult:
        """The :class:`SimResult` of the steps added.

        Parameters
        ----------
        engine : str
        microbatches : int
        comm_busy, ffn_busy : float
            Busy time of the communication link (one direction) and of the FFN in one
            step (s).
        requests : int
            Requests started during the run.
        """
        bundle, run = self.bundle, self.run
        n = self.series.count
        mean, lo, hi = self.series.interval(run.n_batches)
        elapsed = self.series.total
        attention_busy = self.alpha * self._load_sum + bundle.ratio * n * self.intercept
        try:
            correlation = self.series.correlation_time()
        except AfdInputError:
            correlation = math.nan
        coarse, size = self.series.coarse_means(COARSE_BATCHES)
        per_gpu = bundle.throughput_per_gpu(mean)
        records = None
        if self._record:
            parts = self._kept
            records = StepRecords(np.concatenate([p.step_time for p in parts]),
                                  np.concatenate([p.loads for p in parts]),
                                  np.concatenate([p.attention_time for p in parts]))
        return SimResult(
            engine=engine, ratio=bundle.ratio, batch=bundle.batch, steps=run.steps,
            warmup=run.warmup, init=run.init, lengths=run.lengths, microbatches=microbatches,
            mean_step_time=mean, step_time_ci95=(lo, hi),
            throughput_per_instance=float(bundle.throughput_per_instance(mean)),
            throughput_ci95=(float(bundle.throughput_per_instance(hi)),
                             float(bundle.throughput_per_instance(lo))),
            throughput=float(bundle.throughput(mean)),
            objective_ci95=(float(bundle.throughput(hi)), float(bundle.throughput(lo))),
            throughput_unit=bundle.objective.unit,
            attention_idle=idle_fraction(1.0 - attention_busy / (bundle.ratio * elapsed)),
            comm_idle=idle_fraction(1.0 - comm_busy * n / elapsed),
            ffn_idle=idle_fraction(1.0 - ffn_busy * n / elapsed),
            barrier_overhead=self.alpha * self._barrier_sum / n,
            mean_load=self.load_moments.mean, load_std=self.load_moments.std,
            requests=int(requests), records=records,
            step_time_p50=self.quantiles.quantile(0.5),
            step_time_p99=self.quantiles.quantile(0.99),
            step_time_quantile_rtol=self.quantiles.relative_error,
            step_time_correlation=correlation,
            objective=bundle.objective.kind,
            throughput_per_gpu=None if per_gpu is None else float(per_gpu),
            batch_step_times=coarse, batch_steps=size,
        )
