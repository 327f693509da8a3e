"""Step-time quantiles (exact and Gaussian law of the slowest worker) and the best ratio
under a latency target: by hand, by enumeration, by Monte Carlo and against the simulator's
per-step records."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint, StepCoefficients
from afdlib.provision import (
    max_load_quantile,
    max_normal_quantile,
    provision,
    slo_ratio,
    step_time_cdf_exact,
    step_time_cdf_gaussian,
    step_time_quantile_exact,
    step_time_quantile_gaussian,
    worker_load_law,
)
from afdlib.sim import Bundle, simulate
from afdlib.workload import (
    DiscretizedLognormal,
    Geometric,
    IndependentLengths,
    JointLengths,
    load_stats,
    stationary_load_pmf,
)

# attention binds at small r (t_A = 2e-8 * B * theta + 2e-3 against t_F = 2e-6 r B + 4e-3)
COEFFS = StepCoefficients(alpha_A=2e-8, beta_A=2e-3, alpha_F=2e-6, beta_F=4e-3,
                          alpha_C=1e-7, beta_C=1e-3)
HEAVY = IndependentLengths(DiscretizedLognormal(median=800, sigma=1.2, max_value=40_000),
                           Geometric(200))


def point_for(workload, coeffs, batch):
    s = load_stats(workload)
    return OperatingPoint(coeffs=coeffs, theta=s.theta, load_std=s.load_std, batch=batch)


def test_max_normal_quantile_by_hand():
    for r in (1, 2, 7, 64):
        for q in (0.5, 0.9, 0.99, 0.999):
            assert max_normal_quantile(r, q) == pytest.approx(stats.norm.ppf(q ** (1 / r)),
                                                              rel=1e-9, abs=1e-12)
    # deep tails keep their digits: 1 - 0.999**(1/1000) is about 1e-6
    assert max_normal_quantile(1000, 0.999) == pytest.approx(
        stats.norm.isf(-math.expm1(math.log(0.999) / 1000)), rel=1e-12)
    # the quantile of the largest of r normals grows with r
    q = max_normal_quantile(np.arange(1, 40), 0.99)
    assert np.all(np.diff(q) > 0)


def test_gaussian_step_quantile_is_the_formula():
    p = OperatingPoint(coeffs=COEFFS, theta=900.0, load_std=700.0, batch=32)
    r = np.arange(1, 30)
    mu = COEFFS.alpha_A * 32 * 900.0 + COEFFS.beta_A
    sd = COEFFS.alpha_A * math.sqrt(32) * 700.0
    g = np.maximum(COEFFS.alpha_C * 32 + COEFFS.beta_C, COEFFS.alpha_F * r * 32 + COEFFS.beta_F)
    want = np.maximum(g, mu + sd * stats.norm.ppf(0.99 ** (1 / r)))
    np.testing.assert_allclose(step_time_quantile_gaussian(p, r, 0.99), want, rtol=1e-12)
    # at the quantile the step-time CDF is q
    for rr in (1, 3, 9):
        t = float(step_time_quantile_gaussian(p, rr, 0.99))
        if t > float(g[rr - 1]):
            assert float(step_time_cdf_gaussian(p, rr, t)) == pytest.approx(0.99, rel=1e-10)


def test_exact_quantile_by_enumeration_on_a_tiny_trace():
    # three request rows, B = 2 slots, r up to 3 workers: enumerate every load combination
    rows = JointLengths(np.array([0, 5, 40]), np.array([3, 1, 6]))
    values, probs = stationary_load_pmf(rows)
    b = 2
    worker = {}
    for combo in itertools.product(range(values.size), repeat=b):
        load = int(values[list(combo)].sum())
        worker[load] = worker.get(load, 0.0) + float(np.prod(probs[list(combo)]))
    loads = np.array(sorted(worker))
    pw = np.array([worker[x] for x in loads])
    law = worker_load_law(rows, b, bins=4096)
    assert law.step == 1.0
    for r in (1, 2, 3):
        cdf_max = np.cumsum(pw) ** r
        for q in (0.5, 0.9, 0.99):
            discrete = loads[int(np.searchsorted(cdf_max, q - 1e-12))]
            got = float(max_load_quantile(law, r, q))
            # linear interpolation between grid values: within one token below the
            # discrete quantile
            assert discrete - 1.0 - 1e-9 <= got <= discrete + 1e-9


@pytest.mark.parametrize("batch", [4, 16])
def test_exact_quantile_against_monte_carlo(batch):
    rng = np.random.default_rng(11)
    from afdlib.workload import sample_stationary_slots

    law = worker_load_law(HEAVY, batch)
    n = 400_000
    ctx, _ = sample_stationary_slots(HEAVY, rng, n * batch)
    loads = ctx.reshape(n, batch).sum(axis=1).astype(float)
    for r, q in ((1, 0.99), (4, 0.99), (1, 0.5)):
        m = n // r
        mx = loads[: m * r].reshape(m, r).max(axis=1)
        mc = np.quantile(mx, q)
        # standard error of a sample quantile: sqrt(q (1 - q) / m) / density at it
        dens = stats.gaussian_kde(mx[:20_000])(mc)[0]
        se = math.sqrt(q * (1 - q) / m) / dens
        assert abs(float(max_load_quantile(law, r, q)) - mc) < 5 * se + law.step


def test_exact_step_quantile_matches_its_cdf_and_is_monotone():
    p = point_for(HEAVY, COEFFS, 8)
    law = worker_load_law(HEAVY, 8)
    r = np.arange(1, 40)
    p99 = step_time_quantile_exact(p, law, r, 0.99)
    p50 = step_time_quantile_exact(p, law, r, 0.5)
    assert np.all(np.diff(p99) >= -1e-15) and np.all(p99 >= p50)
    g = COEFFS.rest_of_step(batch=8, ratio=r)
    assert np.all(p99 >= g - 1e-15)
    for rr in (1, 2, 5):
        t = float(p99[rr - 1])
        if t > g[rr - 1]:
            assert float(step_time_cdf_exact(p, law, rr, t)) == pytest.approx(0.99, abs=2e-3)
    # below the rest of the step nothing is possible
    assert float(step_time_cdf_exact(p, law, 30, 0.5 * float(g[29]))) == 0.0


def _simulated_quantiles(workload, point, ratio, *, steps, seeds, q=(0.5, 0.99)):
    """Per-step quantiles of independent simulator runs (their per-step records)."""
    out = []
    for s in seeds:
        res = simulate(workload, Bundle.at(point, ratio), steps=steps, seed=s, record=True,
                       warmup=steps // 20)
        out.append(np.quantile(res.records.step_time[res.warmup:], q))
    out = np.array(out)
    return out.mean(axis=0), out.std(axis=0, ddof=1) / math.sqrt(len(seeds))


@pytest.mark.parametrize("workload, batch, ratio", [
    (HEAVY, 4, 2),          # few slots, heavy tail: the Gaussian is poor
    (HEAVY, 16, 3),
    (IndependentLengths(Geometric(300, start=0), Geometric(400)), 32, 4),
])
def test_predicted_quantiles_against_the_simulators_per_step_records(workload, batch, ratio):
    # attention of a worker at the mean load takes 4 ms + beta_A: it binds at these ratios
    theta = load_stats(workload).theta
    coeffs = StepCoefficients(alpha_A=4e-3 / (batch * theta), beta_A=2e-3, alpha_F=2e-6,
                              beta_F=4e-3, alpha_C=1e-7, beta_C=1e-3)
    p = point_for(workload, coeffs, batch)
    law = worker_load_law(workload, batch)
    mean, se = _simulated_quantiles(workload, p, ratio, steps=200_000, seeds=range(6))
    exact = [float(step_time_quantile_exact(p, law, ratio, q)) for q in (0.5, 0.99)]
    grid = coeffs.alpha_A * law.step           # one grid step of load, in seconds
    for k in range(2):
        assert abs(exact[k] - mean[k]) < 4 * se[k] + grid + 1e-12 * mean[k], (k, exact, mean, se)
    # and the attention term binds here, so the check is not only of G
    assert exact[1] > float(coeffs.rest_of_step(batch=batch, ratio=ratio)) * 1.01


def test_gaussian_quantile_misses_a_skewed_law_that_the_exact_one_gets():
    # B = 4 heavy-tailed slots: worker loads are right-skewed, the normal p99 is too low
    attention_only = StepCoefficients(alpha_A=1e-7, beta_A=0.0, alpha_F=1e-12, beta_F=0.0)
    p = point_for(HEAVY, attention_only, 4)
    law = worker_load_law(HEAVY, 4)
    exact = float(step_time_quantile_exact(p, law, 1, 0.99))
    gauss = float(step_time_quantile_gaussian(p, 1, 0.99))
    assert gauss < exact * 0.97
    # ...while at the median the normal law is too high (the mean exceeds the median)
    assert float(step_time_quantile_gaussian(p, 1, 0.5)) > float(
        step_time_quantile_exact(p, law, 1, 0.5))


def test_slo_ratio_picks_the_best_feasible_ratio():
    ratios = np.arange(1, 8)
    lam = np.array([1.0, 2.0, 3.0, 3.5, 3.2, 3.0, 2.0])
    p99 = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6])
    c = slo_ratio(ratios, lam, p99, 1.25)
    assert (c.r_int, c.throughput, c.met) == (3, 3.0, True)
    assert list(c.ratios[c.feasible]) == [1, 2, 3]
    c = slo_ratio(ratios, lam, p99, 10.0)
    assert c.r_int == 4                               # unconstrained best
    c = slo_ratio(ratios, lam, p99, 0.5)
    assert c.r_int is None and not c.met
    assert (c.smallest_target, c.smallest_at) == (1.0, 1)
    d = c.to_dict()
    assert d["r_int"] is None and d["smallest_target"] == 1.0 and d["feasible_ratios"] == []
    with pytest.raises(AfdInputError, match="tpot_p99 must be > 0"):
        slo_ratio(ratios, lam, p99, 0.0)
    with pytest.raises(AfdInputError, match="one length"):
        slo_ratio(ratios, lam[:3], p99, 1.0)
    with pytest.raises(AfdInputError, match="quantile must be < 1"):
        slo_ratio(ratios, lam, p99, 1.0, quantile=1.0)


def test_provision_reports_quantiles_and_the_latency_choice():
    theta = load_stats(HEAVY).theta
    coeffs = StepCoefficients(alpha_A=6e-3 / (8 * theta), beta_A=2e-3, alpha_F=2e-6,
                              beta_F=4e-3, alpha_C=1e-7, beta_C=1e-3)
    p = point_for(HEAVY, coeffs, 8)
    law = worker_load_law(HEAVY, 8)
    p99 = step_time_quantile_exact(p, law, np.arange(1, 8))
    assert np.all(np.diff(p99) > 0)                   # attention binds: p99 grows with r
    res = provision(p, law=law, tpot_p99=0.5 * float(p99[4] + p99[5]), max_ratio=20)
    np.testing.assert_allclose(res.step_time_p99,
                               step_time_quantile_exact(p, law, np.arange(1, 21)), rtol=1e-14)
    # the target excludes r = 6 and above (p99 grows with r), and the choice is the best
    # exact-load objective among the rest
    feasible = res.step_time_p99 <= res.slo.target
    assert not feasible[5:].any()
    lam = res.objective_table()["exact_load"]
    assert res.slo.r_int == int(np.argmax(np.where(feasible, lam, -np.inf))) + 1
    d = res.to_dict()
    assert d["r_int_slo"] == res.slo.r_int
    row = d["throughput_per_instance"]["3"]
    assert row["step_time_p99"] == pytest.approx(float(res.step_time_p99[2]))
    assert row["exact_load"] == row["exact"]
    # no target: no slo keys; an impossible one: null and the smallest achievable target
    assert "r_int_slo" not in provision(p, law=law, max_ratio=20).to_dict()
    d = provision(p, law=law, tpot_p99=1e-4, max_ratio=20).to_dict()
    assert d["r_int_slo"] is None
    assert d["slo"]["smallest_at"] == 1
    assert d["slo"]["smallest_target"] == pytest.approx(float(res.step_time_p99[0]))


def test_bad_quantile_inputs():
    p = point_for(HEAVY, COEFFS, 8)
    with pytest.raises(AfdInputError, match="quantile must be > 0"):
        step_time_quantile_gaussian(p, 2, 0.0)
    with pytest.raises(AfdInputError, match="ratio must be >= 1"):
        step_time_quantile_gaussian(p, 0.5, 0.99)
    law = worker_load_law(HEAVY, 4)
    with pytest.raises(AfdInputError, match="the worker-load law is for B = 4"):
        step_time_quantile_exact(p, law, 2)


def test_attention_bound_slo_ratio_solves_the_quantile_equation():
    from afdlib.provision import attention_bound_slo_ratio

    # attention alone sets the step: tiny FFN and communication
    c = StepCoefficients(alpha_A=2e-8, beta_A=1e-3, alpha_F=1e-12, beta_F=0.0)
    p = OperatingPoint(coeffs=c, theta=2000.0, load_std=1500.0, batch=16)
    for target in (1.95e-3, 2.0e-3, 2.1e-3):      # p99 at r = 1 is 1.92 ms
        r_t = attention_bound_slo_ratio(p, target)
        # at r_T the Gaussian p99 equals the target; just below it meets it, above not
        assert float(step_time_quantile_gaussian(p, r_t, 0.99)) == pytest.approx(target,
                                                                                 rel=1e-10)
        k = math.floor(r_t)
        if k >= 1:
            assert float(step_time_quantile_gaussian(p, k, 0.99)) <= target
        assert float(step_time_quantile_gaussian(p, k + 1, 0.99)) > target
    # no spread: no barrier, any ratio or none
    flat = p.replace(load_std=0.0)
    assert attention_bound_slo_ratio(flat, 1.7e-3) == math.inf
    assert attention_bound_slo_ratio(flat, 1.6e-3) == 0.0
