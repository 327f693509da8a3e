"""``afd report``: one self-contained HTML page that sizes a bundle and says why."""

from __future__ import annotations

import shlex
import sys

from afdlib.cli._common import (
    CliError,
    add_coefficient_arguments,
    add_command,
    add_objective_arguments,
    add_trace_arguments,
    emit_json,
    estimate_warnings,
    non_negative_int,
    positive_float,
    positive_int,
    warn,
)

EXAMPLES = [
    "afd report --trace sharegpt_8k --batch 64 --model qwen3-235b-a22b --hardware h200 "
    "-o report.html",
    "afd report --trace sharegpt_8k --batch 64 --model qwen3-235b-a22b --hardware h200 "
    "--tpot-p99 0.04 --simulate -o report.html",
    "afd report --prompt geometric:100,start=0 --decode geometric:500 --batch 256 "
    "--coeffs my_coeffs.json --gpus 1/8 -o report.html",
]


def register(subparsers) -> None:
    """Add the ``report`` subcommand."""
    p = add_command(
        subparsers, "report", help="write a self-contained HTML provisioning report",
        description="Write one HTML file (figures embedded, no external resources) with the "
                    "inputs and where each coefficient came from, the GPU counts, theta and "
                    "sigma with intervals, the ratio under each rule, throughput per GPU and "
                    "p99 step time against r, the latency-feasible choice and, with "
                    "--simulate, a confirming simulation sweep.",
        examples=EXAMPLES)
    add_trace_arguments(p, positional=False)
    p.add_argument("--prompt", metavar="DIST", help="prompt-length law (with --decode)")
    p.add_argument("--decode", metavar="DIST", help="decode-length law")
    p.add_argument("--batch", type=positive_int, required=True, metavar="B",
                   help="slots per Attention worker")
    add_coefficient_arguments(p)
    add_objective_arguments(p)
    p.add_argument("--tpot-p99", type=positive_float, metavar="SECONDS",
                   help="latency target: largest allowed p99 step time (s)")
    p.add_argument("--max-ratio", type=positive_int, metavar="R",
                   help="largest ratio of the rules' tables")
    p.add_argument("--simulate", action="store_true",
                   help="add a confirming simulation sweep around the rules' choices")
    p.add_argument("--steps", type=positive_int, default=100_000, metavar="N",
                   help="steps per simulated ratio (default: 100000; a p99 needs long runs, "
                        "since loads change slowly)")
    p.add_argument("--seed", type=non_negative_int, default=0, metavar="S",
                   help="random seed of the sweep (default: 0)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.html",
                   help="the HTML file to write")
    p.add_argument("--json", action="store_true",
                   help="also print one JSON object (what the page shows) on stdout")
    p.set_defaults(func=run, theta=None, load_std=None, price_attention=None, price_ffn=None)


def run(args) -> int:
    """Compute, simulate if asked, and write the page."""
    from pathlib import Path

    from afdlib.cli.provision import preset_warnings, provision_at, resolve_provision_workload
    from afdlib.report import Report, ratios_to_simulate, simulation_options, write_report

    out_path = Path(args.output)
    if out_path.suffix.lower() not in (".html", ".htm"):
        raise CliError(f"--output: expected a .html file, got {args.output!r}")
    if not out_path.parent.exists():
        raise CliError(f"--output: no such folder {str(out_path.parent)!r}")
    if args.trace is None and args.prompt is None and args.decode is None:
        raise CliError("give a workload: --trace TRACE, or both --prompt DIST and --decode DIST")
    workload = resolve_provision_workload(args)
    warnings = estimate_warnings(workload.estimate) if workload.estimate is not None else []
    costs, result = provision_at(args, workload, args.batch)
    warnings += preset_warnings(costs, result)
    sweep, settings = None, {}
    if args.simulate:
        from afdlib.sim import sweep as run_sweep

        ratios = ratios_to_simulate(result)
        settings = {"steps": args.steps, "seed": args.seed, "engine": "step"}
        sweep = run_sweep(workload.lengths, result.point, ratios, steps=args.steps,
                          seed=args.seed, progress=None, stream=sys.stderr,
                          **simulation_options())
    w = workload.to_dict()
    info = {"description": workload.description, "kind": workload.kind,
            "requests": w.get("requests"), "theta_ci95": w.get("theta_ci95"),
            "load_std_ci95": w.get("load_std_ci95")}
    command = "afd " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if sys.argv and sys.argv[0].endswith("afd") else ""
    report = Report(result=result, workload=info, costs=costs.to_dict(),
                    warnings=tuple(warnings), sweep=sweep, sweep_settings=settings,
                    command=command)
    write_report(out_path, report)
    if args.json:
        out = result.to_dict()
        out.update(w)
        out["coefficients_source"] = costs.to_dict()
        out["report"] = str(out_path)
        out["warnings"] = warnings
        if sweep is not None:
            out["simulated_best_ratio"] = sweep.best_ratio
            out["equivalent_ratios"] = [int(r) for r in getattr(sweep, "equivalent_ratios", ())]
        emit_json(out)
        return 0
    for m in warnings:
        warn("report", m)
    print(f"wrote {out_path}")
    return 0
