"""The study's statistics: paired regrets, the equivalence set and its coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from afdlib.errors import AfdInputError
from afdlib.model import InstancePrices, Objective
from afdlib.study import (
    compare_ratios,
    equivalence_mask,
    log_objective,
    paired_regret,
    replications_for,
    wilson_interval,
)


def test_log_objective_by_hand():
    tau = np.array([[0.02, 0.03], [0.025, 0.03]])
    x = log_objective([2, 4], tau, batch=8)
    # per instance: r B / ((r + 1) tau)
    assert x[0, 0] == pytest.approx(math.log(2 * 8 / (3 * 0.02)), rel=1e-15)
    assert x[1, 1] == pytest.approx(math.log(4 * 8 / (5 * 0.03)), rel=1e-15)
    priced = Objective(prices=InstancePrices(attention=0.5, ffn=1.0))
    y = log_objective([2, 4], tau, batch=8, objective=priced)
    assert y[0, 0] == pytest.approx(math.log(2 * 8 / ((2 * 0.5 + 1) * 0.02)), rel=1e-15)


def test_paired_regret_by_hand():
    # columns: the best and a ratio ~1% worse in each of 4 replications
    best = np.log(np.array([100.0, 102.0, 98.0, 101.0]))
    other = np.log(np.array([99.0, 100.5, 97.2, 99.9]))
    x = np.stack([other, best], axis=1)
    g = paired_regret(x, 0, 1)
    d = best - other
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2.0
    assert g.estimate == pytest.approx(1 - math.exp(-d.mean()), rel=1e-12)
    assert g.low == pytest.approx(1 - math.exp(-(d.mean() - half)), rel=1e-12)
    assert g.high == pytest.approx(1 - math.exp(-(d.mean() + half)), rel=1e-12)
    assert g.low < g.estimate < g.high


def test_equivalence_mask_keeps_ties_and_drops_a_sure_loser():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.01, size=(6, 1))
    # a column equal to the best in every replication is kept; one that is always 5% lower
    # with the same noise (paired difference constant) is dropped
    x = np.hstack([noise, noise, noise - 0.05])
    assert equivalence_mask(x).tolist() == [True, True, False]
    # without common noise the same 5% may well be within the noise
    y = np.hstack([noise, rng.normal(-0.05, 0.5, size=(6, 1))])
    assert equivalence_mask(y).tolist() == [True, True]


def _screening_coverage(adjusted: bool, trials: int = 3000) -> float:
    """Share of trials keeping the true best among 12 columns, 9 of them tied with it (the
    hardest case for the screening), with a common random component (like common random
    numbers) and independent noise."""
    rng = np.random.default_rng(20)
    mu = np.array([0.0] * 10 + [-0.03, -0.1])
    n, k = 6, mu.size
    hits = 0
    for _ in range(trials):
        common = rng.normal(0, 0.05, size=(n, 1))
        x = mu + common + rng.normal(0, 0.004, size=(n, k))
        if adjusted:
            keep = equivalence_mask(x, alpha=0.05)
        else:  # the same screening with the unadjusted t quantile
            t = stats.t.ppf(0.975, n - 1)
            sd = (x[:, :, None] - x[:, None, :]).std(axis=0, ddof=1)
            margin = x.mean(0)[:, None] - x.mean(0)[None, :] + t * sd / math.sqrt(n)
            np.fill_diagonal(margin, 0)
            keep = np.all(margin >= 0, axis=1)
        hits += bool(keep[0])
    return hits / trials


def test_the_equivalence_set_holds_the_true_best_at_least_95_percent():
    adjusted = _screening_coverage(True)
    lo, _ = wilson_interval(round(adjusted * 3000), 3000)
    assert lo >= 0.95
    # the same rule without the multiple-comparison adjustment falls short here: the
    # test can tell the two apart
    assert _screening_coverage(False) < 0.93


def test_compare_ratios_sorts_and_finds_the_best():
    x = np.log(np.array([[3.0, 1.0, 2.0], [3.1, 1.1, 2.0], [2.9, 0.9, 2.1]]))
    cmp = compare_ratios([5, 1, 3], x)
    assert cmp.ratios.tolist() == [1, 3, 5]
    assert cmp.best_ratio == 5
    assert cmp.regret(5).estimate == 0.0
    assert cmp.equivalent_ratios == (5,)
    assert cmp.best_of([1, 3]) == 3
    assert cmp.resolved
    with pytest.raises(AfdInputError, match="ratio 2 was not simulated"):
        cmp.regret(2)


def test_replications_for_by_hand():
    assert replications_for(0.01, 8, target=0.005, maximum=100) == 32
    assert replications_for(0.01, 8, target=0.005, maximum=20) == 20
    assert replications_for(0.004, 8, target=0.005, maximum=20) == 8


@pytest.mark.parametrize("call, fragment", [
    (lambda: compare_ratios([1, 2], np.zeros((1, 2))), "replications >= 2"),
    (lambda: compare_ratios([1, 1], np.zeros((3, 2))), "distinct"),
    (lambda: log_objective([1, 2], np.zeros((3, 2)), batch=4), "finite and > 0"),
    (lambda: equivalence_mask(np.zeros((3, 2)), alpha=0.0), "alpha must be > 0"),
])
def test_bad_input_is_named(call, fragment):
    with pytest.raises(AfdInputError, match=fragment):
        call()


def test_wilson_interval_by_hand():
    lo, hi = wilson_interval(95, 100)
    z = stats.norm.ppf(0.975)
    p, n = 0.95, 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half), rel=1e-12)
