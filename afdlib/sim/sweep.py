"""Run an engine by name, sweep it over a range of ratios, and pool replications."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint
from afdlib.sim.bundle import Bundle
from afdlib.sim.compare import RULE, paired_batches, screen_to_the_best
from afdlib.sim.pipeline import simulate_pipeline
from afdlib.sim.progress import ProgressBar
from afdlib.sim.results import SimResult
from afdlib.sim.step import simulate_step
from afdlib.sim.streaming import t_quantile
from afdlib.validate import check_choice, check_int, check_type

__all__ = ["ENGINES", "simulate", "sweep", "SweepResult", "compare_ratios", "replicate",
           "Replications", "throughput_gap"]

ENGINES = ("step", "pipeline")


def simulate(workload, bundle: Bundle, *, engine: str = "step", microbatches: int | None = None,
             intercepts: str | None = None, **options) -> SimResult:
    """Run the named engine.

    Parameters
    ----------
    workload, bundle
        As for :func:`afdlib.sim.simulate_step`.
    engine : {"step", "pipeline"}
    microbatches, intercepts
        Pipeline options (default 2 and ``"per_microbatch"``); the step engine rejects
        them.
    **options
        ``steps``, ``seed``, ``init``, ``replay``, ``warmup``, ``record``, ``n_batches``,
        ``record_to``, ``progress``, ``stream``.

    Raises
    ------
    AfdInputError
        For an unknown engine, or pipeline options given to the step engine.
    """
    check_choice("engine", engine, ENGINES)
    if engine == "step":
        for name, value in (("microbatches", microbatches), ("intercepts", intercepts)):
            if value is not None:
                raise AfdInputError(f"{name} applies to the pipeline engine only (engine "
                                    "'pipeline'), not to the step engine", parameter=name)
        return simulate_step(workload, bundle, **options)
    return simulate_pipeline(workload, bundle,
                             microbatches=2 if microbatches is None else microbatches,
                             intercepts="per_microbatch" if intercepts is None else intercepts,
                             **options)


@dataclass(frozen=True, eq=False)
class SweepResult:
    """Simulations of one workload and coefficients over a range of ratios.

    Attributes
    ----------
    ratios : ndarray of int
        The ratios r, increasing.
    results : tuple of SimResult
        One run per ratio (all with the same seed: common random numbers).
    equivalent_ratios : tuple of int
        The ratios whose throughput (in the objective) is statistically
        indistinguishable from the best's (see :mod:`afdlib.sim.compare`), increasing;
        the best ratio is always one of them.
    equivalence_rule : str
        The rule that formed them, with its numbers.
    best_at_range_edge : bool
        The best ratio is an end of the swept range but not an end of the feasible range
        (r = 1 below; ``max_ratio`` above, if given): the best may lie outside the range.
    gaps : ndarray, shape (ratios,)
        Throughput of each ratio relative to the best's, minus 1 (<= 0).
    gap_ci95 : ndarray, shape (ratios, 2)
        Paired 95% batch-means interval of each gap (one comparison at a time, not
        simultaneous); NaN without batches.
    confidence : float
        Probability that the equivalence set holds the truly best ratio.
    max_ratio : int or None
        The largest feasible ratio, where known.
    """

    ratios: np.ndarray
    results: tuple[SimResult, ...]
    equivalent_ratios: tuple[int, ...] = ()
    equivalence_rule: str = ""
    best_at_range_edge: bool = False
    gaps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gap_ci95: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    confidence: float = 0.95
    max_ratio: int | None = None

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

    def gap(self, ratio: int) -> tuple[float, float, float]:
        """Throughput of ``ratio`` relative to the best's, minus 1, and its paired 95%
        interval: ``(gap, lo, hi)`` (dimensionless; the regret is ``-gap``)."""
        i = int(np.searchsorted(self.ratios, ratio))
        if i >= self.ratios.size or self.ratios[i] != ratio:
            raise AfdInputError(f"ratio {ratio} was not swept", parameter="ratio")
        lo, hi = self.gap_ci95[i]
        return float(self.gaps[i]), float(lo), float(hi)

    def rows(self) -> list[dict]:
        """JSON-ready rows ``{ratio, throughput_per_instance, ...}``."""
        keep = set(self.equivalent_ratios)
        out = []
        for i, (r, x) in enumerate(zip(self.ratios, self.results, strict=True)):
            row = {"ratio": int(r), "throughput_per_instance": x.throughput_per_instance,
                   "throughput_ci95": list(x.throughput_ci95),
                   "throughput": x.throughput, "objective_ci95": list(x.objective_ci95)}
            if x.throughput_per_gpu is not None:
                row["throughput_per_gpu"] = x.throughput_per_gpu
            row.update({"gap_to_best": float(self.gaps[i]),
                        "gap_ci95": [float(v) for v in self.gap_ci95[i]],
                        "equivalent": int(r) in keep,
                        "mean_step_time": x.mean_step_time,
                        "step_time_p50": x.step_time_p50, "step_time_p99": x.step_time_p99,
                        "attention_idle": x.attention_idle, "ffn_idle": x.ffn_idle,
                        "barrier_overhead": x.barrier_overhead})
            out.append(row)
        return out


def compare_ratios(ratios, results, objective, *, confidence: float = 0.95,
                   n_batches: int | None = None, max_ratio: int | None = None) -> dict:
    """The equivalence set, the gaps to the best and the range-edge flag of a sweep.

    Parameters
    ----------
    ratios : array_like of int
        Increasing ratios.
    results : sequence of SimResult
        Their runs, of equal length and seed.
    objective : afdlib.model.Objective
        The objective the throughputs are in.
    confidence : float
        Probability that the set holds the best ratio.
    n_batches : int or None
        Paired batches (None: from the correlation times).
    max_ratio : int or None
        Largest feasible ratio, where known.

    Returns
    -------
    dict
        The :class:`SweepResult` fields ``equivalent_ratios``, ``equivalence_rule``,
        ``best_at_range_edge``, ``gaps``, ``gap_ci95``.
    """
    ratios = np.asarray(ratios, dtype=np.int64)
    values = np.array([x.throughput for x in results])
    times, steps = paired_batches(results, n_batches=n_batches)
    batch = results[0].batch
    # the objective of each batch's mean step time: one place computes it
    per_batch = np.asarray(objective.throughput(ratios[:, None], batch, times), dtype=float)
    screen = screen_to_the_best(values, per_batch, confidence=confidence)
    best = int(np.argmax(values))
    gaps = values / values[best] - 1.0
    ci = np.full((ratios.size, 2), math.nan)
    if screen.n_batches >= 2:
        rel = per_batch / per_batch[best] - 1.0
        half = (t_quantile(0.975, screen.n_batches - 1)
                * rel.std(axis=1, ddof=1) / math.sqrt(screen.n_batches))
        ci = np.column_stack([gaps - half, gaps + half])
        rule = RULE.format(level=screen.level, dof=screen.n_batches - 1, n=screen.n_batches,
                           steps=steps, confidence=confidence)
    elif ratios.size == 1:
        rule = "a single ratio"
    else:
        rule = ("too few steps for batch-means intervals: only the ratio of the highest "
                "simulated throughput")
    ci[best] = 0.0
    edge_low = int(ratios[best]) == int(ratios[0]) and int(ratios[0]) > 1
    edge_high = (int(ratios[best]) == int(ratios[-1])
                 and (max_ratio is None or int(ratios[-1]) < max_ratio))
    return {"equivalent_ratios": tuple(int(r) for r in ratios[screen.kept]),
            "equivalence_rule": rule, "best_at_range_edge": bool(edge_low or edge_high),
            "gaps": gaps, "gap_ci95": ci}


def sweep(workload, point: OperatingPoint, ratios, *, engine: str = "step", seed=0,
          progress: bool | None = False, stream=None, confidence: float = 0.95,
          max_ratio: int | None = None, **options) -> SweepResult:
    """Simulate the bundle at each ratio with common random numbers, and find the ratios
    indistinguishable from the best.

    The same seed is used at every ratio; since worker w's requests depend only on the
    seed and w, the r workers at ratio r are the first r workers at any larger ratio,
    which makes differences between ratios much less noisy than independent runs. The
    equivalence set compares the ratios' paired batch means (:mod:`afdlib.sim.compare`).

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
        Draw a progress bar over all the sweep's steps: True always, None when ``stream``
        is a terminal, False never (default).
    stream : file-like, optional
        Where the bar goes (default ``sys.stderr``).
    confidence : float
        Probability that the equivalence set holds the truly best ratio, in (0, 1).
    max_ratio : int, optional
        The largest feasible ratio (e.g. from memory), for ``best_at_range_edge``; None:
        no upper limit is known.
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
    if max_ratio is not None:
        max_ratio = check_int("max_ratio", max_ratio, minimum=1)
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise AfdInputError(f"confidence must be in (0, 1), got {confidence!r}",
                            parameter="confidence")
    steps = options.get("steps", 20_000)
    results = []
    total = len(values) * (steps if isinstance(steps, int) and steps > 0 else 1)
    with ProgressBar(total, stream=stream, enabled=progress, label="sweep ") as bar:
        for r in values:
            results.append(simulate(workload, Bundle.at(point, r), engine=engine,
                                    seed=seed, progress=bar, **options))
            bar.update(0, note=f"r={r}")
    compared = compare_ratios(values, results, point.objective, confidence=confidence,
                              n_batches=options.get("n_batches"), max_ratio=max_ratio)
    return SweepResult(np.array(values), tuple(results), confidence=confidence,
                       max_ratio=max_ratio, **compared)


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
    half = float(t_quantile(0.5 + confidence / 2, n - 1) * means.std(ddof=1) / math.sqrt(n))
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
