"""Compiled inner loops of the simulator (numba), used where numba is installed.

For short requests (a few tens of decode steps) a run is mostly per-request work: turning
bounded random draws into trace rows and dealing each round of requests to its slots
(:class:`afdlib.sim.loads.LoadStream`). In numpy that takes about ten passes over the
round's arrays (digit split, gather, unpacking, the jumps, a cumulative sum per slot, a
scatter-add, the count and clamp at the chunk's end); here it takes two. A replayed trace
and the pipelined engine's recursion are sequential by nature, and numpy runs them in
rounds or in a Python loop over steps; here they are plain loops.

* :func:`trace_entries`: the base-``n`` digits of each draw (the layout of
  :func:`afdlib.sim.loads.uniform_rows`) looked up in a trace's packed table, one integer
  ``(P << shift) | D`` per request;
* :func:`deal_round`: each slot's requests back to back from its next start step, the
  load jump of each request that starts inside the chunk added to its group's cell, the
  others kept for later chunks (or dropped at the run's end);
* :func:`replay_steps`: a trace replayed in order, step by step, the slots that free at a
  step found in a bitmap of that step (so in slot order) instead of numpy's rounds of
  sorted events;
* :func:`pipeline_steps`: the pipelined engine's max-plus recursion, step after step (the
  same floating-point operations in the same order as its Python loop).

They are the compiled twins of numpy and Python code in :mod:`afdlib.sim.loads` and
:mod:`afdlib.sim.pipeline`, which runs where numba is absent (in the browser, under
Pyodide) or when the environment variable ``AFDLIB_NUMBA`` is ``0``. The loads are
integer arithmetic on the same draws of the same generators, and the recursion does the
same floating-point operations in the same order, so both give the same results, bit for
bit (``tests/test_sim_kernels.py`` and ``tests/test_sim_loads.py`` check either way
against plain walks and against each other).

numba is imported on first use (not with :mod:`afdlib`), and the compiled code is cached
beside :mod:`afdlib.sim._jit` (which holds it), so a later process loads it in about a
tenth of a second.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np

__all__ = ["compiled", "deal_round", "enabled", "pipeline_steps", "replay_steps",
           "trace_entries", "use_compiled"]

_switch = {"on": os.environ.get("AFDLIB_NUMBA", "1").strip() != "0"}


def use_compiled(on: bool) -> bool:
    """Turn the compiled loops on or off for this process; returns the previous setting.

    Off, or with numba absent, :mod:`afdlib.sim.loads` runs its numpy code (same results).
    """
    previous = _switch["on"]
    _switch["on"] = bool(on)
    return previous


def enabled() -> bool:
    """Whether the load stream runs the compiled loops (switched on and numba importable)."""
    return _switch["on"] and compiled() is not None


@cache
def compiled():
    """The compiled functions ``(trace_entries, deal_round, replay_steps,
    pipeline_steps)``, or None without numba."""
    try:
        from afdlib.sim import _jit
    except ImportError:  # no numba (e.g. Pyodide): the numpy code runs instead
        return None
    return _jit.trace_entries, _jit.deal_round, _jit.replay_steps, _jit.pipeline_steps


def trace_entries(draws, starts, n: int, digits: int, table, out) -> None:
    """Packed trace rows of the requests of a round, from bounded draws (in place).

    Parameters
    ----------
    draws : ndarray of int64
        The draws of the round's busy workers, worker after worker: those of busy worker
        ``b`` are ``draws[starts[b]:starts[b + 1]]``, each uniform on ``0 .. n**digits - 1``.
    starts : ndarray of int64, shape (busy + 1,)
        Offsets of the workers' draws in ``draws`` (``starts[0] = 0``).
    n : int
        Rows of the trace, ``n**digits < 2**63`` (see :func:`afdlib.sim.loads.row_digits`).
    digits : {1, 2, 4}
        Rows per draw: its base-``n`` digits.
    table : ndarray of int64, shape (n,)
        The trace's rows packed as ``(P << shift) | D``.
    out : ndarray of int64, shape (digits * starts[-1],)
        Output: ``table[row]`` of each request, laid out as
        :func:`afdlib.sim.loads.uniform_rows` lays out its rows (worker ``b``'s block
        holds digit ``q`` of each of its ``m`` draws in a run of ``m`` entries; digits in
        the order 3, 1, 2, 0 for four, 1, 0 for two).
    """
    compiled()[0](draws, np.asarray(starts, dtype=np.int64), n, digits, table, out)


def deal_round(entries, k: int, shift: int, act, row_of, group_of, c0: int, steps: int,
               base, start, out, keep: bool, pending) -> tuple[int, int]:
    """Deal ``k`` requests to each active slot: their load jumps inside the chunk.

    Slot ``act[i]`` runs the requests ``entries[i*k:(i+1)*k]`` (packed ``(P << shift) |
    D``) back to back from step ``start[act[i]]``. The first one's jump is its prompt
    minus ``base`` (the context the previous request would have reached), each later
    one's the difference of its prompt and its predecessor's ``P + D``; a jump at step
    ``c0 + t`` with ``t < steps`` is added to ``out[row_of[slot] + t]``.

    Parameters
    ----------
    entries : ndarray of int64, shape (len(act) * k,)
    k : int
        Requests per slot, >= 1.
    shift : int
        Bits of ``D`` in an entry.
    act : ndarray of int64
        The slots that get requests (their next start is before the chunk's end).
    row_of : ndarray of int64
        Offset in ``out`` of each slot's group row.
    group_of : ndarray of int64
        Group of each slot.
    c0, steps : int
        First step of the chunk and its length.
    base, start : ndarray of int64, shape (slots,)
        Each slot's continued context and next start step (absolute); **updated** to the
        values after the dealt requests.
    out : ndarray of int32 or int64
        The chunk's cells (its groups' rows of at least ``steps`` columns); **added to**.
    keep : bool
        Keep the requests that start at or after the chunk's end (else they are dropped:
        the run ends with this chunk).
    pending : tuple of three ndarrays of int64, each of at least ``len(act) * (k - 1)``
        entries when ``keep``
        Output: absolute start step, group and jump of each kept request.

    Returns
    -------
    started : int
        Requests dealt that start inside the chunk (those of ``pending`` excluded).
    kept : int
        Entries written to ``pending``.
    """
    return compiled()[1](entries, k, shift, act, row_of, group_of, c0, steps, base, start,
                         out, keep, *pending)


def replay_steps(bits, words: int, mask: int, c0: int, c1: int, prompt, decode, base,
                 row: int, n: int, finite: bool, row_of, out, idle, freed) -> tuple[int, int]:
    """Hand out a trace's rows in order over steps ``c0 .. c1 - 1`` (in place).

    At each step the slots that free (their request's last decode step was the step
    before) take the next rows, lowest slot first: the slot's load jumps from ``base``
    (the context its previous request would have reached) to the row's prompt, and it
    frees again ``D`` steps later.

    Parameters
    ----------
    bits : ndarray of uint64, shape ((mask + 1) * words,)
        The freeing events: bit ``slot % 64`` of word ``(step & mask) * words + slot //
        64`` is set when ``slot`` frees at ``step``; **updated**. Every event lies fewer
        than ``mask + 1`` steps ahead (``mask + 1`` exceeds the longest decode).
    words : int
        Words per step, ``ceil(slots / 64)``.
    mask : int
        Steps in the ring minus one (a power of two minus one).
    c0, c1 : int
        The chunk's steps.
    prompt, decode : ndarray of int64, shape (n,)
        The trace's rows.
    base : ndarray of int64, shape (slots,)
        Continued contexts; **updated** (0 for an idle slot).
    row : int
        Next row (modulo ``n`` when cycling; a finite trace is used up at ``n``).
    n : int
        Rows of the trace.
    finite : bool
        Hand out the rows once: a slot that frees after the last one goes idle.
    row_of : ndarray of int64, shape (slots,)
        ``group * (c1 - c0) - c0`` for each slot's group: the cell of step ``s`` is
        ``row_of[slot] + s``.
    out : ndarray of int64, shape (groups * (c1 - c0),)
        The chunk's jumps; **added to**.
    idle : ndarray of int64, or None
        With ``finite``: minus the slots that go idle, by cell; **added to**.
    freed : ndarray of int64, or None
        With ``finite``: slots freed at each step of the chunk; **added to**.

    Returns
    -------
    row : int
        The next row after the chunk.
    handed : int
        Rows handed out in the chunk.
    """
    dummy = np.zeros(1, dtype=np.int64)
    return compiled()[2](bits, words, mask, c0, c1, prompt, decode, base, row, n, finite,
                         row_of, out, dummy if idle is None else idle,
                         dummy if freed is None else freed)


def pipeline_steps(attention, comm, ffn, worker_free, back, free, done) -> None:
    """The microbatch pipeline's completion times, step after step (in place).

    The recursion of :func:`afdlib.sim.pipeline.pipeline_completion_times`: each worker
    serves its microbatches' parts in order once each is back, then the dispatch link,
    the FFN and the combine link serve the microbatches in order, each service starting at
    the later of the resource's and the microbatch's ready times.

    Parameters
    ----------
    attention : ndarray of float64, shape (steps, r, m)
        Attention time of each part (s).
    comm, ffn : ndarray of float64, shape (m,)
        Transfer and FFN time of each microbatch (s).
    worker_free : ndarray of float64, shape (r,)
        When each worker is free; **updated**.
    back : ndarray of float64, shape (m,)
        When each microbatch is back at the workers; **updated**.
    free : ndarray of float64, shape (3,)
        When the dispatch link, the FFN and the combine link are free; **updated**.
    done : ndarray of float64, shape (steps,)
        Output: when each step's last microbatch is back (s).
    """
    compiled()[3](attention, comm, ffn, worker_free, back, free, done)
