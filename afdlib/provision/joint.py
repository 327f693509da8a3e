r"""The batch and the ratio chosen together, within memory and a latency target.

The batch ``B`` (slots per Attention worker) is usually an input of the rules, but an
operator chooses it with ``r``: a larger batch spreads the fixed parts of a step
(``beta_A``, ``beta_F``, the weight streaming) over more tokens, so it raises the
throughput per GPU, and it lengthens every step, so it raises the time per output token.
KV memory bounds it from above.

:func:`joint_search` evaluates every pair ``(B, r)`` of a batch grid and the ratios
``1 .. R(B)`` with :func:`afdlib.provision.provision` (exact-load rule and exact quantiles
when a workload is given, else the Gaussian barrier), and returns

* the best pair: the highest objective among the pairs whose predicted p99 step time meets
  the target (or overall, without a target);
* the Pareto frontier of the objective (e.g. tokens/s per GPU) against the p99 step time:
  the pairs no other pair beats on both.

The coefficients may depend on ``B`` (presets linearize their curves at the batch), so the
search takes a function ``point_at(B)`` that builds the operating point of each batch; this
module never sees where the coefficients come from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.model import PER_INSTANCE, OperatingPoint
from afdlib.provision.exact import worker_load_law
from afdlib.provision.latency import check_quantile, step_time_quantile
from afdlib.provision.table import provision
from afdlib.validate import check_int, check_number

__all__ = ["MAX_GRID", "batch_grid", "JointPoint", "JointResult", "joint_search",
           "pareto_front"]

#: Largest number of batches a search evaluates; wider ranges get a geometric grid.
MAX_GRID = 40


def batch_grid(lo: int, hi: int, *, max_points: int = MAX_GRID) -> tuple[np.ndarray, str]:
    """The batches searched in ``lo .. hi``: all of them, or a geometric grid.

    Parameters
    ----------
    lo, hi : int
        Inclusive range of slots per Attention worker, ``1 <= lo <= hi``.
    max_points : int
        At most this many batches (>= 2).

    Returns
    -------
    batches : ndarray of int
        Increasing, including both ends.
    description : str
        What the grid is, e.g. ``"every batch 8..64"`` or ``"40 batches, geometric from 16
        to 4096"``.

    Raises
    ------
    AfdInputError
        For an empty or inverted range (``parameter="batches"``).
    """
    lo = check_int("batches", lo, minimum=1)
    hi = check_int("batches", hi, minimum=1)
    max_points = check_int("max_points", max_points, minimum=2)
    if hi < lo:
        raise AfdInputError(f"the batch range {lo}:{hi} is inverted (LO must be <= HI)",
                            parameter="batches")
    if hi - lo + 1 <= max_points:
        return np.arange(lo, hi + 1), f"every batch {lo}..{hi}"
    n = max_points
    while True:
        grid = np.unique(np.round(np.geomspace(lo, hi, n)).astype(int))
        if grid.size >= max_points or n > 4 * max_points:
            break
        n += 1
    grid = np.unique(np.concatenate([[lo], grid[(grid > lo) & (grid < hi)], [hi]]))
    if grid.size > max_points:       # keep the ends, thin the inside evenly
        keep = np.unique(np.round(np.linspace(0, grid.size - 1, max_points)).astype(int))
        grid = grid[keep]
    return grid, f"{grid.size} batches, geometric from {lo} to {hi}"


@dataclass(frozen=True)
class JointPoint:
    """One bundle ``(B, r)`` of the joint search.

    Attributes
    ----------
    batch, ratio : int
    throughput : float
        The objective (tokens/s per GPU, instance or price unit).
    throughput_per_instance : float
        Tokens/s per instance.
    throughput_per_gpu : float or None
        Tokens/s per GPU, where the GPU counts are known.
    mean_step_time, step_time_p50, step_time_p99 : float
        Predicted mean, median and 99th percentile of the step time (s).
    meets_target : bool or None
        Whether ``step_time_p99`` is at most the target (None without a target).
    """

    batch: int
    ratio: int
    throughput: float
    throughput_per_instance: float
    throughput_per_gpu: float | None
    mean_step_time: float
    step_time_p50: float
    step_time_p99: float
    meets_target: bool | None

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {"ratio": self.ratio, "batch": self.batch, "throughput": self.throughput,
                "throughput_per_instance": self.throughput_per_instance,
                "throughput_per_gpu": self.throughput_per_gpu,
                "mean_step_time": self.mean_step_time, "step_time_p50": self.step_time_p50,
                "step_time_p99": self.step_time_p99, "meets_target": self.meets_target}


def pareto_front(points: Sequence[JointPoint]) -> tuple[JointPoint, ...]:
    """The points no other point beats on both the objective (higher) and the p99 step time
    (lower), ordered by increasing p99 (and so increasing objective)."""
    order = sorted(points, key=lambda p: (p.step_time_p99, -p.throughput))
    front, best = [], -math.inf
    for p in order:
        if p.throughput > best:
            front.append(p)
            best = p.throughput
    return tuple(front)


@dataclass(frozen=True)
class JointResult:
    """The joint search over batches and ratios.

    Attributes
    ----------
    batches : ndarray of int
        The batches searched.
    grid : str
        How they were chosen (:func:`batch_grid`), plus any memory cap.
    points : tuple of JointPoint
        Every pair evaluated.
    best : JointPoint or None
        Highest objective among the pairs that meet the target (all pairs without one);
        None when no pair meets it.
    pareto : tuple of JointPoint
        Frontier of the objective against the p99 step time.
    lowest_p99 : JointPoint
        The pair with the smallest p99 step time (the smallest achievable target).
    target : float or None
        The latency target (s).
    quantile : float
        Level of the target's quantile.
    method : {"exact", "gaussian"}
        How the quantiles and the mean step time were predicted.
    unit : str
        Unit of ``throughput``.
    best_per_batch : tuple of JointPoint
        The best pair at each batch (meeting the target where one does).
    """

    batches: np.ndarray
    grid: str
    points: tuple
    best: JointPoint | None
    pareto: tuple
    lowest_p99: JointPoint
    target: float | None
    quantile: float
    method: str
    unit: str
    best_per_batch: tuple

    def best_within(self, tpot_p99: float) -> JointPoint | None:
        """The best pair whose p99 step time is at most ``tpot_p99`` (s), None if none: the
        search under another target without evaluating the pairs again."""
        tpot_p99 = check_number("tpot_p99", tpot_p99, minimum=0.0, strict=True, unit="s")
        ok = [p for p in self.points if p.step_time_p99 <= tpot_p99]
        return max(ok, key=lambda p: p.throughput) if ok else None

    def to_dict(self) -> dict:
        """JSON-ready summary: ``best``, ``pareto``, the grid and the per-batch optima."""
        return {"best": None if self.best is None else self.best.to_dict(),
                "pareto": [p.to_dict() for p in self.pareto],
                "batches": [int(b) for b in self.batches], "batch_grid": self.grid,
                "best_per_batch": [p.to_dict() for p in self.best_per_batch],
                "lowest_p99": self.lowest_p99.to_dict(), "tpot_p99": self.target,
                "quantile": self.quantile, "method": self.method, "throughput_unit": self.unit}


def joint_search(point_at: Callable[[int], OperatingPoint], batches, *, workload=None,
                 max_ratio: int | None = None, tpot_p99: float | None = None,
                 quantile: float = 0.99, bins: int = 1024, grid: str = "") -> JointResult:
    """Search the batch and the ratio together.

    Parameters
    ----------
    point_at : callable
        ``point_at(B) -> OperatingPoint`` with ``batch == B``: the coefficients, load and
        objective at each batch (coefficients linearized there, GPU counts of the instances
        that hold it).
    batches : iterable of int
        Batches to evaluate (e.g. from :func:`batch_grid`), each >= 1.
    workload : IndependentLengths or JointLengths, optional
        With a workload the exact worker-load law of each batch is used (exact-load rule,
        exact quantiles); without it, the Gaussian barrier.
    max_ratio : int, optional
        Largest ratio at every batch (default: :func:`afdlib.provision.default_max_ratio`
        of each batch).
    tpot_p99 : float, optional
        Latency target (s) for the ``quantile`` of the step time.
    quantile : float
        Level of the target (0.99).
    bins : int
        Grid points of one slot's load law (see :func:`worker_load_law`).
    grid : str
        Description of the batch grid, for the record.

    Returns
    -------
    JointResult
    """
    quantile = check_quantile(quantile)
    if tpot_p99 is not None:
        tpot_p99 = check_number("tpot_p99", tpot_p99, minimum=0.0, strict=True, unit="s")
    values = sorted({check_int("batches", b, minimum=1) for b in batches})
    if not values:
        raise AfdInputError("no batch to search", parameter="batches")
    points, per_batch, unit = [], [], ""
    method = "exact" if workload is not None else "gaussian"
    for b in values:
        point = point_at(b)
        if not isinstance(point, OperatingPoint) or point.batch != b:
            raise AfdInputError(f"point_at({b}) must return an OperatingPoint with batch {b}",
                                parameter="batches")
        law = worker_load_law(workload, b, bins=bins) if workload is not None else None
        res = provision(point, max_ratio=max_ratio, law=law, tpot_p99=tpot_p99,
                        quantile=quantile)
        unit = point.objective.unit
        rule = res.best_rule
        tau = res.mean_step_times[rule]
        lam = point.throughput(res.ratios, tau)
        inst = PER_INSTANCE.throughput(res.ratios, b, tau)
        gpu = point.objective.throughput_per_gpu(res.ratios, b, tau)
        tq = (res.step_time_p99 if quantile == 0.99
              else step_time_quantile(point, res.ratios, quantile, law=law))
        row = [JointPoint(batch=b, ratio=int(r), throughput=float(lam[i]),
                          throughput_per_instance=float(inst[i]),
                          throughput_per_gpu=None if gpu is None else float(gpu[i]),
                          mean_step_time=float(tau[i]), step_time_p50=float(res.step_time_p50[i]),
                          step_time_p99=float(tq[i]),
                          meets_target=None if tpot_p99 is None else bool(tq[i] <= tpot_p99))
               for i, r in enumerate(res.ratios)]
        points += row
        ok = [p for p in row if p.meets_target is not False]
        per_batch.append(max(ok or row, key=lambda p: p.throughput))
    ok = [p for p in points if p.meets_target is not False]
    best = max(ok, key=lambda p: p.throughput) if ok else None
    lowest = min(points, key=lambda p: (p.step_time_p99, -p.throughput))
    return JointResult(batches=np.array(values), grid=grid or f"{len(values)} batches",
                       points=tuple(points), best=best, pareto=pareto_front(points),
                       lowest_p99=lowest, target=tpot_p99, quantile=quantile, method=method,
                       unit=unit, best_per_batch=tuple(per_batch))
