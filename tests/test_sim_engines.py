"""The step and pipelined engines: agreement with independent simulations, with each
other where they should agree, reproducibility, and rejection of bad parameters."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import simpy  # in the [test] extra: the one independent check of the pipeline recursion
from scipy import stats

from afdlib.errors import AfdInputError
from afdlib.model import InstanceGPUs, InstancePrices, Objective, OperatingPoint, StepCoefficients
from afdlib.sim import (
    Bundle,
    autocorrelation_time,
    batch_means,
    replicate,
    simulate,
    simulate_pipeline,
    simulate_reference,
    simulate_step,
    sweep,
)
from afdlib.sim.pipeline import pipeline_completion_times
from afdlib.workload import Deterministic, Geometric, IndependentLengths, Uniform, load_stats

# attention-bound at small r with a visible barrier: alpha_A*B*theta + beta_A ~ 7.6 ms
COEFFS = StepCoefficients(alpha_A=1e-6, beta_A=1e-3, alpha_F=2e-5, beta_F=2e-3,
                          alpha_C=1e-5, beta_C=2e-4)
GEO = IndependentLengths(Geometric(150, start=0), Geometric(60))


def _se(res, n_batches=10):
    """Standard error of the mean step time from its batch-means interval."""
    lo, hi = res.step_time_ci95
    return (hi - lo) / (2 * stats.t.ppf(0.975, n_batches - 1))


def test_step_engine_agrees_with_the_reference_loop():
    bundle = Bundle(4, 32, COEFFS)
    fast = simulate_step(GEO, bundle, steps=20_000, seed=1, n_batches=10)
    ref = simulate_reference(GEO, bundle, steps=20_000, seed=2, n_batches=10)
    # independent runs: the difference is within 4.5 combined standard errors ...
    diff = fast.mean_step_time - ref.mean_step_time
    assert abs(diff) < 4.5 * math.hypot(_se(fast), _se(ref))
    # ... and the 2% criterion holds for throughput per instance
    assert fast.throughput_per_instance == pytest.approx(ref.throughput_per_instance, rel=0.02)
    assert fast.barrier_overhead == pytest.approx(ref.barrier_overhead, rel=0.05)
    assert fast.attention_idle == pytest.approx(ref.attention_idle, abs=0.01)
    # the run is attention-bound with a real barrier: the test is not trivial
    assert fast.ffn_idle > 0.2 and fast.barrier_overhead > 0.05 * fast.mean_step_time


def test_summary_statistics_follow_from_the_records():
    bundle = Bundle(3, 16, COEFFS)
    res = simulate_step(GEO, bundle, steps=3000, warmup=500, seed=4, record=True)
    rec = res.records
    tau = rec.step_time[500:]
    att = rec.attention_time[500:]
    assert rec.loads.shape == (3000, 3) and rec.attention_time.shape == (3000, 3)
    t_c, t_f = bundle.comm_time, bundle.ffn_time
    np.testing.assert_allclose(rec.step_time,
                               np.maximum(rec.attention_time.max(axis=1), max(t_c, t_f)))
    np.testing.assert_allclose(rec.attention_time, COEFFS.alpha_A * rec.loads + COEFFS.beta_A)
    assert res.mean_step_time == pytest.approx(tau.mean())
    assert res.throughput_per_instance == pytest.approx(3 * 16 / (4 * tau.mean()))
    assert res.ffn_idle == pytest.approx(1 - t_f / tau.mean())
    assert res.comm_idle == pytest.approx(1 - t_c / tau.mean())
    assert res.attention_idle == pytest.approx(1 - att.mean() / tau.mean())
    assert res.barrier_overhead == pytest.approx(np.mean(att.max(axis=1) - att.mean(axis=1)))
    lo, hi = res.throughput_ci95
    assert lo < res.throughput_per_instance < hi
    assert res.measured_steps == 2500


def test_seeds_make_runs_reproducible():
    bundle = Bundle(3, 16, COEFFS)
    for engine in ("step", "pipeline"):
        a = simulate(GEO, bundle, engine=engine, steps=2000, seed=7)
        b = simulate(GEO, bundle, engine=engine, steps=2000, seed=7)
        c = simulate(GEO, bundle, engine=engine, steps=2000, seed=8)
        assert a.to_dict() == b.to_dict()
        assert a.mean_step_time != c.mean_step_time
    g1 = simulate_step(GEO, bundle, steps=500, seed=np.random.default_rng(3))
    g2 = simulate_step(GEO, bundle, steps=500, seed=np.random.default_rng(3))
    assert g1.to_dict() == g2.to_dict()


def test_deterministic_bundle_matches_the_closed_form():
    # D = 1: every slot holds a fresh request of context P at every step, so every load is
    # B*P and the step time is exactly max(t_A, t_C, t_F)
    w = IndependentLengths(Deterministic(300), Deterministic(1))
    for r in (1, 2, 5, 9):
        bundle = Bundle(r, 16, COEFFS)
        res = simulate_step(w, bundle, steps=50, seed=0)
        tau = max(COEFFS.alpha_A * 16 * 300 + COEFFS.beta_A, bundle.comm_time, bundle.ffn_time)
        assert res.mean_step_time == pytest.approx(tau, rel=1e-12)
        assert res.barrier_overhead == 0


# ---------------------------------------------------------------------------
# the pipelined engine
# ---------------------------------------------------------------------------


def _simpy_pipeline(attention, comm, ffn):
    """The same pipeline written as a SimPy process model (an independent check)."""
    steps, r, m = attention.shape
    env = simpy.Environment()
    workers = [simpy.Resource(env, capacity=1) for _ in range(r)]
    out_link, ffn_res, back_link = (simpy.Resource(env, capacity=1) for _ in range(3))
    done = np.zeros((steps, m))

    def part(s, w, k):
        with workers[w].request() as req:
            yield req
            yield env.timeout(attention[s, w, k])

    def serve(resource, duration):
        with resource.request() as req:
            yield req
            yield env.timeout(duration)

    def microbatch(k):
        for s in range(steps):
            yield simpy.AllOf(env, [env.process(part(s, w, k)) for w in range(r)])
            yield env.process(serve(out_link, comm[k]))
            yield env.process(serve(ffn_res, ffn[k]))
            yield env.process(serve(back_link, comm[k]))
            done[s, k] = env.now

    for k in range(m):
        env.process(microbatch(k))
    env.run()
    return done[:, -1]


@pytest.mark.parametrize("r, m, seed", [(1, 2, 0), (2, 3, 1), (3, 4, 2), (4, 2, 3)])
def test_pipeline_recursion_equals_an_event_driven_simpy_model(r, m, seed):
    rng = np.random.default_rng(seed)
    steps = 12
    attention = rng.exponential(1.0, size=(steps, r, m))
    comm = rng.exponential(0.5, size=m)
    ffn = rng.exponential(1.0, size=m)
    fast = pipeline_completion_times(attention, comm, ffn)
    slow = _simpy_pipeline(attention, comm, ffn)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)


def test_pipeline_equals_the_step_model_when_deep_enough_and_constant():
    # constant loads (D = 1), intercepts spread over the step: once the pipeline is full,
    # its step time is the bottleneck max(t_A, t_C, t_F) if the round trip of one
    # microbatch, (t_A + 2 t_C + t_F)/m, fits in it; otherwise it is the round trip.
    w = IndependentLengths(Deterministic(300), Deterministic(1))
    for r in (2, 6):
        bundle = Bundle(r, 16, COEFFS)
        t_a = COEFFS.alpha_A * 16 * 300 + COEFFS.beta_A
        t_c, t_f = bundle.comm_time, bundle.ffn_time
        step = simulate_step(w, bundle, steps=40).mean_step_time
        for m in (2, 4, 8):
            pipe = simulate_pipeline(w, bundle, microbatches=m, steps=40, warmup=20,
                                     intercepts="per_step")
            expected = max(max(t_a, t_c, t_f), (t_a + 2 * t_c + t_f) / m)
            assert pipe.mean_step_time == pytest.approx(expected, rel=1e-9)
            if (t_a + 2 * t_c + t_f) / m <= max(t_a, t_c, t_f):
                assert pipe.mean_step_time == pytest.approx(step, rel=1e-9)


def test_pipeline_agrees_with_the_step_engine_on_random_loads_when_deep():
    # attention-bound, intercepts spread over the step, four microbatches, same seed (so
    # the same requests in the same slots): the pipeline's only extra freedom is a little
    # slack between workers, worth well under 1% here.
    bundle = Bundle(4, 32, COEFFS)
    step = simulate_step(GEO, bundle, steps=8000, seed=5)
    pipe = simulate_pipeline(GEO, bundle, microbatches=4, steps=8000, seed=5,
                             intercepts="per_step")
    assert pipe.mean_load == step.mean_load  # same slot paths
    assert pipe.throughput_per_instance == pytest.approx(step.throughput_per_instance, rel=0.01)


def test_pipeline_pays_for_shallow_depth_and_for_per_microbatch_intercepts():
    # at r = 8 one microbatch's round trip at the mean load, (t_A + 2 t_C + t_F)/2, is
    # longer than the slowest stage, so two microbatches cannot keep the stages busy
    bundle = Bundle(8, 32, COEFFS)
    t_a = COEFFS.alpha_A * 32 * load_stats(GEO).theta + COEFFS.beta_A
    assert (t_a + 2 * bundle.comm_time + bundle.ffn_time) / 2 > max(t_a, bundle.ffn_time)
    step = simulate_step(GEO, bundle, steps=4000, seed=5)
    shallow = simulate_pipeline(GEO, bundle, microbatches=2, steps=4000, seed=5,
                                intercepts="per_step")
    deep = simulate_pipeline(GEO, bundle, microbatches=4, steps=4000, seed=5,
                             intercepts="per_step")
    paying = simulate_pipeline(GEO, bundle, microbatches=4, steps=4000, seed=5)
    assert shallow.mean_step_time > 1.02 * deep.mean_step_time
    # each of 4 microbatches pays beta_A in full: 3 extra beta_A per step at least
    assert paying.mean_step_time > deep.mean_step_time + 2.5 * COEFFS.beta_A
    assert step.mean_step_time < shallow.mean_step_time


# ---------------------------------------------------------------------------
# sweep, summaries, bad input
# ---------------------------------------------------------------------------


def point(*, batch, objective=None):
    """An operating point of the test coefficients (theta and load_std: the simulator's
    business is the workload, so they are not used)."""
    return OperatingPoint(coeffs=COEFFS, theta=load_stats(GEO).theta, batch=batch,
                          objective=objective or Objective())


def test_sweep_finds_the_closed_form_best_ratio_without_randomness():
    w = IndependentLengths(Deterministic(300), Deterministic(1))
    res = sweep(w, point(batch=16), range(1, 21), steps=20)
    t_a = COEFFS.alpha_A * 16 * 300 + COEFFS.beta_A
    closed = [r * 16 / ((r + 1) * max(t_a, float(COEFFS.comm_time(batch=16, ratio=r)),
                                      float(COEFFS.ffn_time(batch=16, ratio=r)))) for r in range(1, 21)]
    np.testing.assert_allclose(res.throughput, closed, rtol=1e-12)
    assert res.best_ratio == 1 + int(np.argmax(closed))
    rows = res.rows()
    assert [row["ratio"] for row in rows] == list(range(1, 21))


@pytest.mark.parametrize("objective, weights", [
    (Objective(prices=InstancePrices(attention=1.0, ffn=4.0)), (1.0, 4.0)),
    (Objective(kind="gpu", gpus=InstanceGPUs(attention=2, ffn=8)), (2.0, 8.0)),
    (Objective(kind="instance", prices=InstancePrices(1.0, 4.0)), (1.0, 1.0)),
])
def test_the_simulator_reports_the_rules_objective(objective, weights):
    # a deterministic bundle (every slot a one-step request of 300 tokens): the step time is
    # known exactly, so the reported objective can be written out by hand
    w = IndependentLengths(Deterministic(300), Deterministic(1))
    res = sweep(w, point(batch=16, objective=objective), range(1, 21), steps=20)
    t_a = COEFFS.alpha_A * 16 * 300 + COEFFS.beta_A
    tau = np.array([max(t_a, COEFFS.alpha_C * 16 + COEFFS.beta_C,
                        COEFFS.alpha_F * r * 16 + COEFFS.beta_F) for r in range(1, 21)])
    r = np.arange(1, 21)
    w_a, w_f = weights
    np.testing.assert_allclose(res.throughput, r * 16 / ((w_a * r + w_f) * tau), rtol=1e-12)
    np.testing.assert_allclose(res.throughput_per_instance, r * 16 / ((r + 1) * tau),
                               rtol=1e-12)
    assert res.best_ratio == 1 + int(np.argmax(r * 16 / ((w_a * r + w_f) * tau)))
    assert res.results[0].throughput_unit == objective.unit


def test_sweep_uses_common_random_numbers_and_draws_progress_only_when_asked():
    stream = io.StringIO()
    res = sweep(GEO, point(batch=16), [3, 1, 2, 2], steps=500, seed=3, progress=True,
                stream=stream)
    assert res.ratios.tolist() == [1, 2, 3]
    assert "100% 1500/1500" in stream.getvalue()  # the bar counts the steps of all ratios
    quiet = io.StringIO()
    sweep(GEO, point(batch=16), [1, 2], steps=200, stream=quiet, progress=None)  # not a TTY
    assert quiet.getvalue() == ""
    # worker 0 of every ratio sees the same requests
    one = simulate_step(GEO, Bundle(1, 16, COEFFS), steps=500, seed=3, record=True)
    three = simulate_step(GEO, Bundle(3, 16, COEFFS), steps=500, seed=3, record=True)
    np.testing.assert_array_equal(one.records.loads[:, 0], three.records.loads[:, 0])


def test_batch_means_interval_covers_the_mean_of_correlated_series():
    # AR(1) with phi = 0.9 (integrated autocorrelation time 19 steps), 4000 steps: the
    # automatic batches are about ten correlation times long, and the interval should
    # cover the true mean 0 about 95% of the time (300 trials: +-2.6% binomial noise)
    rng = np.random.default_rng(0)
    hits = 0
    trials = 300
    taus = []
    for _ in range(trials):
        e = rng.standard_normal(4000)
        x = np.empty(4000)
        x[0] = e[0] / math.sqrt(1 - 0.81)
        for i in range(1, 4000):
            x[i] = 0.9 * x[i - 1] + e[i]
        _, lo, hi = batch_means(x)
        hits += lo < 0 < hi
        if len(taus) < 30:
            taus.append(autocorrelation_time(x))
    assert 0.88 < hits / trials < 0.99
    assert np.mean(taus) == pytest.approx(19.0, rel=0.15)


def test_default_interval_of_the_step_engine_covers_the_pooled_mean():
    # 100 independent stationary runs; their pooled mean is the truth up to a tenth of a
    # single run's standard error. The default 95% intervals should cover it about 95%
    # of the time (binomial noise +-2.2%): neither too narrow nor uselessly wide.
    bundle = Bundle(4, 32, COEFFS)
    runs = [simulate_step(GEO, bundle, steps=5000, seed=500 + i) for i in range(100)]
    truth = np.mean([x.mean_step_time for x in runs])
    cover = np.mean([x.step_time_ci95[0] < truth < x.step_time_ci95[1] for x in runs])
    assert 0.88 <= cover <= 0.99
    pooled = replicate(GEO, bundle, 10, steps=5000, seed=7)
    lo, hi = pooled.step_time_ci95
    assert lo < truth < hi
    assert pooled.throughput_ci95[0] < pooled.throughput_per_instance < pooled.throughput_ci95[1]


def test_run_length_for_a_precision_scales_like_one_over_the_square():
    res = simulate_step(GEO, Bundle(4, 32, COEFFS), steps=4000, seed=2)
    half = res.relative_halfwidth
    assert res.steps_for_precision(half) == pytest.approx(4000, rel=1e-6)
    assert res.steps_for_precision(half / 2) == pytest.approx(16000, rel=1e-6)
    with pytest.raises(AfdInputError, match="relative_halfwidth must be > 0"):
        res.steps_for_precision(0)


BAD_CALLS = [
    (lambda: Bundle(0, 8, COEFFS), "ratio"),
    (lambda: Bundle(2, 0, COEFFS), "batch"),
    (lambda: Bundle(2.5, 8, COEFFS), "ratio"),
    (lambda: Bundle(float("nan"), 8, COEFFS), "ratio"),
    (lambda: Bundle(2, 8, {"alpha_A": 1}), "coeffs"),
    (lambda: simulate_step(GEO, Bundle(2, 8, COEFFS), steps=0), "steps"),
    (lambda: simulate_step(GEO, Bundle(2, 8, COEFFS), steps=10, warmup=10), "warmup"),
    (lambda: simulate_step(GEO, Bundle(2, 8, COEFFS), steps=10, warmup=-1), "warmup"),
    (lambda: simulate_step(GEO, Bundle(2, 8, COEFFS), steps=10, init="hot"), "init"),
    (lambda: simulate_step(GEO, Bundle(2, 8, COEFFS), steps=10, seed=-1), "seed"),
    (lambda: simulate_step(GEO, Bundle(2, 8, COEFFS), steps=10, seed=1.5), "seed"),
    (lambda: simulate_step(GEO, Bundle(2, 8, COEFFS), steps=10, n_batches=1), "n_batches"),
    (lambda: simulate_step(GEO, Bundle(2, 8, COEFFS), steps=10, replay=True), "replay"),
    (lambda: simulate_step((1, 2), Bundle(2, 8, COEFFS), steps=10), "workload"),
    (lambda: simulate_step(GEO, (2, 8), steps=10), "Bundle"),
    (lambda: simulate_pipeline(GEO, Bundle(2, 8, COEFFS), microbatches=1), "microbatches"),
    (lambda: simulate_pipeline(GEO, Bundle(2, 8, COEFFS), microbatches=9), "microbatches"),
    (lambda: simulate_pipeline(GEO, Bundle(2, 8, COEFFS), intercepts="none"), "intercepts"),
    (lambda: simulate(GEO, Bundle(2, 8, COEFFS), engine="warp"), "engine"),
    (lambda: simulate_reference(GEO, Bundle(2, 8, COEFFS), steps=0), "steps"),
    (lambda: sweep(GEO, point(batch=8), []), "no ratios"),
    (lambda: sweep(GEO, point(batch=8), [0, 1]), "ratio"),
    (lambda: sweep(GEO, point(batch=8), [1], seed=np.random.default_rng(1)), "seed"),
]


@pytest.mark.parametrize("call, fragment", BAD_CALLS)
def test_bad_parameters_are_rejected_with_a_named_error(call, fragment):
    with pytest.raises(AfdInputError, match=fragment):
        call()


def test_theta_of_the_test_workload_is_what_the_tests_assume():
    assert load_stats(GEO).theta == pytest.approx(150 + 60 - 1)


def test_memory_stays_proportional_to_slots_plus_steps_times_workers():
    # 6.4 million requests (D is 1..3 steps): holding one int64 pair per request would
    # take ~100 MB; the engine's peak must stay within a constant times (rB + r*steps)
    import tracemalloc

    w = IndependentLengths(Geometric(50, start=0), Uniform(1, 3))
    r, b, steps = 4, 64, 50_000
    tracemalloc.start()
    try:
        res = simulate_step(w, Bundle(r, b, COEFFS), steps=steps, seed=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = 250 * (r * b + r * steps)  # bytes
    assert res.requests * 16 > 2 * bound  # the check has teeth
    assert peak < bound
