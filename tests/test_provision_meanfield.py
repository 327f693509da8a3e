"""Mean-field provisioning: closed forms against direct numerical maximization, regimes,
integer choice, cost weights and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from afdlib.errors import AfdInputError
from afdlib.model import Objective, OperatingPoint, StepCoefficients
from afdlib.provision import (
    InstancePrices,
    attention_bound_theta,
    best_integer_mean_field,
    best_integer_ratio,
    maximize_ratio,
    mean_field_ratio,
    step_components,
    throughput_mean_field,
)

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def pt(coeffs, theta, batch, prices=None):
    """The operating point of the old positional arguments."""
    return OperatingPoint(coeffs=coeffs, theta=theta, batch=batch,
                          objective=Objective(prices=prices or InstancePrices()))


def log_uniform(lo: float, hi: float):
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: 10.0 ** e)


def maybe_zero(strategy):
    """Mostly ``strategy``, sometimes exactly 0 (an intercept or slope that is absent)."""
    return st.one_of(strategy, strategy, strategy, st.just(0.0))


@st.composite
def operating_points(draw, comm=None):
    """Random coefficients (realistic decades, some intercepts zero), theta, B and prices."""
    comm = comm or draw(st.sampled_from(["B", "rB"]))
    coeffs = StepCoefficients(
        alpha_A=draw(log_uniform(1e-10, 1e-6)),
        beta_A=draw(maybe_zero(log_uniform(1e-5, 1e-1))),
        alpha_F=draw(log_uniform(1e-8, 1e-4)),
        beta_F=draw(maybe_zero(log_uniform(1e-5, 1e-1))),
        alpha_C=draw(maybe_zero(log_uniform(1e-9, 1e-4))),
        beta_C=draw(maybe_zero(log_uniform(1e-6, 1e-1))),
        comm_scales_with=comm,
    )
    theta = draw(log_uniform(1.0, 1e5))
    batch = draw(st.integers(1, 1024))
    prices = draw(st.one_of(st.none(), st.builds(InstancePrices, log_uniform(0.1, 10),
                                                 log_uniform(0.1, 10))))
    return coeffs, theta, batch, prices


def independent_lambda(coeffs, theta, batch, r, prices=None):
    """Throughput per instance written out from the model's definition (not the library)."""
    r = np.asarray(r, dtype=float)
    t_a = coeffs.alpha_A * batch * theta + coeffs.beta_A
    comm_tokens = r * batch if coeffs.comm_scales_with == "rB" else batch
    t_c = coeffs.alpha_C * comm_tokens + coeffs.beta_C
    t_f = coeffs.alpha_F * r * batch + coeffs.beta_F
    tau = np.maximum(np.maximum(t_a, t_c), t_f)
    pa, pf = (1.0, 1.0) if prices is None else (prices.attention, prices.ffn)
    return r * batch / ((pa * r + pf) * tau)


def _optimum_or_skip(coeffs, theta, batch, prices):
    try:
        return mean_field_ratio(pt(coeffs, theta, batch, prices=prices))
    except AfdInputError:
        assume(False)


@SETTINGS
@given(operating_points())
def test_closed_form_equals_numerical_argmax(point):
    coeffs, theta, batch, prices = point
    opt = _optimum_or_skip(coeffs, theta, batch, prices)
    assume(1e-3 < opt.r_star < 1e6)

    def lam(r):
        return independent_lambda(coeffs, theta, batch, r, prices)

    r_num, v_num = maximize_ratio(lam, 1e-4, 1e7)
    assert r_num == pytest.approx(opt.r_star, rel=1e-5)
    # the closed form is at least as good as anything the search found
    assert float(lam(opt.r_star)) >= v_num * (1 - 1e-12)
    assert opt.throughput == pytest.approx(float(lam(opt.r_star)), rel=1e-12)
    # and a dense grid never beats it
    grid = np.geomspace(1e-3, 1e6, 20001)
    assert float(lam(opt.r_star)) >= lam(grid).max() * (1 - 1e-12)


@SETTINGS
@given(operating_points(comm="B"))
def test_first_version_is_max_of_three(point):
    coeffs, theta, batch, prices = point
    opt = _optimum_or_skip(coeffs, theta, batch, prices)
    f = coeffs.alpha_F * batch
    t_a = coeffs.alpha_A * batch * theta + coeffs.beta_A
    t_c = coeffs.alpha_C * batch + coeffs.beta_C
    pi = 1.0 if prices is None else prices.ffn / prices.attention
    r_a, r_c = (t_a - coeffs.beta_F) / f, (t_c - coeffs.beta_F) / f
    r_peak = math.sqrt(pi * coeffs.beta_F / f)
    assert opt.r_A == pytest.approx(r_a, rel=1e-12, abs=1e-12)
    assert opt.r_C == pytest.approx(r_c, rel=1e-12, abs=1e-12)
    assert opt.r_peak == pytest.approx(r_peak, rel=1e-12)
    assert opt.r_star == max(opt.r_A, opt.r_C, opt.r_peak)


@SETTINGS
@given(operating_points())
def test_throughput_is_unimodal_around_r_star(point):
    coeffs, theta, batch, prices = point
    opt = _optimum_or_skip(coeffs, theta, batch, prices)
    assume(1e-2 < opt.r_star < 1e5)
    left = np.geomspace(opt.r_star * 1e-3, opt.r_star, 400)
    right = np.geomspace(opt.r_star, opt.r_star * 1e3, 400)
    p = pt(coeffs, theta, batch, prices)
    assert np.all(np.diff(throughput_mean_field(p, left)) >= -1e-12 * opt.throughput)
    assert np.all(np.diff(throughput_mean_field(p, right)) <= 1e-12 * opt.throughput)


@SETTINGS
@given(operating_points())
def test_regime_names_the_term_that_binds_below_r_star(point):
    coeffs, theta, batch, prices = point
    opt = _optimum_or_skip(coeffs, theta, batch, prices)
    assume(1e-3 < opt.r_star < 1e6)
    # just below r*, the named term is the largest (skip ties closer than rounding error)
    comp = step_components(pt(coeffs, theta, batch), opt.r_star * (1 - 1e-6))
    values = {k: float(comp[k]) for k in ("attention", "communication", "ffn")}
    ordered = sorted(values.values())
    assume(ordered[-1] - ordered[-2] > 1e-12 * ordered[-1])
    assert max(values, key=values.get) == opt.regime


@SETTINGS
@given(operating_points(), st.integers(1, 200))
def test_best_integer_compares_neighbours_and_matches_exhaustive_search(point, extra):
    coeffs, theta, batch, prices = point
    opt = _optimum_or_skip(coeffs, theta, batch, prices)
    assume(opt.r_star < 5000)
    top = int(math.ceil(opt.r_star)) + extra

    def lam(r):
        return independent_lambda(coeffs, theta, batch, r, prices)

    r_int, values = best_integer_ratio(lam, top)
    assert best_integer_mean_field(pt(coeffs, theta, batch, prices=prices), max_ratio=top) == r_int
    assert values[r_int - 1] == values.max()
    # with a cap below the optimum the cap is best (unimodality)
    if opt.r_star > 2:
        cap = int(math.floor(opt.r_star)) - 1
        assert best_integer_mean_field(pt(coeffs, theta, batch, prices=prices), max_ratio=cap) == cap


def test_rounding_can_pick_the_wrong_integer():
    # attention-bound, FFN intercept 4x its slope per worker (r_peak = 2 < r_A = 2.4):
    # Lambda rises like r/(r+1) below r_A and falls slowly above it, so 3 beats 2
    coeffs = StepCoefficients(alpha_A=1e-8, beta_A=0.0, alpha_F=1e-6, beta_F=4e-4)
    batch, theta = 100, 640.0      # t_A = 6.4e-4 s, FFN slope 1e-4 s per worker
    opt = mean_field_ratio(pt(coeffs, theta, batch))
    assert opt.formula == "r_A" and opt.r_star == pytest.approx(2.4)
    lam = throughput_mean_field(pt(coeffs, theta, batch), np.array([2.0, 3.0]))
    assert lam[1] > lam[0]
    assert best_integer_mean_field(pt(coeffs, theta, batch)) == 3 != round(opt.r_star)


# ---------------------------------------------------------------------------
# Communication growing with r
# ---------------------------------------------------------------------------


def _rb(**kw) -> StepCoefficients:
    base = dict(alpha_A=1e-8, beta_A=1e-3, alpha_F=1e-6, beta_F=1e-2, alpha_C=1e-7,
                beta_C=1e-4, comm_scales_with="rB")
    base.update(kw)
    return StepCoefficients(**base)


@pytest.mark.parametrize("coeffs, theta, batch, formula, regime", [
    (_rb(), 1000.0, 64, "r_peak", "ffn"),
    (_rb(), 20000.0, 64, "r_A", "attention"),
    # communication heavier than the FFN per token and with a larger intercept
    (_rb(alpha_C=4e-6, beta_C=3e-2, beta_F=1e-3), 100.0, 64, "r_peak_C", "communication"),
    # attention is caught first by communication
    (_rb(alpha_C=4e-6, beta_C=1e-4, beta_F=1e-4), 20000.0, 64, "r_C", "attention"),
    # the two growing lines cross between their stationary points
    (_rb(alpha_C=1e-8, beta_C=2e-2, alpha_F=3e-6, beta_F=1e-3), 100.0, 64, "r_CF",
     "communication"),
])
def test_every_closed_form_of_the_general_rule_occurs_and_is_right(coeffs, theta, batch,
                                                                   formula, regime):
    opt = mean_field_ratio(pt(coeffs, theta, batch))
    assert (opt.formula, opt.regime) == (formula, regime)
    assert opt.r_star == pytest.approx(getattr(opt, formula), rel=1e-12)
    r_num, _ = maximize_ratio(lambda r: independent_lambda(coeffs, theta, batch, r), 1e-4, 1e7)
    assert r_num == pytest.approx(opt.r_star, rel=1e-5)


def test_naive_max_of_three_fails_when_communication_grows():
    # communication catches attention long before the FFN does: the first version's
    # max{r_A, r_C, r_peak} (with r_C the FFN/communication crossing) overshoots
    coeffs = _rb(alpha_C=4e-6, beta_C=1e-4, beta_F=1e-4)
    theta, batch = 20000.0, 64
    opt = mean_field_ratio(pt(coeffs, theta, batch))
    f = coeffs.alpha_F * batch
    t_c1 = coeffs.alpha_C * batch + coeffs.beta_C  # communication of one worker
    naive = max(opt.r_A, (t_c1 - coeffs.beta_F) / f, opt.r_peak)
    lam = throughput_mean_field(pt(coeffs, theta, batch), np.array([opt.r_star, naive]))
    assert naive > 2 * opt.r_star
    assert lam[0] > 1.5 * lam[1]


def test_rb_without_slope_is_the_first_version():
    a = mean_field_ratio(pt(_rb(alpha_C=0.0, beta_C=5e-3), 3000.0, 32))
    b = mean_field_ratio(pt(_rb(alpha_C=0.0, beta_C=5e-3, comm_scales_with="B"), 3000.0, 32))
    assert (a.r_A, a.r_C, a.r_peak, a.r_star, a.regime) == (b.r_A, b.r_C, b.r_peak, b.r_star,
                                                            b.regime)


# ---------------------------------------------------------------------------
# Cost weights
# ---------------------------------------------------------------------------


def test_equal_prices_do_not_move_the_optimum():
    coeffs = _rb(comm_scales_with="B")
    plain = mean_field_ratio(pt(coeffs, 800.0, 128))
    scaled = mean_field_ratio(pt(coeffs, 800.0, 128, prices=InstancePrices(3.0, 3.0)))
    assert scaled.r_star == pytest.approx(plain.r_star, rel=1e-14)
    assert scaled.throughput == pytest.approx(plain.throughput / 3.0, rel=1e-12)


@pytest.mark.parametrize("price_ratio", [0.25, 1.0, 4.0, 9.0])
def test_ffn_price_scales_the_stationary_point_by_its_square_root(price_ratio):
    coeffs = _rb(comm_scales_with="B")
    base = mean_field_ratio(pt(coeffs, 800.0, 128))
    assert base.formula == "r_peak"
    opt = mean_field_ratio(pt(coeffs, 800.0, 128, prices=InstancePrices(1.0, price_ratio)))
    assert opt.r_peak == pytest.approx(math.sqrt(price_ratio) * base.r_peak, rel=1e-12)
    assert opt.r_A == base.r_A and opt.r_C == base.r_C  # crossings do not depend on prices


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

GOOD = dict(alpha_A=1e-8, beta_A=1e-3, alpha_F=1e-6, beta_F=1e-2, alpha_C=1e-7, beta_C=1e-4)


@pytest.mark.parametrize("field, value, fragment", [
    ("alpha_A", -1e-8, "alpha_A must be >= 0"),
    ("beta_F", -0.1, "beta_F must be >= 0"),
    ("alpha_C", float("nan"), "alpha_C must be finite"),
    ("beta_A", float("inf"), "beta_A must be finite"),
    ("alpha_F", 0.0, "alpha_F must be > 0"),
    ("alpha_A", 0.0, "alpha_A must be > 0"),
    ("beta_C", "1e-3", "beta_C must be a number"),
])
def test_bad_coefficients_are_rejected(field, value, fragment):
    with pytest.raises(AfdInputError, match=fragment):
        StepCoefficients(**{**GOOD, field: value})


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(theta=-1.0), "theta must be >= 0"),
    (dict(theta=float("nan")), "theta must be finite"),
    (dict(batch=0), "batch must be > 0"),
    (dict(batch=float("inf")), "batch must be finite"),
    (dict(load_std=-2.0), "load_std must be >= 0"),
    (dict(coeffs=GOOD), "StepCoefficients"),
    (dict(objective=InstancePrices()), "Objective"),
])
def test_bad_operating_points_are_rejected(kwargs, fragment):
    args = dict(coeffs=StepCoefficients(**GOOD), theta=500.0, batch=64)
    args.update(kwargs)
    with pytest.raises(AfdInputError, match=fragment):
        OperatingPoint(**args)


def test_operating_point_floats_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        OperatingPoint(StepCoefficients(**GOOD), 500.0, 64)  # positional floats are refused
    with pytest.raises(AfdInputError, match="point must be an afdlib.model.OperatingPoint"):
        mean_field_ratio(StepCoefficients(**GOOD))


@pytest.mark.parametrize("ratio", [0.0, -1.0, float("nan"), [1.0, 0.0]])
def test_bad_ratios_are_rejected(ratio):
    with pytest.raises(AfdInputError, match="ratio must be"):
        throughput_mean_field(pt(StepCoefficients(**GOOD), 500.0, 64), ratio)


def test_bad_prices_and_ranges_are_rejected():
    with pytest.raises(AfdInputError, match="FFN price must be > 0"):
        InstancePrices(1.0, 0.0)
    with pytest.raises(AfdInputError, match="attention price must be finite"):
        InstancePrices(float("nan"), 1.0)
    with pytest.raises(AfdInputError, match="max_ratio must be >= 1"):
        best_integer_mean_field(pt(StepCoefficients(**GOOD), 500.0, 64), max_ratio=0)
    with pytest.raises(AfdInputError, match="need lo < hi"):
        maximize_ratio(lambda r: r, 2.0, 1.0)


def test_a_step_that_vanishes_at_zero_ratio_has_no_optimum():
    coeffs = StepCoefficients(alpha_A=1e-8, beta_A=0.0, alpha_F=1e-6, beta_F=0.0)
    with pytest.raises(AfdInputError, match="no maximum at a positive ratio"):
        mean_field_ratio(pt(coeffs, 0.0, 16))


# ---------------------------------------------------------------------------
# The two communication crossings, and the regime switch in theta
# ---------------------------------------------------------------------------


def test_the_two_communication_crossings_have_their_own_names():
    c_b = _rb(comm_scales_with="B")
    opt = mean_field_ratio(pt(c_b, 800.0, 128))
    t_c = c_b.alpha_C * 128 + c_b.beta_C
    assert opt.r_FC == pytest.approx((t_c - c_b.beta_F) / (c_b.alpha_F * 128), rel=1e-12)
    assert math.isnan(opt.r_CA) and opt.r_C == opt.r_FC
    c_rb = _rb(alpha_C=4e-6, beta_C=1e-4, beta_F=1e-4)
    opt = mean_field_ratio(pt(c_rb, 20000.0, 64))
    t_a = c_rb.alpha_A * 64 * 20000.0 + c_rb.beta_A
    assert opt.r_CA == pytest.approx((t_a - c_rb.beta_C) / (c_rb.alpha_C * 64), rel=1e-12)
    assert math.isnan(opt.r_FC) and opt.r_C == opt.r_CA


@pytest.mark.parametrize("batch", [32, 256])
def test_attention_bound_theta_is_where_the_regime_switches(batch):
    coeffs = StepCoefficients(alpha_A=2.5e-8, beta_A=1.0e-3, alpha_F=2.0e-6, beta_F=1.6e-2,
                              alpha_C=2.0e-7, beta_C=1.0e-3)
    switch = attention_bound_theta(pt(coeffs, 0.0, batch))
    # by hand: r_A(theta) = r_peak  <=>  alpha_A B theta + beta_A = beta_F + sqrt(alpha_F B beta_F)
    by_hand = (1.6e-2 - 1.0e-3 + math.sqrt(2.0e-6 * batch * 1.6e-2)) / (2.5e-8 * batch)
    assert switch == pytest.approx(by_hand, rel=1e-12)
    assert mean_field_ratio(pt(coeffs, switch * (1 - 1e-6), batch)).regime == "ffn"
    assert mean_field_ratio(pt(coeffs, switch * (1 + 1e-6), batch)).regime == "attention"
