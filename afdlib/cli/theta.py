"""``afd theta``: the workload statistic theta and the load spread of a trace."""

from __future__ import annotations

from afdlib.cli._common import add_trace_arguments, emit_json, load_trace_requests


def register(subparsers) -> None:
    """Add the ``theta`` subcommand."""
    p = subparsers.add_parser(
        "theta", help="theta and load_std of a request trace",
        description="Estimate the per-slot stationary load theta (mean cached tokens read per "
                    "decode step) and its standard deviation from a request trace, with a 95% "
                    "confidence interval (ratio estimator, delta method).")
    add_trace_arguments(p, positional=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    """Compute and print the statistics."""
    from afdlib.workload import estimate_load

    trace, requests = load_trace_requests(args)
    est = estimate_load(requests.prompt, requests.decode)
    shift = 1 if args.first_token_from_prefill else 0
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
    }
    if args.json:
        emit_json(result)
        return 0
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
