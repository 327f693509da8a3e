"""Fitting recovers known coefficients from synthetic data with noise; diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afdlib.costs.fit import fit_linear, fit_plateau_line, fit_quality, linearize
from afdlib.errors import AfdInputError

SEED = 20260301


def attention_grid():
    b = np.repeat([8.0, 16, 32, 64, 128, 256, 512], 8)
    ctx = np.tile([128.0, 256, 512, 1024, 2048, 4096, 8192, 16384], 7)
    return b * ctx, b


def test_per_request_form_recovered_with_noise():
    rng = np.random.default_rng(SEED)
    t, b = attention_grid()
    truth = 2.0e-5 + 4.0e-10 * t + 5.0e-7 * b
    y = truth * (1 + 0.01 * rng.standard_normal(truth.size))
    f = fit_linear({"T": t, "B": b}, y)
    assert f["T"] == pytest.approx(4.0e-10, rel=0.02)
    assert f["B"] == pytest.approx(5.0e-7, rel=0.05)
    assert f.intercept == pytest.approx(2.0e-5, rel=0.05)
    assert f.quality.r2 > 0.999
    assert f.quality.mean_rel_err < 0.02


def test_one_line_misses_the_per_request_term():
    t, b = attention_grid()
    y = 2.0e-5 + 4.0e-10 * t + 5.0e-7 * b
    one = fit_linear({"T": t}, y)
    two = fit_linear({"T": t, "B": b}, y)
    assert two.quality.max_rel_err < 1e-9
    assert one.quality.max_rel_err > 0.2


@settings(max_examples=40, deadline=None)
@given(alpha=st.floats(1e-11, 1e-8), beta=st.floats(1e-6, 1e-3), gamma=st.floats(0, 1e-6))
def test_noise_free_fit_is_exact(alpha, beta, gamma):
    t, b = attention_grid()
    y = beta + alpha * t + gamma * b
    f = fit_linear({"T": t, "B": b}, y)
    assert f.predict(T=t, B=b) == pytest.approx(y, rel=1e-7)
    assert f["T"] == pytest.approx(alpha, rel=1e-5, abs=1e-15)


def test_plateau_line_recovered_with_noise():
    rng = np.random.default_rng(SEED)
    n = np.array([32.0, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
                  4096, 6144, 8192, 12288, 16384])
    truth = np.maximum(3.6e-4, 1.2e-7 * n + 3.0e-4)
    y = truth * (1 + 0.01 * rng.standard_normal(n.size))
    f = fit_plateau_line(n, y)
    assert f.plateau == pytest.approx(3.6e-4, rel=0.02)
    assert f.slope == pytest.approx(1.2e-7, rel=0.03)
    assert f.intercept == pytest.approx(3.0e-4, rel=0.1)
    assert f.knee == pytest.approx(500, rel=0.3)
    line = fit_linear({"N": n}, y)
    assert f.quality.mean_rel_err < line.quality.mean_rel_err


def test_linearize_exact_on_a_line_and_between_slopes_on_a_max():
    a, b, q = linearize(lambda x: 3.0 * x + 2.0, 0.0, 10.0)
    assert (a, b) == (pytest.approx(3.0), pytest.approx(2.0))
    assert q.r2 == pytest.approx(1.0)
    a, b, q = linearize(lambda x: np.maximum(5.0, x), 0.0, 10.0)
    assert 0.0 < a < 1.0
    assert q.r2 < 1.0


def test_fit_quality_by_hand():
    q = fit_quality([1.0, 2.0, 3.0], [1.1, 2.0, 2.7])
    assert q.r2 == pytest.approx(1 - (0.01 + 0.09) / 2.0)
    assert q.mean_rel_err == pytest.approx((0.1 + 0 + 0.1) / 3)
    assert q.max_rel_err == pytest.approx(0.1)


@pytest.mark.parametrize("y", [[1.0, np.nan, 2.0], [1.0, -1.0, 2.0], []])
def test_bad_data_rejected(y):
    with pytest.raises(AfdInputError, match="latency must be"):
        fit_linear({"T": np.arange(len(y), dtype=float)}, y)


def test_too_few_points_and_bad_interval_rejected():
    with pytest.raises(AfdInputError, match="cannot determine"):
        fit_linear({"T": [1.0], "B": [2.0]}, [1.0])
    with pytest.raises(AfdInputError, match="at least"):
        fit_plateau_line([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(AfdInputError, match="interval"):
        linearize(lambda x: x, 5.0, 1.0)
