r"""Pipeline-aware provisioning: the microbatch pipeline's cycle time as a maximum cycle mean.

With ``m`` microbatches per Attention worker, a step is a pipeline: microbatch ``k`` of
step ``s`` is served by its part on each of the r workers' attention (``a_{w,k}``), then
the dispatch link (``c_k``, once all r parts are done), the FFN (``f_k``) and the combine
link (``c_k``); its next attention may start once it is back, and every resource serves
the microbatches in the order ``0 .. m-1`` (the engine of :mod:`afdlib.sim.pipeline`).

**Frozen stage times: the cycle time is a maximum cycle mean.** Let every step have the
same stage times. Write ``x(s)`` for the finish times of step ``s``'s ``r m + 3 m``
operations (each worker's part of each microbatch; dispatch, FFN and combine of each
microbatch). Each finish time is the max of the finish times it waits for, plus its own
stage time: an operation waits for the same resource's previous microbatch (the previous
step's last one for microbatch 0) and for the same microbatch's previous stage (the
previous step's combine for attention). Draw these relations as the *precedence graph*
``G``: a node per operation weighted by its stage time, an arc per relation, carrying one
*token* when it reaches back into the previous step. The arcs without tokens form an
acyclic graph (stages in order, microbatches in order), so eliminating them gives the
max-plus linear recursion ``x(s) = M \otimes x(s-1)``, and ``M`` is irreducible because
``G`` is strongly connected (from any operation the stage order and the resources' cyclic
order reach every other). By the cyclicity theorem of max-plus algebra (Cohen, Dubois,
Quadrat and Viot 1985; see Baccelli, Cohen, Olsder and Quadrat, *Synchronization and
Linearity*, 1992, ch. 3, or Heidergott, Olsder and van der Woude, *Max Plus at Work*,
2006, ch. 3), from any finite start (the engine starts with every resource free at time
0) ``x(s + c) = c \lambda + x(s)`` after a finite transient, where the period ``c`` is
the cyclicity of the critical graph (the lcm over its components of the gcd of their
circuits' tokens) and

.. math:: \lambda = \max_{\gamma} \frac{\text{weight}(\gamma)}{\text{tokens}(\gamma)},

the maximum over the elementary circuits ``gamma`` of ``G``. So the mean step time is
``lambda``. The circuits are, among others, each resource's busy time per step
(``sum_k a_{w,k}``, ``sum_k c_k``, ``sum_k f_k``; one token), each microbatch's round trip
(``max_w a_{w,k} + 2 c_k + f_k``; one token) and *mixed* circuits that run through several
microbatches on several resources and cross one or more steps. With ``r >= 2`` workers
some use different workers' attention in different laps, and they are needed: workers with
attention times ``(1/2, 0, 1/2)`` and ``(1/2, 1/2, 0)``, links ``1/4`` and no FFN time
have ``lambda = 13/12`` (a two-lap circuit of three tokens), while no circuit that visits
attention once exceeds 1.

*Reduction.* A circuit of ``G`` that enters worker ``w``'s attention leaves it after a run
of consecutive microbatches ``x, x+1, .., y`` (cyclically), entering from the combine node
of ``x`` and leaving to the dispatch node of ``y``. Replace each such run by one arc of
weight ``M(x, L) = max_w sum_{j<L} a_{w, x+j}`` (``L`` the run's length). Every circuit of
``G`` other than a worker's own ring maps to a circuit of the *reduced graph* ``H`` (3m
nodes: dispatch, FFN and combine of each microbatch, plus these arcs) of at least its
weight and the same tokens; conversely every circuit of ``H`` is traced by a closed walk of
``G`` with its weight and tokens, and a closed walk's mean is at most the largest
elementary circuit mean (it splits into elementary circuits). Runs longer than ``m``
repeat a node and are never needed. Hence

.. math:: \lambda = \max\Big(\max_w \sum_k a_{w,k},\ \max_{\gamma \in H}
          \frac{\text{weight}(\gamma)}{\text{tokens}(\gamma)}\Big),

where ``H`` depends on the attention times only through the ``m^2`` run maxima ``M``. The
elementary circuits of ``H`` are enumerated once per ``m`` (:func:`circuit_table`: 11
classes for ``m = 2``, 37 for 3, 136 for 4), so ``lambda`` costs a few hundred
additions, vectorized over any number of load configurations (:func:`cycle_time`). The
test suite checks it against the engine with constant loads to float precision, and
against Karp's algorithm on the full matrix ``M``. As a maximum of sums of maxima of
linear functions, ``lambda`` is convex in the loads.

**Random loads: quasi-static cycle time.** Token loads change slowly: each slot's context
grows by one token per step and a slot's load jumps only when its request ends. The rule
therefore averages the frozen cycle time over the stationary law of the loads,

.. math:: \bar\tau(r) = E\,[\lambda(a(T))],\qquad a_{w,k} = \alpha_A T_{w,k} + \beta_A',

where in the stationary state the ``B`` slots of every worker are independent and each has
the exact stationary slot law (:func:`afdlib.workload.stationary_load_pmf`), so microbatch
``k``'s load ``T_{w,k}`` is the ``b_k``-fold convolution of it
(:func:`afdlib.provision.exact.worker_load_law`), independent across microbatches and
workers (by convexity, ``E[lambda] >= lambda`` at the mean loads: the barrier and the
heavy microbatch cost time). The expectation over these ``r m`` independent loads is
taken by Latin-hypercube sampling of their exact laws (a fixed seed, common to all ratios:
ratio ``r`` uses the first ``r`` workers of each sampled bundle), with no simulation of
the dynamics.

**How far it is from the engine.** The pipelined engine's long-run step time is a Lyapunov
exponent of the random max-plus system. The quasi-static value neglects how fast the loads
move; the engine absorbs part of their step-to-step changes between microbatches (a worker
slow at one step is not the slowest at the next) and is slightly faster. Over the 105
settings of ``benchmarks/pipelined_rule_regret.py`` (four traces, the paper's laws,
heavy-tailed and correlated laws; B = 8 .. 256; m = 2, 3, 4; both intercept modes;
attention-, communication- and FFN-bound coefficients, communication constant and growing
with r; presets), measured with a control variate that removes the luck of the runs' load
paths and keeps the engine's dynamics, the quasi-static value is within 1.2% of the
engine's mean step time near the optimum, mostly above it (1.2% on azure2023_code, whose
loads change fastest; 0.7% elsewhere), and following its integer ratio gave up at most
0.18% of the engine's best throughput (the round-trip rule 3.3%, the step-model rule 23%).
Circuits through several workers in different laps move the expectation by 0.01% or
less, but the frozen cycle time needs them to be exact.

The objective is the operating point's (:class:`afdlib.model.Objective`: throughput per
instance ``r B / ((r + 1) tau)`` by default, per GPU or per price unit), as everywhere in
:mod:`afdlib.provision`; :func:`pipelined_ratio` compares it at every integer ratio.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.model import (
    INTERCEPTS,
    OperatingPoint,
    StepCoefficients,
    intercept_share,
    microbatch_sizes,
)
from afdlib.provision.exact import LOAD_BINS, WorkerLoadLaw, worker_load_law
from afdlib.provision.meanfield import check_point
from afdlib.validate import check_choice, check_int, check_type
from afdlib.workload import check_workload

__all__ = [
    "INTERCEPTS", "MAX_MICROBATCHES", "CircuitTable", "circuit_table", "StageTimes",
    "stage_times", "run_sums", "cycle_time", "MicrobatchLaws",
    "microbatch_load_laws", "gaussian_microbatch_laws", "mean_load_cycle_time",
    "expected_cycle_time", "throughput_pipelined", "PipelinedRatio", "pipelined_ratio",
]

#: Largest number of microbatches whose circuits are enumerated (3231 classes for 6).
MAX_MICROBATCHES = 6


def _check_m(microbatches) -> int:
    return check_int("microbatches", microbatches, minimum=1, maximum=MAX_MICROBATCHES)


def _check_intercepts(intercepts) -> str:
    return check_choice("intercepts", intercepts, INTERCEPTS)


def _check_fits(m: int, b: int) -> None:
    if m > b:
        raise AfdInputError(f"microbatches m ({m}) must be <= batch B ({b})",
                            parameter="microbatches")


# -- the circuits of the reduced precedence graph ------------------------------------------


@dataclass(frozen=True, eq=False)
class CircuitTable:
    """Classes of elementary circuits of the reduced precedence graph for ``m`` microbatches.

    Circuits that use the same attention runs and tokens form one class; a class's
    weight is the sum of its runs' maxima plus the largest of its circuits' link and FFN
    times. The attention ring of one worker is the class ``(run (0, m), 1 token)``.

    Attributes
    ----------
    microbatches : int
        ``m``.
    tokens : ndarray of int64, shape (classes,)
        Steps each circuit of the class spans (its tokens), >= 1.
    runs : ndarray of int64, shape (classes, width)
        Attention runs of the class, each as the index ``x * m + L - 1`` of the run that
        starts at microbatch ``x`` and covers ``L`` consecutive microbatches (cyclically);
        unused entries hold ``m * m``, which indexes a zero.
    counts : ndarray of int64, shape (options, 2 m)
        For each circuit (option) of each class: how many of its nodes are a link node
        (dispatch or combine) of microbatch ``x`` (column ``x``) and the FFN node of
        microbatch ``x`` (column ``m + x``).
    option_class : ndarray of int64, shape (options,)
        Class of each option (non-decreasing).
    """

    microbatches: int
    tokens: np.ndarray
    runs: np.ndarray
    counts: np.ndarray
    option_class: np.ndarray

    @property
    def class_starts(self) -> np.ndarray:
        """Index of each class's first option (for ``np.maximum.reduceat``)."""
        return np.flatnonzero(np.r_[True, np.diff(self.option_class) != 0])


def _reduced_arcs(m: int) -> list[tuple[int, int, int, int | None]]:
    """Arcs ``(tail, head, tokens, run)`` of the reduced graph (run None: a plain arc).

    Nodes: dispatch ``x``, FFN ``m + x``, combine ``2 m + x`` for microbatch ``x``.
    """
    arcs = []
    for stage in range(3):
        for x in range(m):
            node = stage * m + x
            # the same resource serves the next microbatch (the next step after m - 1)
            arcs.append((node, stage * m + (x + 1) % m, int(x == m - 1), None))
            if stage < 2:  # dispatch -> FFN -> combine of the same microbatch
                arcs.append((node, (stage + 1) * m + x, 0, None))
    for x in range(m):  # combine of x -> attention run x .. x+L-1 -> dispatch of its end
        for length in range(1, m + 1):
            end = (x + length - 1) % m
            arcs.append((2 * m + x, end, 1 + int(x + length - 1 >= m), x * m + length - 1))
    return arcs


@functools.lru_cache(maxsize=MAX_MICROBATCHES)
def circuit_table(microbatches: int) -> CircuitTable:
    """Enumerate the elementary circuits of the reduced graph once per ``m``.

    Parameters
    ----------
    microbatches : int
        ``1 <= m <= MAX_MICROBATCHES``.

    Returns
    -------
    CircuitTable
    """
    m = _check_m(microbatches)
    n = 3 * m
    out: list[list] = [[] for _ in range(n)]
    for arc in _reduced_arcs(m):
        out[arc[0]].append(arc)
    classes: dict[tuple, set] = {}
    for start in range(n):  # circuits whose smallest node is `start` (each found once)
        stack = [(start, (start,), ())]
        while stack:
            node, path, used = stack.pop()
            for arc in out[node]:
                head = arc[1]
                if head == start:
                    arcs = used + (arc,)
                    tokens = sum(a[2] for a in arcs)
                    runs = tuple(sorted(a[3] for a in arcs if a[3] is not None))
                    counts = [0] * (2 * m)
                    for v in path:
                        stage, x = divmod(v, m)
                        counts[x + (m if stage == 1 else 0)] += 1
                    classes.setdefault((tokens, runs), set()).add(tuple(counts))
                elif head > start and head not in path:
                    stack.append((head, path + (head,), used + (arc,)))
    classes.setdefault((1, (m - 1,)), set()).add((0,) * (2 * m))  # a worker's own ring
    keys = sorted(classes)
    width = max(len(k[1]) for k in keys)
    tokens = np.array([k[0] for k in keys], dtype=np.int64)
    runs = np.full((len(keys), width), m * m, dtype=np.int64)
    counts, owner = [], []
    for c, key in enumerate(keys):
        runs[c, :len(key[1])] = key[1]
        for option in sorted(classes[key]):
            counts.append(option)
            owner.append(c)
    return CircuitTable(m, tokens, runs, np.array(counts, dtype=np.int64),
                        np.array(owner, dtype=np.int64))


def run_sums(attention) -> np.ndarray:
    """Each worker's attention time summed over every cyclic run of microbatches.

    Parameters
    ----------
    attention : array_like, shape (..., m)
        Attention time of each microbatch's part on one worker (s).

    Returns
    -------
    ndarray, shape (..., m * m)
        ``out[..., x * m + L - 1] = sum_{j < L} attention[..., (x + j) % m]`` (s).
    """
    a = np.asarray(attention, dtype=float)
    m = a.shape[-1]
    cum = np.zeros(a.shape[:-1] + (2 * m + 1,))
    np.cumsum(np.concatenate([a, a], axis=-1), axis=-1, out=cum[..., 1:])
    x = np.arange(m)[:, None]
    length = np.arange(1, m + 1)[None, :]
    return (cum[..., x + length] - cum[..., x]).reshape(a.shape[:-1] + (m * m,))


def _cycle_from_runs(runs: np.ndarray, comm: np.ndarray, ffn: np.ndarray,
                     table: CircuitTable) -> np.ndarray:
    """Maximum cycle mean from the run maxima ``runs[..., m*m]`` over the workers (s)."""
    option_const = table.counts @ np.concatenate([comm, ffn])
    const = np.maximum.reduceat(option_const, table.class_starts)
    padded = np.concatenate([runs, np.zeros(runs.shape[:-1] + (1,))], axis=-1)
    weight = padded[..., table.runs].sum(axis=-1)
    weight += const
    weight /= table.tokens
    return weight.max(axis=-1)


def _stage_vector(name: str, value, m: int) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    if v.shape != (m,) or not np.all(np.isfinite(v)) or np.any(v < 0):
        raise AfdInputError(f"{name} must be {m} finite times >= 0 (one per microbatch)")
    return v


def cycle_time(attention, comm, ffn) -> np.ndarray:
    """Mean step time of the pipeline with frozen stage times: its maximum cycle mean.

    Exact for the pipelined engine when every step has the same stage times: after a
    finite transient the time between completions is periodic with this mean (see the
    module's docstring for the proof).

    Parameters
    ----------
    attention : array_like, shape (..., r, m)
        Attention time of worker ``w``'s part of microbatch ``k`` (s), >= 0; leading axes
        are independent configurations.
    comm : array_like, shape (m,)
        Time of microbatch ``k`` on each link direction (dispatch and combine) (s), >= 0.
    ffn : array_like, shape (m,)
        FFN time of microbatch ``k`` (s), >= 0.

    Returns
    -------
    ndarray, shape (...)
        The cycle time (s per step).
    """
    a = np.asarray(attention, dtype=float)
    if a.ndim < 2 or a.shape[-1] < 1 or a.shape[-2] < 1:
        raise AfdInputError("attention must have shape (..., r, m) with r, m >= 1")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise AfdInputError("attention times must be finite and >= 0")
    m = _check_m(a.shape[-1])
    table = circuit_table(m)
    return _cycle_from_runs(run_sums(a).max(axis=-2), _stage_vector("comm", comm, m),
                            _stage_vector("ffn", ffn, m), table)


# -- stage times of a bundle ---------------------------------------------------------------


@dataclass(frozen=True)
class StageTimes:
    """Per-microbatch stage times of one bundle, as the pipelined engine charges them.

    Attributes
    ----------
    ratio, batch, microbatches : int
        ``r``, ``B`` and ``m``.
    intercepts : str
        ``"per_microbatch"`` or ``"per_step"``.
    sizes : tuple of int
        Slots of each microbatch.
    alpha_A : float
        Attention time per cached token (s/token).
    attention_intercept : float
        Fixed attention time of one microbatch's part (s): ``beta_A`` or ``beta_A / m``.
    comm : tuple of float
        Time of each microbatch on each link direction (s).
    ffn : tuple of float
        FFN time of each microbatch (s).
    """

    ratio: int
    batch: int
    microbatches: int
    intercepts: str
    sizes: tuple
    alpha_A: float
    attention_intercept: float
    comm: tuple
    ffn: tuple

    def attention(self, loads) -> np.ndarray:
        """Attention time (s) of microbatch parts with token ``loads``."""
        return self.alpha_A * np.asarray(loads, dtype=float) + self.attention_intercept


def stage_times(coeffs: StepCoefficients, *, ratio: int, batch: int, microbatches: int,
                intercepts: str = "per_microbatch") -> StageTimes:
    """Stage times of each microbatch of an rA-1F bundle (the engine's formulas).

    Microbatch ``k`` has ``b_k`` slots (:func:`afdlib.model.microbatch_sizes`); with share
    ``q = 1`` (:func:`afdlib.model.intercept_share`)
    (``"per_microbatch"``) or ``1/m`` (``"per_step"``) of each intercept,
    attention ``alpha_A T + q beta_A``, each link direction ``alpha_C b_k (r) + q beta_C``
    (``r`` when communication scales with ``rB``) and FFN ``alpha_F r b_k + q beta_F``.

    Parameters
    ----------
    coeffs : afdlib.model.StepCoefficients
    ratio : int
        Attention workers ``r >= 1``.
    batch : int
        Slots per worker ``B >= m``.
    microbatches : int
        ``1 <= m <= MAX_MICROBATCHES``.
    intercepts : {"per_microbatch", "per_step"}

    Returns
    -------
    StageTimes
    """
    coeffs = check_type("coefficients", coeffs, StepCoefficients,
                        "afdlib.model.StepCoefficients")
    r = check_int("ratio", ratio, minimum=1)
    b = check_int("batch", batch, minimum=1)
    m = _check_m(microbatches)
    _check_fits(m, b)
    share = intercept_share(_check_intercepts(intercepts), m)
    sizes = microbatch_sizes(b, m)
    comm = coeffs.comm_time(batch=sizes, ratio=r, intercept_scale=share)
    ffn = coeffs.ffn_time(batch=sizes, ratio=r, intercept_scale=share)
    return StageTimes(r, b, m, intercepts, tuple(int(s) for s in sizes), float(coeffs.alpha_A),
                      float(coeffs.beta_A * share), tuple(float(x) for x in comm),
                      tuple(float(x) for x in ffn))


# -- the stationary law of the microbatch loads --------------------------------------------


@dataclass(frozen=True, eq=False)
class MicrobatchLaws:
    """Exact stationary laws of the token load of each microbatch of a worker.

    Attributes
    ----------
    batch, microbatches : int
        ``B`` and ``m``.
    sizes : tuple of int
        Slots of each microbatch.
    laws : tuple of WorkerLoadLaw
        The law of microbatch ``k``'s load (a ``b_k``-slot "worker"), one per microbatch.
    """

    batch: int
    microbatches: int
    sizes: tuple
    laws: tuple


def microbatch_load_laws(workload, batch: int, *, microbatches: int,
                         bins: int = LOAD_BINS) -> MicrobatchLaws:
    """Stationary laws of the microbatch loads (each the convolution of its slots' laws).

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
        Request lengths.
    batch : int
        Slots per worker ``B >= m``.
    microbatches : int
        ``1 <= m <= MAX_MICROBATCHES``.
    bins : int
        Grid points of one slot's law (see :func:`afdlib.provision.exact.worker_load_law`).

    Returns
    -------
    MicrobatchLaws
    """
    workload = check_workload(workload)
    b = check_int("batch", batch, minimum=1)
    m = _check_m(microbatches)
    _check_fits(m, b)
    sizes = tuple(int(s) for s in microbatch_sizes(b, m))
    cache: dict[int, WorkerLoadLaw] = {}
    for s in set(sizes):
        cache[s] = worker_load_law(workload, s, bins=bins)
    return MicrobatchLaws(b, m, sizes, tuple(cache[s] for s in sizes))


def gaussian_microbatch_laws(point: OperatingPoint, *, microbatches: int,
                             bins: int = LOAD_BINS) -> MicrobatchLaws:
    """Normal laws of the microbatch loads: the barrier model's approximation.

    Microbatch ``k`` of ``b_k`` independent stationary slots has load mean ``b_k theta``
    and standard deviation ``sqrt(b_k) sigma``; its law is the normal one with these
    moments, discretized on ``bins`` points over ``mean +- 8 sd`` (cut at 0 tokens, the
    mass below put on the first point). With :func:`expected_cycle_time` this is the
    pipelined counterpart of the Gaussian barrier, needing only ``theta`` and ``load_std``.

    Parameters
    ----------
    point : OperatingPoint
        Its theta, load_std (tokens) and integer batch ``B >= m`` are used.
    microbatches : int
        ``1 <= m <= MAX_MICROBATCHES``.
    bins : int
        Grid points of each law, >= 16.

    Returns
    -------
    MicrobatchLaws
    """
    from scipy import stats

    point = check_point(point)
    b = point.integer_batch()
    m = _check_m(microbatches)
    _check_fits(m, b)
    bins = check_int("bins", bins, minimum=16)
    sizes = tuple(int(x) for x in microbatch_sizes(b, m))
    laws = {}
    for size in set(sizes):
        mean, sd = size * point.theta, math.sqrt(size) * point.load_std
        if sd == 0.0:
            laws[size] = WorkerLoadLaw(size, 1.0, mean, np.ones(1), mean, 0.0)
            continue
        lo = max(0.0, mean - 8.0 * sd)
        step = (mean + 8.0 * sd - lo) / (bins - 1)
        grid = lo + step * np.arange(bins)
        cdf = stats.norm.cdf((grid + step / 2 - mean) / sd)
        cdf[-1] = 1.0
        pmf = np.diff(cdf, prepend=0.0)
        laws[size] = WorkerLoadLaw(size, float(step), float(lo), pmf, float(pmf @ grid),
                                   float(sd))
    return MicrobatchLaws(b, m, sizes, tuple(laws[s] for s in sizes))


def mean_load_cycle_time(point: OperatingPoint, ratio, *, microbatches: int,
                         intercepts: str = "per_microbatch") -> np.ndarray:
    """Cycle time (s) with every microbatch at its mean load ``b_k theta``: the pipelined
    counterpart of the mean-field step time (exact for frozen loads, :func:`cycle_time`).

    Parameters
    ----------
    point : OperatingPoint
        Coefficients, theta (tokens) and an integer batch ``B >= m``.
    ratio : array_like of int
        Attention workers per FFN worker, each >= 1.
    microbatches : int
        ``1 <= m <= MAX_MICROBATCHES``.
    intercepts : {"per_microbatch", "per_step"}

    Returns
    -------
    ndarray
        Cycle time (s), shape of ``ratio``.
    """
    point = check_point(point)
    b = point.integer_batch()
    m = _check_m(microbatches)
    intercepts = _check_intercepts(intercepts)
    r = _check_ratios(ratio)
    out = np.empty(r.size)
    for i, rr in enumerate(r.ravel().astype(np.int64)):
        times = stage_times(point.coeffs, ratio=int(rr), batch=b, microbatches=m,
                            intercepts=intercepts)
        loads = np.asarray(times.sizes, dtype=float) * point.theta
        # workers are identical at their mean, so one worker stands for all r
        out[i] = float(cycle_time(times.attention(loads)[None, :], times.comm, times.ffn))
    return out.reshape(r.shape)


def _as_laws(workload, batch: int, microbatches: int) -> MicrobatchLaws:
    if isinstance(workload, MicrobatchLaws):
        if workload.batch != batch or workload.microbatches != microbatches:
            raise AfdInputError(
                f"the microbatch laws are for B={workload.batch}, m={workload.microbatches}, "
                f"not B={batch}, m={microbatches}", parameter="workload")
        return workload
    return microbatch_load_laws(workload, batch, microbatches=microbatches)


def _lhs_loads(laws: MicrobatchLaws, samples: int, workers: int, seed) -> np.ndarray:
    """Latin-hypercube draws of the loads, shape (samples, workers, m) (tokens).

    Coordinate (w, k) of replica i is the law's quantile at ``(pi(i) + U) / samples`` for
    an independent random permutation ``pi`` per coordinate: each coordinate is stratified,
    the coordinates are independent, and worker w's draws do not depend on ``workers``.
    """
    root = np.random.SeedSequence(seed)
    m = laws.microbatches
    out = np.empty((samples, workers, m))
    for w in range(workers):
        rng = np.random.default_rng(np.random.SeedSequence(root.entropy,
                                                           spawn_key=(*root.spawn_key, w)))
        for k, law in enumerate(laws.laws):
            u = (rng.permutation(samples) + rng.random(samples)) / samples
            idx = np.searchsorted(law.cdf, u, side="left")
            out[:, w, k] = law.values[np.minimum(idx, law.pmf.size - 1)]
    return out


def _check_ratios(ratio) -> np.ndarray:
    r = np.asarray(ratio)
    if (r.size == 0 or not np.all(np.isfinite(r)) or np.any(r < 1)
            or np.any(r != np.round(r))):
        raise AfdInputError("ratios must be integers >= 1", parameter="ratio")
    return r


def _expected(coeffs, laws: MicrobatchLaws, flat: np.ndarray, intercepts: str, samples: int,
              seed) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the sampled cycle times at each ratio in ``flat``."""
    m, b = laws.microbatches, laws.batch
    table = circuit_table(m)
    wanted = np.unique(flat)
    top = int(wanted[-1])
    loads = _lhs_loads(laws, samples, top, seed)
    first = stage_times(coeffs, ratio=1, batch=b, microbatches=m, intercepts=intercepts)
    mean, se = {}, {}
    running = None
    block = 16
    for lo in range(0, top, block):  # running maximum over workers, a block at a time
        hi = min(top, lo + block)
        sums = run_sums(first.attention(loads[:, lo:hi, :]))
        np.maximum.accumulate(sums, axis=1, out=sums)
        if running is not None:
            np.maximum(sums, running[:, None, :], out=sums)
        running = sums[:, -1, :].copy()
        for r in wanted[(wanted > lo) & (wanted <= hi)]:
            times = stage_times(coeffs, ratio=int(r), batch=b, microbatches=m,
                                intercepts=intercepts)
            lam = _cycle_from_runs(sums[:, int(r) - 1 - lo, :], np.array(times.comm),
                                   np.array(times.ffn), table)
            mean[int(r)] = float(lam.mean())
            se[int(r)] = float(lam.std(ddof=1) / math.sqrt(samples)) if samples > 1 else math.nan
    return (np.array([mean[int(r)] for r in flat]), np.array([se[int(r)] for r in flat]))


def _setup(point, workload, microbatches, intercepts, samples):
    point = check_point(point)
    b = point.integer_batch()
    m = _check_m(microbatches)
    intercepts = _check_intercepts(intercepts)
    samples = check_int("samples", samples, minimum=2)
    return point, b, m, intercepts, samples, _as_laws(workload, b, m)


def expected_cycle_time(point: OperatingPoint, workload, ratio, *, microbatches: int,
                        intercepts: str = "per_microbatch", samples: int = 2048,
                        seed=0) -> np.ndarray:
    """Quasi-static mean step time ``E[lambda(loads)]`` of the pipelined bundle (s).

    Parameters
    ----------
    point : OperatingPoint
        Its coefficients and batch ``B >= m`` (slots per Attention worker) are used.
    workload : IndependentLengths, JointLengths or MicrobatchLaws
        Request lengths, or the laws from :func:`microbatch_load_laws` (reuse them across
        calls with the same ``B`` and ``m``).
    ratio : array_like of int
        Attention workers per FFN worker, each >= 1.
    microbatches : int
        Microbatches per worker, ``1 <= m <= MAX_MICROBATCHES`` (the engine needs >= 2).
    intercepts : {"per_microbatch", "per_step"}
        Whether every microbatch pays the full intercepts or ``1/m`` of them.
    samples : int
        Sampled bundles (Latin hypercube over every worker's and microbatch's load),
        >= 2; the standard error falls like ``1/sqrt(samples)``.
    seed : int or numpy.random.SeedSequence
        Seed of the sample (fixed by default: the rule is deterministic).

    Returns
    -------
    ndarray
        Mean step (cycle) time (s), shape of ``ratio``.
    """
    point, _, m, intercepts, samples, laws = _setup(point, workload, microbatches, intercepts,
                                                    samples)
    r = _check_ratios(ratio)
    mean, _ = _expected(point.coeffs, laws, r.ravel().astype(np.int64), intercepts, samples,
                        seed)
    return mean.reshape(r.shape)


def throughput_pipelined(point: OperatingPoint, workload, ratio, *, microbatches: int,
                         intercepts: str = "per_microbatch", samples: int = 2048,
                         seed=0) -> np.ndarray:
    """The point's objective ``r B / ((r w_A + w_F) E[lambda])`` for the pipelined bundle
    (tokens/s per instance by default, per GPU or per price unit with the point's
    objective). Parameters as for :func:`expected_cycle_time`.
    """
    tau = expected_cycle_time(point, workload, ratio, microbatches=microbatches,
                              intercepts=intercepts, samples=samples, seed=seed)
    return check_point(point).throughput(np.asarray(ratio, dtype=float), tau)


@dataclass(frozen=True)
class PipelinedRatio:
    """Best integer ratio of the pipelined bundle under the quasi-static cycle time.

    Attributes
    ----------
    r_int : int
        Ratio with the highest predicted throughput in ``1 .. max_ratio``.
    throughput : float
        Its objective (tokens/s per instance, per GPU or per price unit).
    ratios : ndarray of int
        ``1 .. max_ratio``.
    throughputs : ndarray
        Predicted objective at each ratio.
    step_times : ndarray
        Predicted mean step time at each ratio (s).
    step_time_se : ndarray
        Sampling standard error of each (s).
    microbatches : int
    intercepts : str
    """

    r_int: int
    throughput: float
    ratios: np.ndarray
    throughputs: np.ndarray
    step_times: np.ndarray
    step_time_se: np.ndarray
    microbatches: int
    intercepts: str


def pipelined_ratio(point: OperatingPoint, workload, *, max_ratio: int, microbatches: int,
                    intercepts: str = "per_microbatch", samples: int = 2048,
                    seed=0) -> PipelinedRatio:
    """Best integer ratio of the pipelined bundle, comparing every ratio 1 .. max_ratio
    under the point's objective. Parameters as for :func:`expected_cycle_time`.

    Returns
    -------
    PipelinedRatio
    """
    point, _, m, intercepts, samples, laws = _setup(point, workload, microbatches, intercepts,
                                                    samples)
    top = check_int("max_ratio", max_ratio, minimum=1)
    ratios = np.arange(1, top + 1)
    tau, se = _expected(point.coeffs, laws, ratios, intercepts, samples, seed)
    lam = point.throughput(ratios.astype(float), tau)
    k = int(np.argmax(lam))
    return PipelinedRatio(int(ratios[k]), float(lam[k]), ratios, lam, tau, se, m, intercepts)
