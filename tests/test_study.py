"""The validation study as a library function: settings in, cases and a results table out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint
from afdlib.provision import exact_ratio, provision
from afdlib.study import (
    RULES,
    CaseSpec,
    StudySettings,
    case_specs,
    run_case,
    run_length,
    trace_workload,
    validation_study,
)
from afdlib.workload import estimate_load
from tests.conftest import public_trace_file

SMALL = StudySettings(traces=("sharegpt_8k",), batches=(32, 20_000),
                      presets=(("llama-3.1-70b", "h100-sxm"), ("qwen3-235b-a22b", "h200")),
                      requests_per_sweep=2e5, min_steps=500, max_steps=1500, seed=3)


@pytest.fixture(scope="module")
def small_study():
    public_trace_file("sharegpt_8k")  # skips without the local trace folder
    return validation_study(SMALL)


def test_cases_are_the_product_of_the_settings_and_infeasible_ones_are_skipped(small_study):
    specs = case_specs(SMALL)
    assert specs == [CaseSpec("sharegpt_8k", b, m, h) for b in (32, 20_000)
                     for m, h in SMALL.presets]
    # 20,000 slots at sharegpt's theta hold ~5e7 tokens (16 TB) of KV: no instance holds them
    assert [c.spec for c in small_study.cases] == specs[:2]
    assert list(small_study.skipped) == specs[2:]


def test_each_rule_ratio_is_what_the_rule_says_at_the_cases_point(small_study):
    workload = trace_workload("sharegpt_8k")
    est = estimate_load(workload.prompt, workload.decode)
    for case in small_study.cases:
        point = case.point
        assert isinstance(point, OperatingPoint)
        assert (point.theta, point.load_std, point.batch) == (est.theta, est.load_std, 32)
        pred = provision(point)
        assert case.ratios["mean field"] == pred.r_int_mean_field
        assert case.ratios["Gaussian barrier"] == pred.barrier.r_int
        top = case.curve.size
        assert case.ratios["exact-load barrier"] == exact_ratio(point, case.law,
                                                                max_ratio=top).r_int
        assert top >= max(8, int(1.5 * max(case.ratios.values())) + 3) - 1


def test_run_length_by_hand():
    est = estimate_load(np.array([10, 20]), np.array([100, 300]))  # E[D] = 200
    settings = StudySettings(requests_per_sweep=1e6, min_steps=10, max_steps=10**9)
    # per step: B top (top + 1) / 2 / E[D] = 8 * 10 * 11 / 2 / 200 = 2.2 requests
    assert run_length(est, 8, 10, settings) == int(1e6 / 2.2)
    assert run_length(est, 8, 10, StudySettings(requests_per_sweep=1.0, min_steps=77)) == 77


def test_table_and_summary_agree_with_the_cases(small_study):
    rows = small_study.rows()
    assert len(rows) == len(small_study.cases)
    for row, case in zip(rows, small_study.cases, strict=True):
        lam = case.sweep.throughput
        for rule in RULES:
            r = row[f"{rule} ratio"]
            assert row[f"{rule} loss"] == pytest.approx(1 - lam[r - 1] / lam.max(), abs=1e-15)
        assert row["sim"] == int(np.argmax(lam)) + 1
    summary = small_study.summary()
    for rule in RULES:
        losses = [row[f"{rule} loss"] for row in rows]
        errors = [abs(row[f"{rule} ratio"] - row["sim"]) / row["sim"] for row in rows]
        assert summary[rule]["max_loss"] == max(losses)
        assert summary[rule]["within_5pct"] == sum(e <= 0.05 for e in errors) / len(errors)
    assert small_study.hardest("mean field").loss["mean field"] == summary["mean field"][
        "max_loss"]


def test_an_executor_map_gives_the_same_study(small_study):
    with ThreadPoolExecutor(max_workers=2) as pool:
        again = validation_study(SMALL, map=pool.map)
    for a, b in zip(small_study.cases, again.cases, strict=True):
        np.testing.assert_array_equal(a.curve, b.curve)
        assert a.ratios == b.ratios


def test_run_case_is_a_function_of_its_spec():
    public_trace_file("sharegpt_8k")
    assert run_case(CaseSpec("sharegpt_8k", 20_000, "llama-3.1-70b", "h100-sxm"), SMALL) is None


@pytest.mark.parametrize("kwargs, fragment", [
    ({"batches": (0,)}, "batch must be >= 1"),
    ({"min_steps": 10, "max_steps": 5}, "max_steps must be >= 10"),
    ({"requests_per_sweep": 0.0}, "requests_per_sweep must be > 0"),
    ({"seed": -1}, "seed must be >= 0"),
])
def test_bad_settings_are_rejected(kwargs, fragment):
    with pytest.raises(AfdInputError, match=fragment):
        StudySettings(**kwargs)
