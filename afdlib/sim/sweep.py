"""Run an engine by name, sweep it over a range of ratios, and pool replications."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint
from afdlib.sim.bundle import Bundle
from afdlib.sim.pipeline import simulate_pipeline
from afdlib.sim.progress import ProgressBar
from afdlib.sim.results import SimResult
from afdlib.sim.step import simulate_step
from afdlib.validate import check_choice, check_int, check_type

__all__ = ["ENGINES", "simulate", "sweep", "SweepResult", "replicate", "Replications",
           "throughput_gap"]

ENGINES = ("step", "pipeline")


def simulate(workload, bundle: Bundle, *, engine: str = "step", microbatches: int = 2,
             intercepts: str = "per_microbatch", **options) -> SimResult:
    """Run the named engine.

    Parameters
    ----------
    workload, bundle
        As for :func:`afdlib.sim.simulate_step`.
    engine : {"step", "pipeline"}
    microbatches, intercepts
        Pipeline options (ignored by the step engine).
    **options
        ``steps``, ``seed``, ``init``, ``replay``, ``warmup``, ``record``, ``n_batches``.
    """
    check_choice("engine", engine, ENGINES)
    if engine == "step":
        return simulate_step(workload, bundle, **options)
    return simulate_pipeline(workload, bundle, microbatches=microbatches,
                             intercepts=intercepts, **options)


@dataclass(frozen=True, eq=False)
class SweepResult:
    """Simulations of one workload and coefficients over a range of ratios.

    Attributes
    ----------
    ratios : ndarray of int
        The ratios r, increasing.
    results : tuple of SimResult
        One run per ratio.
    """

    ratios: np.ndarray
    results: tuple[SimResult, ...]

    @property
    def throughput(self) -> np.ndarray:
        """The objective at each ratio (the rules' figure: tokens/s per instance for the
        default objective, else per GPU or per price unit)."""
        return np.array([x.throughput for x in self.results])

    @property
    def throughput_ci95(self) -> np.ndarray:
        """Intervals of :attr:`throughput`, shape (ratios, 2)."""
        return np.array([x.objective_ci95 for x in self.results])

    @property
    def throughput_per_instance(self) -> np.ndarray:
        """Throughput per instance at each ratio (tokens/s per instance)."""
        return np.array([x.throughput_per_instance for x in self.results])

    @property
    def best_ratio(self) -> int:
        """The ratio with the highest simulated objective."""
        return int(self.ratios[int(np.argmax(self.throughput))])

    def column(self, name: str) -> np.ndarray:
        """Any numeric :class:`SimResult` field across the sweep, e.g. ``"ffn_idle"``."""
        return np.array([getattr(x, name) for x in self.results], dtype=float)

    def rows(self) -> list[dict]:
        """JSON-ready rows ``{ratio, throughput_per_instance, ...}``."""
        return [{"ratio": int(r), "throughput_per_instance": x.throughput_per_instance,
                 "throughput_ci95": list(x.throughput_ci95),
                 "mean_step_time": x.mean_step_time, "attention_idle": x.attention_idle,
                 "ffn_idle": x.ffn_idle, "barrier_overhead": x.barrier_overhead}
                for r, x in zip(self.ratios, self.results, strict=True)]


def sweep(workload, point: OperatingPoint, ratios, *, engine: str = "step", seed=0,
          progress: bool | None = False, stream=None, **options) -> SweepResult:
    """Simulate the bundle at each ratio with common random numbers.

    The same seed is used at every ratio; since worker w's requests depend only on the
    seed and w, the r workers at ratio r are the first r workers at any larger ratio,
    which makes differences between ratios much less noisy than independent runs.

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
    point : OperatingPoint
        Its coefficients, integer batch B and objective define the bundle (theta and
        load_std are the rules' summary of the workload; the simulator uses the workload).
    ratios : iterable of int
        Ratios to simulate, each >= 1 (sorted, duplicates dropped).
    engine : {"step", "pipeline"}
    seed : int or numpy.random.SeedSequence
        Shared by all ratios.
    progress : bool or None
        Draw a progress bar: True always, None when ``stream`` is a terminal, False
        never (default).
    stream : file-like, optional
        Where the bar goes (default ``sys.stderr``).
    **options
        Passed to :func:`simulate` (``steps``, ``init``, ``warmup``, ``microbatches``...).

    Returns
    -------
    SweepResult
    """
    check_type("point", point, OperatingPoint, "an afdlib.model.OperatingPoint")
    if isinstance(seed, np.random.Generator):
        raise AfdInputError("sweep needs a reproducible seed (int or SeedSequence) so that "
                            "every ratio sees the same requests", parameter="seed")
    values = sorted({check_int("ratio r", r, minimum=1) for r in ratios})
    if not values:
        raise AfdInputError("no ratios to sweep", parameter="ratios")
    results = []
    with ProgressBar(len(values), stream=stream, enabled=progress, label="sweep ") as bar:
        for r in values:
            results.append(simulate(workload, Bundle.at(point, r), engine=engine,
                                    seed=seed, **options))
            bar.update(1, note=f"r={r}")
    return SweepResult(np.array(values), tuple(results))


@dataclass(frozen=True, eq=False)
class Replications:
    """Independent runs of one bundle and the interval they give.

    Attributes
    ----------
    results : tuple of SimResult
        One per replication (independent seeds).
    mean_step_time : float
        Average of the runs' mean step times (s).
    step_time_ci95 : tuple of float
        Student-t interval over the runs (s): exact for independent runs up to the
        normality of their means, with no assumption about correlation within a run.
    throughput_per_instance : float
        ``r B / ((r + 1) mean_step_time)`` (tokens/s per instance).
    throughput_ci95 : tuple of float
        Its interval (tokens/s per instance).
    throughput : float
        The bundle's objective at ``mean_step_time``.
    """

    results: tuple[SimResult, ...]
    mean_step_time: float
    step_time_ci95: tuple[float, float]
    throughput_per_instance: float
    throughput_ci95: tuple[float, float]
    throughput: float


def replicate(workload, bundle: Bundle, replications: int, *, engine: str = "step", seed=0,
              confidence: float = 0.95, **options) -> Replications:
    """Run ``replications`` independent simulations and pool them.

    Parameters
    ----------
    workload, bundle
        As for :func:`simulate`.
    replications : int
        Number of independent runs, >= 2.
    engine : {"step", "pipeline"}
    seed : int
        Root seed; run i uses the i-th child of ``numpy.random.SeedSequence(seed)``.
    confidence : float
        Level of the interval.
    **options
        Passed to :func:`simulate` (``steps``, ``init``, ``warmup``, ...).

    Returns
    -------
    Replications
    """
    n = check_int("replications", replications, minimum=2)
    children = np.random.SeedSequence(check_int("seed", seed, minimum=0)).spawn(n)
    results = tuple(simulate(workload, bundle, engine=engine, seed=child, **options)
                    for child in children)
    means = np.array([x.mean_step_time for x in results])
    mean = float(means.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * means.std(ddof=1) / math.sqrt(n))
    lo, hi = mean - half, mean + half
    return Replications(results, mean, (lo, hi), float(bundle.throughput_per_instance(mean)),
                        (float(bundle.throughput_per_instance(hi)),
                         float(bundle.throughput_per_instance(lo))),
                        float(bundle.throughput(mean)))


def throughput_gap(other: Replications, base: Replications) -> tuple[float, float]:
    """Relative throughput difference of two sets of replications, with a 95% half-width.

    Returns
    -------
    gap : float
        ``other / base - 1`` of the throughput per instance.
    halfwidth : float
        ``hypot`` of the two runs' relative step-time half-widths: independent replications
        add their variances.
    """
    gap = other.throughput_per_instance / base.throughput_per_instance - 1
    half = np.hypot(*[(x.step_time_ci95[1] - x.step_time_ci95[0]) / (2 * x.mean_step_time)
                      for x in (other, base)])
    return float(gap), float(half)
