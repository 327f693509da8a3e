r"""The barrier-aware refinement: the slowest of r Attention workers sets the step.

In the Gaussian model each worker's token load is ``T_w ~ Normal(B theta, B sigma^2)``,
independent across the r workers, so its attention time is
``mu_A + sigma_A Z_w`` with ``mu_A = alpha_A B theta + beta_A`` and
``sigma_A = alpha_A sqrt(B) sigma``. With ``G = max(t_C, t_F)`` the rest of the step,

.. math::

    E[\tau] = E[\max(G, \mu_A + \sigma_A \max_{w \le r} Z_w)]
            = G + \sigma_A \int_z^\infty (1 - \Phi(x)^r)\, dx,
    \qquad z = (G - \mu_A) / \sigma_A .

The integral ``I_r(z) = E[(Y_r - z)^+]`` (``Y_r`` the maximum of r standard normals) is
computed here without cancellation for every z and for r from below 1 to millions:

* for ``z`` at or above the median ``c_r`` of ``Y_r`` it is the upper integral
  ``J_r(z) = int_z^inf S(x) dx`` of the survival function ``S = 1 - Phi^r``;
* below the median, ``I_r(z) = E[Y_r] - z + K_r(z)`` with the lower integral
  ``K_r(z) = int_{-inf}^z Phi(x)^r dx``, so no long stretch where ``S`` is 1 is integrated.

Both integrands are log-concave, so their e-folding length is largest at the end point
``z``; each integral is mapped to ``t in [0, 1)`` by ``x = z +- l t / (1 - t)`` with ``l`` that
length (inverse hazard) and done by Gauss-Legendre quadrature, with the integrand in log
space (``log(1 - Phi^r)`` from ``log Q(x)`` when ``Phi(x)^r`` rounds to 1).
Everything broadcasts over ``z`` and ``r``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from afdlib.errors import AfdInputError
from afdlib.model import PER_INSTANCE, OperatingPoint, best_integer_ratio, maximize_ratio
from afdlib.provision.meanfield import check_point
from afdlib.validate import check_array, check_int

__all__ = [
    "expected_max_normal",
    "expected_excess",
    "max_normal_median",
    "barrier_moments",
    "expected_step_time",
    "step_time_decomposition",
    "throughput_barrier",
    "BarrierRatio",
    "barrier_ratio",
    "attention_limited_ratio",
    "gaussian_barrier_overhead",
    "excess_by_quadrature",
]

_N_NODES = 96
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(_N_NODES)
_T = 0.5 * (_NODES + 1.0)          # Gauss-Legendre nodes on (0, 1)
_W = 0.5 * _WEIGHTS
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _check_r(r) -> np.ndarray:
    return check_array("the number of workers r", r, minimum=0.0, strict=True)


def _log_neg_log_cdf(x: np.ndarray) -> np.ndarray:
    """``log(-log Phi(x))`` for every real x, without underflow for large x."""
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    neg = x <= 0
    out[neg] = np.log(-special.log_ndtr(x[neg]))
    xp = x[~neg]
    log_q = special.log_ndtr(-xp)                     # log Q(x), accurate for all x
    q = np.exp(log_q)
    # -log Phi = -log1p(-q) = q * (1 + q/2 + ...); the factor is 1 when q underflows
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(q > 1e-300, -np.log1p(-q) / np.where(q > 1e-300, q, 1.0), 1.0)
    out[~neg] = log_q + np.log(factor)
    return out


def _log1mexp_of_log(u: np.ndarray) -> np.ndarray:
    """``log(1 - exp(-e^u))``: the log survival function written in ``u = log(r (-log Phi))``."""
    u = np.asarray(u, dtype=float)
    out = np.empty_like(u)
    small = u < -30.0                                  # 1 - exp(-a) = a (1 - a/2 + ...)
    out[small] = u[small] - 0.5 * np.exp(u[small])
    a = np.exp(u[~small])
    out[~small] = np.where(a < math.log(2.0), np.log(-np.expm1(-a)), np.log1p(-np.exp(-a)))
    return out


def _log_sf(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``log(1 - Phi(x)^r)``."""
    return _log1mexp_of_log(np.log(r) + _log_neg_log_cdf(x))


def _log_pdf_max(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Log density of the maximum of r standard normals, ``log(r phi(x) Phi(x)^(r-1))``."""
    power = np.where(r == 1.0, 0.0, (r - 1.0) * special.log_ndtr(x))
    return np.log(r) - 0.5 * x * x - _LOG_SQRT_2PI + power


def max_normal_median(r) -> np.ndarray:
    """Median of the maximum of ``r`` independent standard normals, ``Phi^{-1}(2^{-1/r})``.

    Parameters
    ----------
    r : array_like
        Number of workers (> 0; non-integers give the continuous extension ``Phi^r``).

    Returns
    -------
    ndarray
        The median (standard-normal units).
    """
    r = _check_r(r)
    # Phi^{-1}(1 - p) = -Phi^{-1}(p) with p = 1 - 2^{-1/r} computed without cancellation
    return -special.ndtri(-np.expm1(-math.log(2.0) / r))


def _upper_integral(z: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``J_r(z) = int_z^inf (1 - Phi(x)^r) dx`` for z at or above the median (any z works)."""
    log_s0 = _log_sf(z, r)
    log_len = log_s0 - _log_pdf_max(z, r)              # inverse hazard: e-folding length at z
    length = np.exp(log_len)[..., None]
    t = _T
    x = z[..., None] + length * t / (1.0 - t)
    log_f = _log_sf(x, r[..., None]) + np.log(length) - 2.0 * np.log1p(-t) + np.log(_W)
    top = np.max(log_f, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.exp(top[..., 0]) * np.sum(np.exp(log_f - top), axis=-1)


def _lower_integral(z: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``K_r(z) = int_{-inf}^z Phi(x)^r dx`` for z at or below the median (any z works)."""
    log_f0 = r * special.log_ndtr(z)
    log_len = log_f0 - _log_pdf_max(z, r)              # F / f of the maximum at z
    length = np.exp(log_len)[..., None]
    t = _T
    x = z[..., None] - length * t / (1.0 - t)
    log_f = (r[..., None] * special.log_ndtr(x) + np.log(length) - 2.0 * np.log1p(-t)
             + np.log(_W))
    top = np.max(log_f, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.exp(top[..., 0]) * np.sum(np.exp(log_f - top), axis=-1)


def expected_max_normal(r) -> np.ndarray:
    """Exact ``E[max(Z_1, ..., Z_r)]`` for independent standard normals.

    Computed as ``c + J_r(c) - K_r(c)`` at the median ``c`` of the maximum (see the module
    docstring), accurate to about 1e-13 for r from below 1 to beyond 1e6.

    Parameters
    ----------
    r : array_like
        Number of workers (> 0; real values use the CDF ``Phi^r``).

    Returns
    -------
    ndarray
        ``E[max]`` (standard-normal units); 0 at r = 1, ``1/sqrt(pi)`` at r = 2.
    """
    r = _check_r(r)
    c = max_normal_median(r)
    out = c + _upper_integral(c, r) - _lower_integral(c, r)
    return out[()] if out.ndim == 0 else out


def _tail_parts(z, r) -> tuple[np.ndarray, np.ndarray]:
    """Split the tail integral at the median ``c_r`` of the maximum, without cancellation.

    Returns ``(upper, value)`` broadcast over ``z`` and ``r``: where ``upper`` (``z >= c_r``)
    ``value = J_r(z) = I_r(z)``; elsewhere ``value = E[max(z, Y_r)] = E[Y_r] + K_r(z)``, so
    that ``I_r(z) = value - z``. Infinite ``z`` is allowed.
    """
    z = np.asarray(z, dtype=float)
    if z.size and np.any(np.isnan(z)):
        raise AfdInputError("threshold z must not be NaN")
    r = _check_r(r)
    z, r = np.broadcast_arrays(z, r)
    z = np.array(z, dtype=float)
    r = np.array(r, dtype=float)
    c = max_normal_median(r)
    # beyond |z| = sqrt(2 (760 + log r)) the neglected tail integral is below 1e-330
    far = np.sqrt(2.0 * (760.0 + np.log(np.maximum(r, 1.0))))
    upper = z >= c
    value = np.zeros(z.shape)
    near = upper & (z < far)
    value[near] = _upper_integral(z[near], r[near])
    lower = ~upper
    if np.any(lower):
        rl, cl, zl = r[lower], c[lower], z[lower]
        mean_max = cl + _upper_integral(cl, rl) - _lower_integral(cl, rl)
        tail = np.zeros(zl.shape)
        shallow = zl > -far[lower]
        tail[shallow] = _lower_integral(zl[shallow], rl[shallow])
        value[lower] = mean_max + tail
    return upper, value


def expected_excess(z, r) -> np.ndarray:
    r"""``I_r(z) = E[(max_{w<=r} Z_w - z)^+] = \int_z^\infty (1 - \Phi(x)^r) dx``.

    Parameters
    ----------
    z : array_like
        Threshold (standard-normal units), any real; broadcasts with ``r``.
    r : array_like
        Number of workers (> 0).

    Returns
    -------
    ndarray
        The expected excess (standard-normal units), ``> 0``; about ``E[max] - z`` for very
        negative z and ``r phi(z) / z^2`` for large z (relative accuracy kept until the value
        underflows double precision).
    """
    upper, value = _tail_parts(z, r)
    out = np.where(upper, value, value - np.broadcast_to(np.asarray(z, dtype=float), value.shape))
    return out[()] if out.ndim == 0 else out


def excess_by_quadrature(z: float, r: float) -> float:
    """``I_r(z)`` by adaptive quadrature (scipy's ``quad``), split at 0: the slow, plain
    reference :func:`expected_excess` is checked against (one threshold, one ``r``).

    For ``z < 0``, ``int_z^inf (1 - Phi^r) = -z - int_z^0 Phi^r + int_0^inf (1 - Phi^r)``.
    """
    from scipy import integrate

    z = float(z)
    r = float(_check_r(r))

    def survival(x):
        return -np.expm1(r * special.log_ndtr(x))

    if z >= 0:
        return integrate.quad(survival, z, np.inf, epsabs=0, epsrel=1e-12, limit=400)[0]
    lower = integrate.quad(lambda x: np.exp(r * special.log_ndtr(x)), z, 0, epsabs=0,
                           epsrel=1e-12, limit=400)[0]
    return -z - lower + integrate.quad(survival, 0, np.inf, epsabs=0, epsrel=1e-12,
                                       limit=400)[0]


# ---------------------------------------------------------------------------
# The step time of the barrier model
# ---------------------------------------------------------------------------


def barrier_moments(point: OperatingPoint) -> tuple[float, float]:
    """Mean and standard deviation of one worker's attention time in the Gaussian model.

    Parameters
    ----------
    point : OperatingPoint
        Coefficients, theta and load_std (tokens), batch B (> 0).

    Returns
    -------
    mu_A, sigma_A : float
        ``alpha_A B theta + beta_A`` and ``alpha_A sqrt(B) sigma`` (s).
    """
    point = check_point(point)
    return point.mean_attention_time, point.attention_std


def _check_workers(ratio) -> np.ndarray:
    """Ratios of the barrier model: at least one Attention worker."""
    r = check_array("ratio", ratio, minimum=0.0, strict=True)
    if r.size and np.any(r < 1):
        raise AfdInputError(f"ratio must be >= 1 in the barrier model (a bundle has at least one "
                            f"Attention worker), got {float(r.min()):g}", parameter="ratio")
    return r


def expected_step_time(point: OperatingPoint, ratio) -> np.ndarray:
    r"""Expected step time of the barrier model, ``G + sigma_A I_r((G - mu_A)/sigma_A)``.

    Parameters
    ----------
    point : OperatingPoint
        Coefficients, theta, load_std (tokens; 0 gives the mean-field step time) and B.
    ratio : array_like
        Attention workers per FFN worker r, >= 1 (vectorized; real values interpolate
        between integers through ``Phi^r``).

    Returns
    -------
    ndarray
        ``E[tau]`` (s), same shape as ``ratio``.
    """
    mu, sd = barrier_moments(point)
    r = _check_workers(ratio)
    g = point.coeffs.rest_of_step(batch=point.batch, ratio=r)
    if sd == 0.0:
        return np.maximum(g, mu)  # the step model's max{A, G} with every worker at its mean
    return _barrier_step(g, mu, sd, r)


def _barrier_step(g, mu, sd, r):
    """``E[max(g, mu + sd Y_r)]`` = ``g + sd I_r(z)`` above the median, else
    ``mu + sd E[max(z, Y_r)]`` (no cancellation, infinite z allowed)."""
    with np.errstate(over="ignore", divide="ignore"):
        z = (g - mu) / sd
    upper, value = _tail_parts(z, r)
    return np.where(upper, g + sd * value, mu + sd * value)


def step_time_decomposition(point: OperatingPoint, ratio) -> dict:
    """Split the barrier model's expected step time into its parts.

    ``E[tau] = mean_field + variability + barrier`` where

    * ``mean_field = max(G, mu_A)`` is the mean-field step time;
    * ``variability = E[max(G, mu_A + sigma_A Z)] - max(G, mu_A)`` is what a *single* random
      worker adds (Jensen's gap of the convex ``max``; present even at r = 1);
    * ``barrier = E[tau] - E[max(G, mu_A + sigma_A Z)]`` is what waiting for the slowest of r
      workers adds (zero at r = 1).

    Parameters
    ----------
    point, ratio
        As for :func:`expected_step_time`.

    Returns
    -------
    dict of str -> ndarray
        ``mean_field``, ``variability``, ``barrier``, ``expected`` (all s) and ``z``.
    """
    mu, sd = barrier_moments(point)
    r = _check_workers(ratio)
    g = point.coeffs.rest_of_step(batch=point.batch, ratio=r)
    mean_field = np.maximum(g, mu)
    if sd == 0.0:
        zero = np.zeros_like(mean_field)
        z = np.where(g >= mu, np.inf, -np.inf)
        return {"mean_field": mean_field, "variability": zero, "barrier": zero.copy(),
                "expected": mean_field.copy(), "z": z}
    with np.errstate(over="ignore", divide="ignore"):
        z = (g - mu) / sd
    one = _barrier_step(g, mu, sd, np.ones_like(r))
    full = _barrier_step(g, mu, sd, r)
    return {"mean_field": mean_field, "variability": one - mean_field, "barrier": full - one,
            "expected": full, "z": z}


def throughput_barrier(point: OperatingPoint, ratio) -> np.ndarray:
    """Objective of the barrier model, ``r B / ((r w_A + w_F) E[tau])``.

    Parameters
    ----------
    point, ratio
        As for :func:`expected_step_time`; the point's objective gives the weights
        (default: tokens/s per instance, ``r B / ((r + 1) E[tau])``).

    Returns
    -------
    ndarray
        Tokens per second per instance (or per GPU, or per price unit).
    """
    r = _check_workers(ratio)
    return point.throughput(r, expected_step_time(point, r))


def gaussian_barrier_overhead(point: OperatingPoint, ratio) -> np.ndarray:
    """Gaussian estimate of the barrier overhead, ``sigma_A E[max_{w<=r} Z_w]`` (s).

    The mean over steps of the slowest worker's attention time minus the mean worker's,
    when each worker's attention time is ``mu_A + sigma_A Z_w`` with independent standard
    normals (what :class:`afdlib.sim.SimResult` reports as ``barrier_overhead``).
    """
    _, sd = barrier_moments(point)
    return sd * np.asarray(expected_max_normal(_check_workers(ratio)), dtype=float)


# ---------------------------------------------------------------------------
# The barrier model's optimum
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BarrierRatio:
    """Optimum of the barrier model's objective (found numerically; it has no closed form).

    Attributes
    ----------
    r_star : float
        Maximizer of the barrier objective over real ratios in the search interval.
    throughput : float
        Its value (tokens/s per instance, per GPU or per price unit).
    r_int : int
        Best integer ratio in ``1 .. max_ratio`` (objective compared at every integer).
    throughput_int : float
        Objective at ``r_int``.
    max_ratio : int
        Largest integer ratio considered.
    at_max_ratio : bool
        True when ``r_int == max_ratio``: the best integer may lie beyond the range.
    """

    r_star: float
    throughput: float
    r_int: int
    throughput_int: float
    max_ratio: int
    at_max_ratio: bool


def barrier_ratio(point: OperatingPoint, *, max_ratio: int = 64,
                  search: tuple[float, float] = (1.0, 1e5)) -> BarrierRatio:
    """Best real and integer ratio of the barrier model.

    Parameters
    ----------
    point : OperatingPoint
        As for :func:`expected_step_time`.
    max_ratio : int
        Largest integer ratio compared (>= 1).
    search : (float, float)
        Interval of real ratios searched for ``r_star`` (log grid + Brent), lower end >= 1.

    Returns
    -------
    BarrierRatio
    """
    barrier_moments(point)  # validates
    max_ratio = check_int("max_ratio", max_ratio, minimum=1)

    def objective(r):
        return throughput_barrier(point, r)

    r_star, lam = maximize_ratio(objective, search[0], search[1], grid=1201)
    r_int, values = best_integer_ratio(objective, max_ratio)
    return BarrierRatio(r_star=r_star, throughput=lam, r_int=r_int,
                        throughput_int=float(values[r_int - 1]), max_ratio=max_ratio,
                        at_max_ratio=r_int == max_ratio)


def attention_limited_ratio(kappa) -> np.ndarray:
    """Ratio that maximizes ``r / ((r + 1) (1 + kappa E[max_r Z]))``.

    This is the barrier model's optimum when attention alone sets the step (FFN and
    communication free, attention far above them): the mean-field throughput would then
    grow without bound in r, but waiting for the slowest of r workers caps the useful ratio.
    It depends only on the attention time's coefficient of variation
    ``kappa = sigma_A / mu_A``. The maximizer solves
    ``1 / (r (r + 1)) = kappa m'(r) / (1 + kappa m(r))`` with ``m(r) = E[max_r Z]``.

    Parameters
    ----------
    kappa : array_like
        ``sigma_A / mu_A`` (dimensionless), > 0.

    Returns
    -------
    ndarray
        The maximizing real ratio ``>= 1`` for each kappa.
    """
    kappa = check_array("kappa = sigma_A / mu_A", kappa, minimum=0.0, strict=True)
    out = np.empty(kappa.shape)
    for idx, k in np.ndenumerate(kappa):
        # throughput per instance of one slot per worker with a step of 1 + kappa E[max_r Z]
        out[idx] = maximize_ratio(
            lambda r, k=k: PER_INSTANCE.throughput(r, 1.0, 1.0 + k * expected_max_normal(r)),
            1.0, 1e9, grid=1201)[0]
    return out[()] if out.ndim == 0 else out
