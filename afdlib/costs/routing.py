"""How MoE routing imbalance changes the FFN coefficients and the ratio.

The measured MoE tables time the routed experts of one layer under balanced routing (every
expert equally loaded) and under power-law routing, where they time the most loaded rank of
the expert-parallel group: the straggler every other rank waits for. A skewed router thus
makes the FFN instance slower per token (``alpha_F`` up) while its fixed part
(``beta_F``, weight streaming) barely moves, and a slower FFN per token takes fewer
Attention workers before it binds: the ratio moves down.

:func:`routing_imbalance` builds one preset under each routing at the same operating point
and reports the linear coefficients and the ratio each gives: the best integer of the
preset's non-linear curves and the mean-field optimum of the linear coefficients, both under
the same objective (per GPU by default). The optimum is found by direct maximization of the
step model's objective (:func:`afdlib.model.maximize_ratio`), not from the provisioning
rules' closed form, which this layer does not import.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from afdlib.costs.measured import ROUTINGS, check_routing
from afdlib.costs.presets import DEFAULT_BATCH, DEFAULT_THETA, PresetResult, build_preset
from afdlib.errors import AfdInputError
from afdlib.model import Objective, best_integer_ratio, maximize_ratio, step_time
from afdlib.validate import check_choice, check_int

__all__ = ["RoutingCase", "RoutingImbalance", "routing_imbalance", "mean_field_objective"]


def mean_field_objective(coeffs, objective: Objective, *, batch: int, theta: float):
    """``r -> r B / ((r w_A + w_F) max{t_A(B theta), t_C(r), t_F(r)})``, vectorized.

    The mean-field objective of linear coefficients, written with :mod:`afdlib.model`'s
    stage times (tokens/s per instance, GPU or price unit).
    """
    t_a = float(coeffs.attention_time(batch * theta))

    def value(r):
        r = np.asarray(r, dtype=float)
        tau = step_time(t_a, coeffs.comm_time(batch=batch, ratio=r),
                        coeffs.ffn_time(batch=batch, ratio=r))
        return objective.throughput(r, batch, tau)

    return value


@dataclass(frozen=True)
class RoutingCase:
    """One routing's preset and the ratio it gives.

    Attributes
    ----------
    routing : str
        A name of :data:`afdlib.costs.measured.ROUTINGS`.
    preset : PresetResult
        Curves, linear coefficients (``preset.coefficients``) and memory at the point.
    r_star : float
        Mean-field optimum of the linear coefficients (real ratio).
    r_int : int
        Best integer ratio of the linear mean-field objective in ``1 .. max_ratio``.
    r_int_curves : int
        Best integer ratio of the preset's non-linear curves (mean field).
    throughput : float
        The objective at ``r_int`` (linear mean field).
    """

    routing: str
    preset: PresetResult
    r_star: float
    r_int: int
    r_int_curves: int
    throughput: float

    @property
    def alpha_F(self) -> float:  # noqa: N802 - the model's symbol
        """FFN time per aggregated token (s/token)."""
        return self.preset.coefficients.alpha_F

    @property
    def beta_F(self) -> float:  # noqa: N802 - the model's symbol
        """FFN time independent of the batch (s)."""
        return self.preset.coefficients.beta_F

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {"routing": self.routing, "alpha_F": self.alpha_F, "beta_F": self.beta_F,
                "coeffs": self.preset.coefficients.to_dict(), "r_star": self.r_star,
                "r_int": self.r_int, "r_int_curves": self.r_int_curves,
                "throughput": self.throughput, "ffn_source": self.preset.curves.provenance["ffn"],
                "linearized_at_ratio": self.preset.ratio}


@dataclass(frozen=True)
class RoutingImbalance:
    """Presets of one model, hardware and operating point under several routings.

    Attributes
    ----------
    model, hardware : str
    batch : int
    theta : float
        Tokens per slot.
    objective : Objective
        The objective the ratios maximize.
    cases : tuple of RoutingCase
        One per routing, balanced first.
    """

    model: str
    hardware: str
    batch: int
    theta: float
    objective: Objective
    cases: tuple

    def case(self, routing: str) -> RoutingCase:
        """The case of one routing (aliases allowed)."""
        name = check_routing(routing)
        for c in self.cases:
            if c.routing == name:
                return c
        raise AfdInputError(f"routing {routing} was not compared", parameter="moe_routing")

    def change(self, routing: str) -> dict:
        """Relative change of ``alpha_F`` and ``beta_F`` and the shift of the ratio from
        balanced routing to ``routing``: ``alpha_F`` and ``beta_F`` as ratios
        (imbalanced / balanced), ``r_star`` and ``r_int`` as differences."""
        base, other = self.cases[0], self.case(routing)
        return {"alpha_F": other.alpha_F / base.alpha_F,
                "beta_F": other.beta_F / base.beta_F if base.beta_F > 0 else float("nan"),
                "r_star": other.r_star - base.r_star, "r_int": other.r_int - base.r_int,
                "r_star_relative": other.r_star / base.r_star - 1.0}

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {"model": self.model, "hardware": self.hardware, "batch": self.batch,
                "theta": self.theta, "objective": self.objective.to_dict(),
                "cases": [c.to_dict() for c in self.cases],
                "change": {c.routing: self.change(c.routing) for c in self.cases[1:]}}


def routing_imbalance(model: str, hardware: str, *, batch: int = DEFAULT_BATCH,
                      theta: float = DEFAULT_THETA, routings=ROUTINGS,
                      objective: str = "gpu", max_ratio: int = 64,
                      **kwargs) -> RoutingImbalance:
    """Compare a MoE preset under balanced and power-law routing at one operating point.

    Parameters
    ----------
    model, hardware : str
        A MoE model preset and hardware whose FFN GPU has measured MoE tables (H100, H200,
        B200), e.g. ``"deepseek-v3"``, ``"h200"``.
    batch : int
        Slots per Attention instance B.
    theta : float
        Mean tokens per slot.
    routings : sequence of str
        Routings to compare; ``"balanced"`` is put first.
    objective : {"gpu", "instance"}
        What the ratios maximize: tokens/s per GPU (default; the preset's instances differ
        in size) or per instance.
    max_ratio : int
        Largest integer ratio compared.
    **kwargs
        Passed to :func:`afdlib.costs.build_preset` (``attention_gpus``, ``ffn_gpus``,
        ``link``, ...). Every routing uses the same instances: those of balanced routing
        unless given. Each preset is linearized at the best ratio of its curves under the
        objective.

    Returns
    -------
    RoutingImbalance

    Raises
    ------
    AfdInputError
        For a dense model, a GPU without measured MoE tables, or bad operating points.
    """
    check_choice("objective", objective, ("gpu", "instance"))
    max_ratio = check_int("max_ratio", max_ratio, minimum=1)
    names = [check_routing(r) for r in routings]
    names = ["balanced"] + [n for n in dict.fromkeys(names) if n != "balanced"]
    base = build_preset(model, hardware, batch=batch, theta=theta, objective=objective,
                        **kwargs)
    if not base.curves.model.is_moe:
        raise AfdInputError(f"{base.curves.model.name} has no MoE layers: routing does not "
                            "apply", parameter="moe_routing")
    sizes = {"attention_gpus": base.gpus.attention, "ffn_gpus": base.gpus.ffn, **kwargs}
    goal = Objective(kind=objective, gpus=base.gpus) if objective == "gpu" \
        else Objective(kind="instance", gpus=base.gpus)
    cases = []
    for name in names:
        pre = build_preset(model, hardware, batch=batch, theta=theta, routing=name,
                           objective=goal, **sizes)
        f = mean_field_objective(pre.coefficients, goal, batch=pre.batch, theta=pre.theta)
        r_star, _ = maximize_ratio(f, 1e-3, 1e6)
        r_int, values = best_integer_ratio(f, max_ratio)
        r_curves, _ = best_integer_ratio(
            lambda r, pre=pre: pre.curves.throughput(batch=pre.batch, theta=pre.theta, ratio=r,
                                                     objective=goal), max_ratio)
        cases.append(RoutingCase(routing=name, preset=pre, r_star=r_star, r_int=r_int,
                                 r_int_curves=r_curves, throughput=float(values[r_int - 1])))
    return RoutingImbalance(model=base.curves.model.name, hardware=hardware, batch=base.batch,
                            theta=base.theta, objective=goal, cases=tuple(cases))
