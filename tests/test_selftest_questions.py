"""The self-test questions added for the latency chapter, against independent computations."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from afdlib.widgets import selftest


def test_latency_ratio_is_the_gaussian_closed_form():
    # r_T = ln q / ln Phi(z), computed here with scipy alone
    want = math.log(0.99) / math.log(stats.norm.cdf(selftest.LATENCY_Z))
    q = next(q for q in selftest.QUESTIONS if q.key == "provisioning-6")
    assert q.expected() == pytest.approx(want, rel=1e-9)
    assert selftest.check("provisioning-6", want)
    assert not selftest.check("provisioning-6", math.floor(want))


def test_an_added_worker_raises_the_p99_step_time():
    # the answer of provisioning-5, checked on the Gaussian quantile itself
    from afdlib.provision import step_time_quantile_gaussian
    point = selftest._point(**selftest.LATENCY_POINT)
    ratios = [1.0, 2.0, 3.0]
    p99 = step_time_quantile_gaussian(point, ratios, 0.99)
    rest = [float(point.coeffs.rest_of_step(batch=point.batch, ratio=r)) for r in ratios]
    assert point.mean_attention_time > max(rest)  # attention sets the step: G(r) is below it
    assert p99[0] < p99[1] < p99[2]
    assert selftest.check("provisioning-5", "b")
    assert not selftest.check("provisioning-5", "a")


def test_question_texts_quote_the_coefficients_they_use():
    q = next(q for q in selftest.QUESTIONS if q.key == "costs-1")
    assert f"{selftest.COEFFICIENTS['alpha_A'] * 1e9:g} ns/token" in q.text
