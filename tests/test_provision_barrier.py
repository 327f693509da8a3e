"""The barrier refinement: the Gaussian tail integral, its limits, and its optimum."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint, StepCoefficients
from afdlib.provision import (
    barrier_moments,
    barrier_ratio,
    expected_excess,
    expected_max_normal,
    expected_step_time,
    gaussian_barrier_overhead,
    max_normal_median,
    mean_field_ratio,
    mean_field_step_time,
    step_time_decomposition,
    throughput_barrier,
    throughput_mean_field,
)

COEFFS = StepCoefficients(alpha_A=2.5e-8, beta_A=1e-3, alpha_F=2e-6, beta_F=1.6e-2,
                          alpha_C=2e-7, beta_C=1e-3)


def pt(coeffs, theta, batch, load_std=0.0):
    """The operating point of the old positional arguments."""
    return OperatingPoint(coeffs=coeffs, theta=theta, batch=batch, load_std=load_std)


def quad_excess(z: float, r: float) -> float:
    """Independent reference: adaptive quadrature of 1 - Phi^r (split at 0 and far out)."""
    def sf(x):
        return -np.expm1(r * special.log_ndtr(x))

    def cdf(x):
        return math.exp(r * special.log_ndtr(x))

    if z >= 0:
        return integrate.quad(sf, z, np.inf, epsabs=0, epsrel=1e-12, limit=400)[0]
    # int_z^inf (1 - Phi^r) = -z + int_0^inf (1 - Phi^r) - ... written as
    # int_z^0 (1 - Phi^r) dx + int_0^inf (1 - Phi^r) dx, the first as (-z) - int_z^0 Phi^r
    lower = integrate.quad(cdf, z, 0.0, epsabs=0, epsrel=1e-12, limit=400)[0]
    upper = integrate.quad(sf, 0.0, np.inf, epsabs=0, epsrel=1e-12, limit=400)[0]
    return -z - lower + upper


# ---------------------------------------------------------------------------
# E[max of r standard normals]
# ---------------------------------------------------------------------------


def test_expected_max_known_values():
    # r = 2, 3 in closed form; r = 4, 5, 10 from published tables (Harter 1961)
    got = expected_max_normal([1, 2, 3, 4, 5, 10])
    want = [0.0, 1 / math.sqrt(math.pi), 1.5 / math.sqrt(math.pi), 1.0293753730, 1.1629644736,
            1.5387527308]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-10)


def test_expected_max_matches_monte_carlo():
    rng = np.random.default_rng(20260401)
    for r in (1, 3, 17, 200, 1000):
        m = rng.standard_normal((4000, r)).max(axis=1)
        se = m.std(ddof=1) / math.sqrt(m.size)
        assert abs(m.mean() - expected_max_normal(r)) < 4 * se


def test_expected_max_bounds_and_asymptotics():
    r = np.array([2.0, 10.0, 100.0, 1e3, 1e4, 1e6])
    m = expected_max_normal(r)
    bound = np.sqrt(2 * np.log(r))
    assert np.all(m < bound)                       # E max <= sqrt(2 ln r)
    assert np.all(np.diff(m / bound) > 0)          # and the ratio creeps up towards 1
    # the second-order expansion is within a few percent at r = 1e6
    lr = 2 * np.log(1e6)
    second = math.sqrt(lr) - (math.log(math.log(1e6)) + math.log(4 * math.pi)
                              - 2 * np.euler_gamma) / (2 * math.sqrt(lr))
    assert m[-1] == pytest.approx(second, rel=0.01)


def test_median_of_the_maximum():
    r = np.array([1.0, 2.0, 50.0, 1e4])
    c = max_normal_median(r)
    np.testing.assert_allclose(special.ndtr(c) ** r, 0.5, rtol=1e-12)


# ---------------------------------------------------------------------------
# The tail integral I_r(z)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("r", [1, 1.5, 2, 7, 64, 1000, 5000, 1e5])
def test_excess_matches_adaptive_quadrature(r):
    zs = np.array([-300.0, -30.0, -6.0, -2.0, -0.5, 0.0, 0.7, 1.5, 2.5, 3.5, 5.0, 8.0, 15.0])
    got = expected_excess(zs, r)
    want = np.array([quad_excess(z, r) for z in zs])
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_excess_for_one_worker_is_the_normal_loss_function():
    z = np.linspace(-4, 4, 33)
    np.testing.assert_allclose(expected_excess(z, 1), stats.norm.pdf(z) - z * stats.norm.sf(z),
                               rtol=1e-11, atol=1e-15)


def test_excess_far_in_the_upper_tail_keeps_relative_accuracy():
    # I_1(z) = phi(z)/z^2 (1 - 3/z^2 + 15/z^4 - 105/z^6 + ...) for large z
    z = np.array([12.0, 20.0, 30.0, 37.0])
    series = stats.norm.pdf(z) / z**2 * (1 - 3 / z**2 + 15 / z**4 - 105 / z**6 + 945 / z**8)
    np.testing.assert_allclose(expected_excess(z, 1), series, rtol=1e-6)
    # and r workers: each can exceed, I_r ~ r I_1 while r Q(z) is tiny
    np.testing.assert_allclose(expected_excess(z, 1000), 1000 * series, rtol=1e-6)


def test_excess_far_in_the_lower_tail_is_mean_minus_threshold():
    r = np.array([1.0, 10.0, 1000.0])
    for z in (-50.0, -1e4, -1e8):
        np.testing.assert_allclose(expected_excess(z, r), expected_max_normal(r) - z,
                                   rtol=1e-14)


def test_excess_limits_and_shapes():
    assert expected_excess(np.inf, 5) == 0.0
    assert expected_excess(-np.inf, 5) == np.inf
    z = np.linspace(-3, 6, 7)[:, None]
    r = np.arange(1, 1001)[None, :]
    out = expected_excess(z, r)
    assert out.shape == (7, 1000) and np.all(np.isfinite(out)) and np.all(out > 0)
    assert np.all(np.diff(out, axis=1) > 0)        # more workers, more excess
    assert np.all(np.diff(out, axis=0) < 0)        # higher threshold, less excess
    assert np.ndim(expected_excess(0.3, 4)) == 0
    # thresholds far beyond double precision's range neither overflow nor lose the mean
    huge = np.array([-1e200, -1e30, 1e30, 1e200])
    out = expected_excess(huge, 3.0)
    np.testing.assert_allclose(out, [1e200, 1e30, 0.0, 0.0], rtol=1e-15)


@pytest.mark.parametrize("z, r", [(float("nan"), 2), (0.0, 0.0), (0.0, -3), (0.0, np.inf)])
def test_excess_rejects_bad_arguments(z, r):
    with pytest.raises(AfdInputError, match="must not be NaN|workers r must be"):
        expected_excess(z, r)


# ---------------------------------------------------------------------------
# E[tau] against Monte-Carlo maxima of Gaussians
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("theta, sd, batch, r", [
    (600.0, 600.0, 256, 6),          # FFN-bound: z >> 0
    (4000.0, 4000.0, 256, 20),       # attention-bound: z < 0
    (4000.0, 4000.0, 256, 27),       # near the crossing
    (13125.0, 16516.0, 8, 1000),     # small batch, many workers
    (2000.0, 2000.0, 32, 1),
])
def test_expected_step_time_matches_monte_carlo(theta, sd, batch, r):
    rng = np.random.default_rng(7)
    mu, sig = barrier_moments(pt(COEFFS, theta, batch, load_std=sd))
    g = max(float(COEFFS.comm_time(batch=batch, ratio=r)), float(COEFFS.ffn_time(batch=batch, ratio=r)))
    n = 4000 if r < 1000 else 1500
    attention = mu + sig * rng.standard_normal((n, r)).max(axis=1)
    tau = np.maximum(g, attention)
    se = tau.std(ddof=1) / math.sqrt(n)
    want = float(expected_step_time(pt(COEFFS, theta, batch, load_std=sd), r))
    assert abs(tau.mean() - want) < 4 * se + 1e-15


def test_worker_loads_as_sums_of_slots_give_the_same_mean_step():
    # T_w = sum of B independent slot loads: the Gaussian model is its CLT limit
    rng = np.random.default_rng(11)
    batch, r, theta = 256, 12, 4000.0
    slots = rng.gamma(shape=1.0, scale=theta, size=(3000, r, batch))   # sd = theta
    loads = slots.sum(axis=2)
    attention = COEFFS.alpha_A * loads.max(axis=1) + COEFFS.beta_A
    tau = np.maximum(attention, float(COEFFS.ffn_time(batch=batch, ratio=r)))
    want = float(expected_step_time(pt(COEFFS, theta, batch, load_std=theta), r))
    assert tau.mean() == pytest.approx(want, rel=0.01)


# ---------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------


def test_zero_spread_gives_the_mean_field():
    r = np.arange(1, 80, dtype=float)
    for theta in (600.0, 4000.0):
        np.testing.assert_allclose(expected_step_time(pt(COEFFS, theta, 256, load_std=0.0), r),
                                   mean_field_step_time(pt(COEFFS, theta, 256), r), rtol=0)
        # a spread so small that z overflows is still the mean field, not NaN or infinity
        np.testing.assert_allclose(expected_step_time(pt(COEFFS, theta, 256, load_std=1e-300), r),
                                   mean_field_step_time(pt(COEFFS, theta, 256), r), rtol=1e-15)
        # and a vanishing spread converges to it, linearly: the excess over the mean field is
        # sigma_A (I_r(z) - max(-z, 0)), between 0 and sigma_A I_r(0)
        for cv in (1e-2, 1e-4, 1e-6):
            _, sig = barrier_moments(pt(COEFFS, theta, 256, load_std=cv * theta))
            diff = (expected_step_time(pt(COEFFS, theta, 256, load_std=cv * theta), r)
                    - mean_field_step_time(pt(COEFFS, theta, 256), r))
            assert np.all(diff >= 0) and np.all(diff <= sig * expected_excess(0.0, r) * (1 + 1e-9))


@pytest.mark.parametrize("theta", [600.0, 4000.0, 13125.0])
def test_small_spread_optimum_tends_to_the_mean_field_optimum(theta):
    mf = mean_field_ratio(pt(COEFFS, theta, 256))
    br = barrier_ratio(pt(COEFFS, theta, 256, load_std=1e-4 * theta), max_ratio=400)
    assert br.r_star == pytest.approx(mf.r_star, rel=2e-3)
    assert br.throughput == pytest.approx(mf.throughput, rel=1e-4)


def test_one_worker_has_no_barrier_but_a_variability_gap():
    for theta in (3000.0, 3400.0, 3800.0):
        d = step_time_decomposition(pt(COEFFS, theta, 256, load_std=theta), np.array([1.0]))
        mu, sig = barrier_moments(pt(COEFFS, theta, 256, load_std=theta))
        z = abs(float(d["z"][0]))
        assert d["barrier"][0] == pytest.approx(0.0, abs=1e-15)
        gap = sig * (stats.norm.pdf(z) - z * stats.norm.sf(z))
        assert d["variability"][0] == pytest.approx(gap, rel=1e-9)
        assert 0 < d["variability"][0] <= sig / math.sqrt(2 * math.pi)


def test_decomposition_adds_up_and_barrier_grows_with_r():
    r = np.arange(1, 60, dtype=float)
    d = step_time_decomposition(pt(COEFFS, 4000.0, 256, load_std=4000.0), r)
    np.testing.assert_allclose(d["mean_field"] + d["variability"] + d["barrier"], d["expected"],
                               rtol=1e-14)
    np.testing.assert_allclose(d["expected"], expected_step_time(pt(COEFFS, 4000.0, 256, load_std=4000.0), r),
                               rtol=1e-14)
    assert np.all(d["variability"] >= 0) and np.all(d["barrier"] >= 0)


@settings(max_examples=40, deadline=None)
@given(theta=st.floats(10, 5e4), cv=st.floats(0.0, 3.0), batch=st.integers(1, 512),
       comm=st.sampled_from(["B", "rB"]))
def test_barrier_never_raises_throughput(theta, cv, batch, comm):
    coeffs = StepCoefficients(**{**COEFFS.to_dict(), "comm_scales_with": comm})
    r = np.arange(1, 200, dtype=float)
    lam_b = throughput_barrier(pt(coeffs, theta, batch, load_std=cv * theta), r)
    lam_m = throughput_mean_field(pt(coeffs, theta, batch), r)
    assert np.all(lam_b <= lam_m * (1 + 1e-12))


# ---------------------------------------------------------------------------
# The optimum moves both ways
# ---------------------------------------------------------------------------


def test_barrier_ratio_moves_up_and_down():
    up_mf = mean_field_ratio(pt(COEFFS, 4000.0, 256))
    up = barrier_ratio(pt(COEFFS, 4000.0, 256, load_std=4000.0), max_ratio=100)
    assert up_mf.regime == "attention" and up.r_star > 1.1 * up_mf.r_star
    down_mf = mean_field_ratio(pt(COEFFS, 13125.0, 256))
    down = barrier_ratio(pt(COEFFS, 13125.0, 256, load_std=16516.0), max_ratio=300)
    assert down.r_star < 0.5 * down_mf.r_star
    # the integer optimum is the best of the integer table
    lam = throughput_barrier(pt(COEFFS, 13125.0, 256, load_std=16516.0), np.arange(1, 301))
    assert down.r_int == int(np.argmax(lam)) + 1 and not down.at_max_ratio


def test_barrier_inputs_are_validated():
    with pytest.raises(AfdInputError, match="load_std must be >= 0"):
        expected_step_time(pt(COEFFS, 100.0, 8, load_std=-1.0), 2)
    with pytest.raises(AfdInputError, match="theta must be finite"):
        throughput_barrier(pt(COEFFS, float("nan"), 8, load_std=1.0), 2)
    with pytest.raises(AfdInputError, match="ratio must be > 0"):
        expected_step_time(pt(COEFFS, 100.0, 8, load_std=1.0), 0)
    with pytest.raises(AfdInputError, match="ratio must be >= 1 in the barrier model"):
        throughput_barrier(pt(COEFFS, 100.0, 8, load_std=1.0), [0.5, 2.0])


def test_attention_limited_ratio_is_the_barrier_optimum_without_ffn_cost():
    from afdlib.provision import attention_limited_ratio

    kappas = np.array([0.01, 0.05, 0.2])
    caps = attention_limited_ratio(kappas)
    assert np.all(np.diff(caps) < 0)                   # more dispersion, fewer workers
    # a bundle whose FFN and communication are (almost) free: the barrier model's optimum
    free_ffn = StepCoefficients(alpha_A=1e-8, beta_A=0.0, alpha_F=1e-15, beta_F=0.0)
    for kappa, cap in zip(kappas, caps, strict=True):
        theta, batch = 1000.0, 4
        sd = kappa * theta * math.sqrt(batch)          # sigma_A / mu_A = sd / (theta sqrt(B))
        br = barrier_ratio(pt(free_ffn, theta, batch, load_std=sd), max_ratio=2, search=(1.0, 1e6))
        assert br.r_star == pytest.approx(cap, rel=1e-5)
        # stationarity: 1/(r(r+1)) = kappa m'(r) / (1 + kappa m(r))
        h = 1e-4 * cap
        dm = (expected_max_normal(cap + h) - expected_max_normal(cap - h)) / (2 * h)
        lhs = 1 / (cap * (cap + 1))
        assert lhs == pytest.approx(kappa * dm / (1 + kappa * expected_max_normal(cap)), rel=1e-3)
    with pytest.raises(AfdInputError, match="kappa"):
        attention_limited_ratio(0.0)


def test_gaussian_barrier_overhead_is_the_mean_gap_between_slowest_and_mean_worker():
    rng = np.random.default_rng(3)
    p = pt(COEFFS, 2000.0, 64, load_std=1500.0)
    mu, sig = barrier_moments(p)
    for r in (2, 9, 40):
        a = mu + sig * rng.standard_normal((20000, r))
        gap = a.max(axis=1) - a.mean(axis=1)
        se = gap.std(ddof=1) / math.sqrt(gap.size)
        assert abs(gap.mean() - float(gaussian_barrier_overhead(p, r))) < 4 * se
    # sigma_A = alpha_A sqrt(B) sigma, by hand; E[max of 2] = 1 / sqrt(pi)
    assert float(gaussian_barrier_overhead(p, 2)) == pytest.approx(
        2.5e-8 * 8.0 * 1500.0 / math.sqrt(math.pi), rel=1e-12)
