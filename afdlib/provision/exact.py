"""The barrier with the exact law of a worker's load instead of its normal approximation.

A worker's token load is the sum of its B slots' loads. In the stationary state the slots
are independent and each load has the exact law of
:func:`afdlib.workload.stationary_load_pmf`, so the law of the worker's load is that law
convolved with itself B times, and the r workers are independent. The expected step time

    E[tau] = E[ max(G, alpha_A * max_w T_w + beta_A) ],   G = max(t_C, t_F(rB)),

then follows from the distribution function F of one worker's load as

    E[tau] = alpha_A * (c + integral_c^inf (1 - F(x)^r) dx) + beta_A,   c = (G - beta_A) / alpha_A,

with no central-limit approximation. It is exact for the step model (up to a grid of
a few thousand load bins, chosen to keep the mean exact), and matters where the normal
approximation of :mod:`afdlib.provision.barrier` is poor: few slots per worker and
heavy-tailed contexts, whose worker loads are right-skewed.

The same law of the slowest worker also gives the step time of a pipelined bundle with
``m`` microbatches, whose step cannot be shorter than one microbatch's round trip
(``microbatches=`` of :func:`expected_step_time_exact`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft

from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint, intercept_share, step_time
from afdlib.provision.meanfield import check_point
from afdlib.validate import check_int, check_type
from afdlib.workload import check_workload, stationary_load_pmf

#: Default grid size for one slot's load in the exact law (points per slot).
LOAD_BINS = 2048

__all__ = ["LOAD_BINS", "WorkerLoadLaw", "worker_load_law", "expected_step_time_exact",
           "throughput_exact", "ExactRatio", "exact_ratio"]


@dataclass(frozen=True, eq=False)
class WorkerLoadLaw:
    """The law of one worker's token load on a grid.

    Attributes
    ----------
    batch : int
        Slots per worker B.
    step : float
        Grid spacing (tokens); the load takes the values ``offset + k * step``.
    offset : float
        First grid value (tokens).
    pmf : ndarray
        Probability of each grid value (sums to 1).
    mean, std : float
        Mean and standard deviation of the load (tokens); the mean is exact.
    """

    batch: int
    step: float
    offset: float
    pmf: np.ndarray
    mean: float
    std: float

    @property
    def values(self) -> np.ndarray:
        """Grid values (tokens)."""
        return self.offset + self.step * np.arange(self.pmf.size)

    @property
    def cdf(self) -> np.ndarray:
        """``P(T <= value)`` at each grid value."""
        return np.minimum(np.cumsum(self.pmf), 1.0)

    def mean_of_max(self, r: int) -> float:
        """``E[max_{w <= r} T_w]`` for ``r`` independent workers (tokens), exactly on the grid."""
        r = check_int("r", r, minimum=1)
        return float(np.dot(_max_load_pmf(self, r), self.values))


def _linear_binning(values: np.ndarray, probs: np.ndarray, step: int) -> np.ndarray:
    """Spread each point's mass over the two neighbouring grid points, keeping the mean."""
    k = values // step
    frac = (values - k * step) / step
    size = int(k.max()) + 2
    out = np.bincount(k, weights=probs * (1.0 - frac), minlength=size)
    out += np.bincount(k + 1, weights=probs * frac, minlength=size)
    return out


def worker_load_law(workload, batch: int, *, bins: int = LOAD_BINS,
                    tail: float = 1e-17) -> WorkerLoadLaw:
    """Exact law of the token load of a worker with ``batch`` stationary slots.

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
        Request lengths (P tokens of context, D >= 1 decode steps).
    batch : int
        Slots per worker B, >= 1.
    bins : int
        Grid points for one slot's load (its range is split into about this many steps of
        an integer number of tokens; mass is split linearly between neighbours, so the
        mean stays exact and each slot's variance grows by at most ``step**2 / 4``).
    tail : float
        Grid points with probability below ``tail`` at either end are dropped.

    Returns
    -------
    WorkerLoadLaw
    """
    workload = check_workload(workload)
    batch = check_int("batch B", batch, minimum=1)
    bins = check_int("bins", bins, minimum=16)
    values, probs = stationary_load_pmf(workload)
    step = max(1, math.ceil(int(values[-1]) / bins))
    slot = _linear_binning(values, probs, step)
    lo = int(np.argmax(slot > 0))
    slot = slot[lo:int(np.nonzero(slot)[0][-1]) + 1]
    n = batch * (slot.size - 1) + 1
    size = fft.next_fast_len(n, real=True)
    pmf = fft.irfft(fft.rfft(slot, size) ** batch, size)[:n]
    pmf = np.clip(pmf, 0.0, None)
    pmf /= pmf.sum()
    keep = np.nonzero(pmf > tail)[0]
    first, last = int(keep[0]), int(keep[-1])
    pmf = pmf[first:last + 1] / pmf[first:last + 1].sum()
    offset = float(step * (batch * lo + first))
    grid = offset + step * np.arange(pmf.size)
    mean = float(np.dot(pmf, grid))
    std = float(math.sqrt(max(np.dot(pmf, (grid - mean) ** 2), 0.0)))
    return WorkerLoadLaw(int(batch), float(step), offset, pmf, mean, std)


def _max_load_pmf(law: WorkerLoadLaw, r: int) -> np.ndarray:
    """Law of the largest of ``r`` independent worker loads, on the law's grid."""
    with np.errstate(divide="ignore"):
        log_cdf = np.log(law.cdf)
    cdf_max = np.exp(r * log_cdf)
    cdf_max[-1] = 1.0
    return np.diff(cdf_max, prepend=0.0)


def _check_law(point: OperatingPoint, law) -> WorkerLoadLaw:
    point = check_point(point)
    law = check_type("law", law, WorkerLoadLaw, "a WorkerLoadLaw (see worker_load_law)")
    if law.batch != point.batch:
        raise AfdInputError(f"the worker-load law is for B = {law.batch} slots, the operating "
                            f"point has B = {point.batch}", parameter="batch")
    return law


def expected_step_time_exact(point: OperatingPoint, law: WorkerLoadLaw, ratio, *,
                             microbatches=None, intercepts: str = "per_microbatch") -> np.ndarray:
    """``E[tau]`` (s) with the exact worker-load law, for each ratio.

    With ``microbatches=None`` this is the step model of the book,
    ``tau = max(t_C, t_F, A)`` with ``A = alpha_A max_w T_w + beta_A``: the stages overlap
    perfectly. With ``m`` microbatches per worker a step also has to hold the round trip of
    one microbatch through attention, dispatch, FFN and combine, which gives the
    approximation (:func:`afdlib.model.step_time`)

        tau = max(t_C, t_F, A, (A + t_F + 2 t_C) / m),

    where, if every microbatch pays the full intercepts (``"per_microbatch"``), the
    per-step busy times ``A, t_F, t_C`` carry ``m`` times each intercept. ``m = 1`` is the
    unpipelined step (the sum of the stages); large ``m`` recovers the step model. It is
    only an approximation of the pipelined engine of :mod:`afdlib.sim`: over the 105
    settings of ``benchmarks/pipelined_rule_regret.py`` it missed the engine's step time by
    up to 20% near the optimum and following its ratio lost up to 3.3% of throughput (it
    sees the round trip of the average microbatch, not the heavy one, nor circuits through
    several microbatches). For a pipeline use :mod:`afdlib.provision.pipelined` (the exact
    maximum cycle mean over the loads' laws; at most 0.18% lost there).

    Parameters
    ----------
    point : OperatingPoint
        Its coefficients are used; its batch must be the law's.
    law : WorkerLoadLaw
        From :func:`worker_load_law`.
    ratio : array_like of int
        Attention workers per FFN worker, each >= 1.
    microbatches : int or None
        Microbatches per Attention worker, or None for the ideal overlap of the step model.
    intercepts : {"per_microbatch", "per_step"}
        Whether each microbatch pays the full intercepts or ``1/m`` of them.

    Returns
    -------
    ndarray
        Mean step time (s), shape of ``ratio``.
    """
    law = _check_law(point, law)
    c = point.coeffs
    m = None if microbatches is None else check_int("microbatches", microbatches, minimum=1)
    # intercepts a step's busy time carries: m of each if every microbatch pays them in full
    k = 1 if m is None or intercept_share(intercepts, m) != 1.0 else m
    r = np.asarray(ratio)
    if r.size == 0 or not np.all(np.isfinite(r)) or np.any(r < 1) or np.any(r != np.round(r)):
        raise AfdInputError("ratios for the exact barrier must be integers >= 1",
                            parameter="ratio")
    flat = r.ravel().astype(np.int64)
    out = np.empty(flat.size)
    cache: dict[int, float] = {}
    b = law.batch
    attention = c.attention_time(law.values, intercept_scale=k)
    for i, rr in enumerate(flat):
        if rr not in cache:
            t_c = c.comm_time(batch=b, ratio=rr, intercept_scale=k)
            t_f = c.ffn_time(batch=b, ratio=rr, intercept_scale=k)
            tau = step_time(attention, t_c, t_f, microbatches=m)
            cache[rr] = float(np.dot(_max_load_pmf(law, int(rr)), tau))
        out[i] = cache[rr]
    return out.reshape(r.shape)


def throughput_exact(point: OperatingPoint, law: WorkerLoadLaw, ratio,
                     **pipeline) -> np.ndarray:
    """Objective ``r B / ((r w_A + w_F) E[tau])`` with the exact barrier (tokens/s per
    instance by default, per GPU or per price unit with the point's objective);
    ``pipeline`` (``microbatches``, ``intercepts``) as for :func:`expected_step_time_exact`.
    """
    r = np.asarray(ratio, dtype=float)
    return point.throughput(r, expected_step_time_exact(point, law, r, **pipeline))


@dataclass(frozen=True)
class ExactRatio:
    """Best integer ratio of the exact-barrier model.

    Attributes
    ----------
    r_int : int
        Ratio with the highest objective in ``1 .. max_ratio``.
    throughput : float
        Its objective (tokens/s per instance, per GPU or per price unit).
    ratios, throughputs : ndarray
        The whole table.
    """

    r_int: int
    throughput: float
    ratios: np.ndarray
    throughputs: np.ndarray


def exact_ratio(point: OperatingPoint, law: WorkerLoadLaw, *, max_ratio: int,
                **pipeline) -> ExactRatio:
    """Best integer ratio of the exact-barrier model, comparing every ratio 1 .. max_ratio.

    ``pipeline`` (``microbatches``, ``intercepts``) as for :func:`expected_step_time_exact`.
    """
    max_ratio = check_int("max_ratio", max_ratio, minimum=1)
    ratios = np.arange(1, int(max_ratio) + 1)
    lam = throughput_exact(point, law, ratios, **pipeline)
    k = int(np.argmax(lam))
    return ExactRatio(int(ratios[k]), float(lam[k]), ratios, lam)
