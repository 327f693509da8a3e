"""The pipelined rule: the exact max-cycle-mean cycle time against the pipelined engine with
frozen loads (to float precision) and against an independent max-plus referee (Karp's
algorithm), and the quasi-static rule against the engine with random loads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from afdlib.errors import AfdInputError
from afdlib.model import (
    InstancePrices,
    Objective,
    OperatingPoint,
    StepCoefficients,
    microbatch_sizes,
)
from afdlib.provision import provision
from afdlib.provision.exact import exact_ratio, expected_step_time_exact, worker_load_law
from afdlib.provision.pipelined import (
    circuit_table,
    cycle_time,
    expected_cycle_time,
    gaussian_microbatch_laws,
    mean_load_cycle_time,
    microbatch_load_laws,
    pipelined_ratio,
    run_sums,
    stage_times,
    throughput_pipelined,
)
from afdlib.sim import Bundle, simulate_pipeline, sweep
from afdlib.sim.pipeline import pipeline_completion_times
from afdlib.workload import (
    DiscretizedLognormal,
    Geometric,
    IndependentLengths,
    JointLengths,
    load_stats,
)

#: lcm(1..10). After its transient the engine is periodic, with a period that divides the
#: tokens (steps) of a critical circuit. An elementary circuit of the precedence graph has
#: at most m + r + 3 tokens (one per combine -> attention arc, each leaving a different
#: combine node, and one per wrap-around arc, each leaving a different last node of a
#: resource), so with r + m <= 7 this window holds a whole number of periods.
PERIOD = 2520


def engine_cycle_time(attention, comm, ffn, steps=6000):
    """Mean step time of the engine's periodic regime with the same times every step."""
    a = np.broadcast_to(np.asarray(attention, float), (steps,) + np.shape(attention))
    done = pipeline_completion_times(a, comm, ffn)
    return (done[-1] - done[-1 - PERIOD]) / PERIOD


def transfer_matrix(attention, comm, ffn):
    """The engine's one-step max-plus matrix, written out independently of the engine.

    State (finish times of one step): worker w's part of microbatch k, then dispatch,
    FFN and combine of each microbatch. Column j is the next step's state when only
    state j was finished (at time 0) and every other state at -inf.
    """
    r, m = np.shape(attention)
    n = r * m + 3 * m
    out = np.full((n, n), -np.inf)
    for j in range(n):
        prev = np.full(n, -np.inf)
        prev[j] = 0.0
        att = np.full((r, m), -np.inf)
        for w in range(r):
            last = prev[w * m + m - 1]  # the worker's previous part
            for k in range(m):
                last = max(last, prev[r * m + 2 * m + k]) + attention[w][k]  # after combine
                att[w, k] = last
        ready = att.max(axis=0)
        rows = []
        for stage, times in enumerate((comm, ffn, comm)):
            last = prev[r * m + stage * m + m - 1]
            row = []
            for k in range(m):
                last = max(last, ready[k]) + times[k]
                row.append(last)
            rows.append(row)
            ready = np.array(row)
        out[:, j] = np.concatenate([att.ravel()] + rows)
    return out


def karp_max_cycle_mean(matrix):
    """Karp's maximum cycle mean of a max-plus matrix (arc j -> i weighs matrix[i, j])."""
    n = matrix.shape[0]
    d = np.full((n + 1, n), -np.inf)
    d[0] = 0.0
    for k in range(1, n + 1):
        d[k] = np.max(matrix + d[k - 1][None, :], axis=1)
    best = -np.inf
    for v in range(n):
        if np.isfinite(d[n, v]):
            best = max(best, min((d[n, v] - d[k, v]) / (n - k) for k in range(n)
                                 if np.isfinite(d[k, v])))
    return best


# -- frozen stage times: the theorem ----------------------------------------------------------


def random_instance(rng, r, m):
    att = rng.exponential(1.0, (r, m)) * rng.choice([0.2, 1.0, 3.0])
    if rng.random() < 0.5:  # one heavy microbatch
        att[:, rng.integers(m)] *= 3.0
    if rng.random() < 0.3:
        att[rng.integers(r), rng.integers(m)] = 0.0
    comm = rng.exponential(1.0, m) * rng.choice([0.1, 1.0, 3.0])
    ffn = rng.exponential(1.0, m) * rng.choice([0.1, 1.0, 3.0])
    return att, comm, ffn


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_max_cycle_mean_is_the_engines_cycle_time_to_float_precision(m):
    rng = np.random.default_rng(m)
    for _ in range(12):
        r = int(rng.integers(1, 8 - m))  # r + m <= 7, see PERIOD
        att, comm, ffn = random_instance(rng, r, m)
        lam = float(cycle_time(att, comm, ffn))
        assert lam == pytest.approx(engine_cycle_time(att, comm, ffn), rel=1e-11, abs=0)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_max_cycle_mean_agrees_with_karp_on_the_full_precedence_graph(m):
    rng = np.random.default_rng(10 + m)
    for _ in range(6):
        r = int(rng.integers(1, 4))
        att, comm, ffn = random_instance(rng, r, m)
        assert float(cycle_time(att, comm, ffn)) == pytest.approx(
            karp_max_cycle_mean(transfer_matrix(att, comm, ffn)), rel=1e-12)


def one_lap_bound(att, comm, ffn):
    """The largest mean over circuits that visit attention at most once (no mixed laps)."""
    m = np.shape(att)[1]
    table = circuit_table(m)
    keep = (table.runs < m * m).sum(axis=1) <= 1
    runs = np.concatenate([run_sums(att).max(axis=0), [0.0]])
    const = np.maximum.reduceat(table.counts @ np.concatenate([comm, ffn]), table.class_starts)
    vals = (runs[table.runs].sum(axis=1) + const) / table.tokens
    return float(vals[keep].max())


def test_two_workers_can_need_a_circuit_through_both_of_them():
    # worker 0 is heavy on microbatches 0 and 2, worker 1 on 0 and 1: the critical circuit
    # runs two laps, one through each worker; no single-lap circuit reaches its mean
    att = np.array([[0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
    comm, ffn = np.full(3, 0.25), np.zeros(3)
    lam = float(cycle_time(att, comm, ffn))
    assert lam == pytest.approx(13 / 12, rel=1e-12)
    assert lam == pytest.approx(engine_cycle_time(att, comm, ffn), rel=1e-12)
    assert one_lap_bound(att, comm, ffn) == pytest.approx(1.0)


def test_simple_bounds_and_special_cases():
    rng = np.random.default_rng(3)
    att, comm, ffn = random_instance(rng, 4, 3)
    lam = float(cycle_time(att, comm, ffn))
    busy = max(att.sum(axis=1).max(), comm.sum(), ffn.sum())
    trip = (att.max(axis=0) + 2 * comm + ffn).max()
    assert lam >= max(busy, trip) - 1e-12
    assert lam <= att.max(axis=0).sum() + 2 * comm.sum() + ffn.sum() + 1e-12  # no overlap
    # one microbatch: the stages never overlap, the step is their sum
    one = cycle_time(att[:, :1], comm[:1], ffn[:1])
    assert float(one) == pytest.approx(att[:, 0].max() + 2 * comm[0] + ffn[0])
    # batched configurations are independent
    batch = np.stack([att, 2 * att])
    np.testing.assert_allclose(cycle_time(batch, comm, ffn),
                               [lam, float(cycle_time(2 * att, comm, ffn))])


def test_circuit_tables_are_small_and_contain_the_basic_circuits():
    sizes = {m: len(circuit_table(m).tokens) for m in (1, 2, 3, 4)}
    assert sizes[2] < sizes[3] < sizes[4] < 200
    for m in (2, 3, 4):
        table = circuit_table(m)
        assert table.tokens.min() == 1
        assert np.all(np.diff(table.option_class) >= 0)
        # a microbatch's round trip: one run of length 1, one token
        trip = [(c, k) for c, k in enumerate(table.runs) if k[0] < m * m and
                (k[0] % m) == 0 and (k < m * m).sum() == 1 and table.tokens[c] == 1]
        assert trip


def test_run_sums_are_cyclic_interval_sums():
    a = np.array([1.0, 2.0, 4.0])
    sums = run_sums(a).reshape(3, 3)
    assert sums[0].tolist() == [1.0, 3.0, 7.0]
    assert sums[2].tolist() == [4.0, 5.0, 7.0]


def test_stage_times_follow_the_engine():
    c = StepCoefficients(alpha_A=2e-7, beta_A=2e-3, alpha_F=1.5e-5, beta_F=4e-3,
                         alpha_C=2e-6, beta_C=5e-4, comm_scales_with="rB")
    t = stage_times(c, ratio=3, batch=10, microbatches=3, intercepts="per_step")
    assert t.sizes == tuple(microbatch_sizes(10, 3)) == (4, 3, 3)
    assert t.comm[0] == pytest.approx(2e-6 * 4 * 3 + 5e-4 / 3)
    assert t.ffn[1] == pytest.approx(1.5e-5 * 3 * 3 + 4e-3 / 3)
    assert t.attention_intercept == pytest.approx(2e-3 / 3)
    full = stage_times(c, ratio=3, batch=10, microbatches=3)
    assert full.attention_intercept == 2e-3


# -- random loads: the quasi-static rule -----------------------------------------------------

COEFFS = StepCoefficients(alpha_A=2e-7, beta_A=2e-3, alpha_F=1.5e-5, beta_F=4e-3,
                          alpha_C=2e-6, beta_C=5e-4, comm_scales_with="rB")
WORKLOAD = IndependentLengths(DiscretizedLognormal(1500, 0.8, min_value=1, max_value=20000),
                              Geometric(40))


def point(batch, coeffs=COEFFS, workload=WORKLOAD, **objective):
    """The operating point of a bundle with ``batch`` slots per worker on ``workload``."""
    stats = load_stats(workload)
    return OperatingPoint(coeffs=coeffs, theta=stats.theta, load_std=math.sqrt(stats.load_variance),
                          batch=batch, objective=Objective(**objective))


def test_one_microbatch_is_the_sum_of_stages_of_the_exact_rule():
    law = worker_load_law(WORKLOAD, 16)
    ratios = np.array([1, 3, 6])
    ours = expected_cycle_time(point(16), WORKLOAD, ratios, microbatches=1, samples=4096)
    exact = expected_step_time_exact(point(16), law, ratios, microbatches=1)
    np.testing.assert_allclose(ours, exact, rtol=3e-3)


def test_quasi_static_time_is_above_the_time_at_mean_loads_and_uses_common_numbers():
    laws = microbatch_load_laws(WORKLOAD, 16, microbatches=2)
    ratios = np.array([1, 4, 9])
    tau = expected_cycle_time(point(16), laws, ratios, microbatches=2)
    for r, t in zip(ratios, tau, strict=True):
        st = stage_times(COEFFS, ratio=int(r), batch=16, microbatches=2)
        mean_loads = np.array([law.mean for law in laws.laws])
        at_mean = cycle_time(st.attention(np.tile(mean_loads, (int(r), 1))), st.comm, st.ffn)
        assert t >= float(at_mean)  # the cycle time is convex in the loads (Jensen)
    # ratio r uses the first r workers of every sampled bundle, whatever else is asked
    alone = expected_cycle_time(point(16), laws, [4], microbatches=2)
    assert alone[0] == tau[1]


@pytest.mark.parametrize("m, intercepts", [(2, "per_microbatch"), (3, "per_step"),
                                           (4, "per_microbatch")])
def test_quasi_static_rule_predicts_the_pipelined_engine(m, intercepts):
    batch, ratios = 24, np.arange(1, 13)
    sim = sweep(WORKLOAD, point(batch), ratios, engine="pipeline", microbatches=m,
                intercepts=intercepts, steps=5000, seed=4)
    measured = sim.column("mean_step_time")
    ours = expected_cycle_time(point(batch), WORKLOAD, ratios, microbatches=m,
                               intercepts=intercepts)
    # within 2% at every ratio (5,000 steps resolve the engine's mean to about 1%)
    assert np.abs(ours / measured - 1).max() < 0.02
    best = pipelined_ratio(point(batch), WORKLOAD, max_ratio=12, microbatches=m,
                           intercepts=intercepts).r_int
    assert 1 - sim.throughput[best - 1] / sim.throughput.max() < 0.01


def test_where_the_round_trip_term_misleads_the_pipelined_rule_does_not():
    # per-step intercepts, three microbatches, FFN and growing communication both near
    # attention: the round trip of the *average* microbatch misses the heavy microbatch
    # and the mixed circuits, and the round-trip rule overshoots the best ratio
    coeffs = StepCoefficients(alpha_A=5.35e-7, beta_A=2e-3, alpha_F=1.09375e-4, beta_F=6e-3,
                              alpha_C=1.25e-4, beta_C=4e-3, comm_scales_with="rB")
    batch, ratios = 16, np.arange(1, 11)
    sim = sweep(WORKLOAD, point(batch, coeffs), ratios, engine="pipeline", microbatches=3,
                intercepts="per_step", steps=40_000, seed=2)  # resolves 0.5% here
    law = worker_load_law(WORKLOAD, batch)
    rt = exact_ratio(point(batch, coeffs), law, max_ratio=10, microbatches=3,
                     intercepts="per_step").r_int
    ours = pipelined_ratio(point(batch, coeffs), WORKLOAD, max_ratio=10, microbatches=3,
                           intercepts="per_step")
    loss = 1 - sim.throughput / sim.throughput.max()
    assert loss[ours.r_int - 1] < 0.005
    assert loss[rt - 1] > 0.015


def test_throughput_and_prices():
    laws = microbatch_load_laws(WORKLOAD, 16, microbatches=2)
    ratios = np.array([2, 5])
    tau = expected_cycle_time(point(16), laws, ratios, microbatches=2)
    lam = throughput_pipelined(point(16), laws, ratios, microbatches=2)
    np.testing.assert_allclose(lam, ratios * 16 / ((ratios + 1) * tau))
    priced = throughput_pipelined(point(16, prices=InstancePrices(attention=1.0, ffn=3.0)),
                                  laws, ratios, microbatches=2)
    np.testing.assert_allclose(priced, ratios * 16 / ((ratios + 3) * tau))
    best = pipelined_ratio(point(16), laws, max_ratio=8, microbatches=2)
    assert best.ratios.tolist() == list(range(1, 9))
    assert best.throughput == best.throughputs.max() == best.throughputs[best.r_int - 1]
    assert np.all(best.step_time_se < 0.01 * best.step_times)
    assert math.isclose(best.step_times[1], tau[0])


def test_bad_input_is_rejected():
    laws = microbatch_load_laws(WORKLOAD, 8, microbatches=2)
    with pytest.raises(AfdInputError, match="microbatches"):
        expected_cycle_time(point(8), WORKLOAD, [2], microbatches=0)
    with pytest.raises(AfdInputError, match="microbatches"):
        expected_cycle_time(point(8), WORKLOAD, [2], microbatches=7)
    with pytest.raises(AfdInputError, match="batch"):
        expected_cycle_time(point(2), WORKLOAD, [2], microbatches=3)
    with pytest.raises(AfdInputError, match="intercepts"):
        expected_cycle_time(point(8), WORKLOAD, [2], microbatches=2, intercepts="never")
    with pytest.raises(AfdInputError, match="ratios"):
        expected_cycle_time(point(8), WORKLOAD, [0, 2], microbatches=2)
    with pytest.raises(AfdInputError, match="B=8, m=2"):
        expected_cycle_time(point(8), laws, [2], microbatches=3)
    with pytest.raises(AfdInputError, match="samples"):
        expected_cycle_time(point(8), laws, [2], microbatches=2, samples=1)
    with pytest.raises(AfdInputError, match="point"):
        pipelined_ratio({"alpha_A": 1}, laws, max_ratio=4, microbatches=2)
    with pytest.raises(AfdInputError, match="coefficients"):
        stage_times({"alpha_A": 1}, ratio=1, batch=8, microbatches=2)
    with pytest.raises(AfdInputError, match="workload"):
        microbatch_load_laws("trace.csv", 8, microbatches=2)
    with pytest.raises(AfdInputError, match="attention"):
        cycle_time([[1.0, -1.0]], [0, 0], [0, 0])
    with pytest.raises(AfdInputError, match="comm"):
        cycle_time([[1.0, 1.0]], [0, 0, 0], [0, 0])


def test_engine_and_rule_see_the_same_bundle():
    # the rule's stage times are exactly the engine's: constant loads (every request of
    # one length, all slots in step) give the same mean step time
    workload = JointLengths(np.array([500]), np.array([1]))  # every step: 500 tokens/slot
    for m, intercepts in [(2, "per_microbatch"), (3, "per_step")]:
        res = simulate_pipeline(workload, Bundle(3, 12, COEFFS), microbatches=m,
                                intercepts=intercepts, steps=2000, warmup=1000)
        ours = expected_cycle_time(point(12, workload=workload), workload, [3], microbatches=m,
                                   intercepts=intercepts, samples=8)
        assert ours[0] == pytest.approx(res.mean_step_time, rel=1e-9)


# -- the pipeline-aware rules in provision() and afd provision ---------------------------------


def test_gaussian_microbatch_laws_have_the_slot_sums_moments():
    stats = load_stats(WORKLOAD)
    laws = gaussian_microbatch_laws(point(10), microbatches=3)
    assert laws.sizes == (4, 3, 3)
    from scipy.stats import norm

    for size, law in zip(laws.sizes, laws.laws, strict=True):
        # the normal law of the load, cut at 0 tokens: the law of max(X, 0)
        mu, sd = size * stats.theta, math.sqrt(size * stats.load_variance)
        z = mu / sd
        mean = mu * norm.cdf(z) + sd * norm.pdf(z)
        second = (mu * mu + sd * sd) * norm.cdf(z) + mu * sd * norm.pdf(z)
        assert law.pmf.sum() == pytest.approx(1.0)
        assert law.mean == pytest.approx(mean, rel=1e-4)
        spread = math.sqrt(law.pmf @ (law.values - law.mean) ** 2)
        assert spread == pytest.approx(math.sqrt(second - mean * mean), rel=2e-3)
        assert law.pmf[0] == pytest.approx(norm.cdf(-z), abs=2e-3)  # the mass below 0


def test_mean_load_cycle_time_is_the_frozen_cycle_time_at_the_mean():
    p = point(12)
    for r in (1, 4):
        st = stage_times(COEFFS, ratio=r, batch=12, microbatches=3)
        loads = np.tile(np.array(st.sizes, dtype=float) * p.theta, (r, 1))
        want = float(cycle_time(st.attention(loads), st.comm, st.ffn))
        got = mean_load_cycle_time(p, [r], microbatches=3)[0]
        assert got == pytest.approx(want, rel=1e-12)
    # at the mean, by convexity (Jensen), below the quasi-static value over the loads' laws
    assert np.all(mean_load_cycle_time(p, [2, 5], microbatches=3)
                  <= expected_cycle_time(p, WORKLOAD, [2, 5], microbatches=3))


def test_provision_with_microbatches_reports_the_pipelined_rules():
    p = point(16)
    res = provision(p, max_ratio=12, microbatches=2, workload=WORKLOAD)
    ratios = np.arange(1, 13)
    np.testing.assert_allclose(res.mean_step_times["exact_load"],
                               expected_cycle_time(p, WORKLOAD, ratios, microbatches=2))
    np.testing.assert_allclose(res.mean_step_times["mean_field"],
                               mean_load_cycle_time(p, ratios, microbatches=2))
    d = res.to_dict()
    assert d["microbatches"] == 2 and d["intercepts"] == "per_microbatch"
    assert d["r_int_exact"] == pipelined_ratio(p, WORKLOAD, max_ratio=12, microbatches=2).r_int
    lam = p.throughput(ratios, res.mean_step_times["mean_field"])
    assert d["r_int_mean_field"] == int(ratios[np.argmax(lam)])
    assert "step_time_p99" not in d["throughput_per_instance"]["1"]
    with pytest.raises(AfdInputError, match="latency target"):
        provision(p, max_ratio=12, microbatches=2, tpot_p99=0.05)


def test_afd_provision_microbatches_on_the_command_line(tmp_path):
    import json
    import subprocess
    import sys

    coeffs = tmp_path / "c.json"
    coeffs.write_text(json.dumps(COEFFS.to_dict()))
    base = [sys.executable, "-m", "afdlib", "provision", "--prompt", "geometric:1500,start=0",
            "--decode", "geometric:40", "--batch", "16", "--coeffs", str(coeffs),
            "--max-ratio", "12"]
    out = subprocess.run([*base, "--microbatches", "3", "--intercepts", "per_step", "--json"],
                         capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    laws = IndependentLengths(Geometric(1500, start=0), Geometric(40))
    want = pipelined_ratio(point(16, workload=laws), laws, max_ratio=12, microbatches=3,
                           intercepts="per_step").r_int
    assert (d["microbatches"], d["intercepts"], d["r_int_exact"]) == (3, "per_step", want)
    for extra, message in ((["--intercepts", "per_step"], "--intercepts applies with"),
                           (["--microbatches", "2", "--tpot-p99", "0.05"], "--tpot-p99"),
                           (["--microbatches", "9"], "microbatches")):
        bad = subprocess.run([*base, *extra], capture_output=True, text=True)
        assert bad.returncode == 2, bad.stderr
        assert message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
