"""Bounded-memory statistics: quantiles against exact order statistics, batch means and
correlation times against the whole-series computations, and engines run in chunks
against their own per-step records."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afdlib.errors import AfdInputError
from afdlib.model import StepCoefficients
from afdlib.sim import Bundle, autocorrelation_time, batch_means, simulate_pipeline, simulate_step
from afdlib.sim import loads as loads_module
from afdlib.sim.streaming import BatchSeries, LogHistogram, Moments
from afdlib.workload import Geometric, IndependentLengths, JointLengths

COEFFS = StepCoefficients(alpha_A=1e-6, beta_A=1e-3, alpha_F=2e-5, beta_F=2e-3,
                          alpha_C=1e-5, beta_C=2e-4)
GEO = IndependentLengths(Geometric(150, start=0), Geometric(60))


def ar1(rng, n, phi=0.9, mean=10.0):
    """An AR(1) series: integrated autocorrelation time (1 + phi) / (1 - phi)."""
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0] / math.sqrt(1 - phi * phi)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x + mean


# -- quantiles -------------------------------------------------------------------------


LEVELS = [0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0]


@pytest.mark.parametrize("sample", [
    lambda rng: rng.lognormal(-4.0, 0.3, 50_000),  # step times around 18 ms
    lambda rng: rng.lognormal(0.0, 3.0, 20_000),  # many orders of magnitude
    lambda rng: 0.01 + 0.002 * rng.integers(0, 5, 30_000),  # few distinct values
    lambda rng: np.full(1000, 0.0137),  # constant: exact
])
def test_histogram_quantiles_are_within_half_a_bin_of_the_exact_order_statistics(sample):
    rng = np.random.default_rng(1)
    x = sample(rng)
    hist = LogHistogram()
    for piece in np.array_split(x, 9):
        hist.add(piece)
    assert hist.count == x.size
    for q in LEVELS:
        exact = float(np.quantile(x, q, method="inverted_cdf"))
        assert abs(hist.quantile(q) - exact) <= hist.relative_error * exact, q
    assert hist.relative_error == 2.0 ** -15  # 14 bits of mantissa: bins < 6.1e-5 wide


def test_histogram_error_bound_is_tight_and_holds_after_coarsening():
    rng = np.random.default_rng(2)
    x = rng.lognormal(0.0, 2.0, 40_000)
    fine = LogHistogram()
    fine.add(x)
    errors = [abs(fine.quantile(q) / np.quantile(x, q, method="inverted_cdf") - 1)
              for q in np.linspace(0.01, 0.99, 99)]
    # the bound is a bound, and not a loose one
    assert max(errors) <= fine.relative_error
    assert max(errors) > 0.3 * fine.relative_error
    coarse = LogHistogram(max_bins=4096)  # the values span ~2^20 fine bins: coarsened
    for piece in np.array_split(x, 5):
        coarse.add(piece)
    assert coarse.mantissa_bits < 14 and coarse._counts.size <= 4096
    for q in LEVELS:
        exact = float(np.quantile(x, q, method="inverted_cdf"))
        assert abs(coarse.quantile(q) - exact) <= coarse.relative_error * exact


def test_histogram_memory_is_bounded_by_the_value_range_not_the_count():
    rng = np.random.default_rng(3)
    hist = LogHistogram()
    for _ in range(20):
        hist.add(rng.uniform(0.01, 0.02, 100_000))  # one octave: 2^14 bins
    assert hist.count == 2_000_000
    assert hist._counts.size <= 2 ** 14 + 1


def test_histogram_handles_zero_and_rejects_bad_input():
    hist = LogHistogram()
    hist.add(np.array([0.0, 0.0, 1.0, 2.0]))
    assert hist.quantile(0.5) == 0.0
    assert abs(hist.quantile(1.0) - 2.0) <= hist.relative_error * 2.0
    assert math.isnan(LogHistogram().quantile(0.5))
    with pytest.raises(AfdInputError, match="quantile level"):
        hist.quantile(0.0)
    with pytest.raises(AfdInputError, match="finite"):
        hist.add(np.array([1.0, np.inf]))


# -- batch means and the correlation time ------------------------------------------------


def test_batch_series_of_a_short_series_is_the_whole_series_computation():
    rng = np.random.default_rng(4)
    x = ar1(rng, 30_000)
    series = BatchSeries()
    series.add(x)
    assert series.granularity == 1
    assert series.interval() == batch_means(x)  # the same operations, bit for bit
    assert series.correlation_time() == autocorrelation_time(x)
    for n_batches in (2, 7, 20):
        assert series.interval(n_batches) == batch_means(x, n_batches)
    pieces = BatchSeries()
    for part in np.array_split(x, 11):
        pieces.add(part)
    np.testing.assert_allclose(pieces.interval(), batch_means(x), rtol=1e-13)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(40, 5000), capacity=st.sampled_from([16, 64, 256]),
       n_batches=st.integers(2, 8), cuts=st.lists(st.integers(0, 5000), max_size=6))
def test_merged_micro_batches_give_the_exact_batch_means_of_their_steps(n, capacity,
                                                                        n_batches, cuts):
    # whatever the pieces, the batches are whole micro-batches of g values: their means
    # are those of the same steps of the series
    x = np.random.default_rng(n).standard_normal(n)
    series = BatchSeries(capacity=capacity)
    for part in np.split(x, sorted({c % n for c in cuts})):
        series.add(part)
    g, k = series.granularity, series._k
    assert k <= capacity and k * g <= n < (k + 1) * g + g
    q = k // n_batches
    if q == 0:
        assert math.isnan(series.interval(n_batches)[1])
        return
    start = (k - q * n_batches) * g
    blocks = x[start:start + q * n_batches * g].reshape(n_batches, q * g).mean(axis=1)
    se = blocks.std(ddof=1) / math.sqrt(n_batches)
    from scipy import stats

    t = stats.t.ppf(0.975, n_batches - 1)
    mean, lo, hi = series.interval(n_batches)
    assert mean == pytest.approx(x.mean(), rel=1e-12, abs=1e-12)
    assert (hi - lo) / 2 == pytest.approx(t * se, rel=1e-9)


def test_correlation_time_from_micro_batches_on_bounded_memory():
    # AR(1) with phi = 0.9 has tau_int = 19 steps; with at most 256 micro-batches of
    # 256 values the estimate must still find it (the existing whole-series check: 15%)
    rng = np.random.default_rng(5)
    taus, cover = [], 0
    for _ in range(30):
        x = ar1(rng, 100_000)
        series = BatchSeries(capacity=512)
        for part in np.array_split(x, 7):
            series.add(part)
        assert series.granularity == 256
        taus.append(series.correlation_time())
        _, lo, hi = series.interval()
        cover += lo < 10.0 < hi
    assert np.mean(taus) == pytest.approx(19.0, rel=0.15)
    assert cover >= 24  # about 95% of 30; +-4 binomial noise


def test_batch_means_interval_of_merged_series_covers_the_mean():
    rng = np.random.default_rng(6)
    hits = 0
    for _ in range(200):
        series = BatchSeries(capacity=64)  # g = 64 for 4000 values
        series.add(ar1(rng, 4000))
        _, lo, hi = series.interval()
        hits += lo < 10.0 < hi
    assert 0.88 < hits / 200 < 0.99


def test_moments_in_pieces_equal_the_whole():
    x = np.random.default_rng(7).normal(1e6, 3.0, 100_001)  # a large mean: stability
    m = Moments()
    for part in np.array_split(x, 13):
        m.add(part)
    assert m.count == x.size
    assert m.mean == pytest.approx(x.mean(), rel=1e-15)
    assert m.std == pytest.approx(x.std(), rel=1e-9)


def test_batch_series_rejects_bad_capacity():
    with pytest.raises(AfdInputError, match="capacity"):
        BatchSeries(capacity=15)


# -- engines in chunks -------------------------------------------------------------------


@pytest.fixture
def small_chunks(monkeypatch):
    """Runs longer than 900 steps go in chunks of 256 (the defaults are 2^18 and 2^16)."""
    monkeypatch.setattr(loads_module, "SINGLE_CHUNK_STEPS", 900)
    monkeypatch.setattr(loads_module, "CHUNK_STEPS", 256)


@pytest.fixture
def few_micro_batches(monkeypatch):
    """Runs keep at most 4096 micro-batches (the default is 2^18)."""
    from afdlib.sim import results

    monkeypatch.setattr(results, "MICRO_BATCHES", 4096)


def _check_against_records(res, bundle, warmup, intercept):
    rec = res.records
    tau = rec.step_time[warmup:]
    loads = rec.loads[warmup:]
    assert res.mean_step_time == pytest.approx(tau.mean(), rel=1e-12)
    for q, value in ((0.5, res.step_time_p50), (0.99, res.step_time_p99)):
        exact = np.quantile(tau, q, method="inverted_cdf")
        assert abs(value - exact) <= res.step_time_quantile_rtol * exact
    att = COEFFS.alpha_A * loads + intercept
    assert res.attention_idle == pytest.approx(1 - att.sum() / (bundle.ratio * tau.sum()),
                                               rel=1e-9)
    assert res.barrier_overhead == pytest.approx(np.mean(att.max(axis=1) - att.mean(axis=1)),
                                                 rel=1e-9)
    assert res.mean_load == pytest.approx(loads.mean(), rel=1e-12)
    assert res.load_std == pytest.approx(loads.std(), rel=1e-9)


def test_step_engine_in_chunks_reports_the_statistics_of_its_records(small_chunks):
    bundle = Bundle(3, 16, COEFFS)
    res = simulate_step(GEO, bundle, steps=5000, warmup=300, seed=4, record=True)
    assert res.records.step_time.size == 5000
    _check_against_records(res, bundle, 300, COEFFS.beta_A)
    np.testing.assert_allclose(res.records.step_time,
                               np.maximum(res.records.attention_time.max(axis=1),
                                          max(bundle.comm_time, bundle.ffn_time)))


def test_pipeline_in_chunks_equals_one_pass_over_the_same_loads(monkeypatch):
    # replayed rows do not depend on the chunks, so the loads are the same; the recursion
    # continues across chunks from its state
    trace = JointLengths(np.arange(5, 400, 7), np.arange(1, 58) % 13 + 1)
    bundle = Bundle(3, 16, COEFFS)
    options = dict(microbatches=3, steps=3000, warmup=100, replay=True, init="cold",
                   record=True)
    whole = simulate_pipeline(trace, bundle, **options)
    monkeypatch.setattr(loads_module, "SINGLE_CHUNK_STEPS", 900)
    monkeypatch.setattr(loads_module, "CHUNK_STEPS", 250)
    parts = simulate_pipeline(trace, bundle, **options)
    np.testing.assert_array_equal(parts.records.loads, whole.records.loads)
    np.testing.assert_allclose(parts.records.step_time, whole.records.step_time, rtol=1e-9)
    assert parts.mean_step_time == pytest.approx(whole.mean_step_time, rel=1e-12)
    _check_against_records(parts, bundle, 100, 3 * COEFFS.beta_A)
    step_whole = simulate_step(trace, bundle, steps=3000, replay=True, init="cold")
    monkeypatch.setattr(loads_module, "SINGLE_CHUNK_STEPS", 10 ** 6)
    step_parts = simulate_step(trace, bundle, steps=3000, replay=True, init="cold")
    a, b = step_parts.to_dict(), step_whole.to_dict()
    assert a.keys() == b.keys()
    for key, value in b.items():  # the same run: only sums in another order differ
        assert a[key] == (pytest.approx(value, rel=1e-12)
                          if isinstance(value, float) else value), key


def test_engine_memory_does_not_grow_with_the_run(small_chunks, few_micro_batches):
    import tracemalloc

    bundle = Bundle(4, 32, COEFFS)

    def peak(steps):
        loads_module.release_work_arrays()
        tracemalloc.start()
        try:
            simulate_step(GEO, bundle, steps=steps, seed=1)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak(20_000), peak(200_000)
    assert long < 1.2 * short + 200_000
    with_records = []

    def keep(first, rec):
        with_records.append(rec.step_time.size)

    simulate_step(GEO, bundle, steps=2000, seed=1, record_to=keep)
    assert sum(with_records) == 2000 and max(with_records) == 256
