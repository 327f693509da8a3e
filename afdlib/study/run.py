"""Running a study: each setting simulated, compared and scored, through any executor.

:func:`run_setting` is a pure function of a :class:`~afdlib.study.grid.Setting`, a
:class:`RunPlan` and the study seed: the setting's seed is derived from the study seed and
the setting's identity (:func:`afdlib.study.grid.setting_seed`), never from the order of
execution, so a study gives the same numbers serially, in processes or on a Dask cluster.
:func:`run_study` maps it over the settings with any :class:`concurrent.futures.Executor`
(processes on this machine by default; a ``dask.distributed.Client`` is taken through its
``get_executor()``).

For one setting, :func:`run_setting`

1. resolves the setting and asks every rule for its ratio (:mod:`afdlib.study.rules`);
2. runs the referee at the paper's coarse grid ``{1, 2, 4, 8, 16, 24, 32}`` and at every
   rule's ratio, in ``n`` independent replications of a common-random-numbers sweep (one
   seed per replication, shared by all ratios), then at every ratio of a fine range around
   the provisional best, extended while the best sits at its edge;
3. adds replications (up to the plan's maximum) while a rule's regret interval is wider
   than the plan's target (0.5% by default) and the rule's regret is small enough for
   that to matter (under 5%); the number added depends only on the data, so it too is
   reproducible;
4. measures the finite-trace throughput until 80% of the requests complete at every
   simulated ratio (:func:`afdlib.sim.simulate_finite_trace` for the step engine,
   :mod:`afdlib.study.finite` for the pipelined one).

The raw results (each replication's mean step time at each ratio) are kept, so every
statistic is recomputed from them (:meth:`SettingResult.comparison`), from a cache as well
as from a fresh run.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from afdlib.errors import AfdInputError, DoesNotFit
from afdlib.provision import mean_field_ratio
from afdlib.sim import Bundle, simulate, simulate_finite_trace
from afdlib.study.compare import RatioComparison, compare_ratios, log_objective, replications_for
from afdlib.study.finite import dispatch, finite_trace_throughput
from afdlib.study.grid import (
    Setting,
    build_workload,
    finite_rows,
    residual_steps,
    resolve,
    setting_seed,
)
from afdlib.study.rules import paper_r_star, rule_ratios, rules_for
from afdlib.validate import check_int, check_number
from afdlib.workload import JointLengths

__all__ = ["COARSE_GRID", "DEFAULT_SEED", "RELEVANT_REGRET", "RunLength", "RunPlan",
           "SettingResult", "run_setting", "run_study", "SerialExecutor", "as_executor"]

#: The paper's grid of ratios.
COARSE_GRID = (1, 2, 4, 8, 16, 24, 32)
#: The book's study seed.
DEFAULT_SEED = 20261201
#: Rules whose regret is above this are resolved enough without more replications.
RELEVANT_REGRET = 0.05


@dataclass(frozen=True)
class RunLength:
    """How long one referee's runs are.

    Parameters
    ----------
    per_residual : float
        Steps per replication, as a multiple of the workload's mean residual decode
        length (:func:`afdlib.study.grid.residual_steps`: the time scale on which loads
        forget their past).
    min_steps, max_steps : int
        Bounds on the steps per replication.
    replications : int
        Replications to start with, >= 2.
    max_replications : int
        Most replications (added while a rule's regret is not resolved).
    """

    per_residual: float
    min_steps: int
    max_steps: int
    replications: int
    max_replications: int

    def __post_init__(self) -> None:
        check_number("per_residual", self.per_residual, minimum=0.0, strict=True)
        lo = check_int("min_steps", self.min_steps, minimum=10)
        check_int("max_steps", self.max_steps, minimum=lo)
        n = check_int("replications", self.replications, minimum=2)
        check_int("max_replications", self.max_replications, minimum=n)

    def steps(self, residual: float) -> int:
        """Steps per replication for a workload of mean residual ``residual`` steps."""
        return int(np.clip(round(self.per_residual * residual), self.min_steps,
                           self.max_steps))


@dataclass(frozen=True)
class RunPlan:
    """Everything about a study's runs besides its settings and seed.

    Parameters
    ----------
    step, pipeline, replay : RunLength
        Run lengths by referee kind (the pipelined engine costs about ten times the step
        engine per step; replay about thirty).
    target_halfwidth : float
        Replications are added until every relevant rule's regret interval is at most this
        wide on each side (fraction), or the maximum is reached.
    max_ratio : int
        Largest ratio any rule or sweep considers.
    coarse_grid : tuple of int
        The paper's grid.
    finite_fraction : float
        Share of a finite trace's requests whose completion ends the finite-trace
        measurement (the paper's 80%).
    confidence : float
        Level of the regret intervals and of the equivalence set.
    extend_rounds : int
        How often the fine range may grow while the best sits at its edge.
    finite_rows : int or None
        Requests of the finite trace used by the finite-trace measurement: all (None, the
        default) or the first this many (short tests).
    """

    step: RunLength = field(default_factory=lambda: RunLength(60, 8_000, 30_000, 8, 24))
    pipeline: RunLength = field(default_factory=lambda: RunLength(12, 3_000, 8_000, 8, 64))
    replay: RunLength = field(default_factory=lambda: RunLength(20, 4_000, 8_000, 8, 12))
    target_halfwidth: float = 0.005
    max_ratio: int = 64
    coarse_grid: tuple = COARSE_GRID
    finite_fraction: float = 0.8
    confidence: float = 0.95
    extend_rounds: int = 3
    finite_rows: int | None = None

    def __post_init__(self) -> None:
        check_number("target_halfwidth", self.target_halfwidth, minimum=0.0, strict=True)
        check_int("max_ratio", self.max_ratio, minimum=2)
        object.__setattr__(self, "coarse_grid", tuple(int(r) for r in self.coarse_grid))
        check_number("finite_fraction", self.finite_fraction, minimum=0.0, strict=True,
                     maximum=1.0)
        check_number("confidence", self.confidence, minimum=0.0, strict=True, maximum=1.0)
        check_int("extend_rounds", self.extend_rounds, minimum=0)
        if self.finite_rows is not None:
            check_int("finite_rows", self.finite_rows, minimum=1)

    def length(self, kind: str) -> RunLength:
        """The run length of a referee kind (``"step"``, ``"pipeline"`` or ``"replay"``)."""
        return {"step": self.step, "pipeline": self.pipeline, "replay": self.replay}[kind]

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        out = {k: vars(self.length(k)).copy() for k in ("step", "pipeline", "replay")}
        out.update(target_halfwidth=self.target_halfwidth, max_ratio=self.max_ratio,
                   coarse_grid=list(self.coarse_grid), finite_fraction=self.finite_fraction,
                   confidence=self.confidence, extend_rounds=self.extend_rounds,
                   finite_rows=self.finite_rows)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RunPlan:
        """Inverse of :meth:`to_dict`."""
        kw = {k: RunLength(**data[k]) for k in ("step", "pipeline", "replay")}
        kw.update({k: data[k] for k in ("target_halfwidth", "max_ratio", "finite_fraction",
                                        "confidence", "extend_rounds")})
        kw["finite_rows"] = data.get("finite_rows")
        return cls(coarse_grid=tuple(data["coarse_grid"]), **kw)


# -- one setting -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SettingResult:
    """One setting's rules, raw simulation results and finite-trace measurement.

    Attributes
    ----------
    setting : Setting
    skipped : str or None
        Why the setting was not run (a preset that fits no instance), else None.
    coeffs_label : str
        Where the coefficients came from.
    coefficients : dict
        The coefficient file's object.
    theta, load_std, mean_prompt, mean_decode : float
        Exact stationary load statistics (tokens; steps for ``mean_decode``).
    regime : str
        The mean-field regime (``"attention"``, ``"communication"`` or ``"ffn"``).
    formula : str
        Which closed form the mean-field ``r*`` equals (``"r_A"``, ``"r_C"``,
        ``"r_peak"``, ``"r_peak_C"``, ``"r_CF"``; see
        :class:`afdlib.provision.MeanFieldRatio`).
    r_star_paper : float
        The paper's continuous mean-field optimum (theta replaced by ``E[P] + E[D]``).
    rules : dict of str -> int
        Each rule's integer ratio.
    ratios : ndarray of int, shape (R,)
        Simulated ratios, increasing.
    steps, warmup : int
        Steps per replication and leading steps left out.
    step_times : ndarray, shape (n, R)
        Mean step time of each replication at each ratio (s).
    finite : ndarray, shape (R,)
        Finite-trace throughput until the plan's share of requests complete (tokens/s per
        instance; NaN where the list is far too short for the bundle).
    finite_marks : ndarray of int, shape (R,)
        The step at which that share completes (-1 where NaN).
    seconds : float
        Wall time of the setting (s; not part of the results' identity).
    """

    setting: Setting
    skipped: str | None = None
    coeffs_label: str = ""
    coefficients: dict = field(default_factory=dict)
    theta: float = math.nan
    load_std: float = math.nan
    mean_prompt: float = math.nan
    mean_decode: float = math.nan
    regime: str = ""
    formula: str = ""
    r_star_paper: float = math.nan
    rules: dict = field(default_factory=dict)
    ratios: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    steps: int = 0
    warmup: int = 0
    step_times: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    finite: np.ndarray = field(default_factory=lambda: np.zeros(0))
    finite_marks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    seconds: float = 0.0

    @property
    def key(self) -> str:
        """The setting's identity."""
        return self.setting.key

    @property
    def replications(self) -> int:
        """Replications run."""
        return int(self.step_times.shape[0])

    @property
    def trivial(self) -> bool:
        """True when every rule asked gives the same ratio (the setting decides nothing)."""
        return len(set(self.rules.values())) == 1

    def comparison(self, confidence: float = 0.95) -> RatioComparison:
        """Best ratio, equivalence set and regrets from the raw step times."""
        table = log_objective(self.ratios, self.step_times, batch=self.setting.batch)
        return compare_ratios(self.ratios, table, confidence=confidence)

    def throughput(self) -> np.ndarray:
        """Stationary throughput per instance at each simulated ratio (tokens/s per
        instance; from the mean of the replications' step times)."""
        r = self.ratios.astype(float)
        return r * self.setting.batch / ((r + 1.0) * self.step_times.mean(axis=0))

    def to_dict(self) -> dict:
        """JSON-ready: floats at full precision (they read back exactly), NaN as None."""
        out = {"setting": self.setting.to_dict(), "key": self.key, "skipped": self.skipped}
        if self.skipped is not None:
            return out
        out.update(
            coeffs_label=self.coeffs_label, coefficients=self.coefficients, theta=self.theta,
            load_std=self.load_std, mean_prompt=self.mean_prompt,
            mean_decode=self.mean_decode, regime=self.regime, formula=self.formula,
            r_star_paper=self.r_star_paper,
            rules=dict(self.rules), ratios=[int(r) for r in self.ratios], steps=self.steps,
            warmup=self.warmup, step_times=[[float(x) for x in row] for row in self.step_times],
            finite=[None if not math.isfinite(x) else float(x) for x in self.finite],
            finite_marks=[int(x) for x in self.finite_marks], seconds=self.seconds)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SettingResult:
        """Inverse of :meth:`to_dict`."""
        setting = Setting.from_dict(data["setting"])
        if data.get("skipped") is not None:
            return cls(setting, skipped=data["skipped"])
        return cls(
            setting, None, data["coeffs_label"], dict(data["coefficients"]), data["theta"],
            data["load_std"], data["mean_prompt"], data["mean_decode"], data["regime"],
            data["formula"], data["r_star_paper"], dict(data["rules"]),
            np.array(data["ratios"], dtype=np.int64), int(data["steps"]), int(data["warmup"]),
            np.array(data["step_times"], dtype=float),
            np.array([math.nan if x is None else x for x in data["finite"]], dtype=float),
            np.array(data["finite_marks"], dtype=np.int64), float(data.get("seconds", 0.0)))


class _Runs:
    """Replication means of one setting's referee, computed once per (replication, ratio)."""

    def __init__(self, res, steps: int, warmup: int, seeds, plan: RunPlan):
        self.res, self.steps, self.warmup, self.seeds = res, steps, warmup, seeds
        self.plan = plan
        self.cache: dict[tuple[int, int], float] = {}
        ref = res.setting.referee
        self.options = dict(engine=ref.engine, steps=steps, warmup=warmup,
                            init="stationary", n_batches=2)
        if ref.engine == "pipeline":
            self.options.update(microbatches=ref.microbatches, intercepts=ref.intercepts)
        self.replay = ref.order == "replay"
        self.workloads: dict[int, object] = {}

    def _workload(self, j: int):
        """Replication j's requests: the workload, or the trace rotated to a random start."""
        if not self.replay:
            return self.res.workload
        if j not in self.workloads:
            trace = self.res.workload
            offset = int(np.random.default_rng(self.seeds[j]).integers(len(trace)))
            self.workloads[j] = JointLengths(np.roll(trace.prompt, -offset),
                                             np.roll(trace.decode, -offset), name=trace.name)
        return self.workloads[j]

    def table(self, ratios, n: int) -> np.ndarray:
        """Step times, shape (n, len(ratios)) (s)."""
        out = np.empty((n, len(ratios)))
        for j in range(n):
            for i, r in enumerate(ratios):
                key = (j, int(r))
                if key not in self.cache:
                    bundle = Bundle.at(self.res.point, int(r))
                    sim = simulate(self._workload(j), bundle, seed=self.seeds[j],
                                   replay=self.replay, **self.options)
                    self.cache[key] = sim.mean_step_time
                out[j, i] = self.cache[key]
        return out


def _compare(runs: _Runs, ratios, n: int, batch: int, confidence: float):
    ratios = sorted(ratios)
    tau = runs.table(ratios, n)
    return compare_ratios(ratios, log_objective(ratios, tau, batch=batch),
                          confidence=confidence), tau


def run_setting(setting: Setting, plan: RunPlan | None = None,
                seed: int = DEFAULT_SEED) -> SettingResult:
    """Rules, referee runs, comparison data and finite-trace measurement of one setting.

    Parameters
    ----------
    setting : Setting
    plan : RunPlan, optional
        Run lengths and options (default :class:`RunPlan` ``()``).
    seed : int
        The study seed; the setting's own seed is derived from it and the setting's key.

    Returns
    -------
    SettingResult
        With ``skipped`` set (and nothing simulated) when a preset fits no instance.
    """
    t0 = time.perf_counter()
    plan = plan if plan is not None else RunPlan()
    if not isinstance(setting, Setting):
        raise AfdInputError("setting must be an afdlib.study.Setting", parameter="setting")
    try:
        res = resolve(setting)
    except DoesNotFit as exc:
        return SettingResult(setting, skipped=str(exc))
    rules = rule_ratios(res, max_ratio=plan.max_ratio)
    ref = setting.referee
    length = plan.length(ref.kind)
    residual = residual_steps(res.workload)
    steps = length.steps(residual)
    warmup = int(min(steps // 10, math.ceil(residual)))
    root = setting_seed(seed, setting)
    seeds = root.spawn(length.max_replications)
    runs = _Runs(res, steps, warmup, seeds, plan)
    n, b, top = length.replications, setting.batch, plan.max_ratio

    # 1. the coarse grid and the rules' ratios; 2. a fine range around the best
    ratios = {r for r in plan.coarse_grid if r <= top} | set(rules.values())
    cmp, _ = _compare(runs, ratios, n, b, plan.confidence)
    best = cmp.best_ratio
    lo, hi = max(1, math.floor(best / 1.5) - 1), min(top, math.ceil(1.5 * best) + 2)
    for _ in range(plan.extend_rounds + 1):
        ratios |= set(range(lo, hi + 1))
        cmp, _ = _compare(runs, ratios, n, b, plan.confidence)
        best = cmp.best_ratio
        grow_down = best <= lo and lo > 1
        grow_up = best >= hi and hi < top
        if not (grow_down or grow_up):
            break
        if grow_down:
            lo = max(1, math.floor(lo / 1.5) - 1)
        if grow_up:
            hi = min(top, math.ceil(1.5 * hi) + 1)

    # 3. more replications while a relevant rule's regret is not resolved
    asked = rules_for(ref)
    regrets = [cmp.regret(rules[k]) for k in asked]
    relevant = [g.halfwidth for g in regrets if g.estimate < RELEVANT_REGRET]
    if relevant:
        want = replications_for(max(relevant), n, target=plan.target_halfwidth,
                                maximum=length.max_replications)
        if want > n:
            n = want
            cmp, _ = _compare(runs, ratios, n, b, plan.confidence)
    ordered = sorted(ratios)
    tau = runs.table(ordered, n)

    # 4. the finite-trace measurement at every simulated ratio
    rows = finite_rows(setting.workload)
    if plan.finite_rows is not None and plan.finite_rows < len(rows):
        rows = JointLengths(rows.prompt[:plan.finite_rows], rows.decode[:plan.finite_rows],
                            name=rows.name)
    finite = np.full(len(ordered), math.nan)
    marks = np.full(len(ordered), -1, dtype=np.int64)
    for i, r in enumerate(ordered):
        if ref.engine == "step":  # the simulator's finite-trace mode
            fr = simulate_finite_trace(rows, Bundle.at(res.point, r),
                                       fraction=plan.finite_fraction)
            finite[i], marks[i] = fr.throughput, fr.steps - 1
            continue
        run = finite_trace_throughput(rows, res.point, r, engine="pipeline",
                                      microbatches=ref.microbatches,
                                      intercepts=ref.intercepts,
                                      fraction=plan.finite_fraction, deal=dispatch(rows, r * b))
        if run is not None:
            finite[i], marks[i] = run.throughput, run.mark

    mf = mean_field_ratio(res.point)
    return SettingResult(
        setting, None, res.coeffs_label, res.coeffs.to_dict(), res.stats.theta,
        res.stats.load_std, res.stats.mean_prompt, res.stats.mean_decode, mf.regime,
        mf.formula, paper_r_star(res), rules,
        np.array(ordered, dtype=np.int64), steps, warmup, tau, finite, marks,
        time.perf_counter() - t0)


# -- many settings -----------------------------------------------------------------------------


class SerialExecutor(concurrent.futures.Executor):
    """An executor that runs each call at once in this process (for tests and debugging)."""

    def submit(self, fn, /, *args, **kwargs):  # noqa: D102 (the Executor interface)
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


def as_executor(executor):
    """``executor`` as something with ``submit``: a Dask ``Client`` becomes its
    ``get_executor()``; anything else with ``submit`` (a concurrent.futures.Executor)
    is used as it is."""
    if hasattr(executor, "get_executor"):
        return executor.get_executor()
    if not hasattr(executor, "submit"):
        raise AfdInputError("executor must be a concurrent.futures.Executor or a "
                            "dask.distributed.Client", parameter="executor")
    return executor


def run_study(settings, *, plan: RunPlan | None = None, seed: int = DEFAULT_SEED,
              executor=None, progress=None) -> list[SettingResult]:
    """Run settings through an executor; results in the order of ``settings``.

    Parameters
    ----------
    settings : iterable of Setting
    plan : RunPlan, optional
    seed : int
        The study seed.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Where the settings run. Default: a process pool with one process per core of this
        machine (:class:`SerialExecutor` runs them in this process).
    progress : callable, optional
        Called as ``progress(done, total, result)`` as each setting finishes.

    Returns
    -------
    list of SettingResult
        The same whatever the executor: each setting's numbers depend on the study seed
        and the setting only.
    """
    settings = list(settings)
    plan = plan if plan is not None else RunPlan()
    check_int("seed", seed, minimum=0)
    own = executor is None
    pool = (concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 1)
            if own else as_executor(executor))
    try:
        futures = [pool.submit(run_setting, s, plan, seed) for s in settings]
        index = {id(f): i for i, f in enumerate(futures)}
        out: list = [None] * len(futures)
        for done, f in enumerate(concurrent.futures.as_completed(futures), start=1):
            out[index[id(f)]] = f.result()
            if progress is not None:
                progress(done, len(futures), out[index[id(f)]])
        return out
    finally:
        if own:
            pool.shutdown()


def _warm(names) -> None:
    """Load workloads once (e.g. before forking worker processes)."""
    for name in names:
        build_workload(name)
