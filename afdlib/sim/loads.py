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

Runs longer than :data:`SINGLE_CHUNK_STEPS` are cut into **chunks** of :data:`CHUNK_STEPS`
steps (:class:`LoadStream`), so that memory does not grow with the run: each chunk carries
the slots' state (the step at which each slot's next request starts and the context it
continues from, the requests already dealt that start in a later chunk, the groups' last
loads) into the next one. A shorter run is a single chunk.

Two ways to feed requests to the slots:

* ``resample``: each slot draws its requests i.i.d. from the workload (a law, or the
  rows of a trace with replacement). In rounds: every slot short of the chunk's end gets
  the next ``k`` requests of its worker's stream, ``k`` fixed by the chunk's length and
  the workload (so a worker's path depends on its own seed only, whatever the other
  workers do); the blocks of all workers are processed together, slot-major, so that
  one contiguous cumulative sum per slot gives the start steps (see
  :func:`renewal_block`). Trace rows are drawn four to one bounded integer (its
  base-``n`` digits, :func:`uniform_rows`), the cost that dominates short requests. The
  stream of a run longer than one chunk is dealt chunk by chunk, so it differs from a
  single pass (as any other seed would);
* ``replay``: the rows of a trace are handed out in order, each to the slot that frees
  first (ties to the lower slot index), cycling to the first row when the trace ends, or,
  for a *finite* trace, leaving the slots idle once it is used up. This is sequential by
  nature (which slot gets row ``i`` depends on when the slots before it freed), so it runs
  in rounds: the slots' freeing events are kept sorted, and a round hands out rows to
  the longest prefix of them that no request handed out in the same round can precede
  (a round typically covers several steps; see ``_Replay``).

Memory is ``O(slots + SINGLE_CHUNK_STEPS * groups)``: request blocks are capped at that size
and their work arrays are reused.

With numba installed, a round of i.i.d. requests runs in two compiled passes instead
(:mod:`afdlib.sim.kernels`: the trace rows of the draws, then the dealing), and a replay
runs step by step over bitmaps of the slots that free (:class:`_BitmapReplay`), on the
same draws and with the same integers out; the numpy code stays for the browser and as
the check (``AFDLIB_NUMBA=0``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.sim import kernels
from afdlib.sim.bundle import check_int, check_workload
from afdlib.workload import JointLengths, sample_stationary_slots_of

__all__ = ["CHUNK_STEPS", "SINGLE_CHUNK_STEPS", "LoadChunk", "LoadPath", "LoadStream", "load_path",
           "release_work_arrays", "renewal_block", "row_digits", "uniform_rows"]

#: A run of at most this many steps is one chunk (:class:`LoadStream`): its requests are
#: dealt as in a single pass over the run ...
SINGLE_CHUNK_STEPS = 1 << 18
#: ... and a longer run goes in chunks of this many steps. Neither depends on the number
#: of workers (the dealing of requests depends on the chunks, and common random numbers
#: need the first workers' paths to be the same at every ratio).
CHUNK_STEPS = 1 << 16


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


@dataclass(frozen=True, eq=False)
class LoadChunk:
    """The loads of a chunk of consecutive steps (see :class:`LoadStream`).

    The arrays are work arrays of the stream: they are valid until the next chunk is
    requested (or, for the last chunk, until the next stream starts in this thread);
    copy what you keep.

    Attributes
    ----------
    first : int
        Step of column 0.
    loads : ndarray of int64, shape (groups, steps)
        Cached tokens each group of slots reads at each step (tokens).
    active : ndarray of int64, shape (groups, steps), or None
        Slots of each group holding a request at each step (finite traces only; otherwise
        every slot always holds one).
    freed : ndarray of int64, shape (steps,), or None
        Slots freed at each step (finite traces only): requests whose last decode step was
        the step before (a slot freed at step 0 of the run finished nothing).
    """

    first: int
    loads: np.ndarray
    active: np.ndarray | None = None
    freed: np.ndarray | None = None

    @property
    def steps(self) -> int:
        """Steps in the chunk."""
        return int(self.loads.shape[1])


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
    if init == "stationary":
        ctx, rem = sample_stationary_slots_of(workload, rngs, batch)
    else:
        ctx, rem = (np.concatenate(x) for x in zip(
            *(workload.sample_requests(rng, batch) for rng in rngs), strict=True))
    return rngs, ctx.astype(np.int64, copy=False), rem.astype(np.int64, copy=False)


class LoadStream:
    """Exact per-step token loads of ``len(seeds)`` workers of ``batch`` slots, in chunks.

    Iterating yields one :class:`LoadChunk` per chunk of consecutive steps, in order: the
    whole run if it has at most :data:`SINGLE_CHUNK_STEPS` steps, else chunks of
    :data:`CHUNK_STEPS`; memory does not grow with the run. A stream can be iterated
    once.

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
    slot_group : array_like of int, shape (batch,), optional
        Group of each slot *within a worker* (e.g. its microbatch), ``0 .. m-1``; the
        stream then has ``len(seeds) * m`` groups, group ``w*m + k``. Default: one
        group per worker.
    init : {"stationary", "cold"}
        Stationary: each slot holds a length-biased request at a uniform position.
        Cold: each slot starts a fresh request at step 0 (with ``replay``: the first
        rows of the trace, in order).
    replay : bool
        Hand out the rows of a trace (``JointLengths``) in order instead of drawing
        them i.i.d.
    finite : bool
        With ``replay`` and ``init="cold"``: the trace is a finite set of requests, handed
        out once; a slot that frees after the last row has been handed out stays idle
        (the chunks then carry ``active`` and ``freed``).
    chunk_steps : int, optional
        Steps per chunk instead of the default. With ``resample`` the dealing of requests
        depends on the chunks (not with ``replay``).

    Attributes
    ----------
    group_sizes : ndarray of int64, shape (groups,)
        Slots per group.
    requests : int
        Requests started so far (renewals), not counting those in the slots at step 0:
        after the last chunk, those started during the run.
    """

    def __init__(self, workload, seeds, batch: int, steps: int, *, slot_group=None,
                 init: str = "stationary", replay: bool = False, finite: bool = False,
                 chunk_steps: int | None = None) -> None:
        self.workload = check_workload(workload)
        self.batch = check_int("batch B", batch, minimum=1)
        self.steps = check_int("steps", steps, minimum=1)
        self.seeds = list(seeds)
        n_workers = len(self.seeds)
        if n_workers < 1:
            raise AfdInputError("load_path needs at least one worker seed")
        if slot_group is None:
            slot_group = np.zeros(self.batch, dtype=np.int64)
        slot_group = np.asarray(slot_group, dtype=np.int64)
        if slot_group.shape != (self.batch,) or slot_group.min() < 0:
            raise AfdInputError("slot_group must give a group >= 0 for each of the batch "
                                "slots")
        per_worker = int(slot_group.max()) + 1
        self.groups = n_workers * per_worker
        self.group_of = (np.arange(n_workers)[:, None] * per_worker
                         + slot_group[None, :]).ravel()
        self.group_sizes = np.bincount(self.group_of, minlength=self.groups).astype(np.int64)
        if replay and not isinstance(self.workload, JointLengths):
            raise AfdInputError("replay needs a trace (rows of requests), not length laws",
                                parameter="replay")
        if finite and not (replay and init == "cold"):
            raise AfdInputError("a finite trace is replayed from a cold start (replay=True, "
                                "init='cold')", parameter="finite")
        self.init, self.replay, self.finite = init, bool(replay), bool(finite)
        if chunk_steps is None:
            chunk_steps = self.steps if self.steps <= SINGLE_CHUNK_STEPS else CHUNK_STEPS
        self.chunk_steps = check_int("chunk_steps", chunk_steps, minimum=1)
        self.requests = 0
        self._started = False

    def __iter__(self) -> Iterator[LoadChunk]:
        if self._started:
            raise AfdInputError("a LoadStream can be iterated once")
        self._started = True
        return self._chunks()

    def _chunks(self) -> Iterator[LoadChunk]:
        workload, batch, steps = self.workload, self.batch, self.steps
        rngs, ctx0, rem0 = _initial_state(workload, self.seeds, batch, self.init)
        offset = 0
        live = None  # slots holding a request at step 0 (finite traces)
        if self.replay and self.init == "cold":
            n = len(workload)
            rows = np.arange(ctx0.size)
            live = rows < n if self.finite else None
            rows = rows % n
            ctx0, rem0 = workload.prompt[rows].copy(), workload.decode[rows].copy()
            offset = ctx0.size % n
            if self.finite:
                ctx0[~live], rem0[~live] = 0, 0
                offset = min(ctx0.size, n)
        if self.replay:
            kind = _BitmapReplay if _BitmapReplay.fits(workload, rem0) else _Replay
            dealer = kind(workload, self.group_of, ctx0, rem0, offset, steps, live)
            buffers = _Buffers(np.int64)
        else:
            source = _request_source(workload, int(self.group_sizes.max()), ctx0, rem0)
            dealer = _Resample(source, workload, rngs, batch, self.group_of, ctx0, rem0)
            buffers = _Buffers(source.dtype)
        groups, sizes = self.groups, self.group_sizes
        active = None
        if self.finite:
            active = np.bincount(self.group_of, weights=live, minlength=groups).astype(np.int64)
        last = np.zeros(groups, dtype=np.int64)  # the groups' loads at step 0, exactly
        np.add.at(last, self.group_of, ctx0)  # (bincount's float weights round past 2**53)
        try:
            for c0 in range(0, steps, self.chunk_steps):
                c1 = min(steps, c0 + self.chunk_steps)
                width = c1 - c0
                cells, idle, freed = dealer.chunk(c0, c1, c1 == steps, buffers)
                self.requests = dealer.count
                cells = cells[:, :width]
                # T_g(s) = T_g(s-1) + (slots of g holding a request at s-1) + jumps_g(s):
                # integers, so the cumulative sum is exact
                if self.finite:
                    np.cumsum(idle, axis=1, out=idle)
                    idle += active[:, None]  # now: active slots at each step
                    grow = idle
                    cells[:, 1:] += grow[:, :-1]
                    prev = active
                    active = grow[:, -1].copy()
                else:
                    grow = None
                    cells[:, 1:] += sizes[:, None].astype(cells.dtype)
                    prev = sizes
                if c0 == 0:
                    cells[:, 0] = last
                else:
                    cells[:, 0] += (last + prev).astype(cells.dtype)
                loads = buffers.get("loads", groups * width, np.int64).reshape(groups, width)
                np.cumsum(cells, axis=1, dtype=np.int64, out=loads)
                last = loads[:, -1].copy()
                yield LoadChunk(c0, loads, grow, freed)
        finally:
            buffers.release()


def load_path(workload, seeds, batch: int, steps: int, *, slot_group=None,
              init: str = "stationary", replay: bool = False, finite: bool = False,
              chunk_steps: int | None = None) -> LoadPath:
    """Exact per-step token loads of ``len(seeds)`` workers of ``batch`` slots.

    The whole path in memory (``O(groups * steps)``); :class:`LoadStream` gives it in
    chunks of bounded memory. The parameters are those of :class:`LoadStream`.

    Returns
    -------
    LoadPath
    """
    stream = LoadStream(workload, seeds, batch, steps, slot_group=slot_group, init=init,
                        replay=replay, finite=finite, chunk_steps=chunk_steps)
    loads = np.empty((stream.groups, stream.steps), dtype=np.float64)
    for chunk in stream:
        loads[:, chunk.first:chunk.first + chunk.steps] = chunk.loads
    return LoadPath(loads, stream.group_sizes, stream.requests)


def _decode_moments(workload) -> tuple[float, float]:
    if isinstance(workload, JointLengths):
        d = workload.decode.astype(float)
        return float(d.mean()), float(d.var())
    return float(workload.decode.mean), float(workload.decode.variance)


#: Requests per slot and round, ``k``: those expected over the whole chunk plus this many
#: standard deviations of the renewal count (slots still short of the chunk's end get
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


def _pool() -> dict:
    arrays = getattr(_kept, "arrays", None)
    if arrays is None:
        arrays = _kept.arrays = {}
    return arrays


def release_work_arrays() -> int:
    """Drop the work arrays this thread keeps between calls of :func:`load_path`.

    Returns
    -------
    int
        Bytes released (at most a few times ``KEEP_BYTES`` per thread).
    """
    arrays = _pool()
    released = sum(a.nbytes for a in arrays.values())
    _kept.arrays = {}
    return released


class _Buffers:
    """Work arrays of one stream: taken from this thread's pool (so that two streams in
    one thread never share them) and given back to it when the stream ends."""

    def __init__(self, dtype):
        self.dtype = dtype
        self._own: dict = {}

    def get(self, name, size, dtype=None):
        """A work array of ``size`` elements (contents undefined)."""
        dtype = np.dtype(self.dtype if dtype is None else dtype)
        key = (name, dtype.char)
        arr = self._own.get(key)
        if arr is None:
            arr = _pool().pop(key, None)
        if arr is None or arr.size < size:
            arr = np.empty(size, dtype=dtype)
        self._own[key] = arr
        return arr[:size]

    def release(self) -> None:
        """Give the arrays of at most ``KEEP_BYTES`` back to the thread's pool."""
        pool = _pool()
        for key, arr in self._own.items():
            if arr.nbytes <= KEEP_BYTES and (key not in pool or pool[key].size < arr.size):
                pool[key] = arr
        self._own = {}


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
            self.wide = (prompt.astype(np.int64) << self.shift) | decode
            self.table = self.wide.astype(self.dtype)
        self.prompt, self.decode = prompt, decode

    def bounded_draws(self, rngs, counts, k, buffers):
        """The bounded draws :meth:`draw` takes its rows from (the same draws), for the
        compiled loops: ``(draws, starts)``, busy worker ``b``'s ``m = counts * k /
        digits`` draws in ``draws[starts[b]:starts[b + 1]]``."""
        d, n = self.digits, self.n
        busy = [(rng, c * k // d) for rng, c in zip(rngs, counts, strict=True) if c]
        starts = np.zeros(len(busy) + 1, dtype=np.int64)
        np.cumsum([m for _, m in busy], out=starts[1:])
        draws = buffers.get("draws", int(starts[-1]), np.int64)
        for (rng, m), at in zip(busy, starts.tolist(), strict=False):
            draws[at:at + m] = rng.integers(0, n ** d, m)
        return draws, starts

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


def _pack(prompt, decode, buffers):
    """Requests packed as ``(P << shift) | D`` in one int64 each, for the compiled loops:
    ``(entries, shift)``, or None where they do not fit in 63 bits."""
    shift = int(decode.max()).bit_length()
    if int(prompt.max()) >= 1 << (62 - shift):
        return None
    out = buffers.get("entries", prompt.size, np.int64).reshape(prompt.shape)
    np.left_shift(prompt, shift, out=out)
    np.bitwise_or(out, decode, out=out)
    return out.reshape(-1), shift


def _request_source(workload, group_max, ctx0, rem0):
    if isinstance(workload, JointLengths):
        return _TraceRows(workload, group_max, ctx0, rem0)
    return _LawRequests(workload)


def _round_length(steps, batch, moments, digits) -> int:
    """Requests per slot and round (a multiple of ``digits``) in a chunk of ``steps``.

    It depends on the chunk and the workload only, not on the state nor on the number of
    workers, so that each worker's path depends on its own stream only.
    """
    mean_d, var_d = moments
    need = steps / mean_d + ROUND_SPREAD * math.sqrt(steps * var_d / mean_d ** 3) + 2.0
    limit = max(1, min(ROUND_WORKER, ROUND_ENTRIES * (steps + batch)) // batch)
    k = limit if not math.isfinite(need) else max(1, min(math.ceil(need), limit))
    return max(digits, k - k % digits)


class _Resample:
    """The jumps of i.i.d. requests, chunk after chunk.

    In rounds: every slot still short of the chunk's end gets ``k`` fresh requests from
    its worker's own stream (all workers' blocks are then processed together). The
    requests of a block that start after the chunk are kept for the chunks they start in.
    """

    def __init__(self, source, workload, rngs, batch, group_of, ctx0, rem0):
        self.source, self.rngs, self.batch = source, rngs, batch
        self.moments = _decode_moments(workload)
        self.group_of = group_of
        self.groups = int(group_of.max()) + 1
        self.start = rem0.copy()  # step at which each slot's next request starts
        self.base = ctx0 + rem0  # context its previous request would reach there
        self.edges = np.arange(len(rngs) + 1) * batch
        self.count = 0  # requests started at steps 1 .. so far
        self._pending: list = []  # (step, group, jump) of dealt requests starting later

    def chunk(self, c0, c1, last, buffers):
        """Jumps of steps ``c0 .. c1 - 1``: ``(cells, None, None)``, ``cells`` of shape
        ``(groups, width)``, ``width > c1 - c0`` (the columns from ``c1 - c0`` on are
        discarded)."""
        steps = c1 - c0
        compiled = kernels.enabled()
        # row g holds group g's jumps at the chunk's steps, then (numpy) as many columns
        # again that collect the requests starting at or after its end (discarded), so
        # that a round of requests rarely needs clamping; integers, so the scatter-adds
        # are exact and fast. The compiled loops add no jump past the chunk's end.
        width = steps + 1 if compiled else 2 * steps + 1
        out = buffers.get("cells", self.groups * width)
        out[:] = 0
        row_of = self.group_of * width
        self._apply_pending(out, width, c0, c1)
        k = _round_length(steps, self.batch, self.moments, self.source.digits)
        start = self.start
        while True:
            act = np.flatnonzero(start < c1)
            if act.size == 0:
                return out.reshape(self.groups, width), None, None
            counts = np.diff(np.searchsorted(act, self.edges)).tolist()
            source = self.source
            if compiled and isinstance(source, _TraceRows) and source.packed:
                self._deal_trace_compiled(counts, k, act, row_of, c0, steps, last, out,
                                          buffers)
                continue
            prompt, decode = source.draw(self.rngs, counts, k, buffers)
            packed = _pack(prompt, decode, buffers) if compiled else None
            if packed is None:
                self._deal(prompt, decode, k, act, row_of, c0, steps, width, last, out,
                           buffers)
            else:
                self._deal_compiled(*packed, k, act, row_of, c0, steps, last, out, buffers)

    def _deal(self, prompt, decode, k, act, row_of, c0, steps, width, last, out, buffers):
        """A round in numpy: ``prompt`` and ``decode`` (a, k) are the requests of the
        active slots ``act``; their jumps go to ``out``, the slots' state moves on."""
        start, base = self.start, self.base
        a = act.size
        first, offset = start[act] - c0, row_of[act]
        # request 0 of slot i starts at first[i], jumping from base[i] to its prompt
        np.add.at(out, offset + first, (prompt[:, 0] - base[act]).astype(out.dtype))
        base[act] = prompt[:, -1] + decode[:, -1]
        jump = buffers.get("jump", a * k).reshape(a, k)
        when = renewal_block(first + offset, prompt, decode, jump,
                             buffers.get("when", a * k, np.int64).reshape(a, k))
        start[act] = when[:, -1] - offset + c0
        bound = offset + steps
        if not last:
            self._keep(when, jump, bound, act, offset, c0)
        # the round's first requests, and those of its blocks before the chunk's end
        lead = int(np.count_nonzero(when[:, -1] < bound))
        self.count += a - lead + _count_and_clamp(when, bound, offset + width)
        np.add.at(out, when.reshape(-1), jump.reshape(-1))

    def _pending_buffers(self, size, buffers):
        """Work arrays for the start steps, groups and jumps of the kept requests."""
        return tuple(buffers.get(name, size, np.int64)
                     for name in ("kept_step", "kept_group", "kept_jump"))

    def _kept(self, started, kept, pending):
        """Count a compiled round's started requests and keep its later ones."""
        self.count += started
        if kept:
            self._pending.append(tuple(x[:kept].copy() for x in pending))

    def _deal_compiled(self, entries, shift, k, act, row_of, c0, steps, last, out, buffers):
        """The same round in compiled code (:func:`afdlib.sim.kernels.deal_round`), from
        the requests packed one integer each."""
        pending = self._pending_buffers(0 if last else act.size * (k - 1), buffers)
        self._kept(*kernels.deal_round(entries, k, shift, act, row_of, self.group_of, c0,
                                       steps, self.base, self.start, out, not last, pending),
                   pending)

    def _deal_trace_compiled(self, counts, k, act, row_of, c0, steps, last, out, buffers):
        """A round of trace rows in compiled code: the rows of the bounded draws
        (:func:`afdlib.sim.kernels.trace_entries`), then the dealing."""
        source = self.source
        draws, starts = source.bounded_draws(self.rngs, counts, k, buffers)
        entries = buffers.get("entries", act.size * k, np.int64)
        kernels.trace_entries(draws, starts, source.n, source.digits, source.wide, entries)
        self._deal_compiled(entries, source.shift, k, act, row_of, c0, steps, last, out,
                            buffers)

    def _keep(self, when, jump, bound, act, offset, c0):
        """Keep the requests of the blocks that start at or after the chunk's end."""
        if when.shape[1] < 2:
            return
        cross = np.flatnonzero(when[:, -2] >= bound)  # rows are increasing
        if cross.size == 0:
            return
        sub = when[cross, :-1]
        i, j = np.nonzero(sub >= bound[cross, None])
        rows = cross[i]
        self._pending.append((sub[i, j] - offset[rows] + c0, self.group_of[act[rows]],
                              jump[rows, j].astype(np.int64)))

    def _apply_pending(self, out, width, c0, c1):
        """Add the kept requests that start in ``c0 .. c1 - 1``; keep the others."""
        if not self._pending:
            return
        step, group, jump = (np.concatenate(x) for x in zip(*self._pending, strict=True))
        now = step < c1
        np.add.at(out, group[now] * width + (step[now] - c0), jump[now].astype(out.dtype))
        self.count += int(np.count_nonzero(now))
        later = ~now
        self._pending = [(step[later], group[later], jump[later])] if later.any() else []


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




class _Replay:
    """The jumps of a trace replayed in order (earliest-free slot first), chunk by chunk.

    The freeing events of the slots are kept as sorted integer keys ``(step << shift) |
    slot``, so that their order is the order in which rows are handed out (ties to the
    lower slot). A round takes the first ``m`` events and gives them rows ``R .. R + m -
    1``; each such row ends at the event's step plus its decode steps, a new event.
    The first ``K`` events are handed out correctly when no new event of events ``0 ..
    j - 1`` precedes event ``j`` for every ``j < K``: a prefix-minimum test finds the
    largest such ``K``. The round hands out those ``K`` rows, merges their new events into
    the sorted keys, and the next round starts there. A round covers all events up to
    the first request that ends inside it, often several steps; everything in it is a
    numpy operation on at most ``r B`` values.
    """

    def __init__(self, workload, group_of, ctx0, rem0, row, steps, live):
        prompt = workload.prompt.astype(np.int64)
        decode = workload.decode.astype(np.int64)
        self.n, self.slots = int(prompt.size), int(ctx0.size)
        self.shift = max(1, (self.slots - 1).bit_length())
        self.mask = (1 << self.shift) - 1
        self.check_horizon(self.slots, steps, workload, rem0)
        # the rows cycled far enough that a round (at most all slots) never wraps
        reps = -(-(self.n + self.slots) // self.n) + 1
        self.prompt = np.tile(prompt, reps)
        cycled = np.tile(decode, reps)
        self.decode_key = cycled << self.shift
        self.reach = self.prompt + cycled
        self.finite = live is not None
        keys = (rem0 << self.shift) | np.arange(self.slots)
        self.pend = np.sort(keys[live] if self.finite else keys)
        self.base = ctx0 + rem0
        self.row = int(row)  # next row: modulo n when cycling, absolute for a finite trace
        self.group_of = group_of
        self.groups = int(group_of.max()) + 1
        self.count = 0
        self._guess = 64

    @staticmethod
    def check_horizon(slots, steps, workload, rem0) -> None:
        """Refuse a run whose event keys would not fit in an int64 (either engine)."""
        shift = max(1, (slots - 1).bit_length())
        horizon = steps + int(workload.decode.max()) + int(rem0.max(initial=0)) + 1
        if horizon >= 1 << (62 - shift):
            raise AfdInputError(f"replay of {slots} slots over {steps} steps is too long "
                                "for its event keys", parameter="steps")

    def chunk(self, c0, c1, last, buffers):
        """Jumps of steps ``c0 .. c1 - 1``: ``(cells, idle, freed)``, ``cells`` of shape
        ``(groups, c1 - c0)``; for a finite trace ``idle`` (groups, c1 - c0) holds minus
        the slots that go idle at each step, ``freed`` the slots freed at each step."""
        steps = c1 - c0
        groups, shift, mask = self.groups, self.shift, self.mask
        out = buffers.get("cells", groups * steps, np.int64)
        out[:] = 0
        idle = freed = None
        if self.finite:
            idle = buffers.get("idle", groups * steps, np.int64)
            freed = buffers.get("freed", steps, np.int64)
            idle[:] = 0
            freed[:] = 0
        row_of = self.group_of * steps - c0
        lim = c1 << shift
        pend, base, row, guess = self.pend, self.base, self.row, self._guess
        prompt, reach, decode_key = self.prompt, self.reach, self.decode_key
        never = np.iinfo(np.int64).max
        while pend.size:
            m = min(guess, pend.size)
            if pend[m - 1] >= lim:
                m = int(np.searchsorted(pend[:m], lim))
                if m == 0:
                    break
            head = pend[:m]
            new = head + decode_key[row:row + m]
            rows = m if not self.finite else min(m, self.n - row)
            if rows < m:
                new[rows:] = never  # no row left: these slots go idle, no new event
            if m > 1:
                low = np.minimum.accumulate(new)
                k = 1 + int(np.count_nonzero(low[:-1] > head[1:]))
            else:
                k = 1
            step, slot = head[:k] >> shift, head[:k] & mask
            cell = row_of[slot] + step
            took = min(k, rows)
            if took == k:
                np.add.at(out, cell, prompt[row:row + k] - base[slot])
                base[slot] = reach[row:row + k]
            else:
                jump = -base[slot]
                jump[:took] += prompt[row:row + took]
                np.add.at(out, cell, jump)
                base[slot[:took]] = reach[row:row + took]
                base[slot[took:]] = 0
                np.add.at(idle, cell[took:], -1)
            if self.finite:
                np.add.at(freed, step - c0, 1)
            self.count += took
            pend = np.concatenate((pend[k:], new[:took]))
            pend.sort()
            row += took
            if not self.finite:
                row %= self.n
            guess = 2 * m if k == m else k + k // 2 + 16
        self.pend, self.row, self._guess = pend, row, guess
        shape = (groups, steps)
        return (out.reshape(shape), None if idle is None else idle.reshape(shape), freed)


class _BitmapReplay:
    """:class:`_Replay` in compiled code (:func:`afdlib.sim.kernels.replay_steps`): step by
    step, the slots that free at each step read from a bitmap, in slot order.

    The events of the next ``2**b > max D`` steps are kept in a ring of bitmaps, one bit a
    slot and step. Same rows to the same slots at the same steps as :class:`_Replay`.
    """

    #: Largest ring (words of 64 slots times steps) worth its memory (32 MB).
    MAX_WORDS = 1 << 22

    @classmethod
    def fits(cls, workload, rem0) -> bool:
        """Whether the compiled loops are on and the ring of this run stays small."""
        if not kernels.enabled():
            return False
        ring = 1 << max(int(workload.decode.max()), int(rem0.max(initial=0))).bit_length()
        return ring * -(-rem0.size // 64) <= cls.MAX_WORDS

    def __init__(self, workload, group_of, ctx0, rem0, row, steps, live):
        _Replay.check_horizon(rem0.size, steps, workload, rem0)
        self.prompt = workload.prompt.astype(np.int64)
        self.decode = workload.decode.astype(np.int64)
        self.n, self.slots = int(self.prompt.size), int(ctx0.size)
        self.words = -(-self.slots // 64)
        ring = 1 << max(int(self.decode.max()), int(rem0.max(initial=0))).bit_length()
        self.mask = ring - 1
        self.bits = np.zeros(ring * self.words, dtype=np.uint64)
        slots = np.arange(self.slots)
        if live is not None:
            slots = slots[live]
        np.bitwise_or.at(self.bits, (rem0[slots] & self.mask) * self.words + slots // 64,
                         np.left_shift(np.uint64(1), (slots % 64).astype(np.uint64)))
        self.base = (ctx0 + rem0).astype(np.int64)
        self.row = int(row)
        self.finite = live is not None
        self.group_of = group_of
        self.groups = int(group_of.max()) + 1
        self.count = 0

    def chunk(self, c0, c1, last, buffers):
        """As :meth:`_Replay.chunk`."""
        steps = c1 - c0
        out = buffers.get("cells", self.groups * steps, np.int64)
        out[:] = 0
        idle = freed = None
        if self.finite:
            idle = buffers.get("idle", self.groups * steps, np.int64)
            freed = buffers.get("freed", steps, np.int64)
            idle[:] = 0
            freed[:] = 0
        self.row, handed = kernels.replay_steps(
            self.bits, self.words, self.mask, c0, c1, self.prompt, self.decode, self.base,
            self.row, self.n, self.finite, self.group_of * steps - c0, out, idle, freed)
        self.count += handed
        shape = (self.groups, steps)
        return (out.reshape(shape), None if idle is None else idle.reshape(shape), freed)
