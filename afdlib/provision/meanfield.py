r"""The mean-field provisioning rule: throughput per instance and its closed-form maximizer.

Replacing each worker's load by its mean ``B theta`` makes the attention time a constant
``t_A = alpha_A B theta + beta_A`` and the step time

.. math::  \tau(r) = \max\{t_A,\ t_C(r),\ t_F(r)\},\qquad t_F(r) = \alpha_F r B + \beta_F ,

with ``t_C = alpha_C B + beta_C`` (communication independent of r, ``comm_scales_with="B"``)
or ``t_C(r) = alpha_C r B + beta_C`` (``"rB"``). The objective is the throughput per
instance ``Lambda(r) = r B / ((r + 1) tau(r))``, or with weights ``w_A, w_F`` (instance
prices ``p_A, p_F`` or GPU counts, :class:`afdlib.model.Objective`) the throughput per unit
``r B / ((r w_A + w_F) tau(r))``. Every rule takes an :class:`afdlib.model.OperatingPoint`.

Write ``tau(r) = max(K, G(r))``: ``K`` the terms that do not depend on r, ``G`` the upper
envelope of the terms that grow with r (lines ``s_j r + b_j`` with ``s_j > 0``). Then
``1/Lambda`` is a maximum of functions ``(p_A + p_F / r)(s r + b)`` that are convex in
``r > 0``, so ``Lambda`` is unimodal and its maximizer is

.. math::  r^* = \max\{ r_K,\ r_G \},

``r_K = G^{-1}(K)`` the ratio where a growing term catches the flat part and ``r_G`` the
maximizer over the growing envelope alone. With ``pi = w_F / w_A`` (1 for equal weights):

* ``comm_scales_with="B"`` (the paper's first version): ``K = max(t_A, t_C)``, ``G = t_F``,
  so ``r* = max{r_A, r_C, r_peak}`` with ``r_A = (t_A - beta_F)/(alpha_F B)``,
  ``r_C = r_FC = (t_C - beta_F)/(alpha_F B)`` (the FFN catches communication) and
  ``r_peak = sqrt(pi beta_F / (alpha_F B))``.
* ``comm_scales_with="rB"`` with ``alpha_C > 0``: ``K = t_A`` and ``G = max(t_C, t_F)``, so
  ``r_K = min{r_A, r_C}`` with ``r_C = r_CA = (t_A - beta_C)/(alpha_C B)`` (communication
  catches attention: a different crossing, hence its own name), and ``r_G`` is the stationary point ``r_peak`` or
  ``r_peak_C = sqrt(pi beta_C / (alpha_C B))`` of the line that binds there, or the
  crossing ``r_CF = (beta_C - beta_F)/((alpha_F - alpha_C) B)`` of the two lines:
  ``r_G = clip(r_CF, p_right, p_left)`` when the lines cross at a positive ratio (``left``
  the line with the larger intercept). With ``alpha_C = 0`` both models coincide.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.model import (
    InstancePrices,
    OperatingPoint,
    best_integer_ratio,
    maximize_ratio,
    step_time,
)
from afdlib.validate import check_array, check_int, check_type

__all__ = [
    "MeanFieldRatio",
    "step_components",
    "mean_field_step_time",
    "throughput_mean_field",
    "mean_field_ratio",
    "maximize_ratio",
    "best_integer_ratio",
    "best_integer_mean_field",
    "attention_bound_theta",
    "check_point",
    "check_ratio",
    "REGIMES",
    "InstancePrices",
]

#: The three regimes, named after the term that sets the step just below r*.
REGIMES = ("attention", "communication", "ffn")


def check_point(point) -> OperatingPoint:
    """``point`` if it is an :class:`afdlib.model.OperatingPoint` (validated on creation)."""
    return check_type("point", point, OperatingPoint, "an afdlib.model.OperatingPoint")


def check_ratio(ratio) -> np.ndarray:
    """Ratios as a float array; every entry finite and > 0."""
    return check_array("ratio", ratio, minimum=0.0, strict=True)


def step_components(point: OperatingPoint, ratio) -> dict:
    """Mean-field step-time components for each ratio.

    Parameters
    ----------
    point : OperatingPoint
        Coefficients, theta (tokens) and batch B (slots, > 0) are used.
    ratio : array_like
        Attention workers per FFN worker r, > 0.

    Returns
    -------
    dict of str -> ndarray
        ``attention`` (t_A = alpha_A B theta + beta_A), ``communication`` (t_C),
        ``ffn`` (t_F = alpha_F r B + beta_F) and ``step`` (their maximum), all in s and with
        the shape of ``ratio``.
    """
    point = check_point(point)
    r = check_ratio(ratio)
    c, b = point.coeffs, point.batch
    t_a = np.full(r.shape, point.mean_attention_time)
    t_c = np.asarray(c.comm_time(batch=b, ratio=r), dtype=float)
    t_f = np.asarray(c.ffn_time(batch=b, ratio=r), dtype=float)
    return {"attention": t_a, "communication": t_c, "ffn": t_f,
            "step": step_time(t_a, t_c, t_f)}


def mean_field_step_time(point: OperatingPoint, ratio) -> np.ndarray:
    """Mean-field step time ``max{t_A, t_C(r), t_F(r)}`` (s); arguments as :func:`step_components`."""
    return step_components(point, ratio)["step"]


def throughput_mean_field(point: OperatingPoint, ratio) -> np.ndarray:
    """Mean-field objective ``Lambda(r) = r B / ((r w_A + w_F) tau(r))``.

    Parameters
    ----------
    point : OperatingPoint
        Its objective gives the weights (equal weights of 1: tokens/s per instance,
        ``r B / ((r + 1) tau)``; prices: tokens/s per price unit).
    ratio : array_like
        Ratios, > 0.

    Returns
    -------
    ndarray
        Tokens per second per instance (or per GPU, or per price unit), shape of ``ratio``.
    """
    r = check_ratio(ratio)
    return point.throughput(r, mean_field_step_time(point, r))


@dataclass(frozen=True)
class MeanFieldRatio:
    """The closed-form mean-field optimum and the quantities it is built from.

    Attributes
    ----------
    r_A : float
        ``(t_A - beta_F) / (alpha_F B)``: where the FFN time catches the attention time.
    r_FC : float
        ``(t_C - beta_F) / (alpha_F B)``: where the FFN time catches a communication time
        that does not grow with r (``comm_scales_with="B"``; NaN otherwise).
    r_CA : float
        ``(t_A - beta_C) / (alpha_C B)``: where a communication time growing with r catches
        the attention time (``"rB"`` with ``alpha_C > 0``; NaN otherwise).
    r_peak : float
        ``sqrt(pi beta_F / (alpha_F B))``, the stationary point of the FFN-bound curve
        (``pi = w_F / w_A``, 1 for throughput per instance).
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
        Which quantity ``r_star`` equals: ``"r_A"``, ``"r_C"`` (the communication crossing
        of the model, :attr:`r_C`), ``"r_peak"``, ``"r_peak_C"`` or ``"r_CF"``.
    comm_scales_with : str
        The communication model used.
    throughput : float
        ``Lambda(r_star)`` (tokens/s per instance, per GPU or per price unit).
    step_time : float
        ``tau(r_star)`` (s).
    t_A : float
        Mean-field attention time (s).
    price_ratio : float
        ``pi = w_F / w_A`` of the objective (``p_F / p_A`` for prices).
    """

    r_A: float
    r_FC: float
    r_CA: float
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

    @property
    def r_C(self) -> float:
        """The communication crossing of the model: :attr:`r_FC` for ``"B"`` (the FFN
        catches communication), :attr:`r_CA` for ``"rB"`` (communication catches
        attention). The ``r_C`` of ``afd provision`` and of the formula names."""
        return self.r_FC if math.isnan(self.r_CA) else self.r_CA

    def to_dict(self) -> dict:
        """Plain dict of the attributes (with ``r_C``)."""
        return {**asdict(self), "r_C": self.r_C}


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


def mean_field_ratio(point: OperatingPoint) -> MeanFieldRatio:
    """Closed-form maximizer of the mean-field objective, and its regime.

    Parameters
    ----------
    point : OperatingPoint
        Coefficients (``comm_scales_with`` picks the communication model), theta (tokens),
        batch B (> 0; non-integers allowed, e.g. for derivatives) and the objective (its
        weight ratio ``pi`` scales the stationary points).

    Returns
    -------
    MeanFieldRatio

    Raises
    ------
    AfdInputError
        When the step time vanishes as r -> 0 (no finite optimum).
    """
    point = check_point(point)
    coeffs, batch = point.coeffs, point.batch
    pi = point.objective.weight_ratio
    t_a = point.mean_attention_time
    f = coeffs.alpha_F * batch
    r_a = (t_a - coeffs.beta_F) / f
    r_peak = math.sqrt(pi * coeffs.beta_F / f)
    r_fc = r_ca = r_peak_c = r_cf = math.nan
    if coeffs.comm_grows_with_ratio:
        g = coeffs.alpha_C * batch
        r_ca = (t_a - coeffs.beta_C) / g
        r_peak_c = math.sqrt(pi * coeffs.beta_C / g)
        if g != f:
            r_cf = (coeffs.beta_C - coeffs.beta_F) / (f - g)
        flat = {"attention": t_a}
        lines = {"communication": (g, coeffs.beta_C), "ffn": (f, coeffs.beta_F)}
    else:
        t_c = float(coeffs.comm_time(batch=batch, ratio=1.0))
        r_fc = (t_c - coeffs.beta_F) / f
        flat = {"attention": t_a, "communication": t_c}
        lines = {"ffn": (f, coeffs.beta_F)}
    flat_name = max(flat, key=lambda n: flat[n])      # ties: attention
    level = flat[flat_name]
    r_k = min((level - b) / s for s, b in lines.values())
    r_g, g_name, g_formula = _envelope_peak(lines, pi)
    if r_k >= r_g:
        r_star, regime = r_k, flat_name
        if coeffs.comm_grows_with_ratio:
            formula = "r_A" if r_a <= r_ca else "r_C"
        else:
            formula = "r_A" if flat_name == "attention" else "r_C"
    else:
        r_star, regime, formula = r_g, g_name, g_formula
    if not r_star > 0:
        raise AfdInputError(
            "the step time vanishes as r -> 0 (attention, communication and beta_F are all 0), "
            "so the throughput has no maximum at a positive ratio")
    tau = float(mean_field_step_time(point, r_star))
    lam = float(throughput_mean_field(point, r_star))
    return MeanFieldRatio(
        r_A=r_a, r_FC=r_fc, r_CA=r_ca, r_peak=r_peak, r_peak_C=r_peak_c, r_CF=r_cf,
        r_crossing=r_k, r_envelope_peak=r_g, r_star=r_star, regime=regime, formula=formula,
        comm_scales_with=coeffs.comm_scales_with, throughput=lam, step_time=tau, t_A=t_a,
        price_ratio=pi)


# ---------------------------------------------------------------------------
# The best integer ratio, and where the regime switches
# ---------------------------------------------------------------------------


def best_integer_mean_field(point: OperatingPoint, *, max_ratio: int | None = None) -> int:
    """Best integer ratio of the mean-field model from the closed form.

    Lambda is unimodal with its maximum at ``r*``, so the best integer in ``[1, max_ratio]`` is
    ``floor(r*)`` or ``ceil(r*)`` (clipped to the range); the two are *compared*, not rounded.

    Parameters
    ----------
    point : OperatingPoint
    max_ratio : int, optional
        Largest admissible ratio (default: unbounded).

    Returns
    -------
    int
        The best integer ratio, >= 1 (the smaller one on an exact tie).
    """
    r_star = mean_field_ratio(point).r_star
    cap = math.inf if max_ratio is None else check_int("max_ratio", max_ratio, minimum=1)
    candidates = sorted({min(max(math.floor(r_star), 1), cap), min(max(math.ceil(r_star), 1), cap)})
    values = throughput_mean_field(point, np.array(candidates, dtype=float))
    return int(candidates[int(np.argmax(values))])


def attention_bound_theta(point: OperatingPoint) -> float:
    """Per-slot load at which the mean-field optimum turns attention-bound (tokens).

    Where the crossing ``r_A`` reaches the FFN peak ``r_peak`` (communication not
    binding): ``theta_switch = (beta_F - beta_A + sqrt(pi alpha_F B beta_F)) / (alpha_A B)``.
    The ``theta`` of ``point`` is not used.
    """
    point = check_point(point)
    c, b = point.coeffs, point.batch
    pi = point.objective.weight_ratio
    return float((c.beta_F - c.beta_A + np.sqrt(pi * c.alpha_F * b * c.beta_F))
                 / (c.alpha_A * b))
