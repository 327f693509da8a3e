r"""How the optimal ratio and the optimal throughput move with the inputs.

For the mean-field model ``r*`` is one of five closed forms (``r_A``, ``r_C``, ``r_peak``,
``r_peak_C``, ``r_CF``), each a smooth function of the intermediate quantities

* ``a = t_A = alpha_A B theta + beta_A`` (s), ``c = t_C = alpha_C B + beta_C`` (s, when
  communication does not grow with r),
* ``f = alpha_F B`` and ``g = alpha_C B`` (s per worker), ``b_F = beta_F``, ``b_C = beta_C`` (s),
* ``pi = p_F / p_A`` (instance price ratio),

so inside a regime its derivatives follow by the chain rule; :func:`mean_field_sensitivities`
returns them together with the derivative of ``Lambda* = Lambda(r*)``:

.. math::  \frac{d \log \Lambda^*}{dx} = \frac{dB/dx}{B} + \frac{dr^*/dx}{r^*}
           - \frac{r^* dp_A/dx + p_A dr^*/dx + dp_F/dx}{p_A r^* + p_F} - \frac{dT^*/dx}{T^*},

``T* = tau(r*)`` the step time at the optimum. At a regime boundary the derivatives jump
(one-sided values differ); the functions report the formula of the regime the closed form
selected. :func:`numerical_sensitivities` gives central finite differences of the optimum
for the mean-field model (closed form) and for the barrier model (numerical optimum).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from afdlib.errors import AfdInputError
from afdlib.model import InstancePrices, OperatingPoint
from afdlib.provision.barrier import barrier_ratio
from afdlib.provision.meanfield import check_point, mean_field_ratio
from afdlib.validate import check_choice, check_number

__all__ = ["PARAMETERS", "Sensitivity", "mean_field_sensitivities", "numerical_sensitivities",
           "perturb", "SENSITIVITY_MODELS"]

#: Inputs whose effect is reported, with their units.
PARAMETERS = {
    "theta": "tokens", "load_std": "tokens", "batch": "slots",
    "alpha_A": "s/token", "beta_A": "s", "alpha_F": "s/token", "beta_F": "s",
    "alpha_C": "s/token", "beta_C": "s", "price_attention": "price", "price_ffn": "price",
}
#: The models whose optimum :func:`numerical_sensitivities` differentiates.
SENSITIVITY_MODELS = ("mean_field", "barrier")
_COEFFS = ("alpha_A", "beta_A", "alpha_F", "beta_F", "alpha_C", "beta_C")


@dataclass(frozen=True)
class Sensitivity:
    """Derivatives of the optimum with respect to one input.

    Attributes
    ----------
    parameter : str
        Name of the input (see :data:`PARAMETERS`).
    value : float
        Its value (in its unit).
    d_r_star : float
        ``d r* / d parameter`` (per unit of the parameter).
    d_throughput : float
        ``d Lambda* / d parameter`` (objective units, per unit of the parameter).
    r_star, throughput : float
        The optimum the derivatives are taken at.
    """

    parameter: str
    value: float
    d_r_star: float
    d_throughput: float
    r_star: float
    throughput: float

    @property
    def elasticity_r_star(self) -> float:
        """``(x / r*) d r*/dx``: percent change of r* per percent change of the input."""
        return self.value * self.d_r_star / self.r_star

    @property
    def elasticity_throughput(self) -> float:
        """``(x / Lambda*) d Lambda*/dx``."""
        return self.value * self.d_throughput / self.throughput


def _values(point: OperatingPoint) -> dict:
    out = {name: getattr(point.coeffs, name) for name in _COEFFS}
    out.update(theta=point.theta, load_std=point.load_std, batch=point.batch,
               price_attention=point.prices.attention, price_ffn=point.prices.ffn)
    return out


def mean_field_sensitivities(point: OperatingPoint) -> dict[str, Sensitivity]:
    """Analytic derivatives of the mean-field ``r*`` and ``Lambda*`` with respect to every input.

    Parameters
    ----------
    point : OperatingPoint
        Batch B is treated as a real number; ``load_std`` has no effect in the mean field
        (reported with value 0). Prices matter only for the ``"price"`` objective.

    Returns
    -------
    dict of str -> Sensitivity
        One entry per name in :data:`PARAMETERS`.
    """
    point = check_point(point)
    opt = mean_field_ratio(point)
    theta, batch = float(point.theta), float(point.batch)
    c = point.coeffs
    grows = c.comm_grows_with_ratio
    r = opt.r_star
    pa, pf = point.objective.weights
    pi = pf / pa
    priced = point.objective.kind == "price"
    f, g = c.alpha_F * batch, c.alpha_C * batch
    # partial derivatives of the intermediates with respect to the inputs
    d_inter = {
        "a": {"theta": c.alpha_A * batch, "batch": c.alpha_A * theta,
              "alpha_A": batch * theta, "beta_A": 1.0},
        "c": {} if grows else {"batch": c.alpha_C, "alpha_C": batch, "beta_C": 1.0},
        "f": {"batch": c.alpha_F, "alpha_F": batch},
        "g": {"batch": c.alpha_C, "alpha_C": batch} if grows else {},
        "bF": {"beta_F": 1.0},
        "bC": {"beta_C": 1.0},
        "pi": {"price_ffn": 1.0 / pa, "price_attention": -pf / pa**2} if priced else {},
    }
    # partial derivatives of r* with respect to the intermediates, for its formula
    if opt.formula == "r_A":
        d_r = {"a": 1 / f, "bF": -1 / f, "f": -r / f}
    elif opt.formula == "r_C" and not grows:
        d_r = {"c": 1 / f, "bF": -1 / f, "f": -r / f}
    elif opt.formula == "r_C":
        d_r = {"a": 1 / g, "bC": -1 / g, "g": -r / g}
    elif opt.formula == "r_peak":
        d_r = {"bF": r / (2 * c.beta_F), "f": -r / (2 * f), "pi": r / (2 * pi)}
    elif opt.formula == "r_peak_C":
        d_r = {"bC": r / (2 * c.beta_C), "g": -r / (2 * g), "pi": r / (2 * pi)}
    else:  # r_CF
        d_r = {"bC": 1 / (f - g), "bF": -1 / (f - g), "f": -r / (f - g), "g": r / (f - g)}
    # the step time at the optimum: the flat level at a flat crossing, else the binding line
    if opt.formula in ("r_A", "r_C"):
        flat = "a" if (grows or opt.formula == "r_A") else "c"
        step = {"flat": flat}
    elif opt.formula == "r_peak_C":
        step = {"slope": "g", "intercept": "bC", "s": g}
    else:
        step = {"slope": "f", "intercept": "bF", "s": f}
    T = opt.step_time
    lam = opt.throughput
    values = _values(point.replace(load_std=0.0))
    out = {}
    for name in PARAMETERS:
        dr = sum(coef * d_inter[k].get(name, 0.0) for k, coef in d_r.items())
        if "flat" in step:
            dT = d_inter[step["flat"]].get(name, 0.0)
        else:
            dT = (r * d_inter[step["slope"]].get(name, 0.0)
                  + d_inter[step["intercept"]].get(name, 0.0) + step["s"] * dr)
        dB = 1.0 if name == "batch" else 0.0
        dpa = 1.0 if name == "price_attention" and priced else 0.0
        dpf = 1.0 if name == "price_ffn" and priced else 0.0
        dlog = dB / batch + dr / r - (r * dpa + pa * dr + dpf) / (pa * r + pf) - dT / T
        out[name] = Sensitivity(parameter=name, value=float(values[name]), d_r_star=float(dr),
                                d_throughput=float(lam * dlog), r_star=r, throughput=lam)
    return out


def perturb(point: OperatingPoint, name: str, value: float) -> OperatingPoint:
    """The operating point with input ``name`` (see :data:`PARAMETERS`) set to ``value``."""
    point = check_point(point)
    value = check_number(name, value)
    if name in _COEFFS:
        return point.replace(coeffs=dataclasses.replace(point.coeffs, **{name: value}))
    if name in ("theta", "load_std", "batch"):
        return point.replace(**{name: value})
    prices = point.prices
    if name == "price_attention":
        prices = InstancePrices(attention=value, ffn=prices.ffn)
    elif name == "price_ffn":
        prices = InstancePrices(attention=prices.attention, ffn=value)
    else:
        raise AfdInputError(f"unknown parameter {name!r} (known: {', '.join(PARAMETERS)})",
                            parameter="parameter")
    return point.replace(objective=dataclasses.replace(point.objective, prices=prices))


def numerical_sensitivities(point: OperatingPoint, *, model: str = "mean_field",
                            rel_step: float = 1e-5,
                            parameters=None) -> dict[str, Sensitivity]:
    """Central finite differences of the optimum ``r*`` and ``Lambda*``.

    Parameters
    ----------
    point : OperatingPoint
        Where the derivatives are taken (``load_std`` is used by the barrier model).
    model : {"mean_field", "barrier"}
        ``"mean_field"`` differentiates the closed form and ``Lambda(r*)``; ``"barrier"``
        re-optimizes the barrier model numerically at each perturbed input.
    rel_step : float
        Relative step ``h = rel_step * |x|``; parameters equal to 0 get NaN (a central
        difference would leave the admissible range).
    parameters : iterable of str, optional
        Subset of :data:`PARAMETERS` (default: all).

    Returns
    -------
    dict of str -> Sensitivity
    """
    point = check_point(point)
    check_choice("model", model, SENSITIVITY_MODELS)
    rel_step = check_number("rel_step", rel_step, minimum=0.0, strict=True)

    def optimum(p):
        if model == "mean_field":
            opt = mean_field_ratio(p)
            return opt.r_star, opt.throughput
        res = barrier_ratio(p, max_ratio=1)
        return res.r_star, res.throughput

    names = list(parameters or PARAMETERS)
    unknown = [n for n in names if n not in PARAMETERS]
    if unknown:
        raise AfdInputError(f"unknown parameter {unknown[0]!r} (known: {', '.join(PARAMETERS)})",
                            parameter="parameters")
    r0, lam0 = optimum(point)
    values = _values(point)
    out = {}
    for name in names:
        x = float(values[name])
        if x == 0.0:
            out[name] = Sensitivity(name, x, math.nan, math.nan, r0, lam0)
            continue
        h = rel_step * abs(x)
        r_hi, lam_hi = optimum(perturb(point, name, x + h))
        r_lo, lam_lo = optimum(perturb(point, name, x - h))
        out[name] = Sensitivity(name, x, (r_hi - r_lo) / (2 * h), (lam_hi - lam_lo) / (2 * h),
                                r0, lam0)
    return out
