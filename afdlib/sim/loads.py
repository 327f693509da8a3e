"""Exact token-load paths of groups of slots, with work proportional to the requests.

Every slot produces one token per step, so between two renewals its context, and the
load of any group of slots, grows by exactly one token per slot and step. A renewal at
step ``t`` (the slot's new request runs its first decode step at ``t``) replaces the
context the old request would have reached, ``base = P_old + D_old``, by the new prompt
``P_new``: a jump of ``P_new - base`` relative to the linear growth. Hence the load of a
group ``g`` of ``b_g`` slots at step ``s`` is

    T_g(s) = T_g(0) + b_g * s + sum of the jumps of its slots at steps 1 .. s,

and the whole path needs one entry per *request* (its start step and jump) instead of
one update per slot and step. The entries are accumulated into a ``(steps, groups)``
array and integrated by a cumulative sum.

Two ways to feed requests to the slots:

* ``resample``: each slot draws its requests i.i.d. from the workload (a law, or the
  rows of a trace with replacement), slot by slot in blocks of many requests;
* ``replay``: the rows of a trace are handed out in order, each to the slot that frees
  first (ties to the lower slot index), cycling to the first row when the trace ends.

Memory is ``O(slots + steps * groups)``: request blocks are capped at that size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.sim.bundle import check_int, check_workload
from afdlib.workload import JointLengths, sample_stationary_slots

__all__ = ["LoadPath", "load_path", "renewal_block"]


@dataclass(frozen=True, eq=False)
class LoadPath:
    """Token loads of groups of slots at every step.

    Attributes
    ----------
    loads : ndarray of float64, shape (groups, steps)
        ``loads[g, s]``: cached tokens the slots of group ``g`` read at step ``s``
        (tokens; integers, stored exactly as floats). Groups are rows so that maxima
        over groups are fast elementwise operations.
    group_sizes : ndarray of int64, shape (groups,)
        Slots per group.
    requests : int
        Requests started during the run (renewals), not counting those in the slots at
        step 0.
    """

    loads: np.ndarray
    group_sizes: np.ndarray
    requests: int


def renewal_block(start, base, prompt, decode):
    """Renewal entries of a block of fresh requests for a set of slots (in place).

    Slot ``i`` starts request ``prompt[0, i], decode[0, i]`` at step ``start[i]``, then
    the following requests of its column back to back. ``base[i]`` is the context the
    slot's previous request would reach at ``start[i]`` if it kept growing.

    Parameters
    ----------
    start : ndarray of int64, shape (n,)
        Step at which each slot's next request starts.
    base : ndarray of int64, shape (n,)
        Linear continuation of each slot's previous context at ``start`` (tokens).
    prompt : ndarray of int64, shape (k, n)
        Prompts of the next ``k`` requests of each slot, in order (tokens).
    decode : ndarray of int64, shape (k, n)
        Their decode steps; **overwritten** with the step at which each request *ends*
        (the next one starts), to save memory traffic.

    Returns
    -------
    ends : ndarray of int64, shape (k, n)
        The ``decode`` array, now holding the step at which each request ends: request
        0 starts at ``start``, request ``j >= 1`` at ``ends[j - 1]``, and the slot's next
        request after the block at ``ends[-1]``.
    jump : ndarray of float64, shape (k, n)
        Each request's load jump ``P_new - base`` (tokens) at its start.
    next_base : ndarray of int64, shape (n,)
        Linear continuation (``P + D``) of the last request at ``ends[-1]``.
    """
    k = prompt.shape[0]
    jump = np.empty(prompt.shape)
    np.subtract(prompt[0], base, out=jump[0])
    np.subtract(prompt[1:], prompt[:-1], out=jump[1:])
    jump[1:] -= decode[:-1]
    next_base = prompt[-1] + decode[-1]
    # cumulative sum down the columns, row by row (numpy's cumsum along axis 0 does not
    # vectorize across columns and is an order of magnitude slower here): decode[j]
    # becomes the step at which request j ends
    decode[0] += start
    for j in range(1, k):
        np.add(decode[j - 1], decode[j], out=decode[j])
    return decode, jump, next_base
def _initial_state(workload, seeds, batch, init):
    """Per-worker generators and the slots' initial contexts and remaining decode steps."""
    rngs = [np.random.default_rng(s) for s in seeds]
    ctx, rem = [], []
    for rng in rngs:
        if init == "stationary":
            c, r = sample_stationary_slots(workload, rng, batch)
        else:
            c, r = workload.sample_requests(rng, batch)
        ctx.append(np.asarray(c, dtype=np.int64))
        rem.append(np.asarray(r, dtype=np.int64))
    return rngs, np.concatenate(ctx), np.concatenate(rem)


def load_path(workload, seeds, batch: int, steps: int, *, slot_group=None,
              init: str = "stationary", replay: bool = False) -> LoadPath:
    """Exact per-step token loads of ``len(seeds)`` workers of ``batch`` slots.

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
        Request lengths (P tokens of context before decoding, D >= 1 decode steps).
    seeds : sequence of numpy.random.SeedSequence
        One per worker; worker ``w`` holds slots ``w*batch .. (w+1)*batch - 1`` and
        draws its requests from its own stream.
    batch : int
        Slots per worker.
    steps : int
        Steps to simulate.
    slot_group : ndarray of int, shape (batch,), optional
        Group of each slot *within a worker* (e.g. its microbatch), ``0 .. m-1``; the
        result then has ``len(seeds) * m`` groups, group ``w*m + k``. Default: one
        group per worker.
    init : {"stationary", "cold"}
        Stationary: each slot holds a length-biased request at a uniform position.
        Cold: each slot starts a fresh request at step 0 (with ``replay``: the first
        rows of the trace, in order).
    replay : bool
        Hand out the rows of a trace (``JointLengths``) in order instead of drawing
        them i.i.d.

    Returns
    -------
    LoadPath
    """
    workload = check_workload(workload)
    batch = check_int("batch B", batch, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    n_workers = len(seeds)
    if n_workers < 1:
        raise AfdInputError("load_path needs at least one worker seed")
    if slot_group is None:
        slot_group = np.zeros(batch, dtype=np.int64)
    slot_group = np.asarray(slot_group, dtype=np.int64)
    if slot_group.shape != (batch,) or slot_group.min() < 0:
        raise AfdInputError("slot_group must give a group >= 0 for each of the batch slots")
    per_worker = int(slot_group.max()) + 1
    groups = n_workers * per_worker
    group_of = (np.arange(n_workers)[:, None] * per_worker + slot_group[None, :]).ravel()
    sizes = np.bincount(group_of, minlength=groups).astype(np.int64)
    if replay and not isinstance(workload, JointLengths):
        raise AfdInputError("replay needs a trace (rows of requests), not length laws")

    rngs, ctx0, rem0 = _initial_state(workload, seeds, batch, init)
    offset = 0
    if replay and init == "cold":
        rows = np.arange(ctx0.size) % len(workload)
        ctx0, rem0 = workload.prompt[rows].copy(), workload.decode[rows].copy()
        offset = ctx0.size % len(workload)

    # row g holds group g's jumps at steps 0 .. steps-1, plus a last column that
    # collects the requests starting at or after the horizon (discarded)
    width = steps + 1
    jumps = np.zeros(groups * width)
    row_of = group_of * width
    if replay:
        count = _replay_entries(workload, ctx0, rem0, row_of, steps, jumps, offset)
    else:
        count = _resample_entries(workload, rngs, batch, ctx0, rem0, row_of, steps, jumps)
    # T_g(s) = T_g(0) + sum_{1 <= u <= s} (b_g + jump_g(u)): one cumulative sum, in place
    # on the contiguous array (the last column is dropped afterwards)
    jumps = jumps.reshape(groups, width)
    jumps[:, 1:] += sizes[:, None]
    jumps[:, 0] = np.bincount(group_of, weights=ctx0, minlength=groups)
    loads = np.cumsum(jumps, axis=1, out=jumps)[:, :steps]
    return LoadPath(loads, sizes, count)


def _decode_moments(workload) -> tuple[float, float]:
    if isinstance(workload, JointLengths):
        d = workload.decode.astype(float)
        return float(d.mean()), float(d.var())
    return float(workload.decode.mean), float(workload.decode.variance)


def _resample_entries(workload, rngs, batch, ctx0, rem0, row_of, steps, out) -> int:
    """Accumulate the jumps of i.i.d. requests into ``out`` (flat, rows of steps + 1)."""
    start = rem0.copy()
    base = ctx0 + rem0
    mean_d, var_d = _decode_moments(workload)
    n_slots = start.size
    budget = 4 * (out.size + n_slots)  # entries per round: O(slots + steps*groups)
    count = 0
    while True:
        active = np.nonzero(start < steps)[0]
        if active.size == 0:
            return count
        # enough requests for most slots to pass the horizon in one round (renewal
        # count ~ h/E[D] +- sqrt(h Var[D] / E[D]^3)); the rest, a smaller second round
        horizon = steps - int(start[active].min())
        k = horizon / mean_d + 1.0 * np.sqrt(horizon * var_d / mean_d**3) + 2.0
        k = int(max(1, min(np.ceil(k), budget // active.size)))
        worker = active // batch
        cuts = np.searchsorted(worker, np.arange(len(rngs) + 1))
        prompt = np.empty((k, active.size), dtype=np.int64)
        decode = np.empty((k, active.size), dtype=np.int64)
        for w, rng in enumerate(rngs):  # worker w's requests come from its own stream
            lo, hi = cuts[w], cuts[w + 1]
            if hi > lo:
                p, d = workload.sample_requests(rng, (hi - lo) * k)
                prompt[:, lo:hi] = np.asarray(p).reshape(k, hi - lo)
                decode[:, lo:hi] = np.asarray(d).reshape(k, hi - lo)
        first = start[active]
        ends, jump, cont = renewal_block(first, base[active], prompt, decode)
        start[active] = ends[-1]
        base[active] = cont
        # request 0 of each slot starts at `first`, request j >= 1 when j - 1 ends
        count += int(np.count_nonzero(ends[:-1] < steps)) + int(np.count_nonzero(first < steps))
        np.minimum(ends, steps, out=ends)
        ends += row_of[active]
        out += np.bincount(ends[:-1].ravel(), weights=jump[1:].ravel(), minlength=out.size)
        np.add.at(out, np.minimum(first, steps) + row_of[active], jump[0])


def _replay_entries(workload, ctx0, rem0, row_of, steps, out, offset) -> int:
    """Accumulate the jumps of a trace replayed in order (earliest-free slot first).

    Replay is sequential by nature (which slot gets row i depends on when the slots
    before it freed), so this walks through the steps at which some slot frees,
    handing out rows to all slots freeing at that step at once (in slot order).
    """
    prompt, decode = workload.prompt, workload.decode
    n_rows = prompt.size
    end = rem0.copy()  # step at which each slot's next request starts
    base = ctx0 + rem0
    buf_when = np.empty(max(out.size, end.size), dtype=np.int64)
    buf_jump = np.empty(buf_when.size)
    filled = count = 0
    row = offset
    t = int(end.min())
    while t < steps:
        slots = np.flatnonzero(end == t)
        k = slots.size
        rows = np.arange(row, row + k) % n_rows
        row = (row + k) % n_rows
        p, d = prompt[rows], decode[rows]
        if filled + k > buf_when.size:
            out += np.bincount(buf_when[:filled], weights=buf_jump[:filled],
                               minlength=out.size)
            count += filled
            filled = 0
        buf_when[filled:filled + k] = row_of[slots] + t
        buf_jump[filled:filled + k] = p - base[slots]
        filled += k
        base[slots] = p + d
        end[slots] = t + d
        t = int(end.min())
    out += np.bincount(buf_when[:filled], weights=buf_jump[:filled], minlength=out.size)
    return count + filled
