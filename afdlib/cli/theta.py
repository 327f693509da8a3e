"""``afd theta``: the workload statistic theta and the load spread of a trace or length laws."""

from __future__ import annotations

from afdlib.cli._common import (
    CliError,
    add_command,
    add_trace_arguments,
    emit_json,
    estimate_warnings,
    load_trace_requests,
    warn,
)

EXAMPLES = [
    "afd theta sharegpt_8k",
    "afd theta azure2023_conv --first-token-from-prefill --json",
    "afd theta my_trace.csv --format csv",
    "afd theta --prompt geometric:100,start=0 --decode geometric:500",
]


def register(subparsers) -> None:
    """Add the ``theta`` subcommand."""
    p = add_command(
        subparsers, "theta", help="theta and load_std of a request trace or of length laws",
        description="The per-slot stationary load theta (mean cached tokens read per decode "
                    "step) and its standard deviation: estimated from a request trace with a "
                    "95% confidence interval (ratio estimator, delta method), or exact for "
                    "length laws given with --prompt and --decode.",
        examples=EXAMPLES)
    add_trace_arguments(p, positional=True)
    p.add_argument("--prompt", metavar="DIST",
                   help="prompt-length law, e.g. geometric:100,start=0 (with --decode, instead "
                        "of TRACE)")
    p.add_argument("--decode", metavar="DIST", help="decode-length law, e.g. geometric:500")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _laws_result(args) -> dict:
    from afdlib.cli.laws import parse_length_law
    from afdlib.workload import IndependentLengths, load_stats

    if args.prompt is None or args.decode is None:
        raise CliError("length laws need both --prompt DIST and --decode DIST")
    prompt, decode = parse_length_law(args.prompt), parse_length_law(args.decode)
    stats = load_stats(IndependentLengths(prompt, decode))
    return {
        "requests": None,
        "mean_prompt": stats.mean_prompt,
        "mean_decode": stats.mean_decode,
        "theta": stats.theta,
        "load_std": stats.load_std,
        "theta_ci95": [stats.theta, stats.theta],
        "load_std_ci95": [stats.load_std, stats.load_std],
        "naive_theta": stats.naive_theta,
        "exact": True,
        "workload": f"P ~ {prompt}, D ~ {decode}",
        "warnings": [],
    }


def run(args) -> int:
    """Compute and print the statistics."""
    have_laws = args.prompt is not None or args.decode is not None
    if args.trace is not None and have_laws:
        raise CliError("give either TRACE or --prompt/--decode, not both")
    if args.trace is None and not have_laws:
        raise CliError("give a workload: TRACE, or both --prompt DIST and --decode DIST")
    if have_laws:
        result = _laws_result(args)
        if args.json:
            emit_json(result)
            return 0
        print(f"laws            {result['workload']}")
        print(f"mean prompt     {result['mean_prompt']:.2f} tokens")
        print(f"mean decode     {result['mean_decode']:.2f} steps")
        print(f"theta           {result['theta']:.2f} tokens  (exact)")
        print(f"load std        {result['load_std']:.2f} tokens  (exact)")
        print(f"E[P] + E[D]     {result['naive_theta']:.2f} tokens  (theta / that = "
              f"{result['theta'] / result['naive_theta']:.3f})")
        return 0
    from afdlib.workload import estimate_load

    trace, requests = load_trace_requests(args)
    est = estimate_load(requests.prompt, requests.decode)
    shift = 1 if args.first_token_from_prefill else 0
    warnings = estimate_warnings(est)
    result = {
        "requests": est.requests,
        "mean_prompt": est.mean_prompt - shift,
        "mean_decode": est.mean_decode,
        "theta": est.theta,
        "load_std": est.load_std,
        "theta_ci95": list(est.theta_ci),
        "load_std_ci95": list(est.load_std_ci),
        "naive_theta": est.mean_prompt - shift + est.mean_decode,
        "rows": len(trace),
        "dropped_rows": len(trace) - est.requests,
        "convention": "first-token-from-prefill" if shift else "decode-steps-equal-output",
        "format": trace.format,
        "trace": trace.name,
        "exact": False,
        "warnings": warnings,
    }
    if args.json:
        emit_json(result)
        return 0
    for w in warnings:
        warn("theta", w)
    lo, hi = result["theta_ci95"]
    print(f"trace           {trace.name} ({trace.format}, {result['rows']} rows, "
          f"{result['dropped_rows']} without decode steps)")
    print(f"convention      {result['convention']}")
    print(f"requests        {result['requests']}")
    print(f"mean prompt     {result['mean_prompt']:.2f} tokens")
    print(f"mean decode     {result['mean_decode']:.2f} steps")
    print(f"theta           {result['theta']:.2f} tokens  (95% CI {lo:.2f} .. {hi:.2f})")
    print(f"load std        {result['load_std']:.2f} tokens")
    print(f"E[P] + E[D]     {result['naive_theta']:.2f} tokens  (theta / that = "
          f"{result['theta'] / result['naive_theta']:.3f})")
    return 0
