"""Sensitivities of the optimum: analytic derivatives against finite differences."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from afdlib.errors import AfdInputError
from afdlib.model import Objective, OperatingPoint, StepCoefficients
from afdlib.provision import (
    PARAMETERS,
    InstancePrices,
    maximize_ratio,
    mean_field_ratio,
    mean_field_sensitivities,
    numerical_sensitivities,
    throughput_mean_field,
)
from afdlib.provision.sensitivity import perturb


def pt(coeffs, theta, batch, load_std=0.0, prices=None):
    """The operating point of the old positional arguments."""
    return OperatingPoint(coeffs=coeffs, theta=theta, batch=batch, load_std=load_std,
                          objective=Objective(prices=prices or InstancePrices()))


def log_uniform(lo, hi):
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: 10.0 ** e)


@st.composite
def interior_points(draw):
    """Operating points with every coefficient positive (central differences stay admissible)."""
    coeffs = StepCoefficients(
        alpha_A=draw(log_uniform(1e-10, 1e-6)), beta_A=draw(log_uniform(1e-5, 1e-1)),
        alpha_F=draw(log_uniform(1e-8, 1e-4)), beta_F=draw(log_uniform(1e-5, 1e-1)),
        alpha_C=draw(log_uniform(1e-9, 1e-4)), beta_C=draw(log_uniform(1e-6, 1e-1)),
        comm_scales_with=draw(st.sampled_from(["B", "rB"])))
    prices = InstancePrices(draw(log_uniform(0.2, 5)), draw(log_uniform(0.2, 5)))
    return coeffs, draw(log_uniform(1.0, 1e5)), draw(st.integers(1, 1024)), prices


def _margin(coeffs, theta, batch, prices) -> float:
    """Relative distance to the nearest regime boundary along any single input (crudely:
    the two largest candidate ratios must be clearly apart)."""
    opt = mean_field_ratio(pt(coeffs, theta, batch, prices=prices))
    cands = [opt.r_crossing, opt.r_envelope_peak, opt.r_A, opt.r_C, opt.r_peak]
    cands += [x for x in (opt.r_peak_C, opt.r_CF) if not math.isnan(x)]
    others = [abs(x - opt.r_star) for x in cands if x != opt.r_star]
    return min(others, default=math.inf) / opt.r_star


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interior_points())
def test_analytic_derivatives_match_central_differences(point):
    coeffs, theta, batch, prices = point
    opt = mean_field_ratio(pt(coeffs, theta, batch, prices=prices))
    assume(1e-2 < opt.r_star < 1e5 and _margin(coeffs, theta, batch, prices) > 1e-3)
    analytic = mean_field_sensitivities(pt(coeffs, theta, batch, prices=prices))
    numeric = numerical_sensitivities(pt(coeffs, theta, batch, prices=prices), rel_step=1e-6)
    for name in PARAMETERS:
        a, n = analytic[name], numeric[name]
        if name == "load_std":
            assert a.d_r_star == 0.0 and a.d_throughput == 0.0
            continue
        scale_r = opt.r_star / a.value          # compare elasticities' worth of precision
        scale_l = opt.throughput / a.value
        assert a.d_r_star == pytest.approx(n.d_r_star, rel=1e-5, abs=1e-6 * scale_r), name
        assert a.d_throughput == pytest.approx(n.d_throughput, rel=1e-5, abs=1e-6 * scale_l), name


def test_throughput_derivative_agrees_with_reoptimizing_numerically():
    # envelope check: re-maximize Lambda directly (no closed form) after each perturbation
    coeffs = StepCoefficients(alpha_A=2.5e-8, beta_A=1e-3, alpha_F=2e-6, beta_F=1.6e-2,
                              alpha_C=2e-7, beta_C=1e-3)
    for theta in (600.0, 4000.0):               # FFN-bound, then attention-bound
        analytic = mean_field_sensitivities(pt(coeffs, theta, 256))
        base = pt(coeffs, theta, 256)
        for name in ("theta", "alpha_A", "beta_F", "alpha_F", "batch"):
            x = analytic[name].value
            h = 1e-4 * x
            vals = []
            for xx in (x + h, x - h):
                p = perturb(base, name, xx)
                assert getattr(p.coeffs, name, None) == xx or getattr(p, name, None) == xx
                _, lam = maximize_ratio(lambda r, p=p: throughput_mean_field(p, r), 1e-3, 1e5)
                vals.append(lam)
            fd = (vals[0] - vals[1]) / (2 * h)
            scale = analytic[name].throughput / x
            assert analytic[name].d_throughput == pytest.approx(fd, rel=1e-4, abs=1e-7 * scale)


def test_regime_elasticities():
    coeffs = StepCoefficients(alpha_A=2.5e-8, beta_A=0.0, alpha_F=2e-6, beta_F=1.6e-2,
                              alpha_C=2e-7, beta_C=1e-3)
    ffn = mean_field_sensitivities(pt(coeffs, 600.0, 256))
    assert ffn["alpha_F"].elasticity_r_star == pytest.approx(-0.5)
    assert ffn["beta_F"].elasticity_r_star == pytest.approx(0.5)
    assert ffn["batch"].elasticity_r_star == pytest.approx(-0.5)
    assert ffn["theta"].d_r_star == 0.0
    att = mean_field_sensitivities(pt(coeffs, 40000.0, 256))
    # r_A = alpha_A theta / alpha_F - beta_F / (alpha_F B): theta moves it one for one-ish
    assert att["theta"].d_r_star == pytest.approx(coeffs.alpha_A / coeffs.alpha_F)
    assert att["alpha_F"].elasticity_r_star == pytest.approx(-1.0)


def test_barrier_sensitivities_reduce_to_the_mean_field_for_tiny_spread():
    coeffs = StepCoefficients(alpha_A=2.5e-8, beta_A=1e-3, alpha_F=2e-6, beta_F=1.6e-2,
                              alpha_C=2e-7, beta_C=1e-3)
    names = ["theta", "beta_F", "alpha_F", "batch"]
    for theta in (600.0, 4000.0):
        analytic = mean_field_sensitivities(pt(coeffs, theta, 256))
        barrier = numerical_sensitivities(pt(coeffs, theta, 256, load_std=1e-7 * theta), model="barrier", rel_step=1e-3, parameters=names)
        for name in names:
            assert barrier[name].d_r_star == pytest.approx(analytic[name].d_r_star, rel=1e-2,
                                                           abs=1e-6 * analytic[name].r_star
                                                           / analytic[name].value)


def test_unknown_parameter_and_model_are_rejected():
    coeffs = StepCoefficients(alpha_A=1e-8, beta_A=1e-3, alpha_F=1e-6, beta_F=1e-2)
    with pytest.raises(AfdInputError, match="unknown parameter"):
        numerical_sensitivities(pt(coeffs, 100.0, 8), parameters=["gamma"])
    with pytest.raises(AfdInputError, match="model must be"):
        numerical_sensitivities(pt(coeffs, 100.0, 8), model="exact")
