"""The validation study as a library: settings in, a results table out, through any executor."""

from __future__ import annotations

import concurrent.futures
import json
import math

import numpy as np
import pytest

from afdlib.costs import load_coefficients
from afdlib.errors import AfdInputError
from afdlib.model import INTERCEPTS, OperatingPoint, StepCoefficients
from afdlib.provision import mean_field_ratio
from afdlib.sim import Bundle, simulate
from afdlib.study import (
    COARSE_GRID,
    LAWS,
    RULES,
    TRACES,
    Referee,
    RunLength,
    RunPlan,
    SerialExecutor,
    Setting,
    SettingResult,
    StudyResult,
    build_workload,
    compare_ratios,
    default_settings,
    dispatch,
    finite_trace_throughput,
    log_objective,
    paper_r_star,
    plain_coefficients,
    resolve,
    rule_ratios,
    run_setting,
    run_study,
    setting_seed,
    settings_table_html,
)
from afdlib.study.grid import coefficient_path
from afdlib.workload import JointLengths, load_stats

#: Short runs: the tests check the machinery, not the book's numbers.
TINY = RunPlan(step=RunLength(1, 400, 400, 3, 4), pipeline=RunLength(1, 300, 300, 3, 3),
               replay=RunLength(1, 300, 300, 3, 3), finite_rows=600, extend_rounds=1)
#: Settings on parametric laws (no trace files needed).
SMALL = [Setting("heavy", 8, "plain:attention", Referee()),
         Setting("paper", 32, "plain:commB", Referee("pipeline", "resample", 2, "per_step")),
         Setting("correlated", 16, "plain:balanced", Referee())]


# -- settings ----------------------------------------------------------------------------


def test_the_default_grid_is_wide():
    settings = default_settings()
    assert len(settings) >= 48
    assert {s.workload for s in settings} == set(TRACES) | set(LAWS)
    assert min(s.batch for s in settings) == 8 and max(s.batch for s in settings) == 256
    assert {s.referee.kind for s in settings} == {"step", "pipeline", "replay"}
    pipe = {(s.referee.microbatches, s.referee.intercepts) for s in settings
            if s.referee.kind == "pipeline"}
    assert pipe == {(m, i) for m in (2, 3, 4) for i in INTERCEPTS}
    assert sum(s.referee.kind == "pipeline" for s in settings) >= len(settings) / 3
    assert len({s.key for s in settings}) == len(settings)
    assert Setting("paper", 256, "plain:paper", Referee()) in settings


def test_setting_round_trip_and_bad_settings():
    s = SMALL[1]
    assert Setting.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.key == "paper|B=32|plain:commB|pipeline m=2 per_step"
    with pytest.raises(AfdInputError, match="replay needs a trace"):
        Setting("paper", 32, "plain:commB", Referee("step", "replay"))
    with pytest.raises(AfdInputError, match="microbatches must be <= batch"):
        Setting("heavy", 2, "plain:commB", Referee("pipeline", "resample", 3, "per_step"))
    with pytest.raises(AfdInputError, match="coeffs must start with"):
        Setting("heavy", 8, "attention", Referee())
    with pytest.raises(AfdInputError, match="the step engine has one micro-batch"):
        Referee("step", "resample", 2)


def test_setting_seeds_depend_on_the_study_seed_and_the_key_only():
    a, b = SMALL[0], Setting("heavy", 8, "plain:attention", Referee())
    assert setting_seed(5, a).entropy == setting_seed(5, b).entropy
    assert setting_seed(5, a).entropy != setting_seed(6, a).entropy
    assert setting_seed(5, a).entropy != setting_seed(5, SMALL[2]).entropy


@pytest.mark.parametrize("kind, regime", [("attention", "attention"), ("ffn", "ffn"),
                                          ("commB", "communication")])
def test_plain_coefficients_sit_in_their_regime(kind, regime):
    point = OperatingPoint(coeffs=plain_coefficients(kind, 1000.0, 64), theta=1000.0,
                           batch=64)
    assert mean_field_ratio(point).regime == regime


def test_plain_coefficient_files_are_the_recipe():
    for workload in LAWS:
        stats = load_stats(build_workload(workload))
        for s in default_settings():
            if s.workload != workload or not s.coeffs.startswith("plain:"):
                continue
            kind = s.coeffs[len("plain:"):]
            theta = stats.naive_theta if kind == "paper" else stats.theta
            assert load_coefficients(coefficient_path(kind, workload, s.batch)) == \
                plain_coefficients(kind, theta, s.batch)


def test_the_paper_setting_has_the_papers_mean_field_optimum():
    res = resolve(Setting("paper", 256, "plain:paper", Referee()))
    # the paper's rule uses E[P] + E[D] = 100 + 500
    assert res.stats.naive_theta == pytest.approx(600.0)
    assert paper_r_star(res) == pytest.approx(9.3, abs=1e-9)
    assert res.stats.theta == pytest.approx(599.0)  # geometric decode: E[P] + E[D] - 1


# -- the finite-trace measurement ------------------------------------------------------------


def test_dispatch_by_hand():
    rows = JointLengths(np.array([0, 10, 20, 30, 40]), np.array([3, 1, 2, 5, 1]))
    deal = dispatch(rows, 2)
    # slots free at 0: rows 0 (steps 0-2) and 1 (step 0); row 2 takes slot 1 at step 1
    # (steps 1-2), rows 3 and 4 start at step 3 (steps 3-7 and 3)
    assert deal.start.tolist() == [0, 0, 1, 3, 3]
    assert deal.end.tolist() == [3, 1, 3, 8, 4]
    assert sorted(deal.idle_from.tolist()) == [4, 8]
    assert deal.mark(0.8) == 3  # the 4th completion (row 4) at step 3
    assert deal.idle_slot_steps(5) == 2  # slot of row 4 idles at steps 4 and 5
    assert deal.busy_slot_steps(3) == 3 + 1 + 2 + 1 + 1


@pytest.mark.parametrize("engine", ["step", "pipeline"])
def test_dispatch_matches_the_engines_replay_with_idle_rows(engine):
    rows = JointLengths(np.arange(50) * 7 % 300, 1 + np.arange(50) * 13 % 40)
    coeffs = StepCoefficients(alpha_A=1e-6, beta_A=1e-4, alpha_F=1e-5, beta_F=1e-3)
    r, b = 3, 8  # 24 slots for 50 rows: idle slots well before the 80% mark
    deal = dispatch(rows, r * b)
    mark = deal.mark(0.8)
    idle = deal.idle_slot_steps(mark)
    assert idle > 0
    pad = idle + r * b
    padded = JointLengths(np.concatenate([rows.prompt, np.zeros(pad, dtype=np.int64)]),
                          np.concatenate([rows.decode, np.ones(pad, dtype=np.int64)]))
    res = simulate(padded, Bundle(r, b, coeffs), engine=engine, steps=mark + 1, seed=0,
                   init="cold", replay=True, record=True, n_batches=2)
    np.testing.assert_array_equal(res.records.loads.sum(axis=1),
                                  deal.total_load(rows.prompt, mark + 1))


def test_finite_throughput_by_hand_when_the_step_time_is_constant():
    rows = JointLengths(np.full(40, 5), 1 + np.arange(40) % 7)
    # FFN-bound at every load: the step lasts t_F = alpha_F r B + beta_F
    coeffs = StepCoefficients(alpha_A=1e-9, beta_A=0.0, alpha_F=1e-3, beta_F=0.01)
    point = OperatingPoint(coeffs=coeffs, theta=10.0, batch=4)
    run = finite_trace_throughput(rows, point, 2, fraction=0.8)
    deal = dispatch(rows, 8)
    t_f = 1e-3 * 8 + 0.01
    assert run.mark == deal.mark(0.8)
    assert run.elapsed == pytest.approx((run.mark + 1) * t_f, rel=1e-12)
    assert run.tokens == deal.busy_slot_steps(run.mark)
    assert run.throughput == pytest.approx(run.tokens / ((run.mark + 1) * t_f * 3), rel=1e-12)


# -- one setting and many ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def serial():
    return run_study(SMALL, plan=TINY, seed=11, executor=SerialExecutor())


def test_a_setting_is_scored_against_its_own_runs(serial):
    res = serial[1]
    assert res.skipped is None and res.replications >= 3
    assert set(COARSE_GRID) <= set(res.ratios.tolist())
    assert set(res.rules.values()) <= set(res.ratios.tolist())
    assert list(res.rules) == list(RULES)  # pipelined referee: all five rules
    assert res.rules == rule_ratios(resolve(res.setting), max_ratio=TINY.max_ratio)
    cmp = res.comparison()
    again = compare_ratios(res.ratios, log_objective(res.ratios, res.step_times, batch=32))
    assert cmp.best_ratio == again.best_ratio
    assert cmp.equivalent_ratios == again.equivalent_ratios
    # a replication's step time is the engine's, with the replication's seed
    seeds = setting_seed(11, res.setting).spawn(TINY.pipeline.max_replications)
    j, r = 1, int(res.ratios[3])
    point = resolve(res.setting).point
    sim = simulate(build_workload("paper"), Bundle.at(point, r), engine="pipeline",
                   microbatches=2, intercepts="per_step", steps=res.steps, warmup=res.warmup,
                   seed=seeds[j], n_batches=2)
    assert res.step_times[j, 3] == sim.mean_step_time


def test_a_setting_gives_the_same_numbers_alone_and_in_a_study(serial):
    alone = run_setting(SMALL[2], TINY, seed=11)
    _same(alone, serial[2])


def _same(a: SettingResult, b: SettingResult):
    assert a.key == b.key and a.rules == b.rules
    np.testing.assert_array_equal(a.ratios, b.ratios)
    np.testing.assert_array_equal(a.step_times, b.step_times)
    np.testing.assert_array_equal(a.finite, b.finite)
    np.testing.assert_array_equal(a.finite_marks, b.finite_marks)


def test_processes_give_the_same_study(serial):
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        again = run_study(SMALL[::-1], plan=TINY, seed=11, executor=pool)
    for a, b in zip(serial, again[::-1], strict=True):
        _same(a, b)


def test_a_local_dask_cluster_gives_the_same_study(serial):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        again = run_study(SMALL, plan=TINY, seed=11, executor=client)
    for a, b in zip(serial, again, strict=True):
        _same(a, b)


def test_results_read_back_exactly_from_json(serial):
    study = StudyResult(tuple(serial), TINY, 11)
    back = StudyResult.from_dict(json.loads(json.dumps(study.to_dict())))
    assert back.plan == TINY and back.seed == 11
    for a, b in zip(serial, back.results, strict=True):
        _same(a, b)
        assert a.regime == b.regime and a.r_star_paper == b.r_star_paper


def test_headline_figures_by_hand(serial):
    study = StudyResult(tuple(serial), TINY, 11)
    rows = study.rows()
    head = study.headline(rules_differ=False)
    for kind, block in head.items():
        mine = [r for r in rows if r["kind"] == kind]
        for rule, summary in block.items():
            reg = [r["rules"][rule]["regret"] for r in mine]
            assert summary.settings == len(mine)
            assert summary.worst_regret == max(reg)
            assert summary.mean_regret == pytest.approx(sum(reg) / len(reg), rel=1e-12)
            assert summary.in_set == sum(r["rules"][rule]["in_set"] for r in mine) / len(mine)
    for row, res in zip(rows, serial, strict=True):
        cmp = res.comparison()
        for rule, cell in row["rules"].items():
            assert cell["regret"] == cmp.regret(res.rules[rule]).estimate
            assert cell["in_set"] == cmp.in_equivalence_set(res.rules[rule])
            if not cmp.resolved:
                assert math.isnan(cell["ratio_error"])
    html = settings_table_html(study)
    assert html.count("<tr") == len(rows) + 1
    from afdlib.study import headline_rows

    flat = headline_rows(study, rules_differ=False)
    assert len(flat) == sum(len(b) for b in head.values())
    first = head[flat[0]["referee"]][RULES[0]]
    assert flat[0]["worst"] == 100 * first.worst_regret
    assert flat[0]["in_set"] == 100 * first.in_set


def test_a_preset_that_fits_nothing_is_skipped():
    # 20,000 slots at heavy's theta hold ~3e7 tokens of KV: no H100 instance holds them
    res = run_setting(Setting("heavy", 20_000, "preset:llama-3.1-70b@h100-sxm", Referee()),
                      TINY, 1)
    assert res.skipped is not None and "do not fit" in res.skipped
    assert SettingResult.from_dict(json.loads(json.dumps(res.to_dict()))).skipped == res.skipped


def test_bad_plans_are_rejected():
    with pytest.raises(AfdInputError, match="max_replications must be >= 8"):
        RunLength(1, 10, 10, 8, 4)
    with pytest.raises(AfdInputError, match="target_halfwidth must be > 0"):
        RunPlan(target_halfwidth=0.0)
    with pytest.raises(AfdInputError, match="executor must be"):
        run_study(SMALL, plan=TINY, executor=object())


def test_referee_gap_by_hand(serial):
    import dataclasses

    from afdlib.study import referee_gap

    base = serial[0]  # heavy, B = 8, plain:attention, step
    twin_setting = Setting("heavy", 8, "plain:attention",
                           Referee("pipeline", "resample", 2, "per_step"))
    faster = dataclasses.replace(base, setting=twin_setting, step_times=base.step_times / 1.1)
    study = StudyResult((base, faster), TINY, 11)
    (gap,) = referee_gap(study, "pipeline")
    assert gap["best"] == gap["base_best"] == study.comparison(base.key).best_ratio
    assert gap["throughput_gap"] == pytest.approx(0.1, rel=1e-9)
    x = study.comparison(base.key).table[:, study.comparison(base.key).column(gap["best"])]
    se = math.sqrt(2 * x.var(ddof=1) / x.size)  # the same spread on both sides
    assert gap["throughput_gap_halfwidth"] == pytest.approx(1.1 * 1.959964 * se, rel=1e-9)
    assert gap["base_best_regret"] == 0.0


def test_the_study_finite_measurement_agrees_with_the_simulators():
    from afdlib.sim import simulate_finite_trace

    rows = JointLengths(10 + np.arange(300) * 37 % 900, 1 + np.arange(300) * 11 % 60)
    coeffs = StepCoefficients(alpha_A=2e-7, beta_A=1e-3, alpha_F=1e-5, beta_F=4e-3)
    point = OperatingPoint(coeffs=coeffs, theta=500.0, batch=8)
    for r in (2, 4):  # 16 and 32 slots for 300 rows: every slot busy until the 80% mark
        deal = dispatch(rows, r * 8)
        assert deal.idle_slot_steps(deal.mark(0.8)) == 0
        mine = finite_trace_throughput(rows, point, r)
        sim = simulate_finite_trace(rows, Bundle.at(point, r), fraction=0.8)
        assert mine.mark == sim.steps - 1 and mine.tokens == sim.tokens
        assert mine.throughput == pytest.approx(sim.throughput, rel=1e-12)
