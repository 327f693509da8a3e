"""Exact load paths: the renewal bookkeeping against slot-by-slot simulation, and the
stationary load moments against theta and sigma^2."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afdlib.costs import StepCoefficients
from afdlib.errors import AfdInputError
from afdlib.sim import Bundle, load_path, simulate_reference, simulate_step
from afdlib.sim.bundle import worker_seeds
from afdlib.sim.loads import renewal_block
from afdlib.traces import read_trace
from afdlib.workload import (
    Deterministic,
    Geometric,
    IndependentLengths,
    JointLengths,
    Uniform,
    load_stats,
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
