"""Sweeps that do not mislead: the equivalence set holds the truly best ratio as often as it
claims (by simulation, against the exact answer), a flat curve gives a large set, and a
best ratio at the end of the swept range is flagged."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from afdlib.cli import main
from afdlib.costs import save_coefficients
from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint, StepCoefficients
from afdlib.sim import screen_to_the_best, sweep
from afdlib.workload import (
    Deterministic,
    Geometric,
    IndependentLengths,
    Uniform,
    stationary_load_pmf,
)

# -- the screening procedure on synthetic batch means -------------------------------------


def _synthetic(rng, means, n, common):
    """Batch estimates of k alternatives: independent normal noise of sd 1 plus a part
    ``common`` shared by all alternatives in each batch (common random numbers)."""
    shared = rng.standard_normal(n) * common
    return means[:, None] + rng.standard_normal((means.size, n)) + shared[None, :]


@pytest.mark.parametrize("common", [0.0, 3.0])
def test_screening_keeps_the_best_at_least_as_often_as_it_claims(common):
    # the least favourable case: the best ahead by about one standard error of a batch
    # mean difference, the others all tied behind it
    rng = np.random.default_rng(0)
    k, n, reps = 10, 10, 2000
    means = np.zeros(k)
    means[3] = 0.5
    kept = naive = 0
    for _ in range(reps):
        batches = _synthetic(rng, means, n, common)
        values = batches.mean(axis=1)
        kept += screen_to_the_best(values, batches).kept[3]
        naive += int(np.argmax(values)) == 3
    # binomial sd of 0.95 over 2000 replications: 0.005
    assert kept / reps >= 0.95 - 3 * 0.005
    assert naive / reps < 0.6  # the sample best alone would be wrong most of the time


def test_screening_of_equal_alternatives_keeps_almost_all():
    rng = np.random.default_rng(1)
    sizes = [screen_to_the_best(b.mean(axis=1), b).kept.sum()
             for b in (_synthetic(rng, np.zeros(12), 10, 1.0) for _ in range(200))]
    assert np.mean(sizes) > 10  # of 12: a flat set of alternatives stays a large set


def test_screening_without_noise_keeps_exact_ties_only():
    values = np.array([1.0, 3.0, 2.0, 3.0])
    batches = np.repeat(values[:, None], 5, axis=1)
    assert screen_to_the_best(values, batches).kept.tolist() == [False, True, False, True]
    one = screen_to_the_best(values, np.zeros((4, 0)))  # no batches: the sample best
    assert one.kept.tolist() == [False, True, False, False] and one.n_batches == 0
    with pytest.raises(AfdInputError, match="one row of batches"):
        screen_to_the_best(values, np.zeros((3, 5)))
    with pytest.raises(AfdInputError, match="confidence"):
        screen_to_the_best(values, batches, confidence=1.0)


# -- sweeps of the simulator against the exact answer -------------------------------------

WORKLOAD = IndependentLengths(Uniform(0, 60), Geometric(8))
B = 4


def exact_throughput(coeffs, ratios):
    """Exact stationary throughput per instance: E[tau] = E[max(G, alpha_A M + beta_A)]
    with M the largest of r independent worker loads, each the sum of B independent
    stationary slot loads (the law of the simulator's stationary start at every step)."""
    _, slot = stationary_load_pmf(WORKLOAD)
    worker = slot
    for _ in range(B - 1):
        worker = np.convolve(worker, slot)
    cdf = np.cumsum(worker) / worker.sum()
    loads = np.arange(worker.size)
    out = []
    for r in ratios:
        rest = max(float(coeffs.comm_time(batch=B, ratio=r)),
                   float(coeffs.ffn_time(batch=B, ratio=r)))
        pmf_max = np.diff(np.concatenate([[0.0], cdf ** r]))
        tau = float(pmf_max @ np.maximum(rest, coeffs.alpha_A * loads + coeffs.beta_A))
        out.append(r * B / ((r + 1) * tau))
    return np.array(out)


# two curves: a flat top (best 9, then 10 at -0.04% and 8 at -0.13%) and a sharper one
FLAT = StepCoefficients(alpha_A=1e-4, beta_A=1e-3, alpha_F=4e-4, beta_F=2e-3)
SHARP = StepCoefficients(alpha_A=1e-4, beta_A=1e-3, alpha_F=6e-4, beta_F=2e-3)
RATIOS = np.arange(1, 11)


@pytest.mark.parametrize("coeffs, truth", [(FLAT, 9), (SHARP, 6)])
def test_the_equivalence_set_holds_the_true_best_ratio_in_95_percent_of_sweeps(coeffs, truth):
    exact = exact_throughput(coeffs, RATIOS)
    assert int(RATIOS[np.argmax(exact)]) == truth  # the known answer
    point = OperatingPoint(coeffs=coeffs, theta=1.0, batch=B)
    reps, hits, best_hits, sizes = 150, 0, 0, []
    for i in range(reps):
        res = sweep(WORKLOAD, point, RATIOS, steps=3000, seed=1000 + i)
        hits += truth in res.equivalent_ratios
        best_hits += res.best_ratio == truth
        sizes.append(len(res.equivalent_ratios))
        assert res.best_ratio in res.equivalent_ratios
    # binomial sd of 0.95 over 150 sweeps: 0.018
    assert hits / reps >= 0.95 - 3 * 0.018
    assert np.mean(sizes) < 0.6 * RATIOS.size  # and the set says something
    if coeffs is FLAT:
        assert best_hits / reps < 0.7  # the simulated best alone is often wrong here
        assert np.mean(sizes) >= 3.5  # a flat top gives a large set
    assert "Nelson" in res.equivalence_rule and "common random numbers" in res.equivalence_rule


def test_common_random_numbers_make_the_paired_gaps_much_narrower():
    point = OperatingPoint(coeffs=FLAT, theta=1.0, batch=B)
    res = sweep(WORKLOAD, point, RATIOS, steps=3000, seed=5)
    paired = (res.gap_ci95[:, 1] - res.gap_ci95[:, 0]) / 2
    best = int(np.argmax(res.throughput))
    ci = res.throughput_ci95
    each = (ci[:, 1] - ci[:, 0]) / 2 / res.throughput
    unpaired = np.hypot(each, each[best])
    others = np.arange(RATIOS.size) != best
    # ratio r shares its first min(r, r_best) workers' requests with the best: pairing
    # helps everywhere, most between neighbours (the comparisons that decide the set)
    assert np.all(paired[others] < unpaired[others])
    near = others & (np.abs(RATIOS - RATIOS[best]) <= 2)
    assert near.sum() >= 2 and np.all(paired[near] < 0.5 * unpaired[near])
    gap, lo, hi = res.gap(int(RATIOS[0]))
    assert lo < gap < hi < 0
    with pytest.raises(AfdInputError, match="not swept"):
        res.gap(99)


# -- the range edge ----------------------------------------------------------------------

# FFN-bound one-step requests: tau = alpha_F r B + beta_F exactly, r_peak = sqrt(beta_F /
# (alpha_F B)) = 6, the best integer ratio is 6
EDGE = StepCoefficients(alpha_A=1e-7, beta_A=1e-4, alpha_F=1e-4, beta_F=2.88e-2)
ONE_STEP = IndependentLengths(Deterministic(10), Deterministic(1))


@pytest.mark.parametrize("ratios, max_ratio, best, edge", [
    (range(1, 4), None, 3, True),  # the case: the true best 6 lies beyond
    (range(1, 13), None, 6, False),
    (range(6, 10), None, 6, True),  # the lower end, above the feasible r = 1
    (range(1, 7), None, 6, True),
    (range(1, 7), 6, 6, False),  # the upper end is also the feasible one
    (range(1, 2), None, 1, True),  # one ratio: it is the upper end too
    (range(1, 2), 1, 1, False),
])
def test_a_best_ratio_at_the_end_of_the_range_is_flagged(ratios, max_ratio, best, edge):
    point = OperatingPoint(coeffs=EDGE, theta=10.0, batch=8)
    res = sweep(ONE_STEP, point, ratios, steps=50, max_ratio=max_ratio)
    assert res.best_ratio == best
    assert res.best_at_range_edge is edge
    assert res.equivalent_ratios == (best,)  # no noise: nothing else ties


def test_afd_sweep_warns_when_the_best_ratio_is_the_end_of_the_range(tmp_path, capsys):
    path = tmp_path / "edge.json"
    save_coefficients(EDGE, path)
    args = ["sweep", "--prompt", "deterministic:10", "--decode", "deterministic:1",
            "--batch", "8", "--coeffs", str(path), "--steps", "50"]
    assert main([*args, "--ratios", "1:3"]) == 0
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and "warning" in lines[0] and "upper end of --ratios 1:3" in lines[0]
    assert "best ratio 3" in cap.out
    assert main([*args, "--ratios", "1:3", "--json"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert cap.err == ""  # JSON mode: the key says it
    assert out["best_ratio"] == 3 and out["best_at_range_edge"] is True
    assert out["equivalent_ratios"] == [3] and out["equivalence_rule"]
    assert main([*args, "--ratios", "1:12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["best_ratio"] == 6 and out["best_at_range_edge"] is False
    row = out["rows"][5]
    assert row["ratio"] == 6 and row["equivalent"] and row["gap_to_best"] == 0
    assert {"throughput", "step_time_p99", "gap_ci95"} <= set(row)


def test_afd_sweep_of_a_flat_curve_lists_many_equivalent_ratios(tmp_path, capsys):
    path = tmp_path / "flat.json"
    save_coefficients(FLAT, path)
    assert main(["sweep", "--prompt", "uniform:0,60", "--decode", "geometric:8", "--batch",
                 "4", "--coeffs", str(path), "--steps", "3000", "--ratios", "5:12",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["equivalent_ratios"]) >= 3
    assert out["best_ratio"] in out["equivalent_ratios"]
    assert all(math.isfinite(r["gap_ci95"][0]) for r in out["rows"])
