"""The study's cache, data/study/study.json: what the chapter reads is what the code makes.

A sample of cached settings is re-run with the cache's plan and seed and compared with the
cache: integers (the rules' ratios, the simulated ratios, the finite-trace marks) exactly,
floats (each replication's mean step time, the finite-trace throughputs) to a relative
1e-12. On the machine that wrote the cache the re-run matches bit for bit; the tolerance is
for float noise only: a step time is a mean over thousands of steps, and numpy may sum them
in another order on another CPU (its SIMD kernels), which moves the last digits. A changed
random stream, engine or rule moves them by far more than 1e-12.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from afdlib.costs import load_coefficients
from afdlib.study import (
    LAWS,
    REFEREE_KINDS,
    TRACES,
    default_settings,
    load_study,
    run_setting,
    wilson_interval,
)
from afdlib.study.grid import coefficient_path
from tests.conftest import public_trace_file


@pytest.fixture(scope="module")
def cache():
    return load_study()


def test_the_cache_holds_the_books_study(cache):
    assert [r.key for r in cache.results] == [s.key for s in default_settings()]
    ran = cache.ran
    assert len(ran) >= 48
    assert {r.setting.workload for r in ran} == set(TRACES) | set(LAWS)
    assert {r.setting.referee.kind for r in ran} == set(REFEREE_KINDS)
    for r in ran:
        assert r.step_times.shape == (r.replications, r.ratios.size)
        assert np.all(np.diff(r.ratios) > 0)
        assert set(r.rules.values()) <= set(r.ratios.tolist())


def test_the_cached_coverage_check_supports_the_claimed_level(cache):
    cov = cache.coverage
    assert cov.experiments >= 1000 and cov.confidence == cache.plan.confidence
    low, _ = wilson_interval(cov.best_in_set, cov.experiments)
    assert low >= cov.confidence


def test_cached_coefficients_are_the_files(cache):
    for r in cache.ran:
        s = r.setting
        if s.coeffs.startswith("plain:"):
            path = coefficient_path(s.coeffs[len("plain:"):], s.workload, s.batch)
            assert load_coefficients(path).to_dict() == r.coefficients


def _sample(cache):
    """The cheapest cached setting of each referee kind (laws where the kind allows)."""
    out = []
    for kind in REFEREE_KINDS:
        pool = [r for r in cache.of_kind(kind) if r.setting.workload in LAWS] or \
            cache.of_kind(kind)
        out.append(min(pool, key=lambda r: r.seconds))
    return out


def test_a_sample_of_cached_settings_reruns_to_the_same_numbers(cache):
    for cached in _sample(cache):
        if cached.setting.workload in TRACES:
            public_trace_file(cached.setting.workload)  # skips without the traces
        fresh = run_setting(cached.setting, cache.plan, cache.seed)
        assert fresh.rules == cached.rules
        np.testing.assert_array_equal(fresh.ratios, cached.ratios)
        np.testing.assert_array_equal(fresh.finite_marks, cached.finite_marks)
        np.testing.assert_allclose(fresh.step_times, cached.step_times, rtol=1e-12, atol=0)
        np.testing.assert_allclose(fresh.finite, cached.finite, rtol=1e-12, atol=0)
        assert fresh.regime == cached.regime
        assert math.isclose(fresh.r_star_paper, cached.r_star_paper, rel_tol=1e-12)
