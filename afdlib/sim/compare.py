"""Which of several simulated bundles are statistically indistinguishable from the best.

A sweep runs every ratio with the same seed, so that worker ``w`` sees the same requests
at every ratio (common random numbers): the runs' fluctuations are positively
correlated, and the *differences* between two ratios' throughputs vary much less than
either throughput. Batch means keep that pairing: runs of equal length are cut into the
same batches of steps, and batch ``b`` of ratio ``i`` and batch ``b`` of ratio ``j``
saw the same requests. The paired differences of the batch throughputs estimate the
variance of a difference directly.

The set of ratios statistically indistinguishable from the best is the subset of the
*screening* procedure of Nelson, Swann, Goldsman and Song (2001, "Simple procedures for
selecting the best simulated system when the number of alternatives is large",
Operations Research 49(6)): ratio ``i`` is kept unless some ratio ``j`` beats it by more
than ``W_ij = t S_ij / sqrt(n)``, where ``S_ij`` is the standard deviation of the ``n``
paired batch differences and ``t`` the Student quantile of level ``1 - alpha / (k - 1)``
with ``n - 1`` degrees of freedom for ``k`` ratios (the Bonferroni form, which that paper
uses with common random numbers). The subset contains the truly best ratio with
probability at least ``1 - alpha`` for normal batch means: the best is dropped only if
one of its ``k - 1`` paired comparisons fails, each with probability at most
``alpha / (k - 1)``, whatever the correlation between the ratios (a union bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.sim.streaming import MAX_BATCHES, MIN_BATCHES, t_quantile

__all__ = ["Screening", "screen_to_the_best", "paired_batches", "RULE"]

#: How the equivalence set is formed (the sweep's ``equivalence_rule`` fills in numbers).
RULE = ("screening to the best (Nelson, Swann, Goldsman and Song 2001): a ratio is "
        "equivalent to the best unless another beats it by more than t({level:.4g}, "
        "{dof}) paired standard errors, from {n} batch means of {steps} steps with common "
        "random numbers; the set holds the best ratio with probability >= {confidence:g}")


@dataclass(frozen=True, eq=False)
class Screening:
    """The outcome of :func:`screen_to_the_best`.

    Attributes
    ----------
    kept : ndarray of bool, shape (k,)
        The alternatives that may be the best.
    n_batches : int
        Paired batches used (0: none, too few steps; then only the sample best is kept).
    constant : float
        The Student quantile ``t`` of the screening (NaN without batches).
    level : float
        Its level, ``1 - alpha / (k - 1)``.
    halfwidth_to_best : ndarray, shape (k,)
        ``W_{i,b}`` against the sample best ``b`` (objective units; 0 for ``b``).
    """

    kept: np.ndarray
    n_batches: int
    constant: float
    level: float
    halfwidth_to_best: np.ndarray


def screen_to_the_best(values, batches, *, confidence: float = 0.95,
                       block: int = 256) -> Screening:
    """The subset of alternatives that may be the best (larger is better).

    Parameters
    ----------
    values : array_like, shape (k,)
        Point estimates of each alternative (e.g. throughput).
    batches : array_like, shape (k, n)
        The same quantity per batch; column ``b`` of every row comes from the same random
        numbers (paired). ``n >= 2`` batches, or 0 columns for no interval.
    confidence : float
        ``1 - alpha``, the probability that the best is kept, in (0, 1).
    block : int
        Rows compared at a time (memory ``block * k``).

    Returns
    -------
    Screening
    """
    values = np.asarray(values, dtype=float)
    batches = np.asarray(batches, dtype=float)
    k = values.size
    if k < 1 or batches.shape[0] != k:
        raise AfdInputError("screen_to_the_best needs one row of batches per value")
    if not 0 < confidence < 1:
        raise AfdInputError(f"confidence must be in (0, 1), got {confidence!r}",
                            parameter="confidence")
    best = int(np.argmax(values))
    n = batches.shape[1]
    if k == 1:
        return Screening(np.ones(1, dtype=bool), n, math.nan, math.nan, np.zeros(1))
    if n < 2 or not np.isfinite(batches).all():
        kept = np.zeros(k, dtype=bool)
        kept[best] = True
        return Screening(kept, 0, math.nan, math.nan, np.full(k, math.nan))
    level = 1.0 - (1.0 - confidence) / (k - 1)  # Bonferroni over the best's k - 1 comparisons
    t = t_quantile(level, n - 1)
    centered = batches - batches.mean(axis=1, keepdims=True)
    var = np.einsum("ij,ij->i", centered, centered) / (n - 1)
    tol = 1e-12 * np.abs(values).max()  # rounding, for deterministic runs
    kept = np.ones(k, dtype=bool)
    for lo in range(0, k, block):
        rows = slice(lo, min(k, lo + block))
        cov = centered[rows] @ centered.T / (n - 1)
        diff_var = np.maximum(var[rows, None] + var[None, :] - 2.0 * cov, 0.0)
        w = t * np.sqrt(diff_var / n)
        beaten = values[None, :] - w - tol > values[rows, None]
        kept[rows] = ~beaten.any(axis=1)
    d = batches - batches[best]
    d -= d.mean(axis=1, keepdims=True)
    half = t * np.sqrt(np.einsum("ij,ij->i", d, d) / (n - 1) / n)
    return Screening(kept, n, t, level, half)


def paired_batches(results, *, n_batches: int | None = None) -> tuple[np.ndarray, int]:
    """Step-time batch means of runs of equal length, on common batches.

    Parameters
    ----------
    results : sequence of SimResult
        Runs with the same steps and warm-up (e.g. a sweep's), so that their
        ``batch_step_times`` cover the same steps.
    n_batches : int or None
        Batches, >= 2; None: at least ten of the longest correlation time among the runs
        per batch, between 5 and 20 batches.

    Returns
    -------
    batches : ndarray, shape (runs, n_batches)
        Mean step time of each run in each batch (s); no columns when the runs are too
        short for an interval.
    steps : int
        Steps per batch.
    """
    results = list(results)
    entries = {x.batch_step_times.size for x in results}
    sizes = {x.batch_steps for x in results}
    if len(entries) != 1 or len(sizes) != 1:
        raise AfdInputError("paired batches need runs of the same length")
    count, size = entries.pop(), sizes.pop()
    measured = results[0].measured_steps
    if n_batches is None:
        taus = [x.step_time_correlation for x in results]
        tau = max((t for t in taus if math.isfinite(t)), default=math.nan)
        if not math.isfinite(tau) or measured < 10:
            return np.zeros((len(results), 0)), 0
        n_batches = int(min(MAX_BATCHES, max(MIN_BATCHES, measured // (10.0 * tau))))
    n_batches = min(n_batches, count)
    if n_batches < 2:
        return np.zeros((len(results), 0)), 0
    q = count // n_batches
    rows = np.array([x.batch_step_times[count - q * n_batches:] for x in results])
    return rows.reshape(len(results), n_batches, q).mean(axis=2), q * size
