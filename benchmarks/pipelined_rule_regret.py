"""Regret of the provisioning rules against the pipelined engine, over a wide grid.

The validation study (:mod:`afdlib.study`, ``scripts/run_study.py``, the chapter "Does the
prediction hold?") now referees every rule against the pipelined engine, the step engine
and trace replay, with its own comparison module (log-throughput paired intervals, a
Bonferroni equivalence set, a coverage check) and takes its workloads and plain
coefficients from :mod:`afdlib.study.grid`, as this script does. What this script keeps is
the *control-variate referee* below (the run's frozen cycle-time average minus its
stationary expectation), which leans on the pipelined rule's own quasi-static value and so
is not used by the study, whose referees share nothing with the rules; it remains a
cross-check of the pipelined rule with far less noise, and its stored results
(``benchmarks/results/pipelined_rule_regret.json``) are those quoted in
:mod:`afdlib.provision.pipelined`.

For every setting (workload, batch B, step-time coefficients, microbatches m, intercept
mode) this script

1. asks three rules for an integer ratio in 1 .. 64:
   (a) ``roundtrip``: the exact-load rule with the round-trip term
       (:func:`afdlib.provision.exact.exact_ratio` with ``microbatches=m``);
   (b) ``step``: the step-model exact-load rule (``microbatches=None``);
   (c) ``pipelined``: the quasi-static max-cycle-mean rule
       (:func:`afdlib.provision.pipelined.pipelined_ratio`);
2. runs the pipelined engine at every ratio 1 .. R (R covers every rule's ratio with room,
   extended while the best sits at the edge) in K independent replications (default 4 x
   6,000 steps from the stationary state), each with one seed for all ratios (common random
   numbers: ratio r's workers are the first r workers of any larger bundle);
3. takes the simulated best ratio r_hat (highest throughput of the pooled mean step
   time), and for every ratio the regret ``1 - Lambda(r) / Lambda(r_hat)``: the mean of the
   K paired per-replication regrets with its Student-t 95% interval; the equivalence set
   is the ratios whose interval reaches 0 (statistically indistinguishable from the best);
4. records each rule's ratio, regret and interval, whether its ratio is in the equivalence
   set, and each rule's step-time error against the engine near the optimum.

Run (from the repository root; about 15-25 minutes on one core for the full grid of 105
settings)::

    AFDLIB_DATA_DIR=... .venv/bin/python benchmarks/pipelined_rule_regret.py --json out.json
    .venv/bin/python benchmarks/pipelined_rule_regret.py --quick      # 9 settings

The summary quotes, per rule, the worst and mean regret over all settings and over those
where the rules differ, the share of settings whose ratio is in the equivalence set, the
worst setting, and the step-time error of each rule's predictor.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats

from afdlib.costs.presets import preset_coefficients
from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint, StepCoefficients
from afdlib.provision.exact import exact_ratio, expected_step_time_exact, worker_load_law
from afdlib.provision.pipelined import (
    cycle_time,
    expected_cycle_time,
    microbatch_load_laws,
    pipelined_ratio,
    stage_times,
)
from afdlib.sim import Bundle, simulate_pipeline
from afdlib.sim.bundle import worker_seeds
from afdlib.sim.loads import load_path
from afdlib.sim.pipeline import pipeline_completion_times
from afdlib.study.grid import build_workload, plain_coefficients
from afdlib.workload import load_stats

MAX_RATIO = 64
RULES = ("roundtrip", "step", "pipelined")
REFEREES = ("plain", "cv")


# -- workloads and coefficients (the study's: afdlib.study.grid) --------------------------

PRESETS = (("deepseek-v3", "h200"), ("llama-3.1-70b", "h100-sxm"), ("qwen3-235b-a22b", "h20"),
           ("deepseek-v3", "h20/h800"), ("llama-3.1-70b", "b200"), ("qwen3-235b-a22b", "h800"))


def operating_point(coeffs, workload, batch: int) -> OperatingPoint:
    """The operating point of ``coeffs`` at ``batch`` on ``workload`` (per instance)."""
    stats_ = load_stats(workload)
    return OperatingPoint(coeffs=coeffs, theta=stats_.theta, batch=batch,
                          load_std=math.sqrt(stats_.load_variance))


def build_coefficients(kind: str, workload, batch: int) -> tuple[StepCoefficients, str]:
    """Coefficients for a setting, and a label (presets that do not fit fall through)."""
    theta = load_stats(workload).theta
    if not kind.startswith("preset"):
        return plain_coefficients(kind, theta, batch), kind
    first = int(kind[len("preset"):])
    for j in range(len(PRESETS)):
        model, hardware = PRESETS[(first + j) % len(PRESETS)]
        try:
            return (preset_coefficients(model, hardware, batch=batch, theta=theta),
                    f"{model}@{hardware}")
        except AfdInputError:
            continue
    raise AfdInputError(f"no preset fits batch {batch} at theta {theta:.0f}")


@dataclass(frozen=True)
class Setting:
    """One cell of the grid."""

    workload: str
    batch: int
    coeffs: str
    microbatches: int
    intercepts: str

    @property
    def label(self) -> str:
        return (f"{self.workload} B={self.batch} {self.coeffs} m={self.microbatches} "
                f"{self.intercepts}")


PIPE_MODES = ((2, "per_microbatch"), (3, "per_step"), (4, "per_microbatch"), (2, "per_step"),
              (3, "per_microbatch"), (4, "per_step"))
BATCHES = {"azure2023_code": (8, 64, 256), "azure2023_conv": (16, 128),
           "mooncake_conversation": (16, 64), "sharegpt_8k": (16, 128), "paper": (256, 32),
           "heavy": (8, 64), "correlated": (16, 128)}
KINDS = ("attention", "ffn", "commB", "commrB", "balanced", "preset0", "preset3")


def make_settings(quick: bool = False) -> list[Setting]:
    """The grid: every workload x batch x coefficient kind, cycling through (m, intercepts)."""
    out = []
    i = 0
    for workload, batches in BATCHES.items():
        for batch in batches:
            for kind in KINDS:
                if workload == "paper" and batch == 256 and kind == "attention":
                    kind = "paper"
                m, intercepts = PIPE_MODES[i % len(PIPE_MODES)]
                out.append(Setting(workload, batch, kind, m, intercepts))
                i += 1
    if quick:
        out = out[::13]
    return out


# -- statistics -----------------------------------------------------------------------------


def regret_interval(tau: np.ndarray, ratios: np.ndarray, r: int, r_best: int,
                    confidence: float = 0.95) -> tuple[float, float]:
    """``1 - Lambda(r) / Lambda(r_best)`` and its half-width over independent replications.

    ``tau[j, i]`` is replication j's mean step time at ``ratios[i]``; within a replication
    every ratio ran with the same seed (common random numbers), so the per-replication
    regrets are paired differences, and their Student-t interval needs no assumption about
    the correlation within a run (the slowly mixing loads of long decodes make batch means
    over steps too optimistic).
    """
    i, k = int(np.flatnonzero(ratios == r)[0]), int(np.flatnonzero(ratios == r_best)[0])
    if i == k:
        return 0.0, 0.0
    lam = ratios / (ratios + 1.0) / tau
    q = 1.0 - lam[:, i] / lam[:, k]
    n = q.size
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * q.std(ddof=1) / math.sqrt(n))
    return float(q.mean()), half


def rule_ratios(coeffs, workload, setting: Setting):
    """Each rule's integer ratio and predicted step times at ratios 1 .. MAX_RATIO."""
    b, m, mode = setting.batch, setting.microbatches, setting.intercepts
    point = operating_point(coeffs, workload, b)
    law = worker_load_law(workload, b)
    rt = exact_ratio(point, law, max_ratio=MAX_RATIO, microbatches=m, intercepts=mode)
    st = exact_ratio(point, law, max_ratio=MAX_RATIO)
    t0 = time.perf_counter()
    laws = microbatch_load_laws(workload, b, microbatches=m)
    pl = pipelined_ratio(point, laws, max_ratio=MAX_RATIO, microbatches=m, intercepts=mode)
    rule_seconds = time.perf_counter() - t0
    ratios = np.arange(1, MAX_RATIO + 1)
    pred = {"roundtrip": expected_step_time_exact(point, law, ratios, microbatches=m,
                                                  intercepts=mode),
            "step": expected_step_time_exact(point, law, ratios),
            "pipelined": pl.step_times}
    return {"roundtrip": rt.r_int, "step": st.r_int, "pipelined": pl.r_int}, pred, rule_seconds


def engine_run(workload, setting: Setting, coeffs, ratio: int, steps: int, warmup: int,
               seed, stride: int) -> tuple[float, float]:
    """One pipelined-engine run: its mean step time, and the mean frozen cycle time of its
    own loads (every ``stride``-th measured step), both in s.

    The run is :func:`afdlib.sim.simulate_pipeline`'s, step for step (the same load path
    from the same seeds, the same completion-time recursion; checked once per process).
    """
    times = stage_times(coeffs, ratio=ratio, batch=setting.batch,
                        microbatches=setting.microbatches, intercepts=setting.intercepts)
    group = np.repeat(np.arange(setting.microbatches), times.sizes)
    path = load_path(workload, worker_seeds(seed, ratio), setting.batch, steps,
                     slot_group=group)
    att = times.attention(path.loads.T.reshape(steps, ratio, setting.microbatches))
    done = pipeline_completion_times(att, times.comm, times.ffn)
    mean = float(done[-1] - done[warmup - 1]) / (steps - warmup)
    frozen = float(cycle_time(att[warmup::stride], times.comm, times.ffn).mean())
    if not _CHECKED:
        ref = simulate_pipeline(workload, Bundle(ratio, setting.batch, coeffs),
                                microbatches=setting.microbatches,
                                intercepts=setting.intercepts, steps=steps, warmup=warmup,
                                seed=seed, n_batches=2).mean_step_time
        assert abs(ref / mean - 1) < 1e-12, (ref, mean)
        _CHECKED.append(True)
    return mean, frozen


_CHECKED: list = []


def analyze(table: np.ndarray, ratios: np.ndarray, choice: dict, pred: dict,
            batch: int) -> dict:
    """Best ratio, equivalence set, each rule's regret and step-time error for one table.

    ``table[j, i]``: replication j's mean step time at ``ratios[i]`` (s).
    """
    thr = ratios * batch / ((ratios + 1) * table.mean(axis=0))
    best = int(ratios[np.argmax(thr)])
    regret = {int(r): regret_interval(table, ratios, int(r), best) for r in ratios}
    out = {"best_ratio": best, "best_at_range_edge": best == int(ratios[-1]),
           "equivalent_ratios": [int(r) for r in ratios
                                 if regret[int(r)][0] - regret[int(r)][1] <= 0.0]}
    near = np.array([r for r in ratios if max(1, best // 2) <= r <= 2 * best])
    cols = np.searchsorted(ratios, near)
    sim_tau = table[:, cols].mean(axis=0)
    n = table.shape[0]
    sim_half = stats.t.ppf(0.975, n - 1) * table[:, cols].std(axis=0, ddof=1) / math.sqrt(n)
    for name in RULES:
        reg, half = regret[choice[name]]
        err = pred[name][near - 1] / sim_tau - 1.0
        out[name] = {"ratio": int(choice[name]), "regret": reg, "regret_halfwidth": half,
                     "in_equivalence_set": bool(reg - half <= 0.0),
                     "step_time_error_max": float(np.max(np.abs(err))),
                     "step_time_error_mean": float(np.mean(err))}
    out["sim_step_time_halfwidth_max"] = float(np.max(sim_half / sim_tau))
    return out


def evaluate(setting: Setting, steps: int, warmup: int, seed: int, replications: int,
             stride: int = 4) -> dict:
    """Rules, engine sweeps and regrets for one setting (a JSON-ready dict).

    Two referees from the same runs: ``plain``, the engine's mean step times; and ``cv``,
    the same with a control variate, ``tau - lambda_path + E[lambda]``: ``lambda_path`` is
    the run's own average of the frozen cycle time of its loads and ``E[lambda]`` its
    stationary expectation (the quasi-static value with 8192 samples). Runs start in the
    stationary state, so ``E[lambda_path] = E[lambda]`` and the control variate changes no
    expectation (up to the sampling error of ``E[lambda]``, about 0.03%), while it removes
    the luck of the run's load path (the slowly mixing part of the noise) and keeps the
    engine's own dynamics.
    """
    t0 = time.perf_counter()
    workload = build_workload(setting.workload)
    coeffs, coeff_label = build_coefficients(setting.coeffs, workload, setting.batch)
    choice, pred, rule_seconds = rule_ratios(coeffs, workload, setting)
    laws = microbatch_load_laws(workload, setting.batch, microbatches=setting.microbatches)
    all_ratios = np.arange(1, MAX_RATIO + 1)
    expected = expected_cycle_time(operating_point(coeffs, workload, setting.batch), laws,
                                   all_ratios,
                                   microbatches=setting.microbatches,
                                   intercepts=setting.intercepts, samples=8192, seed=12345)
    seeds = np.random.SeedSequence(seed).spawn(replications)
    tau: dict[int, np.ndarray] = {}
    frozen: dict[int, np.ndarray] = {}

    def run(r):
        runs = [engine_run(workload, setting, coeffs, r, steps, warmup, sd, stride)
                for sd in seeds]
        tau[r] = np.array([x[0] for x in runs])
        frozen[r] = np.array([x[1] for x in runs])

    top = int(min(MAX_RATIO, max(8, math.ceil(1.5 * max(choice.values())) + 2)))
    for r in range(1, top + 1):
        run(r)
    while True:  # extend while the best ratio (by either referee) sits at the edge
        ratios = np.array(sorted(tau))
        plain = np.stack([tau[int(r)] for r in ratios], axis=1)  # (replications, ratios)
        cv = plain - np.stack([frozen[int(r)] for r in ratios], axis=1) + expected[ratios - 1]
        edge = [int(ratios[np.argmax(ratios / (ratios + 1) / t.mean(axis=0))])
                for t in (plain, cv)]
        if max(edge) < ratios[-1] or ratios[-1] >= MAX_RATIO:
            break
        for r in range(int(ratios[-1]) + 1, min(MAX_RATIO, 2 * int(ratios[-1])) + 1):
            run(r)
    for r in choice.values():  # a rule's ratio beyond the simulated range
        if r not in tau:
            run(r)
    ratios = np.array(sorted(tau))
    plain = np.stack([tau[int(r)] for r in ratios], axis=1)
    cv = plain - np.stack([frozen[int(r)] for r in ratios], axis=1) + expected[ratios - 1]
    out = {"setting": setting.label, "workload": setting.workload, "batch": setting.batch,
           "coeffs": coeff_label, "coefficients": coeffs.to_dict(),
           "microbatches": setting.microbatches, "intercepts": setting.intercepts,
           "comm_scales_with": coeffs.comm_scales_with, "simulated_ratios": int(ratios[-1]),
           "rule_seconds": rule_seconds, "trivial": len(set(choice.values())) == 1,
           "plain": analyze(plain, ratios, choice, pred, setting.batch),
           "cv": analyze(cv, ratios, choice, pred, setting.batch)}
    # the control variate's premise: the runs' own average of the frozen cycle time has
    # the stationary expectation (a check of the stationary law, independent of the rule)
    offset = np.stack([frozen[int(r)] for r in ratios], axis=1) / expected[ratios - 1] - 1.0
    z = offset.mean(axis=0) / (offset.std(axis=0, ddof=1) / math.sqrt(replications) + 1e-300)
    out["cv_offset_mean"] = float(offset.mean())
    out["cv_offset_z"] = [float(x) for x in z]
    out["seconds"] = time.perf_counter() - t0
    return out


# -- report ---------------------------------------------------------------------------------


#: A regret is *resolved* when its 95% half-width is at most this (so 1% is distinguishable).
RESOLVED = 0.005


def summarize(rows: list[dict], referee: str) -> dict:
    """Worst / mean regret per rule, equivalence-set shares, worst settings, step-time errors.

    Over all settings, over those where the rules differ, and over the settings where
    the rule's regret is resolved (half-width <= RESOLVED).
    """
    summary = {"settings": len(rows), "trivial": sum(r["trivial"] for r in rows)}
    differ = [r for r in rows if not r["trivial"]]
    for subset, pick in (("all", rows), ("rules_differ", differ)):
        block = {}
        for name in RULES:
            if not pick:
                continue
            res = [r[referee][name] for r in pick]
            reg = np.array([x["regret"] for x in res])
            half = np.array([x["regret_halfwidth"] for x in res])
            k = int(np.argmax(reg))
            ok = half <= RESOLVED
            kr = int(np.flatnonzero(ok)[np.argmax(reg[ok])]) if ok.any() else None
            block[name] = {
                "worst_regret": float(reg[k]), "worst_halfwidth": float(half[k]),
                "worst_setting": pick[k]["setting"],
                "mean_regret": float(reg.mean()),
                "in_equivalence_set": float(np.mean([x["in_equivalence_set"] for x in res])),
                "regret_over_1pct": int(np.sum(reg > 0.01)),
                "regret_over_1pct_resolved": int(np.sum((reg - half) > 0.01)),
                "resolved": int(ok.sum()),
                "worst_resolved_regret": None if kr is None else float(reg[kr]),
                "worst_resolved_halfwidth": None if kr is None else float(half[kr]),
                "worst_resolved_setting": None if kr is None else pick[kr]["setting"],
                "step_time_error_max": float(max(x["step_time_error_max"] for x in res)),
                "step_time_error_mean_abs": float(np.mean([abs(x["step_time_error_mean"])
                                                           for x in res]))}
        summary[subset] = block
    return summary


def print_table(rows: list[dict], referee: str, stream=sys.stdout, header: bool = True) -> None:
    """One line per setting: best ratio, equivalence set, each rule's ratio and regret."""
    head = f"{'setting':62s} {'best':>4s} {'eq':>9s} " + " ".join(
        f"{n[:9]:>9s} {'regret':>13s}" for n in RULES) + f" {'pl err':>7s} {'sim hw':>6s}"
    if header:
        print(f"[referee: {referee}]", file=stream)
        print(head, file=stream)
    for row in rows:
        x = row[referee]
        eq = x["equivalent_ratios"]
        cells = [f"{row['setting'][:62]:62s} {x['best_ratio']:4d} {min(eq):>4d}-{max(eq):<4d}"]
        for name in RULES:
            y = x[name]
            cells.append(f"{y['ratio']:9d} {100 * y['regret']:6.2f}+-"
                         f"{100 * y['regret_halfwidth']:4.2f}%")
        cells.append(f"{100 * x['pipelined']['step_time_error_max']:6.2f}%")
        cells.append(f"{100 * x['sim_step_time_halfwidth_max']:5.2f}%")
        print(" ".join(cells), file=stream, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="9 settings only")
    parser.add_argument("--steps", type=int, default=6000, help="steps per replication")
    parser.add_argument("--replications", type=int, default=4,
                        help="independent replications (each a common-random-numbers sweep)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--only", type=str, default=None,
                        help="comma-separated setting indices to run")
    parser.add_argument("--json", type=str, default=None, help="write rows and summary here")
    parser.add_argument("--summarize", type=str, default=None,
                        help="print the tables and summary of a stored --json file instead")
    args = parser.parse_args(argv)
    settings = make_settings(args.quick)
    if args.only:
        settings = [settings[int(i)] for i in args.only.split(",")]
    t0 = time.perf_counter()
    if args.summarize:  # re-summarize a stored run
        with open(args.summarize) as f:
            rows = json.load(f)["rows"]
        for referee in REFEREES:
            print_table(rows, referee)
    elif args.jobs > 1:
        with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(evaluate, s, args.steps, args.warmup, args.seed + i,
                                   args.replications)
                       for i, s in enumerate(settings)]
            rows = [f.result() for f in futures]
        for referee in REFEREES:
            print_table(rows, referee)
    else:
        rows = []
        for i, s in enumerate(settings):
            rows.append(evaluate(s, args.steps, args.warmup, args.seed + i, args.replications))
            print_table(rows[-1:], "plain", header=(i == 0))
        print_table(rows, "cv")
    summary = {referee: summarize(rows, referee) for referee in REFEREES}
    z = np.concatenate([row["cv_offset_z"] for row in rows])
    z = z[np.isfinite(z) & (np.abs(z) < 1e6)]  # ratios with no load noise have no z
    summary["cv_check"] = {
        "mean_offset": float(np.mean([row["cv_offset_mean"] for row in rows])),
        "ratios": int(z.size),  # share outside the 95% t-interval: about 5% if unbiased
        "share_outside_95": float(np.mean(np.abs(z) > stats.t.ppf(0.975,
                                                                   args.replications - 1)))}
    summary["wall_seconds"] = time.perf_counter() - t0
    summary["steps"] = args.steps
    summary["replications"] = args.replications
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
