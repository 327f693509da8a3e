r"""Comparing simulated ratios: paired intervals and the set of ratios as good as the best.

The study runs every ratio of a setting in ``n`` independent *replications*; within a
replication all ratios share one seed (common random numbers: ratio ``r``'s workers are
the first ``r`` workers of any larger bundle), across replications the seeds are
independent. Write ``x[j, i]`` for the log of the objective (throughput per instance by
default) of replication ``j`` at ratio ``r_i``. Then for two ratios the *paired*
differences ``d_j = x[j, k] - x[j, i]`` are independent across ``j`` and identically
distributed, whatever the correlation between the two ratios within a replication (that
correlation is what makes them precise), and a Student-t interval over them needs no model
of the correlation over steps within a run (batch means over steps do, and were too
optimistic for slowly mixing loads). Logs make the differences relative: ``1 - exp(-d)``
is the throughput given up.

* The **simulated best** :math:`\hat r` maximizes the mean over replications of
  ``x[:, i]`` (the geometric mean of the replications' throughputs; ties go to the smaller
  ratio).
* The **regret** of ratio ``r_i`` is ``1 - exp(-mean_j d_j)`` with ``d_j = x[j, best] -
  x[j, i]``, and its interval is the image of the paired t interval of ``mean d``
  (:func:`paired_regret`). It is measured against :math:`\hat r`, which is itself chosen
  from the data: the estimate of :math:`\hat r`'s throughput is biased up (the winner's
  curse), so on average this regret errs on the high side.
* The **equivalence set** is the screening procedure for selecting the best of ``k``
  systems with common random numbers (Nelson, Swann, Goldsman and Song, *Simple
  procedures for selecting the best simulated system when the number of alternatives is
  large*, Operations Research 49, 2001): ratio ``i`` stays if for every other ratio ``j``

  .. math:: \bar x_i \ge \bar x_j - t_{1 - \alpha/(k-1),\, n-1}\, S_{ij} / \sqrt n,

  with :math:`S_{ij}` the standard deviation of the paired differences. The true best
  ratio is eliminated only if one of its ``k - 1`` comparisons fails, each with
  probability at most :math:`\alpha/(k-1)` when the replication means are normal, so it
  is in the set with probability at least :math:`1 - \alpha` (Bonferroni; any
  correlation between ratios is allowed). The procedure is the simulator's own screening
  (:func:`afdlib.sim.compare.screen_to_the_best`, which ``afd sweep`` applies to paired
  batch means), here applied to replication means. :func:`afdlib.study.coverage` checks this by
  simulation on a case whose answer is known exactly.

Nothing here knows about engines or rules: it takes a table of replication means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.model import Objective
from afdlib.sim.compare import screen_to_the_best
from afdlib.sim.streaming import t_quantile
from afdlib.validate import check_int, check_number

__all__ = ["Regret", "RatioComparison", "log_objective", "compare_ratios", "equivalence_mask",
           "paired_regret", "replications_for", "RESOLVED_RATIO"]

#: The optimum counts as *resolved* when every ratio of the equivalence set lies within
#: this fraction of the simulated best (so that a ratio error of 10% means something).
RESOLVED_RATIO = 0.10


@dataclass(frozen=True)
class Regret:
    """Throughput a ratio gives up against the simulated best, with its interval.

    Attributes
    ----------
    estimate : float
        ``1 - exp(-mean d)`` (fraction; may be slightly negative only if the ratio is not
        compared with the best).
    low, high : float
        The interval's ends (fraction), the image of the paired t interval of ``mean d``.
    """

    estimate: float
    low: float
    high: float

    @property
    def halfwidth(self) -> float:
        """Half the interval's width (fraction)."""
        return 0.5 * (self.high - self.low)

    def to_dict(self) -> dict:
        """``{"estimate", "low", "high"}`` as floats."""
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def log_objective(ratios, step_times, *, batch: int, objective: Objective | None = None
                  ) -> np.ndarray:
    """``log`` of the objective for each replication's mean step time.

    Parameters
    ----------
    ratios : array_like of int, shape (R,)
        The ratios ``r``.
    step_times : array_like, shape (n, R)
        Mean step time of replication ``j`` at ratio ``r_i`` (s).
    batch : int
        Slots per Attention worker ``B``.
    objective : Objective, optional
        What the throughput is divided by (default: per instance).

    Returns
    -------
    ndarray, shape (n, R)
        ``log(r B / ((r w_A + w_F) tau))`` (log of tokens/s per instance, GPU or price unit).
    """
    objective = objective if objective is not None else Objective(kind="instance")
    r = np.asarray(ratios, dtype=float)
    tau = np.asarray(step_times, dtype=float)
    if tau.ndim != 2 or tau.shape[1] != r.size:
        raise AfdInputError(f"step_times must have shape (replications, {r.size}), "
                            f"got {tau.shape}", parameter="step_times")
    if not np.all(np.isfinite(tau)) or np.any(tau <= 0):
        raise AfdInputError("step times must be finite and > 0", parameter="step_times")
    return np.log(objective.throughput(r[None, :], batch, tau))


def _check_table(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise AfdInputError("need a table of shape (replications >= 2, ratios >= 1), got "
                            f"{x.shape}", parameter="replications")
    if not np.all(np.isfinite(x)):
        raise AfdInputError("the table holds NaN or infinite values", parameter="table")
    return x


def paired_regret(x, i: int, best: int, *, confidence: float = 0.95) -> Regret:
    """Regret of column ``i`` against column ``best`` of a table of log objectives.

    Parameters
    ----------
    x : array_like, shape (n, R)
        ``x[j, i]``: log objective of replication ``j`` at ratio ``i`` (common random
        numbers within a replication, independent replications).
    i, best : int
        Column indices.
    confidence : float
        Level of the (two-sided, unadjusted) t interval.

    Returns
    -------
    Regret
    """
    x = _check_table(x)
    conf = check_number("confidence", confidence, minimum=0.0, strict=True, maximum=1.0)
    d = x[:, best] - x[:, i]
    n = d.size
    mean = float(d.mean())
    half = float(t_quantile(0.5 + conf / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return Regret(float(-math.expm1(-mean)), float(-math.expm1(-(mean - half))),
                  float(-math.expm1(-(mean + half))))


def equivalence_mask(x, *, alpha: float = 0.05) -> np.ndarray:
    """Ratios statistically indistinguishable from the best: the screening of
    :func:`afdlib.sim.compare.screen_to_the_best` with the replications as paired batches.

    Column ``i`` is kept when ``mean x_i >= mean x_j - t S_ij / sqrt(n)`` for every
    ``j != i``, with ``t`` the ``1 - alpha / (k - 1)`` quantile of Student's t with
    ``n - 1`` degrees of freedom and ``S_ij`` the standard deviation of the paired
    differences (Nelson et al. 2001; see the module docstring for why the best column is
    kept with probability at least ``1 - alpha``).

    Parameters
    ----------
    x : array_like, shape (n, k)
        Log objectives (replications x ratios).
    alpha : float
        Allowed probability of losing the true best, in (0, 1).

    Returns
    -------
    ndarray of bool, shape (k,)
        True for the ratios kept; the column with the highest mean is always kept.
    """
    x = _check_table(x)
    alpha = check_number("alpha", alpha, minimum=0.0, strict=True, maximum=1.0)
    return screen_to_the_best(x.mean(axis=0), x.T, confidence=1.0 - alpha).kept


@dataclass(frozen=True, eq=False)
class RatioComparison:
    """The simulated ratios of one setting, compared.

    Attributes
    ----------
    ratios : ndarray of int, shape (R,)
        Simulated ratios, increasing.
    table : ndarray, shape (n, R)
        Log objective per replication and ratio.
    confidence : float
        Level of the regret intervals and of the equivalence set (``1 - alpha``).
    best_ratio : int
        The simulated best :math:`\\hat r`.
    equivalent : ndarray of bool, shape (R,)
        Membership of the equivalence set.
    """

    ratios: np.ndarray
    table: np.ndarray
    confidence: float
    best_ratio: int
    equivalent: np.ndarray

    @property
    def replications(self) -> int:
        """Independent replications ``n``."""
        return int(self.table.shape[0])

    @property
    def equivalent_ratios(self) -> tuple[int, ...]:
        """The equivalence set, increasing."""
        return tuple(int(r) for r in self.ratios[self.equivalent])

    def column(self, ratio: int) -> int:
        """Column index of ``ratio`` (AfdInputError if it was not simulated)."""
        hit = np.flatnonzero(self.ratios == int(ratio))
        if hit.size == 0:
            raise AfdInputError(f"ratio {ratio} was not simulated", parameter="ratio")
        return int(hit[0])

    def regret(self, ratio: int) -> Regret:
        """Throughput ``ratio`` gives up against :attr:`best_ratio`, with its interval."""
        i, k = self.column(ratio), self.column(self.best_ratio)
        if i == k:
            return Regret(0.0, 0.0, 0.0)
        return paired_regret(self.table, i, k, confidence=self.confidence)

    def in_equivalence_set(self, ratio: int) -> bool:
        """Whether ``ratio`` is statistically indistinguishable from the best."""
        return bool(self.equivalent[self.column(ratio)])

    @property
    def resolved(self) -> bool:
        """True when every equivalent ratio is within :data:`RESOLVED_RATIO` of the best."""
        eq = np.asarray(self.equivalent_ratios, dtype=float)
        return bool(np.all(np.abs(eq - self.best_ratio) <= RESOLVED_RATIO * self.best_ratio))

    def throughput(self) -> np.ndarray:
        """Geometric mean over replications of the objective at each ratio."""
        return np.exp(self.table.mean(axis=0))

    def best_of(self, ratios) -> int:
        """The ratio with the highest mean log objective among ``ratios`` (all simulated)."""
        cols = [self.column(r) for r in ratios]
        mean = self.table.mean(axis=0)[cols]
        return int(self.ratios[cols[int(np.argmax(mean))]])


def compare_ratios(ratios, table, *, confidence: float = 0.95) -> RatioComparison:
    """Best ratio, equivalence set and regret intervals from a table of log objectives.

    Parameters
    ----------
    ratios : array_like of int, shape (R,)
        Distinct ratios (any order; sorted here with the table's columns).
    table : array_like, shape (n, R)
        Log objective of each replication at each ratio (see :func:`log_objective`).
    confidence : float
        ``1 - alpha`` of the equivalence set and level of the regret intervals.

    Returns
    -------
    RatioComparison
    """
    r = np.asarray(ratios)
    x = _check_table(table)
    if r.ndim != 1 or r.size != x.shape[1] or r.size != np.unique(r).size:
        raise AfdInputError("ratios must be distinct, one per column of the table",
                            parameter="ratios")
    conf = check_number("confidence", confidence, minimum=0.0, strict=True, maximum=1.0)
    order = np.argsort(r, kind="stable")
    r, x = r[order].astype(np.int64), x[:, order]
    mean = x.mean(axis=0)
    best = int(r[int(np.argmax(mean))])
    keep = equivalence_mask(x, alpha=1.0 - conf)
    return RatioComparison(r, x, conf, best, keep)


def replications_for(halfwidth: float, replications: int, *, target: float,
                     maximum: int) -> int:
    """Replications that would bring a regret's half-width down to ``target``.

    The half-width falls like ``1 / sqrt(n)`` (the t quantile's change is ignored, which
    errs towards too few); the answer is clipped to ``[replications, maximum]``.

    Parameters
    ----------
    halfwidth : float
        Half-width seen with ``replications`` (fraction).
    replications : int
        Replications run so far, >= 2.
    target : float
        Wanted half-width (fraction), > 0.
    maximum : int
        Most replications allowed.
    """
    n = check_int("replications", replications, minimum=2)
    top = check_int("maximum", maximum, minimum=n)
    target = check_number("target", target, minimum=0.0, strict=True)
    hw = check_number("halfwidth", halfwidth, minimum=0.0)
    need = math.ceil(n * (hw / target) ** 2) if hw > target else n
    return int(min(max(need, n), top))
