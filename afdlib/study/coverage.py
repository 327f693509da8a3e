"""Does the equivalence set hold the true best as often as it claims? A check by simulation.

The step engine started in the stationary state has, at every ratio, the mean step time
that the exact-load rule computes (:func:`afdlib.provision.expected_step_time_exact`:
the stationary slot loads are independent, so the slowest worker's load has a known law).
On a workload whose slot loads fit the rule's grid with one token per point, that value is
exact up to floating point, so the true throughput curve, its best ratio and the true
regret of every ratio are known. :func:`coverage_check` then repeats the study's
comparison (``n`` replications of a common-random-numbers sweep, :func:`afdlib.study.
compare.compare_ratios`) in many independent experiments and counts how often

* the equivalence set contains the true best ratio (claimed: at least 95%), and
* a ratio's regret interval, against the experiment's own simulated best, covers the true
  regret against that ratio (claimed: 95% for each interval).

The case (:func:`known_answer_case`) is chosen to be hard: four slots per worker, short
uniform prompts and geometric decodes, attention-bound coefficients whose throughput curve
has a flat top (ratios 8, 9 and 10 within 0.2% of each other).
"""

from __future__ import annotations

import concurrent.futures
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from afdlib.model import OperatingPoint
from afdlib.provision import expected_step_time_exact, worker_load_law
from afdlib.sim import Bundle, simulate_step
from afdlib.study.compare import compare_ratios, log_objective
from afdlib.study.grid import plain_coefficients
from afdlib.validate import check_int
from afdlib.workload import Geometric, IndependentLengths, Uniform, load_stats

__all__ = ["KnownCase", "known_answer_case", "CoverageResult", "coverage_check",
           "wilson_interval"]


@dataclass(frozen=True, eq=False)
class KnownCase:
    """A case whose true mean step time is known at every ratio.

    Attributes
    ----------
    workload : IndependentLengths
    point : OperatingPoint
    ratios : ndarray of int
        The ratios compared.
    step_time : ndarray
        True stationary mean step time at each ratio (s).
    """

    workload: IndependentLengths
    point: OperatingPoint
    ratios: np.ndarray
    step_time: np.ndarray

    @property
    def throughput(self) -> np.ndarray:
        """True throughput per instance at each ratio (tokens/s per instance)."""
        return self.point.throughput(self.ratios.astype(float), self.step_time)

    @property
    def best_ratio(self) -> int:
        """The true best ratio."""
        return int(self.ratios[int(np.argmax(self.throughput))])

    def true_regret(self, ratio: int, against: int) -> float:
        """``1 - Lambda(ratio) / Lambda(against)`` in truth (fraction)."""
        lam = self.throughput
        return float(1.0 - lam[ratio - self.ratios[0]] / lam[against - self.ratios[0]])


def known_answer_case(max_ratio: int = 16) -> KnownCase:
    """The coverage check's case: uniform prompts on 0..300 tokens, geometric decodes with
    mean 25 steps, B = 4, the ``attention`` plain coefficients; ratios 1 .. ``max_ratio``.

    The slot load never exceeds the exact-load rule's grid of 2,048 points by much, so the
    grid has one token per point and the rule's mean step time is the engine's exact
    stationary mean (up to the geometric tail cut at 1e-13).
    """
    workload = IndependentLengths(Uniform(0, 300), Geometric(25))
    st = load_stats(workload)
    batch = 4
    point = OperatingPoint(coeffs=plain_coefficients("attention", st.theta, batch),
                           theta=st.theta, load_std=st.load_std, batch=batch)
    law = worker_load_law(workload, batch, bins=4096)
    if law.step != 1.0:  # the premise of "known": one token per grid point
        raise AssertionError("the known case's load grid is not one token per point")
    ratios = np.arange(1, check_int("max_ratio", max_ratio, minimum=2) + 1)
    tau = np.asarray(expected_step_time_exact(point, law, ratios), dtype=float)
    return KnownCase(workload, point, ratios, tau)


@dataclass(frozen=True)
class CoverageResult:
    """Outcome of :func:`coverage_check`.

    Attributes
    ----------
    experiments, replications, steps : int
        Independent experiments, replications per experiment and steps per replication.
    confidence : float
        Claimed level.
    true_best : int
        The case's true best ratio.
    best_in_set : int
        Experiments whose equivalence set holds the true best.
    best_found : int
        Experiments whose simulated best is the true best.
    set_sizes : tuple of int
        Size of each experiment's equivalence set.
    regret_checked, regret_covered : int
        Regret intervals checked (the true top five ratios other than the experiment's
        best, in every experiment) and how many covered the true regret.
    regret_overstated : int
        Intervals that missed above the true regret (``true < low``: they make the ratio
        look worse than it is); the others missed below.

    Notes
    -----
    A regret is measured against the experiment's own simulated best, chosen because its
    replications did well: its throughput is estimated high (the winner's curse), so the
    regret intervals err towards overstating the regret, and their coverage of the true
    regret against that ratio falls somewhat short of the nominal level where the top of
    the curve is flat. The equivalence set has no such bias (it compares every pair).
    """

    experiments: int
    replications: int
    steps: int
    confidence: float
    true_best: int
    best_in_set: int
    best_found: int
    set_sizes: tuple
    regret_checked: int
    regret_covered: int
    regret_overstated: int = 0

    @property
    def set_coverage(self) -> float:
        """Share of experiments whose equivalence set holds the true best."""
        return self.best_in_set / self.experiments

    @property
    def regret_coverage(self) -> float:
        """Share of regret intervals covering the true regret."""
        return self.regret_covered / max(self.regret_checked, 1)

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {"experiments": self.experiments, "replications": self.replications,
                "steps": self.steps, "confidence": self.confidence,
                "true_best": self.true_best, "best_in_set": self.best_in_set,
                "best_found": self.best_found, "set_sizes": list(self.set_sizes),
                "regret_checked": self.regret_checked, "regret_covered": self.regret_covered,
                "regret_overstated": self.regret_overstated}

    @classmethod
    def from_dict(cls, data: dict) -> CoverageResult:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "set_sizes": tuple(data["set_sizes"])})


def wilson_interval(successes: int, trials: int, confidence: float = 0.95
                    ) -> tuple[float, float]:
    """Wilson score interval of a binomial share (fraction)."""
    n = check_int("trials", trials, minimum=1)
    k = check_int("successes", successes, minimum=0, maximum=n)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _experiment(case: KnownCase, seed, replications: int, steps: int,
                confidence: float) -> tuple[bool, bool, int, int, int, int]:
    """One experiment: (best in set, best found, set size, regrets checked, covered,
    overstated)."""
    seeds = seed.spawn(replications)
    b = case.point.integer_batch()
    tau = np.array([[simulate_step(case.workload, Bundle(int(r), b, case.point.coeffs),
                                   steps=steps, seed=s, n_batches=2).mean_step_time
                     for r in case.ratios] for s in seeds])
    cmp = compare_ratios(case.ratios, log_objective(case.ratios, tau, batch=b),
                         confidence=confidence)
    truth = case.best_ratio
    top = case.ratios[np.argsort(-case.throughput, kind="stable")[:5]]
    checked = covered = over = 0
    for r in top:
        if int(r) == cmp.best_ratio:
            continue
        g = cmp.regret(int(r))
        true = case.true_regret(int(r), cmp.best_ratio)
        checked += 1
        covered += int(g.low <= true <= g.high)
        over += int(true < g.low)
    return (cmp.in_equivalence_set(truth), cmp.best_ratio == truth,
            len(cmp.equivalent_ratios), checked, covered, over)


def _chunk(case, seeds, replications, steps, confidence):
    return [_experiment(case, s, replications, steps, confidence) for s in seeds]


def coverage_check(*, experiments: int = 200, replications: int = 8, steps: int = 2000,
                   seed: int = 7, confidence: float = 0.95, executor=None,
                   chunks: int = 8) -> CoverageResult:
    """Repeat the study's comparison on :func:`known_answer_case` and count its hits.

    Parameters
    ----------
    experiments : int
        Independent experiments (each ``replications`` sweeps of ratios 1 .. 16).
    replications, steps : int
        As in the study: replications per experiment, steps per replication.
    seed : int
        Experiment ``e`` uses ``SeedSequence([seed, e])``.
    confidence : float
        Level claimed by the equivalence set and the regret intervals.
    executor : concurrent.futures.Executor, optional
        Where to run the experiments (in ``chunks`` groups); default: this process.

    Returns
    -------
    CoverageResult
    """
    n = check_int("experiments", experiments, minimum=1)
    k = check_int("replications", replications, minimum=2)
    s = check_int("steps", steps, minimum=10)
    case = known_answer_case()
    seeds = [np.random.SeedSequence([check_int("seed", seed, minimum=0), e]) for e in range(n)]
    groups = [seeds[i::chunks] for i in range(min(chunks, n))]
    if executor is None:
        parts = [_chunk(case, g, k, s, confidence) for g in groups]
    else:
        futures = [executor.submit(_chunk, case, g, k, s, confidence) for g in groups]
        concurrent.futures.wait(futures)
        parts = [f.result() for f in futures]
    # back in experiment order (group i holds experiments i, i + chunks, ...)
    rows = [None] * n
    for i, part in enumerate(parts):
        for j, row in enumerate(part):
            rows[i + j * len(groups)] = row
    return CoverageResult(n, k, s, confidence, case.best_ratio,
                          sum(r[0] for r in rows), sum(r[1] for r in rows),
                          tuple(r[2] for r in rows), sum(r[3] for r in rows),
                          sum(r[4] for r in rows), sum(r[5] for r in rows))
