"""Length laws: exact moments, sampling, length-biased sampling, validation, parsing."""

from __future__ import annotations

import numpy as np
import pytest

from afdlib.cli.laws import parse_length_law
from afdlib.errors import AfdInputError
from afdlib.workload import (
    Deterministic,
    DiscretizedLognormal,
    Empirical,
    Geometric,
    Mixture,
    Uniform,
)

LAWS = [
    Geometric(500),
    Geometric(37.5, start=0),
    Geometric(4, start=3),
    Deterministic(128),
    Uniform(1, 40),
    DiscretizedLognormal(200, 0.8, 1, 20000),
    DiscretizedLognormal(50, 1.5, 0, 5000),
    Empirical(np.array([1, 1, 2, 10, 300])),
    Empirical(np.array([3, 7, 9]), weights=np.array([0.2, 0.5, 0.3])),
    Mixture((Geometric(20), Deterministic(1000)), (0.8, 0.2)),
]


def _pmf_moments(law, upper: int) -> np.ndarray:
    x = np.arange(0, upper + 1)
    p = law.pmf(x)
    return np.array([p.sum()] + [np.dot(p, x.astype(float) ** k) for k in (1, 2, 3)])


@pytest.mark.parametrize("law", LAWS, ids=str)
def test_moments_equal_sums_over_the_pmf(law):
    # the geometric tail beyond 60 means is below 1e-26 relative
    upper = int(60 * law.mean) + 100 if isinstance(law, Geometric | Mixture) else 200_000
    total, m1, m2, m3 = _pmf_moments(law, upper)
    assert total == pytest.approx(1.0, abs=1e-12)
    assert law.raw_moment(1) == pytest.approx(m1, rel=1e-9)
    assert law.raw_moment(2) == pytest.approx(m2, rel=1e-9)
    assert law.raw_moment(3) == pytest.approx(m3, rel=1e-8)


def test_geometric_closed_forms():
    law = Geometric(500)
    p = 1 / 500
    assert law.mean == pytest.approx(500)
    assert law.variance == pytest.approx((1 - p) / p**2)
    assert law.minimum == 1


@pytest.mark.parametrize("law", LAWS, ids=str)
def test_samples_match_mean_and_variance(law):
    rng = np.random.default_rng(1)
    n = 200_000
    x = law.sample(rng, n)
    assert x.dtype == np.int64
    assert x.min() >= law.minimum
    se = np.sqrt(law.variance / n)
    assert abs(x.mean() - law.mean) < 5 * se + 1e-9


@pytest.mark.parametrize("law", LAWS, ids=str)
def test_length_biased_sampling_has_the_size_biased_mean(law):
    # E*[X] under x P(x)/E[X] is E[X^2]/E[X]; its variance is E[X^3]/E[X] - (E[X^2]/E[X])^2
    rng = np.random.default_rng(2)
    n = 200_000
    x = law.sample_length_biased(rng, n)
    m1, m2, m3 = (law.raw_moment(k) for k in (1, 2, 3))
    biased_mean = m2 / m1
    biased_var = m3 / m1 - biased_mean**2
    assert abs(x.mean() - biased_mean) < 5 * np.sqrt(biased_var / n) + 1e-9


def test_length_biased_empirical_frequencies():
    law = Empirical(np.array([1, 2, 7]))
    rng = np.random.default_rng(3)
    x = law.sample_length_biased(rng, 100_000)
    freq = np.array([(x == v).mean() for v in (1, 2, 7)])
    np.testing.assert_allclose(freq, np.array([1, 2, 7]) / 10, atol=0.01)


def test_lognormal_clipping_puts_tail_mass_on_the_ends():
    law = DiscretizedLognormal(100, 2.0, 5, 200)
    assert law.minimum == 5 and law.maximum == 200
    assert law.pmf(200) > law.pmf(199)
    assert law.pmf(4) == 0 and law.pmf(201) == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Geometric(float("nan")), "finite"),
        (lambda: Geometric(0.5), "start"),
        (lambda: Geometric(-3, start=0), ">= 0"),
        (lambda: Deterministic(-1), ">= 0"),
        (lambda: Deterministic(2.5), "integer"),
        (lambda: Uniform(10, 3), "high"),
        (lambda: DiscretizedLognormal(0, 1), "median"),
        (lambda: DiscretizedLognormal(100, -1), "sigma"),
        (lambda: DiscretizedLognormal(100, 1, 10, 5), "maximum"),
        (lambda: Empirical(np.array([])), "non-empty"),
        (lambda: Empirical(np.array([1.0, np.nan])), "NaN"),
        (lambda: Empirical(np.array([1, -2])), ">= 0"),
        (lambda: Empirical(np.array([1.5])), "integer"),
        (lambda: Mixture((), ()), "at least one"),
        (lambda: Mixture((Deterministic(1),), (-1.0,)), "weights"),
    ],
)
def test_bad_parameters_are_rejected_with_a_clear_message(make, message):
    with pytest.raises(AfdInputError, match=message):
        make()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("geometric:500", Geometric(500)),
        ("geometric:mean=10,start=0", Geometric(10, start=0)),
        ("deterministic:100", Deterministic(100)),
        ("lognormal:median=300,sigma=1", DiscretizedLognormal(300, 1.0)),
        ("lognormal:300,1,0,9000", DiscretizedLognormal(300, 1.0, 0, 9000)),
        ("uniform:1,100", Uniform(1, 100)),
    ],
)
def test_parse_length_law(text, expected):
    assert parse_length_law(text) == expected


def test_parse_mixture():
    law = parse_length_law("mix:0.75*geometric:100+0.25*deterministic:2000")
    assert isinstance(law, Mixture)
    assert law.mean == pytest.approx(0.75 * 100 + 0.25 * 2000)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("poisson:3", "unknown length law"),
        ("geometric:abc", "not a number"),
        ("geometric:1,2,3", "too many"),
        ("uniform:low=1,width=3", "no argument 'width'"),
        ("mix:geometric:3", "WEIGHT\\*LAW"),
        ("deterministic:-4", ">= 0"),
    ],
)
def test_parse_errors_name_the_problem(text, message):
    with pytest.raises(AfdInputError, match=message):
        parse_length_law(text)
