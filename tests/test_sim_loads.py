"""Exact load paths: the renewal bookkeeping against slot-by-slot simulation, and the
stationary load moments against theta and sigma^2."""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from afdlib.costs import StepCoefficients
from afdlib.errors import AfdInputError
from afdlib.sim import Bundle, kernels, load_path, simulate_reference, simulate_step
from afdlib.sim import loads as loads_module
from afdlib.sim.bundle import worker_seeds
from afdlib.sim.loads import LoadStream, renewal_block, row_digits, uniform_rows
from afdlib.traces import read_trace
from afdlib.workload import (
    Deterministic,
    Geometric,
    IndependentLengths,
    JointLengths,
    Uniform,
    load_stats,
    sample_stationary_slots,
    sample_stationary_slots_of,
)
from tests.conftest import public_trace_file

COEFFS = StepCoefficients(alpha_A=1e-8, beta_A=1e-3, alpha_F=1e-6, beta_F=2e-3)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.sampled_from([np.int64, np.int32]))
def test_renewal_block_matches_a_slot_by_slot_walk(data, dtype):
    a = data.draw(st.integers(1, 5))
    k = data.draw(st.integers(1, 6))
    first = np.array(data.draw(st.lists(st.integers(1, 30), min_size=a, max_size=a)))
    prompt = np.array(data.draw(st.lists(st.integers(0, 40), min_size=a * k, max_size=a * k)))
    decode = np.array(data.draw(st.lists(st.integers(1, 9), min_size=a * k, max_size=a * k)))
    prompt, decode = prompt.reshape(a, k).astype(dtype), decode.reshape(a, k).astype(dtype)
    work = decode.copy()
    jump = np.full((a, k), -12345, dtype=dtype)
    when = renewal_block(first, prompt, work, jump)
    assert when.dtype == np.int64 and when.shape == (a, k)
    for i in range(a):
        # walk slot i step by step: request j runs its D_j steps from t, its context
        # at its last step is P_j + D_j - 1, so the next request jumps from P_j + D_j
        t, expected = int(first[i]), []
        for j in range(k):
            t += int(decode[i, j])
            nxt = int(prompt[i, j + 1]) - int(prompt[i, j] + decode[i, j]) if j < k - 1 else 0
            expected.append((t, nxt))
        got = list(zip(when[i].tolist(), jump[i].tolist(), strict=True))
        assert got == expected


def _slot_walk_loads(prompt_rows, decode_rows, n_slots, steps):
    """Loads of one worker whose slots take trace rows in order (pure Python)."""
    rows = iter(zip(prompt_rows, decode_rows, strict=True))
    ctx, rem = [], []
    for _ in range(n_slots):
        p, d = next(rows)
        ctx.append(p)
        rem.append(d)
    out = []
    for _ in range(steps):
        out.append(sum(ctx))
        for i in range(n_slots):
            ctx[i] += 1
            rem[i] -= 1
            if rem[i] == 0:
                ctx[i], rem[i] = next(rows)
    return out


@settings(max_examples=40, deadline=None)
@given(prompts=st.lists(st.integers(0, 60), min_size=1, max_size=12),
       decodes=st.lists(st.integers(1, 7), min_size=12, max_size=12),
       batch=st.integers(1, 4), steps=st.integers(1, 40))
def test_replayed_trace_loads_equal_a_plain_slot_walk(prompts, decodes, batch, steps):
    decodes = decodes[:len(prompts)]
    w = JointLengths(np.array(prompts), np.array(decodes))
    path = load_path(w, worker_seeds(0, 1), batch, steps, init="cold", replay=True)
    n = len(prompts)
    cycle = [prompts[i % n] for i in range(10_000)], [decodes[i % n] for i in range(10_000)]
    expected = _slot_walk_loads(*cycle, batch, steps)
    assert path.loads.shape == (1, steps)
    assert path.loads[0].tolist() == expected


@pytest.mark.parametrize("name", ["azure2023_code", "mooncake_conversation"])
def test_replay_matches_the_reference_loop_exactly_on_a_real_trace(name):
    w = JointLengths.from_trace(read_trace(public_trace_file(name)))
    bundle = Bundle(3, 16, COEFFS)
    fast = simulate_step(w, bundle, steps=1500, init="cold", replay=True, record=True)
    ref = simulate_reference(w, bundle, steps=1500, init="cold", replay=True, record=True)
    np.testing.assert_array_equal(fast.records.loads, ref.records.loads)
    assert fast.requests == ref.requests
    assert fast.mean_step_time == pytest.approx(ref.mean_step_time, rel=1e-12)


def test_deterministic_lengths_give_the_sawtooth_exactly():
    # every slot starts P=5, D=4 at step 0: the load is B*(5 + s mod 4)
    w = IndependentLengths(Deterministic(5), Deterministic(4))
    path = load_path(w, worker_seeds(1, 2), 7, 50, init="cold")
    s = np.arange(50)
    np.testing.assert_array_equal(path.loads, np.vstack([7 * (5 + s % 4)] * 2))
    assert path.requests == 2 * 7 * (49 // 4)


def test_microbatch_groups_sum_to_the_worker_loads():
    w = IndependentLengths(Geometric(30, start=0), Geometric(8))
    seeds = worker_seeds(4, 3)
    whole = load_path(w, seeds, 10, 300)
    groups = load_path(w, seeds, 10, 300, slot_group=np.repeat([0, 1, 2], [4, 3, 3]))
    assert groups.loads.shape == (9, 300)
    np.testing.assert_array_equal(groups.group_sizes, [4, 3, 3] * 3)
    np.testing.assert_allclose(groups.loads.reshape(3, 3, 300).sum(axis=1), whole.loads)


def _moment_check(workload, n_workers, batch, steps, seed):
    """Per-worker time averages of T and (T - B theta)^2, independent across workers."""
    stats = load_stats(workload)
    path = load_path(workload, worker_seeds(seed, n_workers), batch, steps, init="stationary")
    mean_b = batch * stats.theta
    first = path.loads.mean(axis=1)  # one estimate of B*theta per worker
    second = ((path.loads - mean_b) ** 2).mean(axis=1)  # of B*sigma^2
    return stats, first, second


@pytest.mark.parametrize("workload, steps", [
    (IndependentLengths(Geometric(100, start=0), Geometric(40)), 2000),
    (IndependentLengths(Uniform(0, 300), Uniform(1, 60)), 2000),
])
def test_stationary_worker_load_has_mean_b_theta_and_variance_b_sigma2(workload, steps):
    # Workers are independent, so the spread of their time averages gives an honest
    # standard error; the tolerance is 4.5 standard errors (a false alarm about 1 in 10^5).
    batch, n_workers = 8, 200
    stats, first, second = _moment_check(workload, n_workers, batch, steps, seed=11)
    se1 = first.std(ddof=1) / math.sqrt(n_workers)
    se2 = second.std(ddof=1) / math.sqrt(n_workers)
    assert abs(first.mean() - batch * stats.theta) < 4.5 * se1
    assert abs(second.mean() - batch * stats.load_variance) < 4.5 * se2
    # the check has teeth: the mean context of a request, E[P + (D-1)/2], which forgets
    # that long requests occupy slots longer (no length bias), is rejected
    unbiased = workload.prompt.mean + (workload.decode.mean - 1) / 2
    assert abs(first.mean() - batch * unbiased) > 4.5 * se1


def test_stationary_moments_on_a_real_trace():
    w = JointLengths.from_trace(read_trace(public_trace_file("azure2023_conv")))
    batch, n_workers = 4, 400
    stats, first, second = _moment_check(w, n_workers, batch, 1500, seed=5)
    se1 = first.std(ddof=1) / math.sqrt(n_workers)
    se2 = second.std(ddof=1) / math.sqrt(n_workers)
    assert abs(first.mean() - batch * stats.theta) < 4.5 * se1
    assert abs(second.mean() - batch * stats.load_variance) < 4.5 * se2


@pytest.mark.parametrize("workload", [
    IndependentLengths(Geometric(200, start=0), Geometric(100)),
    JointLengths(np.array([5, 900, 40, 7]), np.array([3, 1, 250, 12])),
])
def test_stationary_slots_of_many_generators_are_those_of_each_in_turn(workload):
    # the engines' initial state, drawn for all workers at once, is what each worker's
    # generator gives alone: a length-biased request, then a uniform position in it
    many = [np.random.default_rng(s) for s in range(4)]
    ctx, rem = sample_stationary_slots_of(workload, many, 50)
    expected_ctx, expected_rem = [], []
    for s in range(4):
        rng = np.random.default_rng(s)
        p, d = workload.sample_length_biased_requests(rng, 50)
        j = np.minimum(np.floor(rng.random(50) * d).astype(np.int64), d - 1)
        expected_ctx.append(p + j)
        expected_rem.append(d - j)
    assert np.array_equal(ctx, np.concatenate(expected_ctx))
    assert np.array_equal(rem, np.concatenate(expected_rem))
    assert sample_stationary_slots_of(workload, [], 50)[0].size == 0


def test_stationary_start_is_stationary_at_step_zero_and_cold_start_is_not():
    w = IndependentLengths(Geometric(200, start=0), Geometric(100))
    stats = load_stats(w)
    n_workers, batch = 400, 4
    warm = load_path(w, worker_seeds(2, n_workers), batch, 3, init="stationary")
    cold = load_path(w, worker_seeds(2, n_workers), batch, 3, init="cold")
    sd = math.sqrt(batch * stats.load_variance / n_workers)
    assert abs(warm.loads[:, 0].mean() - batch * stats.theta) < 4.5 * sd
    # cold: each slot holds a fresh request, mean load B*E[P] < B*theta
    assert abs(cold.loads[:, 0].mean() - batch * stats.mean_prompt) < 4.5 * math.sqrt(
        batch * w.prompt.variance / n_workers)
    assert cold.loads[:, 0].mean() < batch * stats.theta - 10 * sd


def test_seeds_reproduce_and_workers_are_shared_across_ratios():
    w = IndependentLengths(Geometric(50, start=0), Geometric(20))
    a = load_path(w, worker_seeds(9, 3), 5, 400)
    b = load_path(w, worker_seeds(9, 3), 5, 400)
    c = load_path(w, worker_seeds(10, 3), 5, 400)
    d = load_path(w, worker_seeds(9, 6), 5, 400)
    np.testing.assert_array_equal(a.loads, b.loads)
    assert not np.array_equal(a.loads, c.loads)
    np.testing.assert_array_equal(a.loads, d.loads[:3])


def test_load_path_rejects_bad_input():
    w = IndependentLengths(Geometric(50, start=0), Geometric(20))
    with pytest.raises(AfdInputError, match="replay needs a trace"):
        load_path(w, worker_seeds(0, 1), 4, 10, replay=True)
    with pytest.raises(AfdInputError, match="steps"):
        load_path(w, worker_seeds(0, 1), 4, 0)
    with pytest.raises(AfdInputError, match="batch"):
        load_path(w, worker_seeds(0, 1), 0, 10)
    with pytest.raises(AfdInputError, match="slot_group"):
        load_path(w, worker_seeds(0, 1), 4, 10, slot_group=[0, 1])
    with pytest.raises(AfdInputError, match="not a workload"):
        load_path("geometric", worker_seeds(0, 1), 4, 10)


# ---------------------------------------------------------------------------
# the resampling fast path: exact uniform rows, several per draw, and the bookkeeping
# of rounds of requests against a plain walk of the requests each slot receives
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 8819, 55108, 55109, 3037000499, 3037000500])
@pytest.mark.parametrize("size", [0, 1, 6, 1001])
def test_uniform_rows_are_the_base_n_digits_of_bounded_draws(n, size):
    got = uniform_rows(np.random.default_rng(3), n, size)
    d = row_digits(n)
    assert d == (4 if n <= 55108 else 2 if n <= 3037000499 else 1)
    # oracle in Python integers: the digits of the same bounded draws, in the
    # documented layout (digit q of every draw in a run; 3, 1, 2, 0 for d = 4)
    m = -(-size // d)
    draws = [int(x) for x in np.random.default_rng(3).integers(0, n ** d, m)]
    order = {4: [3, 1, 2, 0], 2: [1, 0], 1: [0]}[d]
    expected = [(x // n ** q) % n for q in order for x in draws][:size]
    assert got.dtype == np.int64 and got.tolist() == expected


def test_uniform_rows_are_uniform_and_independent():
    # n = 7: 4 digits per draw; counts of single values, of the digits of one draw
    # (pairs at distance m) and of neighbours in the layout (pairs at distance 1) must
    # all be uniform. Fixed seed; a false alarm at p < 1e-4 would need bad luck.
    n, m = 7, 50_000
    x = uniform_rows(np.random.default_rng(11), n, 4 * m)
    assert stats.chisquare(np.bincount(x, minlength=n)).pvalue > 1e-4
    for a, b in [(x[:m], x[m:2 * m]), (x[2 * m:3 * m], x[3 * m:]), (x[:-1:2], x[1::2])]:
        pairs = np.bincount(a * n + b, minlength=n * n)
        assert stats.chisquare(pairs).pvalue > 1e-4
    # the check has teeth: digits of x // 7 (a biased split) are not uniform
    biased = (x[:m] * n + x[m:2 * m]) // 6 % n
    assert stats.chisquare(np.bincount(biased, minlength=n)).pvalue < 1e-4


@contextlib.contextmanager
def _compiled(on):
    """The compiled loops on or off inside the block."""
    previous = kernels.use_compiled(on)
    try:
        assert kernels.enabled() == on  # numba is a dependency of the tests
        yield
    finally:
        kernels.use_compiled(previous)


def _dealt(compiled, *args, **kwargs):
    """``load_path(*args, **kwargs)`` with the compiled loops on or off."""
    with _compiled(compiled):
        return load_path(*args, **kwargs)


def _walk_resampled(workload, seeds, batch, steps, slot_group, init, chunk=None):
    """Loads and renewals from a plain walk of the requests each slot is dealt.

    The dealing follows the engine's documented stream: each worker draws its own
    initial state, then, chunk by chunk of ``chunk`` steps (one chunk by default), in
    rounds every slot of it still short of the chunk's end gets the next ``k`` requests
    of its worker's stream (``k`` from the chunk's length; trace rows from
    :func:`uniform_rows`, or ``sample_requests`` of the laws), slots in order. Everything
    else (start steps, contexts, jumps, sums) is walked step by step in plain Python.
    """
    trace = isinstance(workload, JointLengths)
    digits = row_digits(len(workload)) if trace else 1
    chunk = steps if chunk is None else chunk
    ends = [min(steps, c0 + chunk) for c0 in range(0, steps, chunk)]
    groups = (max(slot_group) + 1) * len(seeds)
    loads = [[0] * steps for _ in range(groups)]
    requests = 0
    for w, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        if init == "stationary":
            ctx, rem = sample_stationary_slots(workload, rng, batch)
        else:
            ctx, rem = workload.sample_requests(rng, batch)
        ctx, rem = [int(c) for c in ctx], [int(r) for r in rem]
        queue = [[] for _ in range(batch)]
        free = list(rem)  # step at which the slot's next request would start
        for c0, c1 in zip([0, *ends[:-1]], ends, strict=True):
            k = loads_module._round_length(c1 - c0, batch,
                                           loads_module._decode_moments(workload), digits)
            while any(f < c1 for f in free):
                active = [i for i in range(batch) if free[i] < c1]
                if trace:
                    rows = uniform_rows(rng, len(workload), len(active) * k)
                    p, d = workload.prompt[rows], workload.decode[rows]
                else:
                    p, d = workload.sample_requests(rng, len(active) * k)
                for a, i in enumerate(active):
                    for j in range(a * k, (a + 1) * k):
                        queue[i].append((int(p[j]), int(d[j])))
                        free[i] += int(d[j])
        nxt = [0] * batch
        for s in range(steps):
            for i in range(batch):
                loads[w * (max(slot_group) + 1) + slot_group[i]][s] += ctx[i]
                ctx[i] += 1
                rem[i] -= 1
                if rem[i] == 0 and s + 1 < steps:
                    ctx[i], rem[i] = queue[i][nxt[i]]
                    nxt[i] += 1
                    requests += 1
    return loads, requests


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@settings(max_examples=60, deadline=None)
@given(data=st.data(), workers=st.integers(1, 3), batch=st.integers(1, 5),
       steps=st.integers(1, 50), init=st.sampled_from(["stationary", "cold"]),
       kind=st.sampled_from(["trace", "wide trace", "unpacked trace", "laws", "huge laws"]))
def test_resampled_loads_equal_a_walk_of_the_dealt_requests(compiled, data, workers, batch,
                                                            steps, init, kind):
    # "wide": prompts too large for the int32 path; "unpacked": prompt and decode too
    # large to share one int64 (the compiled loops then leave the trace to numpy; "huge
    # laws" the same for a round of drawn requests); short runs with long requests also
    # exercise the rounds that run past a row's discard columns (clamped)
    if kind == "laws":
        w = IndependentLengths(Uniform(0, 30), Geometric(4))
    elif kind == "huge laws":
        w = IndependentLengths(Deterministic(2 ** 58), Geometric(4))
    else:
        n = data.draw(st.integers(1, 6))
        prompt = np.array(data.draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)))
        decode = np.array(data.draw(st.lists(st.integers(1, 8), min_size=n, max_size=n)))
        if kind == "wide trace":
            prompt = prompt + 2 ** 35
        elif kind == "unpacked trace":  # one long request widens the decode field
            prompt, decode = prompt + 2 ** 45, np.append(decode, 2 ** 20)
            prompt = np.append(prompt, 0)
        w = JointLengths(prompt, decode)
    slot_group = data.draw(st.lists(st.integers(0, 2), min_size=batch, max_size=batch))
    seeds = worker_seeds(data.draw(st.integers(0, 10 ** 6)), workers)
    path = _dealt(compiled, w, seeds, batch, steps, slot_group=slot_group, init=init)
    loads, requests = _walk_resampled(w, seeds, batch, steps, slot_group, init)
    assert path.loads.tolist() == [[float(x) for x in row] for row in loads]
    assert path.requests == requests


@pytest.mark.parametrize("prompt, decode, batch, steps, init", [
    # prompt and decode too large to share an int64 (two gathers), one long request
    ([3, 5, 2 ** 45 + 1, 0], [2, 3, 4, 2 ** 20], 3, 30, "cold"),
    # long requests, short run: the last round runs far past the discard columns
    ([0, 7, 1], [1, 40, 90], 4, 6, "cold"),
    # many rounds with different numbers of active slots per worker
    ([1, 2, 3, 4, 5], [1, 1, 2, 5, 9], 5, 400, "stationary"),
])
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
def test_resampled_loads_equal_the_walk_in_corner_cases(prompt, decode, batch, steps, init,
                                                        compiled):
    w = JointLengths(np.array(prompt), np.array(decode))
    seeds = worker_seeds(17, 3)
    group = [i % 2 for i in range(batch)]
    path = _dealt(compiled, w, seeds, batch, steps, slot_group=group, init=init)
    loads, requests = _walk_resampled(w, seeds, batch, steps, group, init)
    assert path.loads.tolist() == [[float(x) for x in row] for row in loads]
    assert path.requests == requests > 0


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
def test_loads_past_two_to_the_53_are_exact(compiled):
    # the groups' first loads were once summed with float weights: 2**58 + 18 became 2**58
    w = IndependentLengths(Deterministic(2 ** 58), Geometric(4))
    seeds, group = worker_seeds(93735, 2), [0, 0, 1, 0, 0]
    with _compiled(compiled):
        chunk = next(iter(LoadStream(w, seeds, 5, 5, slot_group=group)))
    loads, _ = _walk_resampled(w, seeds, 5, 5, group, "stationary")
    assert chunk.loads.tolist() == loads
    assert max(max(row) for row in loads) > 2 ** 60  # the ints compared, not their floats


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@settings(max_examples=60, deadline=None)
@given(data=st.data(), workers=st.integers(1, 3), batch=st.integers(1, 5),
       steps=st.integers(2, 60), init=st.sampled_from(["stationary", "cold"]),
       kind=st.sampled_from(["trace", "wide trace", "laws"]))
def test_chunked_resampled_loads_equal_a_walk_dealt_chunk_by_chunk(compiled, data, workers,
                                                                   batch, steps, init, kind):
    # chunks of 1 .. steps steps: the slots' state, the groups' loads and the requests
    # dealt in one chunk that start in a later one carry over exactly
    if kind == "laws":
        w = IndependentLengths(Uniform(0, 30), Geometric(4))
    else:
        n = data.draw(st.integers(1, 6))
        prompt = np.array(data.draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)))
        decode = np.array(data.draw(st.lists(st.integers(1, 12), min_size=n, max_size=n)))
        w = JointLengths(prompt + (2 ** 35 if kind == "wide trace" else 0), decode)
    chunk = data.draw(st.integers(1, steps))
    group = data.draw(st.lists(st.integers(0, 2), min_size=batch, max_size=batch))
    seeds = worker_seeds(data.draw(st.integers(0, 10 ** 6)), workers)
    path = _dealt(compiled, w, seeds, batch, steps, slot_group=group, init=init,
                  chunk_steps=chunk)
    loads, requests = _walk_resampled(w, seeds, batch, steps, group, init, chunk=chunk)
    assert path.loads.tolist() == [[float(x) for x in row] for row in loads]
    assert path.requests == requests


def test_a_run_of_one_chunk_is_dealt_as_a_single_pass():
    # runs up to SINGLE_CHUNK_STEPS steps are one chunk: they keep the single-pass stream
    w = IndependentLengths(Geometric(30, start=0), Geometric(9))
    seeds = worker_seeds(3, 2)
    whole = load_path(w, seeds, 6, 700)
    assert np.array_equal(whole.loads, load_path(w, seeds, 6, 700, chunk_steps=700).loads)
    assert not np.array_equal(whole.loads, load_path(w, seeds, 6, 700, chunk_steps=350).loads)
    assert loads_module.SINGLE_CHUNK_STEPS >= 200_000  # the study's and chapters' longest
    assert LoadStream(w, seeds, 6, loads_module.SINGLE_CHUNK_STEPS + 1).chunk_steps == (
        loads_module.CHUNK_STEPS)


def _replay_walk(prompt, decode, slots, steps, group, *, finite=False):
    """Per-group loads and active slots, slots freed per step and requests started, of a
    trace replayed in order, walked step by step in plain Python.

    At step 0 slot i holds row i (cycling; for a finite trace: idle if there is none).
    A slot whose request ended at the previous step takes the next row, slots in index
    order; with a finite trace and no row left it stays idle.
    """
    n = len(prompt)
    nxt = 0
    ctx, rem = [None] * slots, [0] * slots
    for i in range(slots):
        if not (finite and nxt >= n):
            ctx[i], rem[i] = int(prompt[nxt % n]), int(decode[nxt % n])
            nxt += 1
    groups = max(group) + 1
    loads = [[0] * steps for _ in range(groups)]
    active = [[0] * steps for _ in range(groups)]
    freed, requests = [0] * steps, 0
    for s in range(steps):
        for i in range(slots):
            if s > 0 and ctx[i] is not None and rem[i] == 0:
                freed[s] += 1
                if finite and nxt >= n:
                    ctx[i] = None
                else:
                    ctx[i], rem[i] = int(prompt[nxt % n]), int(decode[nxt % n])
                    nxt += 1
                    requests += 1
        for i in range(slots):
            if ctx[i] is not None:
                loads[group[i]][s] += ctx[i]
                active[group[i]][s] += 1
                ctx[i] += 1
                rem[i] -= 1
    return loads, active, freed, requests


replay_cases = dict(
    prompts=st.lists(st.integers(0, 60), min_size=1, max_size=12),
    decodes=st.lists(st.integers(1, 9), min_size=12, max_size=12),
    # up to 90 slots: the compiled replay's bitmaps of 64 slots a word, more than one
    workers=st.integers(1, 3), batch=st.one_of(st.integers(1, 4), st.integers(20, 30)),
    steps=st.integers(1, 60), data=st.data())


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@settings(max_examples=60, deadline=None)
@given(**replay_cases)
def test_replayed_loads_equal_a_plain_walk_for_every_chunk_length(compiled, prompts, decodes,
                                                                  workers, batch, steps, data):
    decodes = decodes[:len(prompts)]
    w = JointLengths(np.array(prompts), np.array(decodes))
    sub = data.draw(st.lists(st.integers(0, 1), min_size=batch, max_size=batch))
    chunk = data.draw(st.integers(1, steps))
    path = _dealt(compiled, w, worker_seeds(0, workers), batch, steps, slot_group=sub,
                  init="cold", replay=True, chunk_steps=chunk)
    group = [wk * (max(sub) + 1) + sub[i] for wk in range(workers) for i in range(batch)]
    loads, _, _, requests = _replay_walk(prompts, decodes, workers * batch, steps, group)
    assert path.loads.tolist() == [[float(x) for x in row] for row in loads]
    assert path.requests == requests


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@settings(max_examples=60, deadline=None)
@given(**replay_cases)
def test_a_finite_trace_replayed_equals_a_plain_walk(compiled, prompts, decodes, workers,
                                                     batch, steps, data):
    # the trace is handed out once: slots that free after its last row stay idle (also
    # those that never get a row, when there are more slots than rows)
    decodes = decodes[:len(prompts)]
    w = JointLengths(np.array(prompts), np.array(decodes))
    chunk = data.draw(st.integers(1, steps))
    stream = LoadStream(w, worker_seeds(0, workers), batch, steps, init="cold", replay=True,
                        finite=True, chunk_steps=chunk)
    loads, active, freed = [], [], []
    with _compiled(compiled):
        for part in stream:
            loads.append(part.loads.copy())
            active.append(part.active.copy())
            freed.append(part.freed.copy())
    group = [wk for wk in range(workers) for _ in range(batch)]
    want = _replay_walk(prompts, decodes, workers * batch, steps, group, finite=True)
    assert np.concatenate(loads, axis=1).tolist() == want[0]
    assert np.concatenate(active, axis=1).tolist() == want[1]
    assert np.concatenate(freed).tolist() == want[2]
    assert stream.requests == want[3]


@pytest.mark.parametrize("name", ["azure2023_code", "mooncake_conversation"])
def test_replay_in_chunks_equals_one_pass_and_the_reference_loop(name):
    w = JointLengths.from_trace(read_trace(public_trace_file(name)))
    seeds = worker_seeds(4, 5)
    one = load_path(w, seeds, 32, 3000, init="cold", replay=True)
    for chunk in (1, 7, 1000):
        again = load_path(w, seeds, 32, 3000, init="cold", replay=True, chunk_steps=chunk)
        np.testing.assert_array_equal(again.loads, one.loads)
        assert again.requests == one.requests
    ref = simulate_reference(w, Bundle(5, 32, COEFFS), steps=3000, init="cold", replay=True,
                             record=True)
    np.testing.assert_array_equal(ref.records.loads.T, one.loads)
    warm = load_path(w, seeds, 32, 3000, replay=True)  # stationary start, then rows in order
    np.testing.assert_array_equal(
        load_path(w, seeds, 32, 3000, replay=True, chunk_steps=11).loads, warm.loads)
    # the numpy rounds of sorted events, against the compiled bitmaps (the default here)
    for init, want in (("cold", one), ("stationary", warm)):
        plain = _dealt(False, w, seeds, 32, 3000, init=init, replay=True, chunk_steps=700)
        np.testing.assert_array_equal(plain.loads, want.loads)
        assert plain.requests == want.requests


def _stream_peak(workload, steps, chunk, replay=False):
    import tracemalloc

    loads_module.release_work_arrays()
    tracemalloc.start()
    try:
        total = 0
        for part in LoadStream(workload, worker_seeds(1, 4), 64, steps, replay=replay,
                               init="cold" if replay else "stationary", chunk_steps=chunk):
            total += int(part.loads[:, -1].sum())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, total


@pytest.mark.parametrize("replay, compiled", [(False, True), (False, False), (True, True)],
                         ids=["resample-compiled", "resample-numpy", "replay"])
def test_stream_memory_does_not_grow_with_the_run(replay, compiled):
    # 8 and 64 chunks of 2000 steps: the peak is set by a chunk, not by the run
    w = (JointLengths(np.arange(1, 300), np.arange(1, 300) % 5 + 1) if replay
         else IndependentLengths(Geometric(50, start=0), Uniform(1, 3)))
    previous = kernels.use_compiled(compiled)
    try:
        short, _ = _stream_peak(w, 16_000, 2000, replay)
        long, _ = _stream_peak(w, 128_000, 2000, replay)
        whole, _ = _stream_peak(w, 128_000, 128_000, replay)
    finally:
        kernels.use_compiled(previous)
    assert long < 1.2 * short + 100_000
    # one chunk for the whole run holds at least its loads (4 groups x 128,000 steps of
    # int64) on top of what a chunked run needs: the check has teeth
    assert whole > long + 4 * 128_000 * 8


def test_resampling_uses_the_narrow_path_for_the_public_traces():
    # the int32 path (half the memory traffic) must be the one the traces take
    for name in ["azure2023_code", "mooncake_conversation"]:
        w = JointLengths.from_trace(read_trace(public_trace_file(name)))
        rng = np.random.default_rng(0)
        ctx, rem = sample_stationary_slots(w, rng, 256)
        source = loads_module._request_source(w, 256, ctx, rem)
        assert source.dtype == np.int32 and source.packed and source.digits == 4


def test_load_paths_computed_in_threads_equal_the_serial_ones():
    # work arrays are kept per thread between calls: concurrent calls must not share them
    w = IndependentLengths(Geometric(80, start=0), Geometric(6))
    trace = JointLengths(np.arange(50), np.arange(50) % 7 + 1)
    jobs = [(wl, seed) for seed in range(6) for wl in (w, trace)]

    def run(job):
        wl, seed = job
        return load_path(wl, worker_seeds(seed, 3), 32, 3000).loads

    serial = [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(run, jobs))
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


def test_memory_stays_proportional_to_slots_plus_steps_with_fresh_work_arrays():
    # 6.4 million requests of 1..3 steps; the work arrays kept between calls are
    # dropped first, so that the peak counts them too
    import tracemalloc

    w = IndependentLengths(Geometric(50, start=0), Uniform(1, 3))
    trace = JointLengths(np.arange(1, 300), np.arange(1, 300) % 3 + 1)
    r, b, steps = 4, 64, 50_000
    bound = 250 * (r * b + r * steps)  # bytes, as for the engines
    for workload in (w, trace):
        loads_module.release_work_arrays()
        tracemalloc.start()
        try:
            path = load_path(workload, worker_seeds(1, r), b, steps)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert path.requests * 16 > 2 * bound  # one int64 pair per request would not fit
        assert peak < bound
    assert 0 < loads_module.release_work_arrays() < bound


# the pipelined engine's recursion: Python floats for few parts per step, vectorized
# over workers for many, compiled (numba), the same operations in the same order


@pytest.mark.parametrize("r, m", [(1, 2), (5, 3), (13, 4), (25, 2)])
def test_both_pipeline_recursions_agree_exactly_and_match_simpy(r, m):
    from afdlib.sim import pipeline
    from tests.test_sim_engines import _simpy_pipeline

    rng = np.random.default_rng(r * 10 + m)
    attention = rng.exponential(1.0, size=(40, r, m))
    comm, ffn = rng.exponential(0.5, size=m).tolist(), rng.exponential(1.0, size=m).tolist()
    scalar = np.array(pipeline._completion_scalar(attention, comm, ffn,
                                                  pipeline.PipelineState(r, m)))
    vector = pipeline._completion_vector(attention, comm, ffn, pipeline.PipelineState(r, m))
    np.testing.assert_array_equal(scalar, vector)
    compiled = pipeline._completion_compiled(attention, comm, ffn, pipeline.PipelineState(r, m))
    np.testing.assert_array_equal(scalar, compiled)
    np.testing.assert_array_equal(pipeline.pipeline_completion_times(attention, comm, ffn),
                                  scalar)
    np.testing.assert_allclose(scalar, _simpy_pipeline(attention, comm, ffn), rtol=1e-12)
    # a run continued from its state in pieces (chunks) is the same run; with the times
    # measured from the last completion it is the same up to rounding
    state = pipeline.PipelineState(r, m)
    parts = [pipeline.pipeline_completion_times(attention[a:b], comm, ffn, state=state)
             for a, b in [(0, 17), (17, 18), (18, 40)]]
    np.testing.assert_array_equal(np.concatenate(parts), scalar)
    state, parts, origin = pipeline.PipelineState(r, m), [], 0.0
    for a, b in [(0, 17), (17, 18), (18, 40)]:
        done = pipeline.pipeline_completion_times(attention[a:b], comm, ffn, state=state)
        parts.append(done + origin)
        origin += float(done[-1])
        state.shift(float(done[-1]))
    np.testing.assert_allclose(np.concatenate(parts), scalar, rtol=1e-13)
