"""The numba code behind :mod:`afdlib.sim.kernels` (imported by it, only where numba is).

See :func:`afdlib.sim.kernels.trace_entries` and :func:`afdlib.sim.kernels.deal_round` for
what the two functions compute; this module holds their compiled bodies only.
"""

from __future__ import annotations

import numba
import numpy as np

# cached beside this file; no bounds checks (the callers size every array), unsigned
# indices where they cannot be negative (no wraparound test either)
_jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@_jit
def _split(v, d, inv):
    """``(v // d, v % d)`` for ``0 <= v < 2**63`` from a floating-point quotient, exactly.

    The float quotient is within one of the exact one (``v < 2**63`` and ``v / d < 2**32``
    here), so one correction step makes it exact."""
    q = np.int64(v * inv)
    r = v - q * d
    if r < 0:
        q -= 1
        r += d
    elif r >= d:
        q += 1
        r -= d
    return q, r


@_jit
def _split_small(v, d, inv):
    """``(v // d, v % d)`` for ``0 <= v < d**2``, ``d < 2**16``, exactly and without a test.

    ``(v + 1/2) / d`` is at least ``1 / (2 d)`` from every integer, and its floating-point
    value (``v + 1/2`` is exact, two roundings of relative size ``2**-53``) is within
    ``(d + 1) 2**-51`` of it, less than that distance: its integer part is the quotient."""
    q = np.int64((v + 0.5) * inv)
    return q, v - q * d


@_jit
def trace_entries(draws, starts, n, digits, table, out):
    n2 = n * n
    inv1 = 1.0 / n
    inv2 = 1.0 / n2
    for b in range(starts.size - 1):
        s0 = starts[b]
        m = starts[b + 1] - s0
        at = s0 * digits
        # one loop per number of digits (the test stays out of the loops)
        if digits == 4:
            for t in range(m):
                # x = hi n^2 + lo, hi = d3 n + d2, lo = d1 n + d0
                hi, lo = _split(draws[np.uint64(s0 + t)], n2, inv2)
                h1, h0 = _split_small(hi, n, inv1)
                l1, l0 = _split_small(lo, n, inv1)
                i = np.uint64(at + t)
                out[i] = table[np.uint64(h1)]
                out[i + np.uint64(m)] = table[np.uint64(l1)]
                out[i + np.uint64(2 * m)] = table[np.uint64(h0)]
                out[i + np.uint64(3 * m)] = table[np.uint64(l0)]
        elif digits == 2:
            for t in range(m):
                x1, x0 = _split(draws[np.uint64(s0 + t)], n, inv1)
                i = np.uint64(at + t)
                out[i] = table[np.uint64(x1)]
                out[i + np.uint64(m)] = table[np.uint64(x0)]
        else:
            for t in range(m):
                out[np.uint64(at + t)] = table[np.uint64(draws[np.uint64(s0 + t)])]


@_jit
def deal_round(entries, k, shift, act, row_of, group_of, c0, steps, base, start, out,
               keep, p_step, p_group, p_jump):
    mask = (np.int64(1) << shift) - 1
    started = 0
    kept = 0
    for i in range(act.size):
        s = act[i]
        row = row_of[s]
        at = i * k
        t = start[s] - c0  # the first request's start, inside the chunk
        e = entries[at]
        p = e >> shift
        d = e & mask
        out[np.uint64(row + t)] += p - base[s]
        j = 1
        while j < k:  # request j starts where request j - 1 ends
            t += d
            if t >= steps:
                break
            e = entries[at + j]
            following = e >> shift
            out[np.uint64(row + t)] += following - (p + d)
            p = following
            d = e & mask
            j += 1
        started += j
        if j < k:  # request j (t >= steps) and those after it start after the chunk
            if keep:
                while j < k:
                    e = entries[at + j]
                    following = e >> shift
                    p_step[kept] = t + c0
                    p_group[kept] = group_of[s]
                    p_jump[kept] = following - (p + d)
                    kept += 1
                    p = following
                    d = e & mask
                    j += 1
                    t += d
                t -= d  # back to the last request's start
            else:
                for jj in range(j, k - 1):
                    t += entries[at + jj] & mask
                e = entries[at + k - 1]
                p = e >> shift
                d = e & mask
        base[s] = p + d
        start[s] = t + d + c0
    return started, kept


# the index of a 64-bit word's lowest set bit: de Bruijn multiplication and a table
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_LOWEST_BIT = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _LOWEST_BIT[((1 << _i) * 0x03F79D71B4CB0A89 % (1 << 64)) >> 58] = _i


@_jit
def replay_steps(bits, words, mask, c0, c1, prompt, decode, base, row, n, finite, row_of,
                 out, idle, freed):
    handed = 0
    one = np.uint64(1)
    for s in range(c0, c1):
        bucket = (s & mask) * words
        for w in range(words):
            word = bits[bucket + w]
            if word == 0:
                continue
            bits[bucket + w] = 0  # no new event lands in this step's bucket (D >= 1)
            while word != 0:
                low = word & (~word + one)
                word ^= low
                slot = w * 64 + _LOWEST_BIT[(low * _DEBRUIJN) >> np.uint64(58)]
                cell = np.uint64(row_of[slot] + s)
                if finite:
                    freed[s - c0] += 1
                    if row >= n:  # the trace is used up: the slot goes idle
                        out[cell] -= base[slot]
                        base[slot] = 0
                        idle[cell] -= 1
                        continue
                p = prompt[row]
                d = decode[row]
                out[cell] += p - base[slot]
                base[slot] = p + d
                bits[((s + d) & mask) * words + slot // 64] |= one << np.uint64(slot % 64)
                handed += 1
                row += 1
                if row == n and not finite:
                    row = 0
    return row, handed


@_jit
def pipeline_steps(attention, comm, ffn, worker_free, back, free, done):
    steps, r, m = attention.shape
    ready = np.empty(m)
    for s in range(steps):
        for k in range(m):
            ready[k] = -np.inf
        for w in range(r):
            # worker w serves its parts k = 0 .. m-1 in order, each once it is back
            f = worker_free[w]
            for k in range(m):
                b = back[k]
                f = (f if f > b else b) + attention[s, w, k]
                if f > ready[k]:
                    ready[k] = f  # all r parts of microbatch k are done
            worker_free[w] = f
        for stage in range(3):  # dispatch, FFN, combine: each serves k = 0 .. m-1 in order
            t = free[stage]
            for k in range(m):
                u = ready[k]
                t = (t if t > u else u) + (ffn[k] if stage == 1 else comm[k])
                ready[k] = t
            free[stage] = t
        for k in range(m):
            back[k] = ready[k]
        done[s] = free[2]
