r"""The distribution of the step time, and the best ratio under a latency target.

Every request in the bundle receives one token per step, so the step time ``tau`` *is* the
time per output token (TPOT) of every request decoding in it, and an operator's latency
target is a quantile of ``tau``: its p99 must stay below a number of seconds.

With ``G = max(t_C, t_F(r B))`` the part of the step that does not depend on the loads and
``A = alpha_A max_w T_w + beta_A`` the slowest worker's attention, ``tau = max(G, A)``, so

.. math::

    P(\tau \le t) = 0 \quad (t < G), \qquad
    P(\tau \le t) = P\Bigl(\max_{w \le r} T_w \le \frac{t - \beta_A}{\alpha_A}\Bigr)
                  = F\Bigl(\frac{t - \beta_A}{\alpha_A}\Bigr)^r \quad (t \ge G),

with ``F`` the distribution function of one worker's load (independent workers). Since
``tau`` is a non-decreasing function of the largest load, its ``q``-quantile is that
function at the ``q``-quantile of the largest load, which is ``F^{-1}(q^{1/r})``:

.. math::  \tau_q = \max\{G,\ \alpha_A F^{-1}(q^{1/r}) + \beta_A\}.

The *exact* law (:class:`afdlib.provision.exact.WorkerLoadLaw`, the B-fold convolution of
a slot's stationary load) gives ``F`` on a grid; the *Gaussian* model takes
``F^{-1}(u) = B theta + sqrt(B) sigma Phi^{-1}(u)``. Both quantiles grow with r: the FFN
term grows, and ``q^{1/r}`` moves up the tail of ``F``.

``1 - q^{1/r}`` is computed as ``-expm1(log(q) / r)`` and the exact survival function by
summing the grid's probabilities from the top, so deep quantiles (p99.9 at r = 64) lose no
digits to cancellation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint
from afdlib.provision.barrier import _check_workers
from afdlib.provision.exact import WorkerLoadLaw, _check_law
from afdlib.provision.meanfield import check_point
from afdlib.validate import check_array, check_number

__all__ = ["LATENCY_METHODS", "max_normal_quantile", "max_load_quantile",
           "step_time_quantile_gaussian", "step_time_quantile_exact", "step_time_cdf_gaussian",
           "step_time_cdf_exact", "step_time_quantile", "LatencyChoice", "slo_ratio",
           "check_quantile", "attention_bound_slo_ratio"]

#: How a step-time quantile is predicted: the exact worker-load law, or its Gaussian.
LATENCY_METHODS = ("exact", "gaussian")


def check_quantile(q) -> float:
    """A probability level strictly between 0 and 1 (e.g. 0.99 for p99)."""
    q = check_number("quantile", q, minimum=0.0, strict=True)
    if not q < 1.0:
        raise AfdInputError(f"quantile must be < 1, got {q:g}", parameter="quantile")
    return q


def _upper_tail(ratio, q: float) -> np.ndarray:
    """``1 - q^{1/r}`` without cancellation: the tail probability one worker may exceed."""
    return -np.expm1(math.log(q) / np.asarray(ratio, dtype=float))


def max_normal_quantile(ratio, q: float = 0.99) -> np.ndarray:
    """``q``-quantile of the largest of ``r`` independent standard normals, ``Phi^{-1}(q^{1/r})``.

    Parameters
    ----------
    ratio : array_like
        Number of workers r (> 0).
    q : float
        Level in (0, 1).

    Returns
    -------
    ndarray
        Standard-normal units.
    """
    q = check_quantile(q)
    r = check_array("ratio", ratio, minimum=0.0, strict=True)
    out = -special.ndtri(_upper_tail(r, q))
    return out[()] if out.ndim == 0 else out


def _survival(law: WorkerLoadLaw) -> np.ndarray:
    """``P(T > x_k)`` at each grid value, summed from the top (no cancellation)."""
    tail = np.cumsum(law.pmf[::-1])[::-1]          # P(T >= x_k)
    return np.append(tail[1:], 0.0)


def max_load_quantile(law: WorkerLoadLaw, ratio, q: float = 0.99) -> np.ndarray:
    """``q``-quantile of the largest of ``r`` independent worker loads (tokens).

    The smallest load ``x`` with ``P(T > x) <= 1 - q^{1/r}``, linearly interpolated in the
    survival function between neighbouring grid values (the grid of a
    :class:`~afdlib.provision.exact.WorkerLoadLaw` is a few tokens wide at most).

    Parameters
    ----------
    law : WorkerLoadLaw
    ratio : array_like of float
        Number of workers r (>= 1).
    q : float
        Level in (0, 1).

    Returns
    -------
    ndarray
        Tokens, shape of ``ratio``.
    """
    q = check_quantile(q)
    r = _check_workers(ratio)
    values = law.values
    sf = _survival(law)
    p = _upper_tail(r, q).ravel()
    # sf is non-increasing: first index with sf <= p
    k = np.searchsorted(-sf, -p, side="left")
    k = np.clip(k, 0, sf.size - 1)
    out = values[k].astype(float)
    inner = k > 0
    hi_sf, lo_sf = sf[k[inner] - 1], sf[k[inner]]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(hi_sf > lo_sf, (hi_sf - p[inner]) / (hi_sf - lo_sf), 1.0)
    out[inner] = values[k[inner] - 1] + law.step * np.clip(frac, 0.0, 1.0)
    return out.reshape(r.shape)


def step_time_quantile_gaussian(point: OperatingPoint, ratio, q: float = 0.99) -> np.ndarray:
    """``q``-quantile of the step time in the Gaussian model (s).

    ``tau_q = max{G(r), mu_A + sigma_A Phi^{-1}(q^{1/r})}`` with ``mu_A = alpha_A B theta +
    beta_A`` and ``sigma_A = alpha_A sqrt(B) sigma``.

    Parameters
    ----------
    point : OperatingPoint
    ratio : array_like
        Attention workers r, >= 1.
    q : float
        Level in (0, 1), e.g. 0.99.

    Returns
    -------
    ndarray
        Seconds, shape of ``ratio``.
    """
    point = check_point(point)
    r = _check_workers(ratio)
    g = point.coeffs.rest_of_step(batch=point.batch, ratio=r)
    z = max_normal_quantile(r, q)
    return np.maximum(g, point.mean_attention_time + point.attention_std * z)


def step_time_quantile_exact(point: OperatingPoint, law: WorkerLoadLaw, ratio,
                             q: float = 0.99) -> np.ndarray:
    """``q``-quantile of the step time with the exact worker-load law (s).

    ``tau_q = max{G(r), alpha_A F^{-1}(q^{1/r}) + beta_A}`` (module docstring).

    Parameters
    ----------
    point : OperatingPoint
        Its batch must be the law's.
    law : WorkerLoadLaw
        From :func:`afdlib.provision.exact.worker_load_law`.
    ratio : array_like
        Attention workers r, >= 1.
    q : float
        Level in (0, 1).

    Returns
    -------
    ndarray
        Seconds, shape of ``ratio``.
    """
    law = _check_law(point, law)
    r = _check_workers(ratio)
    g = point.coeffs.rest_of_step(batch=point.batch, ratio=r)
    return np.maximum(g, point.coeffs.attention_time(max_load_quantile(law, r, q)))


def step_time_quantile(point: OperatingPoint, ratio, q: float = 0.99, *,
                       law: WorkerLoadLaw | None = None) -> np.ndarray:
    """The step time's ``q``-quantile (s): exact with a ``law``, Gaussian without."""
    if law is None:
        return step_time_quantile_gaussian(point, ratio, q)
    return step_time_quantile_exact(point, law, ratio, q)


def step_time_cdf_gaussian(point: OperatingPoint, ratio: int, t) -> np.ndarray:
    """``P(tau <= t)`` in the Gaussian model at one ratio, for step times ``t`` (s)."""
    point = check_point(point)
    r = float(_check_workers(ratio))
    t = np.asarray(t, dtype=float)
    g = float(point.coeffs.rest_of_step(batch=point.batch, ratio=r))
    mu, sd = point.mean_attention_time, point.attention_std
    if sd == 0.0:
        return np.where((t >= g) & (t >= mu), 1.0, 0.0)
    cdf = np.exp(r * special.log_ndtr((t - mu) / sd))
    return np.where(t >= g, cdf, 0.0)


def step_time_cdf_exact(point: OperatingPoint, law: WorkerLoadLaw, ratio: int,
                        t) -> np.ndarray:
    """``P(tau <= t) = F((t - beta_A)/alpha_A)^r`` for ``t >= G`` (0 below), exact law.

    ``F`` is interpolated linearly between the law's grid values.
    """
    law = _check_law(point, law)
    r = float(_check_workers(ratio))
    t = np.asarray(t, dtype=float)
    c = point.coeffs
    g = float(c.rest_of_step(batch=point.batch, ratio=r))
    load = (t - c.beta_A) / c.alpha_A
    cdf = np.interp(load, law.values, 1.0 - _survival(law), left=0.0, right=1.0)
    return np.where(t >= g, cdf ** r, 0.0)


def attention_bound_slo_ratio(point: OperatingPoint, target: float,
                              q: float = 0.99) -> float:
    r"""Largest (real) ratio whose Gaussian ``q``-quantile of the attention stage meets a target.

    Where attention sets the quantile (``G(r)`` below it), the step's ``q``-quantile is
    ``mu_A + sigma_A Phi^{-1}(q^{1/r})``, strictly increasing in r, so the ratios that meet
    ``target`` are those with ``q^{1/r} <= Phi(z)``, ``z = (target - mu_A) / sigma_A``:

    .. math::  r \le r_T = \frac{\ln q}{\ln \Phi(z)} .

    Parameters
    ----------
    point : OperatingPoint
    target : float
        Latency target (s), > 0.
    q : float
        Level (0.99: p99).

    Returns
    -------
    float
        ``r_T``; ``inf`` when ``sigma_A = 0`` and the mean meets the target (no barrier), 0
        when not even one worker does (``target <= mu_A`` with ``sigma_A = 0``, or ``r_T < 1``
        is returned as it is: below one worker nothing meets it).
    """
    point = check_point(point)
    target = check_number("tpot_p99", target, minimum=0.0, strict=True, unit="s")
    q = check_quantile(q)
    mu, sd = point.mean_attention_time, point.attention_std
    if sd == 0.0:
        return math.inf if target >= mu else 0.0
    log_phi = float(special.log_ndtr((target - mu) / sd))
    if log_phi == 0.0:
        return math.inf
    return math.log(q) / log_phi


@dataclass(frozen=True)
class LatencyChoice:
    """The best ratio whose predicted step-time quantile meets a latency target.

    Attributes
    ----------
    target : float
        Largest allowed step-time quantile (s), i.e. the TPOT target.
    quantile : float
        Its level (0.99 for p99).
    method : {"exact", "gaussian"}
        How the quantiles were predicted.
    r_int : int or None
        Ratio with the highest objective among those that meet the target; None if none.
    throughput : float or None
        Its objective.
    ratios : ndarray of int
    step_time_quantile : ndarray
        Predicted quantile at each ratio (s).
    feasible : ndarray of bool
        Whether each ratio meets the target.
    smallest_target : float
        The smallest achievable target: the lowest predicted quantile over the ratios (s).
    smallest_at : int
        The ratio where it is attained.
    """

    target: float
    quantile: float
    method: str
    r_int: int | None
    throughput: float | None
    ratios: np.ndarray
    step_time_quantile: np.ndarray
    feasible: np.ndarray
    smallest_target: float
    smallest_at: int

    @property
    def met(self) -> bool:
        """True when some ratio meets the target."""
        return self.r_int is not None

    def to_dict(self) -> dict:
        """JSON-ready summary (the ratio, the target, the smallest achievable one)."""
        return {"target": self.target, "quantile": self.quantile, "method": self.method,
                "r_int": self.r_int, "throughput": self.throughput, "met": self.met,
                "feasible_ratios": [int(r) for r in self.ratios[self.feasible]],
                "smallest_target": self.smallest_target, "smallest_at": self.smallest_at}


def slo_ratio(ratios, objective, step_time_quantiles, target: float, *, quantile: float = 0.99,
              method: str = "exact") -> LatencyChoice:
    """Best ratio whose predicted step-time quantile is at most ``target``.

    Parameters
    ----------
    ratios : array_like of int
        Candidate ratios.
    objective : array_like
        The objective at each ratio (tokens/s per instance, GPU or price unit).
    step_time_quantiles : array_like
        Predicted step-time quantile at each ratio (s).
    target : float
        The latency target (s), > 0.
    quantile : float
        Level of the quantile (for the record).
    method : str
        How the quantiles were predicted (for the record).

    Returns
    -------
    LatencyChoice
        ``r_int`` None when no ratio meets the target; ``smallest_target`` and
        ``smallest_at`` then say what can be met, and where.
    """
    target = check_number("tpot_p99", target, minimum=0.0, strict=True, unit="s")
    quantile = check_quantile(quantile)
    ratios = np.asarray(ratios)
    lam = np.asarray(objective, dtype=float)
    tq = np.asarray(step_time_quantiles, dtype=float)
    if not (ratios.shape == lam.shape == tq.shape) or ratios.size == 0:
        raise AfdInputError("ratios, objective and quantiles must be non-empty and of one "
                            "length", parameter="ratio")
    feasible = tq <= target
    k_min = int(np.argmin(tq))
    r_int = throughput = None
    if feasible.any():
        k = int(np.argmax(np.where(feasible, lam, -np.inf)))
        r_int, throughput = int(ratios[k]), float(lam[k])
    return LatencyChoice(target=target, quantile=quantile, method=method, r_int=r_int,
                         throughput=throughput, ratios=ratios, step_time_quantile=tq,
                         feasible=feasible, smallest_target=float(tq[k_min]),
                         smallest_at=int(ratios[k_min]))
