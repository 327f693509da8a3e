"""The paper's measurement on the pipelined engine: throughput until 80% of a finite
trace's requests complete.

The simulator measures it for the step engine (:func:`afdlib.sim.simulate_finite_trace`,
where idle slots also shorten the FFN and link stages), and the study uses that for its
step and replay referees; the simulator has no finite-trace mode for the pipelined
engine, so this module builds one on top of the unchanged engine for the pipelined
referees (and, for checking, for the step engine too: with every slot busy until the mark
both give the same throughput).

The paper measures a finite list of requests, handed out in order from a cold start
(every slot begins a fresh request at step 0), and takes the throughput up to the moment
80% of them have completed, so that the drain at the end (slots left idle when the list
runs out) is cut off. That is not the stationary throughput the rules predict: a cold
start holds short contexts (every request begins at its prompt, none is caught
half-way), and idle slots can appear before the 80% mark when the bundle holds many slots
compared with the list.

This module measures it on top of the unchanged engines of :mod:`afdlib.sim` (the
simulator's own finite-trace mode is not used here):

1. :func:`dispatch` walks the list in *step units*: slot ``s`` frees at the step its
   request ends, freed slots take the next rows in order (the rule of the engines'
   ``replay``), and once the list is exhausted a freed slot stays idle. Which slot gets
   which row does not change when requests start and end, so this gives every row's
   start step without any step time, the step ``s80`` at which the ``ceil(0.8 N)``-th
   request completes, and the idle slot-steps up to it.
2. The engine runs ``replay`` from a ``cold`` start over the list followed by *idle rows*
   (prompt 0, one decode step): a slot on an idle row reads no cache, which is what an
   idle slot costs attention; every idle slot takes one per step, so exactly the idle
   slot-steps counted in 1 are appended.
3. The throughput is the decode tokens of the real requests in steps ``0 .. s80`` (one per
   busy slot and step) over the time the engine took for them, per instance.

What this leaves as it is: the FFN is charged for the bundle's full batch ``r B`` at every
step, as in the step model, even while some slots idle.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint
from afdlib.sim import Bundle, simulate
from afdlib.validate import check_int, check_number
from afdlib.workload import JointLengths

__all__ = ["Dispatch", "dispatch", "FiniteRun", "finite_trace_throughput", "MAX_IDLE_ROWS"]

#: Idle slot-steps allowed before the mark (each becomes one idle row of the replayed list).
MAX_IDLE_ROWS = 4_000_000


@dataclass(frozen=True, eq=False)
class Dispatch:
    """A finite list of requests dealt to ``slots`` slots, in step units.

    Attributes
    ----------
    slots : int
        Slots of the bundle, ``r B``.
    start : ndarray of int64, shape (N,)
        Step at which each row's first decode step runs.
    end : ndarray of int64, shape (N,)
        ``start + D``: the step at which its slot frees (it completes at the end of step
        ``end - 1``).
    idle_from : ndarray of int64, shape (slots,)
        Step from which each slot idles once the list is exhausted (when its last row
        ends; 0 for a slot that never gets one), increasing.
    """

    slots: int
    start: np.ndarray
    end: np.ndarray
    idle_from: np.ndarray

    def mark(self, fraction: float) -> int:
        """The step during which the ``ceil(fraction N)``-th request completes."""
        f = check_number("fraction", fraction, minimum=0.0, strict=True, maximum=1.0)
        k = max(1, math.ceil(f * self.end.size))
        return int(np.partition(self.end - 1, k - 1)[k - 1])

    def idle_slot_steps(self, last: int) -> int:
        """Idle slot-steps in steps ``0 .. last``."""
        return int(np.clip(last + 1 - self.idle_from, 0, None).sum())

    def busy_slot_steps(self, last: int) -> int:
        """Decode tokens of the real rows in steps ``0 .. last`` (one per busy slot-step)."""
        return int(np.clip(np.minimum(self.end, last + 1) - self.start, 0, None).sum())

    def total_load(self, prompt: np.ndarray, steps: int) -> np.ndarray:
        """Cached tokens read by all slots together at steps ``0 .. steps-1`` (tokens).

        An independent check of the engine: equal to the sum over workers of the engine's
        recorded loads when it replays the list (idle rows read nothing).
        """
        keep = self.start < steps
        s, e = self.start[keep], np.minimum(self.end[keep], steps)
        p = prompt[keep].astype(float)
        # a row active in [s, e) reads p + (t - s): a level p - s plus t per active row
        level = np.zeros(steps + 1)
        count = np.zeros(steps + 1)
        np.add.at(level, s, p - s)
        np.add.at(level, e, -(p - s))
        np.add.at(count, s, 1.0)
        np.add.at(count, e, -1.0)
        return np.cumsum(level)[:steps] + np.arange(steps) * np.cumsum(count)[:steps]


def dispatch(rows: JointLengths, slots: int) -> Dispatch:
    """Deal a finite list of rows to ``slots`` slots from a cold start (see the module).

    Parameters
    ----------
    rows : JointLengths
        The requests, in order.
    slots : int
        Slots of the bundle ``r B``, >= 1.

    Returns
    -------
    Dispatch
    """
    if not isinstance(rows, JointLengths):
        raise AfdInputError("dispatch needs a list of rows (JointLengths)", parameter="rows")
    slots = check_int("slots", slots, minimum=1)
    decode = rows.decode.astype(np.int64).tolist()
    n = len(decode)
    # row k starts at the k-th earliest free time (slots free at step 0, each freeing at
    # the end of its row): list scheduling with a heap of the slots' free times
    free = [0] * slots
    start = [0] * n
    for k, d in enumerate(decode):
        t = free[0]
        start[k] = t
        heapq.heapreplace(free, t + d)
    start_a = np.array(start, dtype=np.int64)
    end = start_a + rows.decode.astype(np.int64)
    idle_from = np.sort(np.array(free, dtype=np.int64))
    return Dispatch(slots, start_a, end, idle_from)


@dataclass(frozen=True)
class FiniteRun:
    """The finite-trace measurement at one ratio.

    Attributes
    ----------
    throughput : float
        Decode tokens per second per instance (or per the point's objective unit) over
        steps ``0 .. mark``.
    mark : int
        The step at which the ``fraction`` mark is reached.
    tokens : int
        Decode tokens of the real rows in steps ``0 .. mark``.
    idle_slot_steps : int
        Slot-steps spent idle before the mark.
    elapsed : float
        Time of steps ``0 .. mark`` (s).
    """

    throughput: float
    mark: int
    tokens: int
    idle_slot_steps: int
    elapsed: float


def finite_trace_throughput(rows: JointLengths, point: OperatingPoint, ratio: int, *,
                            engine: str = "step", microbatches: int = 2,
                            intercepts: str = "per_microbatch", fraction: float = 0.8,
                            deal: Dispatch | None = None) -> FiniteRun | None:
    """Throughput of a finite list until ``fraction`` of its requests complete.

    Parameters
    ----------
    rows : JointLengths
        The requests, in order.
    point : OperatingPoint
        Coefficients, batch and objective (theta is not used).
    ratio : int
        Attention workers.
    engine, microbatches, intercepts
        The engine (see :func:`afdlib.sim.simulate`).
    fraction : float
        Share of the requests whose completion ends the measurement.
    deal : Dispatch, optional
        :func:`dispatch` of ``rows`` over ``ratio * B`` slots, if already computed.

    Returns
    -------
    FiniteRun or None
        None when more than :data:`MAX_IDLE_ROWS` slot-steps idle before the mark (a list
        far too short for the bundle).
    """
    bundle = Bundle.at(point, ratio)
    deal = deal if deal is not None else dispatch(rows, bundle.slots)
    if deal.slots != bundle.slots:
        raise AfdInputError("the dispatch is for another number of slots", parameter="deal")
    mark = deal.mark(fraction)
    idle = deal.idle_slot_steps(mark)
    if idle > MAX_IDLE_ROWS:
        return None
    pad = idle + bundle.slots  # one idle row per idle slot-step, and a margin
    padded = JointLengths(np.concatenate([rows.prompt, np.zeros(pad, dtype=np.int64)]),
                          np.concatenate([rows.decode, np.ones(pad, dtype=np.int64)]),
                          name=rows.name)
    pipe = dict(microbatches=microbatches, intercepts=intercepts) if engine == "pipeline" else {}
    res = simulate(padded, bundle, engine=engine, steps=mark + 1, seed=0, init="cold",
                   replay=True, record=True, n_batches=2, **pipe)
    elapsed = float(np.sum(res.records.step_time))
    tokens = deal.busy_slot_steps(mark)
    cost = float(point.objective.bundle_cost(ratio))
    return FiniteRun(tokens / (elapsed * cost), mark, tokens, idle, elapsed)
