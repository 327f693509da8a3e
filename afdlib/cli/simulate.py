"""``afd simulate`` and ``afd sweep``: run the AFD simulator on a workload and coefficients."""

from __future__ import annotations

import argparse
import sys

from afdlib.cli._common import (
    CliError,
    add_coefficient_arguments,
    add_command,
    add_objective_arguments,
    add_workload_arguments,
    emit_json,
    linearization_objective,
    non_negative_int,
    positive_int,
    resolve_costs,
    resolve_objective,
    resolve_workload,
)
from afdlib.model import INTERCEPTS
from afdlib.sim.bundle import INITS
from afdlib.sim.sweep import ENGINES

MAX_SWEEP_RATIO = 4096

SIMULATE_EXAMPLES = [
    "afd simulate --trace sharegpt_8k --batch 64 --ratio 6 --model qwen3-235b-a22b "
    "--hardware h200",
    "afd simulate --prompt geometric:100,start=0 --decode geometric:500 --batch 256 "
    "--ratio 9 --coeffs my_coeffs.json --steps 1000000 --records steps.npz",
    "afd simulate --trace azure2023_code --replay --init cold --batch 32 --ratio 4 "
    "--coeffs my_coeffs.json --engine pipeline --microbatches 2 --json",
]
SWEEP_EXAMPLES = [
    "afd sweep --prompt geometric:100,start=0 --decode geometric:500 --batch 256 "
    "--ratios 1:16 --coeffs my_coeffs.json",
    "afd sweep --trace azure2023_conv --batch 64 --ratios 1:24 --model llama-3.1-70b "
    "--hardware h100 --json",
]


def ratio_range(text: str) -> range:
    """argparse type: ``LO:HI`` (inclusive), integers with ``1 <= LO <= HI``."""
    lo_text, sep, hi_text = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected LO:HI, e.g. 1:32, got {text!r}")
    try:
        lo, hi = int(lo_text), int(hi_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"LO and HI must be integers, got {text!r}") from None
    if lo < 1:
        raise argparse.ArgumentTypeError(f"LO must be >= 1, got {lo}")
    if hi < lo:
        raise argparse.ArgumentTypeError(f"HI must be >= LO, got {text!r}")
    if hi > MAX_SWEEP_RATIO:
        raise argparse.ArgumentTypeError(f"HI must be <= {MAX_SWEEP_RATIO}, got {hi}")
    return range(lo, hi + 1)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    add_workload_arguments(p)
    p.add_argument("--batch", type=positive_int, required=True, metavar="B",
                   help="slots per Attention worker")
    add_coefficient_arguments(p)
    add_objective_arguments(p)
    p.add_argument("--steps", type=positive_int, default=20_000, metavar="N",
                   help="decode steps to simulate (default: 20000); memory does not grow "
                        "with N")
    p.add_argument("--warmup", type=non_negative_int, default=0, metavar="N",
                   help="leading steps left out of the statistics (default: 0)")
    p.add_argument("--seed", type=non_negative_int, default=0, metavar="S",
                   help="random seed (default: 0)")
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0],
                   help="synchronized steps (default) or microbatch pipeline")
    p.add_argument("--init", choices=INITS, default=INITS[0],
                   help="slots start in the stationary state (default) or all fresh")
    p.add_argument("--replay", action="store_true",
                   help="hand out the trace's rows in order instead of resampling them")
    p.add_argument("--microbatches", type=positive_int, default=None, metavar="M",
                   help="microbatches per Attention worker, --engine pipeline only "
                        "(default: 2)")
    p.add_argument("--intercepts", choices=INTERCEPTS, default=None,
                   help="--engine pipeline only: each microbatch pays the full intercepts "
                        "(per_microbatch, the default) or 1/M of them (per_step)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_const", const=True,
                     default=None, help="always draw a progress bar on stderr")
    bar.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                     help="never draw a progress bar (default: only on a terminal)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(subparsers) -> None:
    """Add the ``simulate`` and ``sweep`` subcommands."""
    p = add_command(
        subparsers, "simulate", help="simulate one rA-1F bundle",
        description="Simulate an rA-1F bundle with exact per-slot renewals and the exact "
                    "barrier over workers; report throughput (with a 95% batch-means "
                    "interval), mean, median and 99th-percentile step time, idle fractions "
                    "and barrier overhead. Memory does not grow with --steps; a progress bar "
                    "is drawn on a terminal.",
        examples=SIMULATE_EXAMPLES)
    _add_run_arguments(p)
    p.add_argument("--ratio", type=positive_int, required=True, metavar="R",
                   help="Attention workers per FFN worker")
    p.add_argument("--records", metavar="FILE",
                   help="write every step's time, worker loads and attention times to FILE "
                        "(.npz or .csv), chunk by chunk")
    p.set_defaults(func=run_simulate)

    s = add_command(
        subparsers, "sweep", help="simulate a range of ratios and pick the best",
        description="Simulate the bundle at every integer ratio in LO:HI with common random "
                    "numbers; report the ratio of highest throughput, the ratios "
                    "statistically indistinguishable from it (paired batch-means "
                    "screening) and whether the best lies at an end of the range.",
        examples=SWEEP_EXAMPLES)
    _add_run_arguments(s)
    s.add_argument("--ratios", type=ratio_range, required=True, metavar="LO:HI",
                   help="inclusive range of ratios, e.g. 1:32")
    s.set_defaults(func=run_sweep)


def _engine_options(args) -> dict:
    """The pipeline's options, or an error if they are given to the step engine."""
    if args.engine == "step":
        for flag, value in (("--microbatches", args.microbatches),
                            ("--intercepts", args.intercepts)):
            if value is not None:
                raise CliError(f"{flag} applies to --engine pipeline only (the step engine "
                               "has no microbatches)")
        return {}
    return {"microbatches": 2 if args.microbatches is None else args.microbatches,
            "intercepts": INTERCEPTS[0] if args.intercepts is None else args.intercepts}


def _costs(args, theta: float):
    """Coefficients and objective from the shared GPU-count and objective options (presets
    are linearized at the optimum of the same objective as in ``afd provision``)."""
    costs = resolve_costs(args, batch=args.batch, theta=theta,
                          objective=linearization_objective(args))
    return costs.coefficients, resolve_objective(args, costs.gpus)


def _setup(args):
    """Workload, operating point and run options; the simulator checks them (its errors
    name the parameter, which the command line turns into the option)."""
    from afdlib.model import OperatingPoint
    from afdlib.workload import load_stats

    engine_options = _engine_options(args)
    workload, description = resolve_workload(args)
    stats = load_stats(workload)
    coeffs, objective = _costs(args, stats.theta)
    point = OperatingPoint(coeffs=coeffs, theta=stats.theta, load_std=stats.load_std,
                           batch=args.batch, objective=objective)
    options = dict(steps=args.steps, warmup=args.warmup, seed=args.seed, init=args.init,
                   replay=args.replay, **engine_options)
    return workload, description, point, options


def _header(args, description, point) -> dict:
    from afdlib.sim.results import objective_dict

    out = {"workload": description, "theta": point.theta, "batch": args.batch,
           "engine": args.engine, "init": args.init,
           "lengths": "replay" if args.replay else "resample", "seed": args.seed,
           "objective": objective_dict(point.objective)}
    gpus = point.objective.gpus
    if gpus is not None:
        out["gpus"] = {"attention": gpus.attention, "ffn": gpus.ffn}
    if args.engine == "pipeline":
        out.update(microbatches=args.microbatches or 2,
                   intercepts=args.intercepts or INTERCEPTS[0])
    return out


def _warn(command: str, message: str) -> None:
    print(f"afd {command}: warning: {' '.join(message.split())}", file=sys.stderr)


def run_simulate(args) -> int:
    """Simulate one bundle and print the summary."""
    from afdlib.sim import Bundle, simulate
    from afdlib.sim.records import open_records

    workload, description, point, options = _setup(args)
    bundle = Bundle.at(point, args.ratio)
    writer = None
    if args.records is not None:
        writer = open_records(args.records, steps=args.steps, ratio=args.ratio)
    try:
        res = simulate(workload, bundle, engine=args.engine, progress=args.progress,
                       stream=sys.stderr, record_to=writer, **options)
    finally:
        if writer is not None:
            writer.close()
    out = _header(args, description, point)
    out.update({
        "ratio": args.ratio,
        "throughput_per_instance": res.throughput_per_instance,
        "throughput_ci95": list(res.throughput_ci95),
        "throughput": res.throughput,
        "objective_ci95": list(res.objective_ci95),
        "throughput_unit": res.throughput_unit,
    })
    if res.throughput_per_gpu is not None:
        out["throughput_per_gpu"] = res.throughput_per_gpu
    out.update({
        "mean_step_time": res.mean_step_time,
        "step_time_ci95": list(res.step_time_ci95),
        "step_time_p50": res.step_time_p50,
        "step_time_p99": res.step_time_p99,
        "step_time_quantile_rtol": res.step_time_quantile_rtol,
        "step_time_correlation": res.step_time_correlation,
        "attention_idle": res.attention_idle,
        "comm_idle": res.comm_idle,
        "ffn_idle": res.ffn_idle,
        "barrier_overhead": res.barrier_overhead,
        "mean_load": res.mean_load,
        "load_std": res.load_std,
        "steps": res.steps,
        "warmup": res.warmup,
        "measured_steps": res.measured_steps,
        "requests": res.requests,
    })
    if args.records is not None:
        out["records"] = args.records
    if args.json:
        emit_json(out)
        return 0
    lo, hi = res.throughput_ci95
    print(f"workload          {description} (theta {point.theta:.1f} tokens)")
    print(f"bundle            r = {args.ratio}, B = {args.batch}, engine {args.engine}"
          + (f" (m = {out['microbatches']}, intercepts {out['intercepts']})"
             if args.engine == "pipeline" else ""))
    print(f"run               {res.steps} steps ({res.warmup} warm-up), init {args.init}, "
          f"{out['lengths']}, seed {args.seed}, {res.requests} requests started")
    print(f"throughput        {res.throughput_per_instance:.1f} tokens/s per instance "
          f"(95% CI {lo:.1f} .. {hi:.1f})")
    if res.throughput_unit != "tokens/s per instance":
        olo, ohi = res.objective_ci95
        print(f"                  {res.throughput:.1f} {res.throughput_unit} "
              f"(95% CI {olo:.1f} .. {ohi:.1f})")
    if res.throughput_per_gpu is not None and res.throughput_unit != "tokens/s per GPU":
        print(f"                  {res.throughput_per_gpu:.1f} tokens/s per GPU")
    print(f"step time         mean {1e3 * res.mean_step_time:.4f} ms, p50 "
          f"{1e3 * res.step_time_p50:.4f} ms, p99 {1e3 * res.step_time_p99:.4f} ms "
          f"(quantiles within {res.step_time_quantile_rtol:.1g} relative)")
    print(f"idle              attention {100 * res.attention_idle:.1f}%, communication "
          f"{100 * res.comm_idle:.1f}%, FFN {100 * res.ffn_idle:.1f}%")
    print(f"barrier overhead  {1e3 * res.barrier_overhead:.4f} ms per step "
          f"(slowest worker's attention minus the mean worker's)")
    if args.records is not None:
        print(f"records           {args.records} (every step, warm-up included)")
    return 0


def run_sweep(args) -> int:
    """Sweep the ratios and print the table, the best ratio and its equivalents."""
    from afdlib.sim import sweep

    workload, description, point, options = _setup(args)
    result = sweep(workload, point, args.ratios, engine=args.engine,
                   progress=args.progress, stream=sys.stderr, **options)
    out = _header(args, description, point)
    out.update({"steps": args.steps, "warmup": args.warmup,
                "best_ratio": result.best_ratio,
                "equivalent_ratios": list(result.equivalent_ratios),
                "equivalence_rule": result.equivalence_rule,
                "best_at_range_edge": result.best_at_range_edge,
                "throughput_unit": result.results[0].throughput_unit,
                "rows": result.rows()})
    edge = None
    if result.best_at_range_edge:
        lo, hi = args.ratios[0], args.ratios[-1]
        side = "upper" if result.best_ratio == hi else "lower"
        edge = (f"the best ratio {result.best_ratio} is the {side} end of --ratios "
                f"{lo}:{hi}: the best may lie outside the range; widen it")
    if args.json:
        emit_json(out)
        return 0
    unit = out["throughput_unit"]
    print(f"workload  {description} (theta {point.theta:.1f} tokens), B = {args.batch}, "
          f"engine {args.engine}, {args.steps} steps")
    print(f"{'ratio':>5}  {unit:>24}  {'95% CI':>23}  {'gap to best':>11}  {'step ms':>9}  "
          f"{'p99 ms':>9}  {'FFN idle':>8}")
    keep = set(result.equivalent_ratios)
    for row in out["rows"]:
        lo, hi = row["objective_ci95"]
        mark = "*" if row["ratio"] in keep else " "
        print(f"{row['ratio']:>4}{mark}  {row['throughput']:>24.1f}  "
              f"{lo:>11.1f} .. {hi:<9.1f}  {100 * row['gap_to_best']:>10.2f}%  "
              f"{1e3 * row['mean_step_time']:>9.4f}  {1e3 * row['step_time_p99']:>9.4f}  "
              f"{100 * row['ffn_idle']:>7.1f}%")
    equivalents = ", ".join(str(r) for r in result.equivalent_ratios)
    print(f"best ratio {result.best_ratio}; statistically equivalent (*): {equivalents}")
    print(f"rule: {result.equivalence_rule}")
    if edge is not None:
        _warn("sweep", edge)
    return 0
