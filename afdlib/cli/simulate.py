"""``afd simulate`` and ``afd sweep``: run the AFD simulator on a workload and coefficients."""

from __future__ import annotations

import argparse
import sys

from afdlib.cli._common import (
    add_coefficient_arguments,
    add_workload_arguments,
    emit_json,
    non_negative_int,
    positive_int,
    resolve_coefficients,
    resolve_workload,
)
from afdlib.model import INTERCEPTS
from afdlib.sim.bundle import INITS
from afdlib.sim.sweep import ENGINES

MAX_SWEEP_RATIO = 4096


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
    p.add_argument("--steps", type=positive_int, default=20_000, metavar="N",
                   help="decode steps to simulate (default: 20000)")
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
    p.add_argument("--microbatches", type=positive_int, default=2, metavar="M",
                   help="microbatches per Attention worker, pipeline engine (default: 2)")
    p.add_argument("--intercepts", choices=INTERCEPTS, default=INTERCEPTS[0],
                   help="pipeline engine: each microbatch pays the full intercepts "
                        "(default) or 1/M of them")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(subparsers) -> None:
    """Add the ``simulate`` and ``sweep`` subcommands."""
    p = subparsers.add_parser(
        "simulate", help="simulate one rA-1F bundle",
        description="Simulate an rA-1F bundle with exact per-slot renewals and the exact "
                    "barrier over workers; report throughput per instance (with a 95% "
                    "batch-means interval), mean step time, idle fractions and barrier "
                    "overhead.")
    _add_run_arguments(p)
    p.add_argument("--ratio", type=positive_int, required=True, metavar="R",
                   help="Attention workers per FFN worker")
    p.set_defaults(func=run_simulate)

    s = subparsers.add_parser(
        "sweep", help="simulate a range of ratios and pick the best",
        description="Simulate the bundle at every integer ratio in LO:HI with common random "
                    "numbers and report the ratio of highest throughput per instance.")
    _add_run_arguments(s)
    s.add_argument("--ratios", type=ratio_range, required=True, metavar="LO:HI",
                   help="inclusive range of ratios, e.g. 1:32")
    bar = s.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_const", const=True,
                     default=None, help="always draw a progress bar on stderr")
    bar.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                     help="never draw a progress bar (default: only on a terminal)")
    s.set_defaults(func=run_sweep)


def _setup(args):
    """Workload, coefficients and run options; the simulator checks them (its errors name
    the parameter, which the command line turns into the option)."""
    from afdlib.model import OperatingPoint
    from afdlib.workload import load_stats

    workload, description = resolve_workload(args)
    stats = load_stats(workload)
    coeffs = resolve_coefficients(args, batch=args.batch, theta=stats.theta)
    point = OperatingPoint(coeffs=coeffs, theta=stats.theta, load_std=stats.load_std,
                           batch=args.batch)
    options = dict(steps=args.steps, warmup=args.warmup, seed=args.seed, init=args.init,
                   replay=args.replay, engine=args.engine)
    if args.engine == "pipeline":
        options.update(microbatches=args.microbatches, intercepts=args.intercepts)
    return workload, description, point, options


def _header(args, description, theta) -> dict:
    out = {"workload": description, "theta": theta, "batch": args.batch,
           "engine": args.engine, "init": args.init,
           "lengths": "replay" if args.replay else "resample", "seed": args.seed}
    if args.engine == "pipeline":
        out.update(microbatches=args.microbatches, intercepts=args.intercepts)
    return out


def run_simulate(args) -> int:
    """Simulate one bundle and print the summary."""
    from afdlib.sim import Bundle, simulate

    workload, description, point, options = _setup(args)
    theta = point.theta
    res = simulate(workload, Bundle.at(point, args.ratio), **options)
    out = _header(args, description, theta)
    out.update({
        "ratio": args.ratio,
        "throughput_per_instance": res.throughput_per_instance,
        "throughput_ci95": list(res.throughput_ci95),
        "mean_step_time": res.mean_step_time,
        "step_time_ci95": list(res.step_time_ci95),
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
    if args.json:
        emit_json(out)
        return 0
    lo, hi = res.throughput_ci95
    print(f"workload          {description} (theta {theta:.1f} tokens)")
    print(f"bundle            r = {args.ratio}, B = {args.batch}, engine {args.engine}"
          + (f" (m = {args.microbatches}, intercepts {args.intercepts})"
             if args.engine == "pipeline" else ""))
    print(f"run               {res.steps} steps ({res.warmup} warm-up), init {args.init}, "
          f"{out['lengths']}, seed {args.seed}, {res.requests} requests started")
    print(f"throughput        {res.throughput_per_instance:.1f} tokens/s per instance "
          f"(95% CI {lo:.1f} .. {hi:.1f})")
    print(f"mean step time    {1e3 * res.mean_step_time:.4f} ms")
    print(f"idle              attention {100 * res.attention_idle:.1f}%, communication "
          f"{100 * res.comm_idle:.1f}%, FFN {100 * res.ffn_idle:.1f}%")
    print(f"barrier overhead  {1e3 * res.barrier_overhead:.4f} ms per step "
          f"(slowest worker's attention minus the mean worker's)")
    return 0


def run_sweep(args) -> int:
    """Sweep the ratios and print the table and the best ratio."""
    from afdlib.sim import sweep

    workload, description, point, options = _setup(args)
    theta = point.theta
    engine = options.pop("engine")
    result = sweep(workload, point, args.ratios, engine=engine,
                   progress=args.progress, stream=sys.stderr, **options)
    out = _header(args, description, theta)
    out.update({"steps": args.steps, "warmup": args.warmup,
                "best_ratio": result.best_ratio, "rows": result.rows()})
    if args.json:
        emit_json(out)
        return 0
    print(f"workload  {description} (theta {theta:.1f} tokens), B = {args.batch}, "
          f"engine {args.engine}, {args.steps} steps")
    print(f"{'ratio':>5}  {'throughput/instance':>20}  {'95% CI':>23}  {'step ms':>9}  "
          f"{'FFN idle':>8}")
    for row in out["rows"]:
        lo, hi = row["throughput_ci95"]
        print(f"{row['ratio']:>5}  {row['throughput_per_instance']:>20.1f}  "
              f"{lo:>11.1f} .. {hi:<9.1f}  {1e3 * row['mean_step_time']:>9.4f}  "
              f"{100 * row['ffn_idle']:>7.1f}%")
    print(f"best ratio {result.best_ratio}")
    return 0
