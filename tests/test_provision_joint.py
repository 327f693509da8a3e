"""The batch and the ratio together: the batch grid, the Pareto frontier by brute force,
the joint optimum against every pair, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from afdlib.errors import AfdInputError
from afdlib.model import InstanceGPUs, Objective, OperatingPoint, StepCoefficients
from afdlib.provision import (
    JointPoint,
    batch_grid,
    joint_search,
    pareto_front,
    provision,
    worker_load_law,
)
from afdlib.workload import Geometric, IndependentLengths, load_stats

WORKLOAD = IndependentLengths(Geometric(300, start=0), Geometric(200))
STATS = load_stats(WORKLOAD)
GPUS = InstanceGPUs(attention=1, ffn=4)


def coeffs_at(batch: int) -> StepCoefficients:
    """Coefficients that change with the batch (as a preset's linearization does)."""
    return StepCoefficients(alpha_A=3e-8, beta_A=2e-3 + 1e-6 * batch, alpha_F=2e-6,
                            beta_F=1.5e-2, alpha_C=1e-7, beta_C=1e-3)


def point_at(batch: int) -> OperatingPoint:
    return OperatingPoint(coeffs=coeffs_at(batch), theta=STATS.theta, load_std=STATS.load_std,
                          batch=batch, objective=Objective(kind="gpu", gpus=GPUS))


def test_batch_grid_all_or_geometric():
    grid, text = batch_grid(8, 20)
    assert list(grid) == list(range(8, 21)) and text == "every batch 8..20"
    grid, text = batch_grid(16, 4096)
    assert grid[0] == 16 and grid[-1] == 4096 and len(grid) <= 40
    assert np.all(np.diff(grid) > 0) and "geometric" in text
    ratios = grid[1:] / grid[:-1]
    assert ratios.max() < 1.25                    # evenly spread on a log scale
    assert list(batch_grid(5, 5)[0]) == [5]
    with pytest.raises(AfdInputError, match="inverted"):
        batch_grid(10, 5)
    with pytest.raises(AfdInputError, match="batches must be >= 1"):
        batch_grid(0, 5)


def _pt(b, r, lam, p99):
    return JointPoint(batch=b, ratio=r, throughput=lam, throughput_per_instance=lam,
                      throughput_per_gpu=None, mean_step_time=p99, step_time_p50=p99,
                      step_time_p99=p99, meets_target=None)


def test_pareto_front_by_brute_force():
    rng = np.random.default_rng(3)
    pts = [_pt(int(b), 1, float(x), float(y)) for b, (x, y) in
           enumerate(rng.random((300, 2)))]
    front = pareto_front(pts)
    dominated = {id(p) for p in pts for q in pts
                 if q.throughput >= p.throughput and q.step_time_p99 <= p.step_time_p99
                 and (q.throughput > p.throughput or q.step_time_p99 < p.step_time_p99)}
    assert {id(p) for p in front} == {id(p) for p in pts} - dominated
    assert all(a.step_time_p99 <= b.step_time_p99 and a.throughput < b.throughput
               for a, b in zip(front[:-1], front[1:], strict=True))


@pytest.mark.parametrize("with_law", [False, True])
def test_joint_best_is_the_best_pair_that_meets_the_target(with_law):
    batches = [8, 16, 32, 64]
    workload = WORKLOAD if with_law else None
    res = joint_search(point_at, batches, workload=workload, max_ratio=24)
    # every pair, recomputed one batch at a time with provision()
    table = {}
    for b in batches:
        law = worker_load_law(WORKLOAD, b, bins=1024) if with_law else None
        one = provision(point_at(b), max_ratio=24, law=law)
        rule = one.best_rule
        lam = point_at(b).throughput(one.ratios, one.mean_step_times[rule])
        for i, r in enumerate(one.ratios):
            table[(b, int(r))] = (float(lam[i]), float(one.step_time_p99[i]))
    assert len(res.points) == len(table)
    best = max(table, key=lambda k: table[k][0])
    assert (res.best.batch, res.best.ratio) == best
    assert res.method == ("exact" if with_law else "gaussian")
    # a target between the smallest and the unconstrained best's p99
    target = 0.5 * (min(v[1] for v in table.values()) + table[best][1])
    res_t = joint_search(point_at, batches, workload=workload, max_ratio=24, tpot_p99=target)
    ok = {k: v for k, v in table.items() if v[1] <= target}
    want = max(ok, key=lambda k: ok[k][0])
    assert (res_t.best.batch, res_t.best.ratio) == want
    within = res.best_within(target)               # the same answer from the first search
    assert (within.batch, within.ratio) == want
    assert res.best_within(1e-6) is None
    assert res_t.best.step_time_p99 <= target < table[best][1]
    assert res_t.best in res_t.pareto or any(
        p.throughput >= res_t.best.throughput and p.step_time_p99 <= res_t.best.step_time_p99
        for p in res_t.pareto)
    # the frontier's points are pairs of the table, none dominated by another pair
    for p in res_t.pareto:
        lam, p99 = table[(p.batch, p.ratio)]
        assert not any(v[0] > lam and v[1] < p99 for v in table.values())
    d = res_t.to_dict()
    assert d["best"]["batch"] == want[0] and d["best"]["ratio"] == want[1]
    assert d["best"]["throughput_per_gpu"] == pytest.approx(d["best"]["throughput"])
    assert len(d["pareto"]) == len(res_t.pareto) and d["tpot_p99"] == target


def test_no_pair_meets_an_impossible_target():
    res = joint_search(point_at, [8, 16], max_ratio=8, tpot_p99=1e-5)
    assert res.best is None
    low = res.lowest_p99
    assert low.step_time_p99 == min(p.step_time_p99 for p in res.points)
    assert all(not p.meets_target for p in res.points)


def test_bad_joint_input():
    with pytest.raises(AfdInputError, match="no batch"):
        joint_search(point_at, [])
    with pytest.raises(AfdInputError, match="must return an OperatingPoint with batch 8"):
        joint_search(lambda b: point_at(16), [8])
    with pytest.raises(AfdInputError, match="tpot_p99 must be > 0"):
        joint_search(point_at, [8], tpot_p99=-1.0)
