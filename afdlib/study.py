"""The book's headline experiment: every provisioning rule against the simulator.

For each public trace, batch size and model/hardware preset (a *case*), the three rules of
:mod:`afdlib.provision` (mean field, Gaussian barrier, exact-load barrier) each pick a best
integer ratio; the step engine of :mod:`afdlib.sim` sweeps the ratios from 1 to well past
every prediction with common random numbers; and each rule is scored by the throughput it
gives up, ``1 - Lambda_sim(r_rule) / max_r Lambda_sim(r)``.

The function boundary is meant for scaling the study up:

* :class:`StudySettings` is everything that defines a study (frozen, so it can travel);
* :func:`case_specs` lists the cases, :func:`run_case` runs one (a pure function of its
  spec and the settings, so cases can go to any executor);
* :func:`validation_study` maps :func:`run_case` over the cases (``map=`` takes an
  executor's ``map``) and returns a :class:`StudyResult`: the cases, the skipped ones, a
  results table (:meth:`StudyResult.rows`) and the summary per rule
  (:meth:`StudyResult.summary`).

:func:`pipeline_comparison` re-referees cases with the pipelined engine.

This module sits on top of :mod:`afdlib.provision` and :mod:`afdlib.sim` (it is the only
library module that imports both: the simulator never imports the rules it referees).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from afdlib.costs import preset_coefficients
from afdlib.errors import DoesNotFit
from afdlib.model import OperatingPoint
from afdlib.provision import WorkerLoadLaw, exact_ratio, provision, worker_load_law
from afdlib.sim import SweepResult, sweep
from afdlib.traces import load_trace
from afdlib.validate import check_int, check_number
from afdlib.workload import JointLengths, LoadEstimate, estimate_load

__all__ = ["RULES", "StudySettings", "CaseSpec", "StudyCase", "StudyResult", "case_specs",
           "run_case", "run_length", "validation_study", "trace_workload",
           "pipeline_comparison"]

#: The rules, in the order the book shows them.
RULES = ("mean field", "Gaussian barrier", "exact-load barrier")


@dataclass(frozen=True)
class StudySettings:
    """What defines a study.

    Parameters
    ----------
    traces : tuple of str
        Public trace names (:data:`afdlib.traces.PUBLIC_TRACES`).
    batches : tuple of int
        Slots per Attention worker B.
    presets : tuple of (model, hardware)
        Preset names, hardware ``"NAME"`` or ``"ATTN/FFN"``.
    requests_per_sweep : float
        Simulated requests per sweep, summed over its ratios: the run-length budget.
    min_steps, max_steps : int
        Bounds on the steps per ratio.
    seed : int
        Seed shared by all ratios of a sweep (common random numbers).
    first_token_from_prefill : bool
        Decode-step convention of the traces (see
        :func:`afdlib.workload.decode_steps_from_output`).
    """

    traces: tuple[str, ...] = ("azure2023_code", "azure2023_conv", "mooncake_conversation",
                               "sharegpt_8k")
    batches: tuple[int, ...] = (8, 32, 256)
    presets: tuple[tuple[str, str], ...] = (("llama-3.1-70b", "h100-sxm"),
                                            ("qwen3-235b-a22b", "h200"),
                                            ("deepseek-v3", "h800"),
                                            ("llama-3.1-70b", "h20/h800"))
    requests_per_sweep: float = 2e7
    min_steps: int = 10_000
    max_steps: int = 200_000
    seed: int = 20261127
    first_token_from_prefill: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "traces", tuple(self.traces))
        object.__setattr__(self, "batches",
                           tuple(check_int("batch", b, minimum=1) for b in self.batches))
        object.__setattr__(self, "presets", tuple((m, h) for m, h in self.presets))
        check_number("requests_per_sweep", self.requests_per_sweep, minimum=0.0, strict=True)
        lo = check_int("min_steps", self.min_steps, minimum=1)
        check_int("max_steps", self.max_steps, minimum=lo)
        check_int("seed", self.seed, minimum=0)


@dataclass(frozen=True)
class CaseSpec:
    """One case: a trace, a batch size and a preset.

    Parameters
    ----------
    trace : str
        Public trace name.
    batch : int
        Slots per Attention worker B.
    model, hardware : str
        Preset names.
    """

    trace: str
    batch: int
    model: str
    hardware: str

    @property
    def preset(self) -> str:
        """``"model on hardware"``."""
        return f"{self.model} on {self.hardware}"


@dataclass(frozen=True, eq=False)
class StudyCase:
    """A case's predictions and its simulated sweep.

    Attributes
    ----------
    spec : CaseSpec
    point : OperatingPoint
        The preset's coefficients at the trace's theta and load_std (tokens) and batch B.
    law : WorkerLoadLaw
        The exact law of a worker's load (for the exact-load rule).
    regime : str
        The mean-field regime.
    ratios : dict of str -> int
        Each rule's best integer ratio (keys: :data:`RULES`).
    sweep : SweepResult
        The simulated sweep over ``1 .. len(curve)``.
    steps : int
        Steps per ratio.
    """

    spec: CaseSpec
    point: OperatingPoint
    law: WorkerLoadLaw
    regime: str
    ratios: dict
    sweep: SweepResult = field(repr=False)
    steps: int

    @property
    def curve(self) -> np.ndarray:
        """Simulated objective at ratios ``1 .. len(curve)`` (tokens/s per instance)."""
        return self.sweep.throughput

    @property
    def sim_ratio(self) -> int:
        """The simulated best ratio."""
        return self.sweep.best_ratio

    @property
    def loss(self) -> dict:
        """Throughput each rule gives up against the simulated optimum (fraction)."""
        lam = self.curve
        return {k: float(1 - lam[r - 1] / lam.max()) for k, r in self.ratios.items()}


@dataclass(frozen=True, eq=False)
class StudyResult:
    """A study's outcome.

    Attributes
    ----------
    settings : StudySettings
    cases : tuple of StudyCase
        The simulated cases, in the order of :func:`case_specs`.
    skipped : tuple of CaseSpec
        Cases whose KV cache (or FFN weights) fit no instance.
    """

    settings: StudySettings
    cases: tuple
    skipped: tuple

    def rows(self) -> list[dict]:
        """The results table: one row per case with its ratios and losses per rule."""
        out = []
        for c in self.cases:
            row = {"trace": c.spec.trace, "batch": c.spec.batch, "preset": c.spec.preset,
                   "regime": c.regime, "sim": c.sim_ratio, "steps": c.steps}
            for rule in RULES:
                row[f"{rule} ratio"] = c.ratios[rule]
                row[f"{rule} loss"] = c.loss[rule]
            out.append(row)
        return out

    def summary(self) -> dict:
        """Per rule: ``max_loss``, ``mean_loss``, ``under_1pct`` (share of cases losing
        under 1%), ``within_5pct`` and ``within_10pct`` (share whose ratio is within 5% /
        10% of the simulated best) and ``worst_err`` (largest relative ratio error)."""
        out = {}
        for rule in RULES:
            loss = np.array([c.loss[rule] for c in self.cases])
            err = np.array([abs(c.ratios[rule] - c.sim_ratio) / c.sim_ratio for c in self.cases])
            out[rule] = {"max_loss": float(loss.max()), "mean_loss": float(loss.mean()),
                         "under_1pct": float(np.mean(loss < 0.01)),
                         "within_5pct": float(np.mean(err <= 0.05)),
                         "within_10pct": float(np.mean(err <= 0.10)),
                         "worst_err": float(err.max())}
        return out

    def hardest(self, rule: str = "mean field") -> StudyCase:
        """The case where ``rule`` gives up the most throughput."""
        return max(self.cases, key=lambda c: c.loss[rule])


def run_length(estimate: LoadEstimate, batch: int, top: int, settings: StudySettings) -> int:
    """Steps per ratio: a fixed budget of requests, between ``min_steps`` and ``max_steps``.

    Heavy-tailed traces with long requests need long runs; each step renews about
    ``r B / E[D]`` requests, so over ratios ``1 .. top`` the budget buys
    ``budget E[D] / (B top (top + 1) / 2)`` steps.
    """
    per_step = batch * top * (top + 1) / 2 / estimate.mean_decode
    return int(np.clip(settings.requests_per_sweep / per_step, settings.min_steps,
                       settings.max_steps))


@functools.lru_cache(maxsize=16)
def trace_workload(name: str, first_token_from_prefill: bool = False) -> JointLengths:
    """The requests of a public trace as :class:`~afdlib.workload.JointLengths` (cached)."""
    return JointLengths.from_trace(load_trace(name),
                                   first_token_from_prefill=first_token_from_prefill)


@functools.lru_cache(maxsize=16)
def _estimate(name: str, first_token: bool) -> LoadEstimate:
    workload = trace_workload(name, first_token)
    return estimate_load(workload.prompt, workload.decode)


@functools.lru_cache(maxsize=64)
def _law(name: str, first_token: bool, batch: int) -> WorkerLoadLaw:
    return worker_load_law(trace_workload(name, first_token), batch)


def case_specs(settings: StudySettings) -> list[CaseSpec]:
    """The cases of a study: traces x batches x presets, in that nesting order."""
    return [CaseSpec(name, batch, model, hardware) for name in settings.traces
            for batch in settings.batches for model, hardware in settings.presets]


def run_case(spec: CaseSpec, settings: StudySettings) -> StudyCase | None:
    """Predict and simulate one case; None when the deployment does not fit in memory.

    The sweep covers ratios up to ``max(8, 1.5 r + 3)`` for the largest predicted ``r``
    (mean field, Gaussian barrier, then the exact-load rule over that range).
    """
    first_token = settings.first_token_from_prefill
    workload = trace_workload(spec.trace, first_token)
    est = _estimate(spec.trace, first_token)
    try:
        coeffs = preset_coefficients(spec.model, spec.hardware, batch=spec.batch,
                                     theta=est.theta)
    except DoesNotFit:
        return None
    law = _law(spec.trace, first_token, spec.batch)
    point = OperatingPoint(coeffs=coeffs, theta=est.theta, load_std=est.load_std,
                           batch=spec.batch)
    pred = provision(point)
    guesses = [pred.r_int_mean_field, pred.barrier.r_int]
    top = max(8, int(1.5 * max(guesses)) + 3)
    exact = exact_ratio(point, law, max_ratio=top)
    top = max(top, int(1.5 * exact.r_int) + 3)
    steps = run_length(est, spec.batch, top, settings)
    sim = sweep(workload, point, range(1, top + 1), steps=steps, seed=settings.seed)
    ratios = dict(zip(RULES, (guesses[0], guesses[1], exact.r_int), strict=True))
    return StudyCase(spec=spec, point=point, law=law, regime=pred.mean_field.regime,
                     ratios=ratios, sweep=sim, steps=steps)


def validation_study(settings: StudySettings | None = None, *, map=map) -> StudyResult:
    """Run the study: every case of ``settings`` through :func:`run_case`.

    Parameters
    ----------
    settings : StudySettings, optional
        Default: the book's test bed (:class:`StudySettings` ``()``).
    map : callable
        ``map(function, specs)``; pass an executor's ``map`` to run cases in parallel
        (the results keep the order of :func:`case_specs`).

    Returns
    -------
    StudyResult
    """
    settings = settings if settings is not None else StudySettings()
    specs = case_specs(settings)
    results = list(map(functools.partial(run_case, settings=settings), specs))
    cases = tuple(c for c in results if c is not None)
    skipped = tuple(s for s, c in zip(specs, results, strict=True) if c is None)
    return StudyResult(settings=settings, cases=cases, skipped=skipped)


def pipeline_comparison(cases, settings: StudySettings, *, microbatches: int = 2,
                        steps: int = 4000) -> list[dict]:
    """Referee the step-model rule and the rule with the round-trip term on the pipelined
    engine (``microbatches`` per worker), over each case's ratio range.

    Returns
    -------
    list of dict
        Per case: ``spec`` (its :class:`CaseSpec`), ``step_sim`` and ``pipeline_sim`` (simulated best
        ratios of the two engines), ``step_rule`` (the exact-load rule) and
        ``pipeline_rule`` (the same with ``microbatches``), and the throughput each rule
        gives up on the pipelined engine, ``loss_step_rule`` and ``loss_pipeline_rule``.
    """
    rows = []
    for c in cases:
        top = c.curve.size
        workload = trace_workload(c.spec.trace, settings.first_token_from_prefill)
        sim = sweep(workload, c.point, range(1, top + 1), engine="pipeline",
                    microbatches=microbatches, steps=steps, seed=settings.seed)
        rule = exact_ratio(c.point, c.law, max_ratio=top, microbatches=microbatches).r_int
        lam = sim.throughput
        step_rule = c.ratios["exact-load barrier"]
        rows.append({"spec": c.spec, "step_sim": c.sim_ratio,
                     "pipeline_sim": sim.best_ratio, "step_rule": step_rule,
                     "pipeline_rule": rule,
                     "loss_step_rule": float(1 - lam[step_rule - 1] / lam.max()),
                     "loss_pipeline_rule": float(1 - lam[rule - 1] / lam.max())})
    return rows
