r"""The mean-field provisioning rule: throughput per instance and its closed-form maximizer.

Replacing each worker's load by its mean ``B theta`` makes the attention time a constant
``t_A = alpha_A B theta + beta_A`` and the step time

.. math::  \tau(r) = \max\{t_A,\ t_C(r),\ t_F(r)\},\qquad t_F(r) = \alpha_F r B + \beta_F ,

with ``t_C = alpha_C B + beta_C`` (communication independent of r, ``comm_scales_with="B"``)
or ``t_C(r) = alpha_C r B + beta_C`` (``"rB"``). The objective is the throughput per
instance ``Lambda(r) = r B / ((r + 1) tau(r))``, or with instance prices ``p_A, p_F`` the
throughput per price unit ``r B / ((r p_A + p_F) tau(r))``.

Write ``tau(r) = max(K, G(r))``: ``K`` the terms that do not depend on r, ``G`` the upper
envelope of the terms that grow with r (lines ``s_j r + b_j`` with ``s_j > 0``). Then
``1/Lambda`` is a maximum of functions ``(p_A + p_F / r)(s r + b)`` that are convex in
``r > 0``, so ``Lambda`` is unimodal and its maximizer is

.. math::  r^* = \max\{ r_K,\ r_G \},

``r_K = G^{-1}(K)`` the ratio where a growing term catches the flat part and ``r_G`` the
maximizer over the growing envelope alone. With ``pi = p_F / p_A`` (1 for equal prices):

* ``comm_scales_with="B"`` (the paper's first version): ``K = max(t_A, t_C)``, ``G = t_F``,
  so ``r* = max{r_A, r_C, r_peak}`` with ``r_A = (t_A - beta_F)/(alpha_F B)``,
  ``r_C = (t_C - beta_F)/(alpha_F B)`` and ``r_peak = sqrt(pi beta_F / (alpha_F B))``.
* ``comm_scales_with="rB"`` with ``alpha_C > 0``: ``K = t_A`` and ``G = max(t_C, t_F)``, so
  ``r_K = min{r_A, r_C}`` with ``r_C = (t_A - beta_C)/(alpha_C B)`` (communication catches
  attention), and ``r_G`` is the stationary point ``r_peak`` or
  ``r_peak_C = sqrt(pi beta_C / (alpha_C B))`` of the line that binds there, or the
  crossing ``r_CF = (beta_C - beta_F)/((alpha_F - alpha_C) B)`` of the two lines:
  ``r_G = clip(r_CF, p_right, p_left)`` when the lines cross at a positive ratio (``left``
  the line with the larger intercept). With ``alpha_C = 0`` both models coincide.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize

from afdlib.errors import AfdInputError
from afdlib.provision._common import (
    InstancePrices,
    as_prices,
    check_coefficients,
    check_ratio,
    check_scalar,
)

__all__ = [
    "MeanFieldRatio",
    "step_components",
    "mean_field_step_time",
    "throughput_mean_field",
    "mean_field_ratio",
    "maximize_ratio",
    "best_integer_ratio",
    "best_integer_mean_field",
    "REGIMES",
]

#: The three regimes, named after the term that sets the step just below r*.
REGIMES = ("attention", "communication", "ffn")


def _operating_point(coeffs, theta, batch):
    coeffs = check_coefficients(coeffs)
    theta = check_scalar("theta", theta)
    batch = check_scalar("batch", batch, strict=True)
    return coeffs, theta, batch


def comm_grows_with_ratio(coeffs) -> bool:
    """True when communication time grows with r (``comm_scales_with="rB"`` and alpha_C > 0)."""
    return coeffs.comm_scales_with == "rB" and coeffs.alpha_C > 0


def step_components(coeffs, theta, batch, ratio) -> dict:
    """Mean-field step-time components for each ratio.

    Parameters
    ----------
    coeffs : afdlib.costs.StepCoefficients
    theta : float
        Per-slot stationary mean load (tokens), >= 0.
    batch : float
        Slots per Attention worker B, > 0.
    ratio : array_like
        Attention workers per FFN worker r, > 0.

    Returns
    -------
    dict of str -> ndarray
        ``attention`` (t_A = alpha_A B theta + beta_A), ``communication`` (t_C),
        ``ffn`` (t_F = alpha_F r B + beta_F) and ``step`` (their maximum), all in s and with
        the shape of ``ratio``.
    """
    coeffs, theta, batch = _operating_point(coeffs, theta, batch)
    r = check_ratio(ratio)
    t_a = np.full(r.shape, coeffs.attention_time(batch * theta))
    t_c = np.asarray(coeffs.comm_time(r, batch), dtype=float)
    t_f = np.asarray(coeffs.ffn_time(r, batch), dtype=float)
    return {"attention": t_a, "communication": t_c, "ffn": t_f,
            "step": np.maximum(np.maximum(t_a, t_c), t_f)}


def mean_field_step_time(coeffs, theta, batch, ratio) -> np.ndarray:
    """Mean-field step time ``max{t_A, t_C(r), t_F(r)}`` (s); arguments as :func:`step_components`."""
    return step_components(coeffs, theta, batch, ratio)["step"]


def throughput_mean_field(coeffs, theta, batch, ratio, prices=None) -> np.ndarray:
    """Mean-field throughput per instance ``Lambda(r) = r B / ((r + 1) tau(r))``.

    Parameters
    ----------
    coeffs, theta, batch, ratio
        As for :func:`step_components` (``ratio`` may be any array of ratios > 0).
    prices : InstancePrices, optional
        Instance prices; the denominator becomes ``(r p_A + p_F) tau`` (tokens/s per price
        unit). Default: equal prices of 1, i.e. tokens/s per instance.

    Returns
    -------
    ndarray
        Tokens per second per instance (or per price unit), shape of ``ratio``.
    """
    prices = as_prices(prices)
    r = check_ratio(ratio)
    tau = mean_field_step_time(coeffs, theta, batch, r)
    return prices.throughput(r, batch, tau)


@dataclass(frozen=True)
class MeanFieldRatio:
    """The closed-form mean-field optimum and the quantities it is built from.

    Attributes
    ----------
    r_A : float
        ``(t_A - beta_F) / (alpha_F B)``: where the FFN time catches the attention time.
    r_C : float
        ``comm_scales_with="B"``: ``(t_C - beta_F) / (alpha_F B)``, where the FFN time catches
        communication. ``"rB"``: ``(t_A - beta_C) / (alpha_C B)``, where communication
        catches attention.
    r_peak : float
        ``sqrt(pi beta_F / (alpha_F B))``, the stationary point of the FFN-bound curve
        (``pi = p_F / p_A``, 1 for equal prices).
    r_peak_C : float
        ``sqrt(pi beta_C / (alpha_C B))``, the stationary point of the communication-bound
        curve (``"rB"`` only; NaN otherwise).
    r_CF : float
        ``(beta_C - beta_F) / ((alpha_F - alpha_C) B)``, where communication and FFN lines
        cross (``"rB"`` only; NaN otherwise or when the slopes are equal).
    r_crossing : float
        ``r_K``: where the first term growing with r catches the flat part of the step.
    r_envelope_peak : float
        ``r_G``: the maximizer of Lambda over the growing terms alone.
    r_star : float
        ``max(r_crossing, r_envelope_peak)``, the maximizer of Lambda over r > 0.
    regime : {"attention", "communication", "ffn"}
        The term that sets the step just below ``r_star``.
    formula : str
        Which quantity ``r_star`` equals: ``"r_A"``, ``"r_C"``, ``"r_peak"``, ``"r_peak_C"``
        or ``"r_CF"``.
    comm_scales_with : str
        The communication model used.
    throughput : float
        ``Lambda(r_star)`` (tokens/s per instance or per price unit).
    step_time : float
        ``tau(r_star)`` (s).
    t_A : float
        Mean-field attention time (s).
    price_ratio : float
        ``p_F / p_A``.
    """

    r_A: float
    r_C: float
    r_peak: float
    r_peak_C: float
    r_CF: float
    r_crossing: float
    r_envelope_peak: float
    r_star: float
    regime: str
    formula: str
    comm_scales_with: str
    throughput: float
    step_time: float
    t_A: float
    price_ratio: float

    def to_dict(self) -> dict:
        """Plain dict of the attributes."""
        return asdict(self)


def _envelope_peak(lines: dict, pi: float) -> tuple[float, str, str]:
    """Maximizer of ``r / ((r + pi) G(r))`` for ``G`` the upper envelope of 1 or 2 lines.

    ``lines`` maps a regime name to ``(slope, intercept)`` with slope > 0.
    Returns ``(r_G, regime, formula)``.
    """
    peak_formula = {"ffn": "r_peak", "communication": "r_peak_C"}
    peaks = {n: math.sqrt(pi * b / s) for n, (s, b) in lines.items()}
    if len(lines) == 1:
        (name,) = lines
        return peaks[name], name, peak_formula[name]
    (sc, bc), (sf, bf) = lines["communication"], lines["ffn"]
    crossing = (bc - bf) / (sf - sc) if sf != sc else math.nan
    if not (crossing > 0):  # one line is above the other for every r > 0
        if sf == sc:
            dominant = "ffn" if bf >= bc else "communication"
        else:
            dominant = "ffn" if sf > sc else "communication"
        return peaks[dominant], dominant, peak_formula[dominant]
    left = "communication" if bc > bf else "ffn"  # larger intercept binds at small r
    right = "ffn" if left == "communication" else "communication"
    # on the left line below the crossing, on the right line above it; 1/Lambda is convex and
    # p_right < p_left, so the optimum is the crossing clipped to [p_right, p_left]
    if crossing >= peaks[left]:
        return peaks[left], left, peak_formula[left]
    if crossing <= peaks[right]:
        return peaks[right], right, peak_formula[right]
    return crossing, left, "r_CF"


def mean_field_ratio(coeffs, theta, batch, prices=None) -> MeanFieldRatio:
    """Closed-form maximizer of the mean-field throughput per instance, and its regime.

    Parameters
    ----------
    coeffs : afdlib.costs.StepCoefficients
        Step-time coefficients (s, s/token); ``comm_scales_with`` picks the communication model.
    theta : float
        Per-slot stationary mean load (tokens), >= 0.
    batch : float
        Slots per Attention worker B, > 0 (non-integers allowed, e.g. for derivatives).
    prices : InstancePrices, optional
        Instance prices for the cost-weighted objective (default: equal).

    Returns
    -------
    MeanFieldRatio

    Raises
    ------
    AfdInputError
        On bad inputs, or when the step time vanishes as r -> 0 (no finite optimum).
    """
    coeffs, theta, batch = _operating_point(coeffs, theta, batch)
    prices = as_prices(prices)
    pi = prices.ratio
    t_a = float(coeffs.attention_time(batch * theta))
    f = coeffs.alpha_F * batch
    r_a = (t_a - coeffs.beta_F) / f
    r_peak = math.sqrt(pi * coeffs.beta_F / f)
    r_peak_c = r_cf = math.nan
    if comm_grows_with_ratio(coeffs):
        g = coeffs.alpha_C * batch
        r_c = (t_a - coeffs.beta_C) / g
        r_peak_c = math.sqrt(pi * coeffs.beta_C / g)
        if g != f:
            r_cf = (coeffs.beta_C - coeffs.beta_F) / (f - g)
        flat = {"attention": t_a}
        lines = {"communication": (g, coeffs.beta_C), "ffn": (f, coeffs.beta_F)}
        crossings = {"r_A": r_a, "r_C": r_c}
    else:
        t_c = float(coeffs.comm_time(1.0, batch))
        r_c = (t_c - coeffs.beta_F) / f
        flat = {"attention": t_a, "communication": t_c}
        lines = {"ffn": (f, coeffs.beta_F)}
        crossings = {"r_A": r_a, "r_C": r_c}
    flat_name = max(flat, key=lambda n: flat[n])      # ties: attention
    level = flat[flat_name]
    r_k = min((level - b) / s for s, b in lines.values())
    r_g, g_name, g_formula = _envelope_peak(lines, pi)
    if r_k >= r_g:
        r_star, regime = r_k, flat_name
        if comm_grows_with_ratio(coeffs):
            formula = "r_A" if crossings["r_A"] <= crossings["r_C"] else "r_C"
        else:
            formula = "r_A" if flat_name == "attention" else "r_C"
    else:
        r_star, regime, formula = r_g, g_name, g_formula
    if not r_star > 0:
        raise AfdInputError(
            "the step time vanishes as r -> 0 (attention, communication and beta_F are all 0), "
            "so the throughput has no maximum at a positive ratio")
    tau = float(mean_field_step_time(coeffs, theta, batch, r_star))
    lam = float(throughput_mean_field(coeffs, theta, batch, r_star, prices))
    return MeanFieldRatio(
        r_A=r_a, r_C=r_c, r_peak=r_peak, r_peak_C=r_peak_c, r_CF=r_cf, r_crossing=r_k,
        r_envelope_peak=r_g, r_star=r_star, regime=regime, formula=formula,
        comm_scales_with=coeffs.comm_scales_with, throughput=lam, step_time=tau, t_A=t_a,
        price_ratio=pi)


# ---------------------------------------------------------------------------
# Direct numerical maximization and the best integer ratio
# ---------------------------------------------------------------------------


def maximize_ratio(objective, lo: float = 1e-3, hi: float = 1e6, *, grid: int = 4001,
                   rtol: float = 1e-12) -> tuple[float, float]:
    """Maximize ``objective(r)`` over ``[lo, hi]`` by a log-spaced grid and Brent refinement.

    This is the *direct* maximization the closed forms are checked against: it only
    evaluates the objective.

    Parameters
    ----------
    objective : callable
        Vectorized: maps an array of ratios to an array of values.
    lo, hi : float
        Search interval (0 < lo < hi).
    grid : int
        Number of log-spaced grid points.
    rtol : float
        Relative tolerance of the Brent refinement in r.

    Returns
    -------
    r_best, value : float
        The maximizer and the maximum.
    """
    lo = check_scalar("lo", lo, strict=True)
    hi = check_scalar("hi", hi, strict=True)
    if not hi > lo:
        raise AfdInputError(f"need lo < hi, got [{lo:g}, {hi:g}]")
    r = np.geomspace(lo, hi, int(grid))
    v = np.asarray(objective(r), dtype=float)
    i = int(np.nanargmax(v))
    a, b = r[max(i - 1, 0)], r[min(i + 1, len(r) - 1)]
    best_r, best_v = float(r[i]), float(v[i])
    if b > a:
        res = optimize.minimize_scalar(lambda x: -float(np.asarray(objective(np.array([x])))[0]),
                                       bounds=(a, b), method="bounded",
                                       options={"xatol": rtol * best_r, "maxiter": 500})
        if -res.fun >= best_v:
            best_r, best_v = float(res.x), float(-res.fun)
    return best_r, best_v


def best_integer_ratio(objective, max_ratio: int) -> tuple[int, np.ndarray]:
    """The integer r in ``1 .. max_ratio`` with the largest objective (first one on ties).

    Parameters
    ----------
    objective : callable
        Vectorized objective of the ratio.
    max_ratio : int
        Largest ratio considered, >= 1.

    Returns
    -------
    r_int : int
    values : ndarray
        The objective at ``1 .. max_ratio``.
    """
    max_ratio = _check_max_ratio(max_ratio)
    ratios = np.arange(1, max_ratio + 1, dtype=float)
    values = np.asarray(objective(ratios), dtype=float)
    return int(np.argmax(values)) + 1, values


def _check_max_ratio(max_ratio) -> int:
    if isinstance(max_ratio, bool) or not isinstance(max_ratio, (int, np.integer)):
        raise AfdInputError(f"max_ratio must be an integer >= 1, got {max_ratio!r}")
    if max_ratio < 1:
        raise AfdInputError(f"max_ratio must be >= 1, got {max_ratio}")
    return int(max_ratio)


def best_integer_mean_field(coeffs, theta, batch, max_ratio: int | None = None,
                            prices=None) -> int:
    """Best integer ratio of the mean-field model from the closed form.

    Lambda is unimodal with its maximum at ``r*``, so the best integer in ``[1, max_ratio]`` is
    ``floor(r*)`` or ``ceil(r*)`` (clipped to the range); the two are *compared*, not rounded.

    Parameters
    ----------
    coeffs, theta, batch, prices
        As for :func:`mean_field_ratio`.
    max_ratio : int, optional
        Largest admissible ratio (default: unbounded).

    Returns
    -------
    int
        The best integer ratio, >= 1 (the smaller one on an exact tie).
    """
    prices = as_prices(prices)
    r_star = mean_field_ratio(coeffs, theta, batch, prices).r_star
    cap = math.inf if max_ratio is None else _check_max_ratio(max_ratio)
    candidates = sorted({min(max(math.floor(r_star), 1), cap), min(max(math.ceil(r_star), 1), cap)})
    values = throughput_mean_field(coeffs, theta, batch, np.array(candidates, dtype=float), prices)
    return int(candidates[int(np.argmax(values))])


__all__ += ["InstancePrices", "comm_grows_with_ratio"]
