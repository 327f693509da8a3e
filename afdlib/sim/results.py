"""What a simulation reports: throughput with a confidence interval, idle time, barrier.

Confidence intervals come from *batch means*: the measured steps are cut into
consecutive batches, whose means are nearly independent when a batch is much longer than
the correlation time of the step time (a few request lifetimes), and a Student-t
interval is taken over the batch means. By default the number of batches is chosen from
the estimated autocorrelation time, so that each batch spans at least ten of them. Throughput per instance is a
decreasing function of the mean step time, so its interval is the image of the step
time's interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import fft as sp_fft
from scipy import stats

from afdlib.errors import AfdInputError

__all__ = ["SimResult", "StepRecords", "batch_means", "autocorrelation_time", "idle_fraction",
           "predicted_halfwidth", "summarize"]


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
        """The JSON-ready summary (without the per-step records)."""
        out = {k: v for k, v in asdict(self).items() if k != "records"}
        out["measured_steps"] = self.measured_steps
        out["step_time_ci95"] = list(self.step_time_ci95)
        out["throughput_ci95"] = list(self.throughput_ci95)
        out["objective_ci95"] = list(self.objective_ci95)
        return out


def batch_means(x, n_batches: int | None = None,
                confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of a stationary series and a batch-means confidence interval.

    Parameters
    ----------
    x : array_like, shape (n,)
        The series (e.g. step times, s).
    n_batches : int or None
        Number of consecutive batches, >= 2. ``None`` (default) picks it from the data:
        batches at least ten integrated autocorrelation times long (see
        :func:`autocorrelation_time`), and between 5 and 20 of them, so that batch means
        are nearly independent. With fewer than ``2 * n_batches`` observations the
        interval is NaN.
    confidence : float
        Level of the interval.

    Returns
    -------
    mean, lo, hi : float
        The overall mean and the interval's ends.
    """
    x = np.asarray(x, dtype=float)
    mean = float(x.mean())
    if n_batches is None:
        if x.size < 10:
            return mean, math.nan, math.nan
        tau = autocorrelation_time(x)
        n_batches = int(min(MAX_BATCHES, max(MIN_BATCHES, x.size // (10.0 * tau))))
    if n_batches < 2 or x.size < 2 * n_batches:
        return mean, math.nan, math.nan
    size = x.size // n_batches
    tail = x[x.size - size * n_batches:]  # drop the oldest remainder
    means = tail.reshape(n_batches, size).mean(axis=1)
    se = float(means.std(ddof=1)) / math.sqrt(n_batches)
    q = float(stats.t.ppf(0.5 + confidence / 2.0, n_batches - 1))
    return mean, mean - q * se, mean + q * se


#: Bounds on the automatic number of batches of :func:`batch_means`.
MIN_BATCHES, MAX_BATCHES = 5, 20


def autocorrelation_time(x, *, window: float = 5.0) -> float:
    """Integrated autocorrelation time of a series (steps), with Sokal's window.

    ``tau_int = 1 + 2 sum_{k>=1} rho(k)``, summed up to the first lag ``M >= window *
    tau_int(M)``. The variance of the mean of ``n`` steps is about ``Var(x) tau_int / n``.

    Parameters
    ----------
    x : array_like, shape (n,)
    window : float
        Sokal's constant (5 is customary).

    Returns
    -------
    float
        ``tau_int`` in steps (1 for an uncorrelated or constant series).
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    if n < 4:
        raise AfdInputError("autocorrelation time needs at least 4 observations")
    y = x - x.mean()
    size = sp_fft.next_fast_len(2 * n - 1, real=True)
    f = sp_fft.rfft(y, size)
    acov = sp_fft.irfft(f * np.conj(f), size)[:n]
    if acov[0] <= 1e-300 or not np.isfinite(acov[0]):
        return 1.0
    rho = acov / acov[0]
    tau = 2.0 * np.cumsum(rho) - 1.0
    lags = np.arange(n)
    ok = lags >= window * tau
    m = int(np.argmax(ok)) if ok.any() else n - 1
    return float(max(tau[m], 1.0 / n))


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


def summarize(*, engine, bundle, run, microbatches, step_time, loads, attention_time,
              attention_busy, comm_busy, ffn_busy, elapsed, requests, record) -> SimResult:
    """Build a :class:`SimResult` from per-step arrays (the engines' common ending).

    ``run`` is the engine's :class:`afdlib.sim.bundle.RunOptions`. ``step_time`` (steps,),
    ``loads`` and ``attention_time`` (r, steps: workers are rows) cover all steps; the busy
    totals (s, summed over measured steps; attention summed over workers) and ``elapsed``
    (s) cover the measured steps only.
    """
    warmup = run.warmup
    tau = step_time[warmup:]
    mean, lo, hi = batch_means(tau, run.n_batches)
    att = attention_time[:, warmup:]
    barrier = float(np.mean(att.max(axis=0) - att.mean(axis=0)))
    w_loads = loads[:, warmup:]
    load_mean = float(w_loads.mean())
    return SimResult(
        engine=engine, ratio=bundle.ratio, batch=bundle.batch, steps=run.steps, warmup=warmup,
        init=run.init, lengths=run.lengths, microbatches=microbatches,
        mean_step_time=mean, step_time_ci95=(lo, hi),
        throughput_per_instance=float(bundle.throughput_per_instance(mean)),
        throughput_ci95=(float(bundle.throughput_per_instance(hi)),
                         float(bundle.throughput_per_instance(lo))),
        throughput=float(bundle.throughput(mean)),
        objective_ci95=(float(bundle.throughput(hi)), float(bundle.throughput(lo))),
        throughput_unit=bundle.objective.unit,
        attention_idle=idle_fraction(1.0 - attention_busy / (bundle.ratio * elapsed)),
        comm_idle=idle_fraction(1.0 - comm_busy / elapsed),
        ffn_idle=idle_fraction(1.0 - ffn_busy / elapsed),
        barrier_overhead=barrier,
        mean_load=load_mean, load_std=float(np.sqrt(np.mean((w_loads - load_mean) ** 2))),
        requests=int(requests),
        records=StepRecords(step_time, loads.T, attention_time.T) if record else None,
    )
