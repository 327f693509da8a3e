"""Regret of the provisioning rules against the pipelined engine, over a wide grid.

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

from afdlib.costs import StepCoefficients
from afdlib.costs.presets import preset_coefficients
from afdlib.errors import AfdInputError
from afdlib.provision.exact import exact_ratio, expected_step_time_exact, worker_load_law
from afdlib.provision.pipelined import microbatch_load_laws, pipelined_ratio
from afdlib.sim import Bundle, simulate_pipeline
from afdlib.traces import load_trace
from afdlib.workload import (
    DiscretizedLognormal,
    Geometric,
    IndependentLengths,
    JointLengths,
    load_stats,
)

MAX_RATIO = 64
RULES = ("roundtrip", "step", "pipelined")


# -- workloads and coefficients -------------------------------------------------------------

TRACES = ("azure2023_code", "azure2023_conv", "mooncake_conversation", "sharegpt_8k")


def build_workload(key: str):
    """A workload by name: a real trace, the paper's laws, or a parametric law."""
    if key in TRACES:
        return JointLengths.from_trace(load_trace(key))
    if key == "paper":  # geometric prompt with mean 100 (from 0), geometric decode, mean 500
        return IndependentLengths(Geometric(100, start=0), Geometric(500))
    if key == "heavy":  # heavy-tailed prompt and decode (lognormal, clipped)
        return IndependentLengths(DiscretizedLognormal(800, 1.2, min_value=1, max_value=60000),
                                  DiscretizedLognormal(60, 0.8, min_value=1, max_value=1500))
    if key == "correlated":  # log prompt and log decode correlated (0.6), 40,000 rows
        rng = np.random.default_rng(2024)
        z = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.6], [0.6, 1.0]], size=40_000)
        prompt = np.clip(np.rint(np.exp(np.log(1200.0) + 1.0 * z[:, 0])), 1, 60_000)
        decode = np.clip(np.rint(np.exp(np.log(80.0) + 0.8 * z[:, 1])), 1, 1_500)
        return JointLengths(prompt.astype(np.int64), decode.astype(np.int64))
    raise KeyError(key)


def plain_coefficients(kind: str, theta: float, batch: int) -> StepCoefficients:
    """Plain coefficient sets by regime, scaled to the workload and batch.

    Attention at the mean load takes ``t_A = 20 ms`` (10% of it fixed); the FFN catches
    it at r = 8. ``attention``: small FFN intercept (optimum at the attention crossing);
    ``ffn``: FFN intercept 95% of t_A (the FFN-bound peak, r_peak ~ 12); ``commB``:
    communication constant in r and 30% above t_A; ``commrB``: communication growing with
    r, crossing t_A at r = 6; ``balanced``: FFN and growing communication both cross t_A
    at r = 8; ``paper``: attention-bound with mean-field r* about 9.3 (the paper's own
    coefficients are not public).
    """
    t_a = 0.02
    alpha_a, beta_a = 0.9 * t_a / (batch * theta), 0.1 * t_a
    cross, beta_f = 8.0, 0.3 * t_a
    comm = dict(alpha_C=0.3 * t_a / batch, beta_C=0.1 * t_a, comm_scales_with="B")
    if kind == "ffn":
        beta_f = 0.95 * t_a
    elif kind == "commB":
        comm = dict(alpha_C=1.1 * t_a / batch, beta_C=0.2 * t_a, comm_scales_with="B")
    elif kind == "commrB":
        comm = dict(alpha_C=0.8 * t_a / (6 * batch), beta_C=0.2 * t_a, comm_scales_with="rB")
    elif kind == "balanced":
        comm = dict(alpha_C=0.8 * t_a / (cross * batch), beta_C=0.2 * t_a,
                    comm_scales_with="rB")
    elif kind == "paper":
        cross = 9.3
    elif kind != "attention":
        raise KeyError(kind)
    alpha_f = (t_a - beta_f) / (cross * batch)
    return StepCoefficients(alpha_A=alpha_a, beta_A=beta_a, alpha_F=alpha_f, beta_F=beta_f,
                            **comm)


PRESETS = (("deepseek-v3", "h200"), ("llama-3.1-70b", "h100-sxm"), ("qwen3-235b-a22b", "h20"),
           ("deepseek-v3", "h20/h800"), ("llama-3.1-70b", "b200"), ("qwen3-235b-a22b", "h800"))


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
    law = worker_load_law(workload, b)
    rt = exact_ratio(coeffs, law, MAX_RATIO, microbatches=m, intercepts=mode)
    st = exact_ratio(coeffs, law, MAX_RATIO)
    t0 = time.perf_counter()
    laws = microbatch_load_laws(workload, b, m)
    pl = pipelined_ratio(coeffs, laws, b, MAX_RATIO, microbatches=m, intercepts=mode)
    rule_seconds = time.perf_counter() - t0
    ratios = np.arange(1, MAX_RATIO + 1)
    pred = {"roundtrip": expected_step_time_exact(coeffs, law, ratios, microbatches=m,
                                                  intercepts=mode),
            "step": expected_step_time_exact(coeffs, law, ratios),
            "pipelined": pl.step_times}
    return {"roundtrip": rt.r_int, "step": st.r_int, "pipelined": pl.r_int}, pred, rule_seconds


def evaluate(setting: Setting, steps: int, warmup: int, seed: int,
             replications: int) -> dict:
    """Rules, engine sweeps and regrets for one setting (a JSON-ready dict)."""
    t0 = time.perf_counter()
    workload = build_workload(setting.workload)
    coeffs, coeff_label = build_coefficients(setting.coeffs, workload, setting.batch)
    choice, pred, rule_seconds = rule_ratios(coeffs, workload, setting)
    seeds = np.random.SeedSequence(seed).spawn(replications)
    tau: dict[int, np.ndarray] = {}

    def run(r):
        tau[r] = np.array([
            simulate_pipeline(workload, Bundle(r, setting.batch, coeffs),
                              microbatches=setting.microbatches, intercepts=setting.intercepts,
                              steps=steps, warmup=warmup, seed=sd, n_batches=2).mean_step_time
            for sd in seeds])

    top = int(min(MAX_RATIO, max(8, math.ceil(1.5 * max(choice.values())) + 2)))
    for r in range(1, top + 1):
        run(r)
    while True:  # extend while the best ratio sits at the edge
        ratios = np.array(sorted(tau))
        table = np.stack([tau[int(r)] for r in ratios], axis=1)  # (replications, ratios)
        thr = ratios * setting.batch / ((ratios + 1) * table.mean(axis=0))
        best = int(ratios[np.argmax(thr)])
        if best < ratios[-1] or ratios[-1] >= MAX_RATIO:
            break
        for r in range(int(ratios[-1]) + 1, min(MAX_RATIO, 2 * int(ratios[-1])) + 1):
            run(r)
    for r in choice.values():  # a rule's ratio beyond the simulated range
        if r not in tau:
            run(r)
    ratios = np.array(sorted(tau))
    table = np.stack([tau[int(r)] for r in ratios], axis=1)
    regret = {int(r): regret_interval(table, ratios, int(r), best) for r in ratios}
    equivalent = [int(r) for r in ratios if regret[int(r)][0] - regret[int(r)][1] <= 0.0]
    out = {"setting": setting.label, "workload": setting.workload, "batch": setting.batch,
           "coeffs": coeff_label, "microbatches": setting.microbatches,
           "intercepts": setting.intercepts, "comm_scales_with": coeffs.comm_scales_with,
           "best_ratio": best, "best_at_range_edge": best == int(ratios[-1]),
           "equivalent_ratios": equivalent, "simulated_ratios": int(ratios[-1]),
           "rule_seconds": rule_seconds}
    near = np.array([r for r in ratios if max(1, best // 2) <= r <= 2 * best])
    cols = np.searchsorted(ratios, near)
    sim_tau = table[:, cols].mean(axis=0)
    n = replications
    sim_half = stats.t.ppf(0.975, n - 1) * table[:, cols].std(axis=0, ddof=1) / math.sqrt(n)
    for name in RULES:
        reg, half = regret[choice[name]]
        err = pred[name][near - 1] / sim_tau - 1.0
        out[name] = {"ratio": int(choice[name]), "regret": reg, "regret_halfwidth": half,
                     "in_equivalence_set": bool(reg - half <= 0.0),
                     "step_time_error_max": float(np.max(np.abs(err))),
                     "step_time_error_mean": float(np.mean(err))}
    out["sim_step_time_halfwidth_max"] = float(np.max(sim_half / sim_tau))
    out["trivial"] = len({choice[n] for n in RULES}) == 1
    out["seconds"] = time.perf_counter() - t0
    return out


# -- report ---------------------------------------------------------------------------------


def summarize(rows: list[dict]) -> dict:
    """Worst / mean regret per rule, equivalence-set shares, worst settings, step-time errors."""
    summary = {"settings": len(rows), "trivial": sum(r["trivial"] for r in rows)}
    for subset, pick in (("all", rows), ("rules_differ", [r for r in rows if not r["trivial"]])):
        block = {}
        for name in RULES:
            if not pick:
                continue
            reg = np.array([r[name]["regret"] for r in pick])
            k = int(np.argmax(reg))
            block[name] = {
                "worst_regret": float(reg[k]), "worst_setting": pick[k]["setting"],
                "worst_halfwidth": pick[k][name]["regret_halfwidth"],
                "mean_regret": float(reg.mean()),
                "in_equivalence_set": float(np.mean([r[name]["in_equivalence_set"]
                                                     for r in pick])),
                "regret_over_1pct": int(np.sum(reg > 0.01)),
                "step_time_error_max": float(max(r[name]["step_time_error_max"] for r in pick)),
                "step_time_error_mean_abs": float(np.mean([abs(r[name]["step_time_error_mean"])
                                                           for r in pick]))}
        summary[subset] = block
    return summary


def print_table(rows: list[dict], stream=sys.stdout, header: bool = True) -> None:
    """One line per setting: best ratio, equivalence set, each rule's ratio and regret."""
    head = f"{'setting':62s} {'best':>4s} {'eq':>9s} " + " ".join(
        f"{n[:9]:>9s} {'regret':>13s}" for n in RULES) + f" {'pl err':>7s} {'sim hw':>6s}"
    if header:
        print(head, file=stream)
    for row in rows:
        eq = row["equivalent_ratios"]
        cells = [f"{row['setting'][:62]:62s} {row['best_ratio']:4d} "
                 f"{min(eq):>4d}-{max(eq):<4d}"]
        for name in RULES:
            x = row[name]
            cells.append(f"{x['ratio']:9d} {100 * x['regret']:6.2f}+-{100 * x['regret_halfwidth']:4.2f}%")
        cells.append(f"{100 * row['pipelined']['step_time_error_max']:6.2f}%")
        cells.append(f"{100 * row['sim_step_time_halfwidth_max']:5.2f}%")
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
    args = parser.parse_args(argv)
    settings = make_settings(args.quick)
    if args.only:
        settings = [settings[int(i)] for i in args.only.split(",")]
    t0 = time.perf_counter()
    rows = []
    if args.jobs > 1:
        with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(evaluate, s, args.steps, args.warmup, args.seed + i,
                                   args.replications)
                       for i, s in enumerate(settings)]
            rows = [f.result() for f in futures]
        print_table(rows)
    else:
        for i, s in enumerate(settings):
            rows.append(evaluate(s, args.steps, args.warmup, args.seed + i, args.replications))
            print_table(rows[-1:], header=(i == 0))
    summary = summarize(rows)
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
