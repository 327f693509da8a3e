"""Exact token-load paths of groups of slots, with work proportional to the requests.

Every slot produces one token per step, so between two renewals its context, and the
load of any group of slots, grows by exactly one token per slot and step. A renewal at
step ``t`` (the slot's new request runs its first decode step at ``t``) replaces the
context the old request would have reached, ``base = P_old + D_old``, by the new prompt
``P_new``: a jump of ``P_new - base`` relative to the linear growth. Hence the load of a
group ``g`` of ``b_g`` slots at step ``s`` is

    T_g(s) = T_g(0) + b_g * s + sum of the jumps of its slots at steps 1 .. s,

and the whole path needs one entry per *request* (its start step and jump) instead of
one update per slot and step. The entries are scatter-added into a ``(groups, steps)``
integer array and integrated by a cumulative sum.

Two ways to feed requests to the slots:

* ``resample``: each slot draws its requests i.i.d. from the workload (a law, or the
  rows of a trace with replacement). In rounds: every slot short of the horizon gets
  the next ``k`` requests of its worker's stream, ``k`` fixed by the run and the
  workload (so a worker's path depends on its own seed only, whatever the other
  workers do); the blocks of all workers are processed together, slot-major, so that
  one contiguous cumulative sum per slot gives the start steps (see
  :func:`renewal_block`). Trace rows are drawn four to one bounded integer (its
  base-``n`` digits, :func:`uniform_rows`), the cost that dominates short requests;
* ``replay``: the rows of a trace are handed out in order, each to the slot that frees
  first (ties to the lower slot index), cycling to the first row when the trace ends.

Memory is ``O(slots + steps * groups)``: request blocks are capped at that size and
their work arrays are reused.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.sim.bundle import check_int, check_workload
from afdlib.workload import JointLengths, sample_stationary_slots

__all__ = ["LoadPath", "load_path", "release_work_arrays", "renewal_block", "row_digits",
           "uniform_rows"]


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


def renewal_block(first, prompt, decode, jump, when=None):
    """Renewal entries of ``k`` fresh requests for each of ``a`` slots (in place).

    Slot ``i`` starts request ``(prompt[i, 0], decode[i, 0])`` at step ``first[i]``,
    then requests ``1 .. k-1`` of its row back to back (request ``j + 1`` starts at the
    step request ``j`` ends). Steps may carry an offset (e.g. a row of a flat array):
    the start steps come out with the same offset.

    Parameters
    ----------
    first : ndarray of int, shape (a,)
        Step at which each slot's request 0 starts.
    prompt : ndarray of int, shape (a, k)
        Prompts of the requests, in order along each row (tokens).
    decode : ndarray of int, shape (a, k)
        Their decode steps; **modified**: ``first`` is added to column 0, and without
        ``when`` an int64 ``decode`` becomes ``when`` itself.
    jump : ndarray of int, shape (a, k)
        Output: ``jump[i, j] = P[i, j+1] - (P[i, j] + D[i, j])``, the load jump at the
        start of request ``j + 1`` (tokens); ``jump[:, -1] = 0`` (the successor of
        the last request is not in the block).
    when : ndarray of int64, shape (a, k), optional
        Output array for ``when`` (default: ``decode`` itself if it is int64, else a
        new array).

    Returns
    -------
    when : ndarray of int64, shape (a, k)
        ``when[i, j]``: step at which request ``j`` ends, that is, request ``j + 1``
        (for ``j = k - 1``: the slot's next request after the block) starts.

    Notes
    -----
    The first request's own jump, ``prompt[:, 0]`` minus the context the previous
    request would reach at ``first``, and that continuation for the last request,
    ``prompt[:, -1] + decode[:, -1]``, are the caller's (read them before the call).
    """
    flat_p, flat_d, flat_j = prompt.reshape(-1), decode.reshape(-1), jump.reshape(-1)
    # flat differences cross the row ends; those entries are then zeroed (cheaper than
    # a row-by-row difference)
    np.subtract(flat_p[1:], flat_p[:-1], out=flat_j[:-1])
    np.subtract(flat_j[:-1], flat_d[:-1], out=flat_j[:-1])
    jump[:, -1] = 0
    decode[:, 0] += first.astype(decode.dtype, copy=False)
    if when is None:
        when = decode if decode.dtype == np.int64 else np.empty(decode.shape, dtype=np.int64)
    if when is not decode:
        np.copyto(when, decode)  # then an int64 cumulative sum in place: no cast per row
    np.cumsum(when, axis=1, out=when)
    return when


def row_digits(n: int) -> int:
    """Uniform row indices on ``0 .. n-1`` per bounded draw: 4, 2 or 1 (see below)."""
    return 4 if n ** 4 < 2 ** 63 else 2 if n ** 2 < 2 ** 63 else 1


def uniform_rows(rng, n: int, size: int) -> np.ndarray:
    """``size`` independent uniform integers on ``0 .. n-1`` (exact), a few per draw.

    A bounded integer uniform on ``0 .. n**d - 1`` has ``d`` independent uniform
    base-``n`` digits; ``d = 4`` while ``n**4 < 2**63`` (``n`` up to 55,108), then 2
    (see :func:`row_digits`), so one draw of the generator serves four requests of a
    trace of up to 55,108 rows. With ``m = ceil(size / d)`` draws, the result holds
    the same digit of every draw in a run of ``m`` values (the engine's layout).

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
        Number of values, >= 1.
    size : int
        How many to draw, >= 0 (unused digits of the last draws are dropped).

    Returns
    -------
    ndarray of int64, shape (size,)
    """
    d = row_digits(n)
    m = -(-size // d)
    draws = rng.integers(0, n ** d, m).reshape(1, m)
    return _split_digits(draws, n, d, np.empty(d * m, dtype=np.int64),
                         np.empty(2 * m, dtype=np.int64))[:size]


def _split_digits(x, n, d, out, scratch):
    """Base-``n`` digits of the rows of ``x`` (int64, shape (R, m), each < ``n**d``).

    Row ``w`` of ``x`` gives ``out[w*d*m : (w+1)*d*m]`` (so each row's values stay
    together), holding digit ``q`` of each of its draws in a run of ``m`` values; the
    digits are ordered 3, 1, 2, 0 for ``d = 4`` and 1, 0 for ``d = 2``.
    """
    rows, m = x.shape
    size = rows * m
    if d == 1:
        out[:size] = x.reshape(-1)
        return out[:size]
    if d == 4:
        # x = hi * n**2 + lo, then hi and lo both split by n: two rounds of division
        # by a constant for all four digits
        n2 = n * n
        split = scratch[:2 * size].reshape(2, rows, m)
        hi, lo = split[0], split[1]
        np.floor_divide(x, n2, out=hi)
        np.multiply(hi, n2, out=lo)
        np.subtract(x, lo, out=lo)
        x = split.transpose(1, 0, 2)
        digits = out[:4 * size].reshape(rows, 4, m)
        high, low = digits[:, :2], digits[:, 2:]
    else:
        digits = out[:2 * size].reshape(rows, 2, m)
        high, low = digits[:, 0], digits[:, 1]
    np.floor_divide(x, n, out=high)
    np.multiply(high, n, out=low)
    np.subtract(x, low, out=low)
    return out[:d * size]


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

    # row g holds group g's jumps at steps 0 .. steps-1, then as many columns again
    # that collect the requests starting at or after the horizon (discarded), so that
    # a round of requests rarely needs clamping; integers, so the scatter-adds are exact
    # and fast
    width = 2 * steps + 1
    row_of = group_of * width
    source = None if replay else _request_source(workload, int(sizes.max()), ctx0, rem0)
    buffers = _Buffers(np.int64 if replay else source.dtype)
    jumps = buffers.get("cells", groups * width)
    jumps[:] = 0
    if replay:
        count = _replay_entries(workload, ctx0, rem0, row_of, steps, jumps, offset)
    else:
        count = _resample_entries(source, workload, rngs, batch, ctx0, rem0, row_of, steps,
                                  width, jumps, buffers)
    # T_g(s) = T_g(0) + sum_{1 <= u <= s} (b_g + jump_g(u)): one cumulative sum in
    # integers (fast and exact), then the loads as floats
    jumps = jumps.reshape(groups, width)[:, :steps]
    jumps[:, 1:] += sizes[:, None].astype(jumps.dtype)
    jumps[:, 0] = np.bincount(group_of, weights=ctx0, minlength=groups)
    loads = buffers.get("loads", groups * steps, np.int64).reshape(groups, steps)
    np.cumsum(jumps, axis=1, dtype=np.int64, out=loads)
    loads = loads.astype(np.float64)
    return LoadPath(loads, sizes, count)


def _decode_moments(workload) -> tuple[float, float]:
    if isinstance(workload, JointLengths):
        d = workload.decode.astype(float)
        return float(d.mean()), float(d.var())
    return float(workload.decode.mean), float(workload.decode.variance)


#: Requests per slot and round, ``k``: those expected over the whole run plus this many
#: standard deviations of the renewal count (slots still short of the horizon get
#: another round) ...
ROUND_SPREAD = 1.0
#: ... but ``B * k`` at most this many per worker (the arrays of a round stay near the
#: caches; measured best among powers of two on the public traces) ...
ROUND_WORKER = 1 << 15
#: ... and at most this many times ``steps + B`` (the work arrays stay
#: ``O(r * (B + steps))``).
ROUND_ENTRIES = 4

#: Work arrays up to this many bytes each are kept between calls (per thread): fresh
#: memory costs a page fault per few kilobytes, as much as the work itself here.
KEEP_BYTES = 1 << 24

_kept = threading.local()


def release_work_arrays() -> int:
    """Drop the work arrays this thread keeps between calls of :func:`load_path`.

    Returns
    -------
    int
        Bytes released (at most a few times ``KEEP_BYTES`` per thread).
    """
    arrays = getattr(_kept, "arrays", None) or {}
    released = sum(a.nbytes for a in arrays.values())
    _kept.arrays = {}
    return released


class _Buffers:
    """Work arrays reused across rounds and (per thread) calls."""

    def __init__(self, dtype):
        self.dtype = dtype
        arrays = getattr(_kept, "arrays", None)
        if arrays is None:
            arrays = _kept.arrays = {}
        self._arrays = arrays

    def get(self, name, size, dtype=None):
        """A work array of ``size`` elements (contents undefined)."""
        dtype = np.dtype(self.dtype if dtype is None else dtype)
        key = (name, dtype.char)
        arr = self._arrays.get(key)
        if arr is None or arr.size < size:
            arr = np.empty(size, dtype=dtype)
            if arr.nbytes <= KEEP_BYTES:
                self._arrays[key] = arr
        return arr[:size]


class _TraceRows:
    """I.i.d. rows of a trace: prompt and decode packed in one integer per row.

    ``dtype`` is int32 when the packed rows, the jumps and the per-step sums of the
    jumps of a group fit (halving the memory traffic), int64 otherwise.
    """

    def __init__(self, workload: JointLengths, group_max: int, ctx0, rem0):
        prompt, decode = workload.prompt, workload.decode
        self.n = int(decode.size)
        self.digits = row_digits(self.n)
        self.shift = int(decode.max()).bit_length()
        self.mask = (1 << self.shift) - 1
        # a step's cell of a group gets at most one jump per slot, each at most
        # top + reach in size (prompt minus continued context), plus the slots' growth
        top = max(int(prompt.max()), int(ctx0.max(initial=0)))
        reach = max(int((prompt + decode).max()), int((ctx0 + rem0).max(initial=0)))
        narrow = (int(prompt.max()) < 2 ** (31 - self.shift)
                  and group_max * (top + reach + 1) < 2 ** 31)
        self.dtype = np.dtype(np.int32 if narrow else np.int64)
        self.packed = narrow or int(prompt.max()) < 2 ** (62 - self.shift)
        if self.packed:
            self.table = ((prompt.astype(np.int64) << self.shift) | decode).astype(self.dtype)
        self.prompt, self.decode = prompt, decode

    def draw(self, rngs, counts, k, buffers):
        """Prompts and decode steps of ``k`` fresh requests for ``counts[w]`` slots of
        each worker ``w`` (from its own generator), stacked: shape ``(sum(counts), k)``.

        ``k`` is a multiple of ``self.digits``, so each worker's requests come from
        whole draws of its own generator, laid out as by :func:`uniform_rows`.
        """
        d, n = self.digits, self.n
        size = int(sum(counts)) * k
        rows = buffers.get("rows", size, np.int64)
        scratch = buffers.get("scratch", 2 * (size // d), np.int64)
        busy = [(rng, c * k // d) for rng, c in zip(rngs, counts, strict=True) if c]
        if all(m == busy[0][1] for _, m in busy):
            # as many draws for every worker (all slots active): one pass for all
            m = busy[0][1]
            draws = buffers.get("draws", len(busy) * m, np.int64).reshape(len(busy), m)
            for i, (rng, _) in enumerate(busy):
                draws[i] = rng.integers(0, n ** d, m)
            _split_digits(draws, n, d, rows, scratch)
        else:
            at = 0
            for rng, m in busy:
                _split_digits(rng.integers(0, n ** d, m).reshape(1, m), n, d,
                              rows[at:at + d * m], scratch)
                at += d * m
        prompt = buffers.get("prompt", size)
        decode = buffers.get("decode", size)
        if self.packed:
            np.take(self.table, rows, out=decode, mode="wrap")  # rows < n: no check
            np.right_shift(decode, self.shift, out=prompt)
            np.bitwise_and(decode, self.mask, out=decode)
        else:
            np.take(self.prompt, rows, out=prompt, mode="wrap")
            np.take(self.decode, rows, out=decode, mode="wrap")
        return prompt.reshape(-1, k), decode.reshape(-1, k)


class _LawRequests:
    """I.i.d. requests from length laws (``workload.sample_requests``)."""

    dtype = np.dtype(np.int64)
    digits = 1

    def __init__(self, workload):
        self.workload = workload

    def draw(self, rngs, counts, k, buffers):
        size = int(sum(counts)) * k
        prompt = buffers.get("prompt", size)
        decode = buffers.get("decode", size)
        at = 0
        for rng, c in zip(rngs, counts, strict=True):
            if c:
                p, d = self.workload.sample_requests(rng, c * k)
                prompt[at:at + c * k] = p
                decode[at:at + c * k] = d
                at += c * k
        return prompt.reshape(-1, k), decode.reshape(-1, k)


def _request_source(workload, group_max, ctx0, rem0):
    if isinstance(workload, JointLengths):
        return _TraceRows(workload, group_max, ctx0, rem0)
    return _LawRequests(workload)


def _round_length(steps, batch, moments, digits) -> int:
    """Requests per slot and round (a multiple of ``digits``).

    It depends on the run and the workload only, not on the state nor on the number of
    workers, so that each worker's path depends on its own stream only.
    """
    mean_d, var_d = moments
    need = steps / mean_d + ROUND_SPREAD * math.sqrt(steps * var_d / mean_d ** 3) + 2.0
    limit = max(1, min(ROUND_WORKER, ROUND_ENTRIES * (steps + batch)) // batch)
    k = limit if not math.isfinite(need) else max(1, min(math.ceil(need), limit))
    return max(digits, k - k % digits)


def _resample_entries(source, workload, rngs, batch, ctx0, rem0, row_of, steps, width, out,
                      buffers) -> int:
    """Accumulate the jumps of i.i.d. requests into ``out`` (flat, rows of ``width``).

    In rounds: every slot still short of the horizon gets ``k`` fresh requests from its
    worker's own stream (all workers' blocks are then processed together). Returns the
    requests started at steps ``1 .. steps - 1``.
    """
    k = _round_length(steps, batch, _decode_moments(workload), source.digits)
    start = rem0.copy()  # step at which each slot's next request starts
    base = ctx0 + rem0  # context its previous request would reach there
    count = int(np.count_nonzero(start < steps))  # the requests after the initial ones
    edges = np.arange(len(rngs) + 1) * batch
    while True:
        act = np.flatnonzero(start < steps)
        if act.size == 0:
            return count
        a = act.size
        counts = np.diff(np.searchsorted(act, edges)).tolist()
        first, offset = start[act], row_of[act]
        prompt, decode = source.draw(rngs, counts, k, buffers)
        # request 0 of slot i starts at first[i], jumping from base[i] to its prompt
        np.add.at(out, offset + first, (prompt[:, 0] - base[act]).astype(out.dtype))
        base[act] = prompt[:, -1] + decode[:, -1]
        jump = buffers.get("jump", a * k)
        when = renewal_block(first + offset, prompt, decode, jump.reshape(a, k),
                             buffers.get("when", a * k, np.int64).reshape(a, k))
        start[act] = when[:, -1] - offset
        count += _count_and_clamp(when, offset + steps, offset + width)
        np.add.at(out, when.reshape(-1), jump)


def _count_and_clamp(ends, bound, limit) -> int:
    """Entries of each row of ``ends`` (increasing) below ``bound``; clamp if needed.

    Entries at or past ``bound`` (steps after the horizon) land in the discarded part
    of their group's row, up to ``limit``; only if some row runs past its limit is the
    block clamped. Only the columns from about the first one that reaches a bound on
    are counted (a few probes find it: the columns are monotone), so rounds that stay
    inside the horizon, and the bulk of the last one, cost no pass over the block.
    """
    a, k = ends.shape
    last = ends[:, -1]
    if bool((last < bound).all()):
        return a * k
    lo = 0  # every column before lo is below the bound in every row
    for frac in (0.5, 0.75, 0.875):
        j = int(frac * k)
        if j <= lo or j >= k - 1 or not bool((ends[:, j] < bound).all()):
            break
        lo = j
    tail = ends[:, lo:]
    col = bound[:, None]
    count = a * lo + int(np.count_nonzero(tail < col))
    if not bool((last < limit).all()):
        np.minimum(tail, col, out=tail)
    return count


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
    buf_when = np.empty(max(min(out.size, 1 << 16), end.size), dtype=np.int64)
    buf_jump = np.empty(buf_when.size, dtype=np.int64)
    filled = count = 0
    row = offset
    t = int(end.min())
    while t < steps:
        slots = np.flatnonzero(end == t)
        k = slots.size
        rows = np.arange(row, row + k)  # taken modulo n_rows
        row = (row + k) % n_rows
        p, d = prompt.take(rows, mode="wrap"), decode.take(rows, mode="wrap")
        if filled + k > buf_when.size:
            np.add.at(out, buf_when[:filled], buf_jump[:filled])
            count += filled
            filled = 0
        buf_when[filled:filled + k] = row_of[slots] + t
        buf_jump[filled:filled + k] = p - base[slots]
        filled += k
        base[slots] = p + d
        end[slots] = t + d
        t = int(end.min())
    np.add.at(out, buf_when[:filled], buf_jump[:filled])
    return count + filled
