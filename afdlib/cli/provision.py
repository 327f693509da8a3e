"""``afd provision``: the optimal Attention/FFN ratio (mean field and barrier) for a workload."""

from __future__ import annotations

from afdlib.cli._common import (
    CliError,
    add_coefficient_arguments,
    add_trace_arguments,
    emit_json,
    float_at_least,
    load_trace_requests,
    positive_int,
    resolve_coefficients,
)

_positive_float = float_at_least(0.0, strict=True)
_nonnegative_float = float_at_least(0.0)


def register(subparsers) -> None:
    """Add the ``provision`` subcommand."""
    p = subparsers.add_parser(
        "provision", help="optimal A/F ratio: mean-field closed form and barrier refinement",
        description="Size an rA-1F bundle: the mean-field optimum r* = max(r_A, r_C, r_peak) "
                    "(or its generalization when communication grows with r), its regime, the "
                    "best integer ratio of the mean-field and of the Gaussian barrier model, and "
                    "the throughput per instance at every ratio 1..R. The workload is a trace, "
                    "or theta and load_std (tokens) given directly; with a trace, the barrier "
                    "with the exact law of a worker's load is reported too (r_int_exact).")
    add_trace_arguments(p, positional=False)
    p.add_argument("--theta", type=_nonnegative_float, metavar="X",
                   help="per-slot stationary mean load (tokens), instead of --trace")
    p.add_argument("--load-std", type=_nonnegative_float, metavar="S",
                   help="per-slot stationary load standard deviation (tokens), with --theta")
    p.add_argument("--batch", type=positive_int, required=True, metavar="B",
                   help="slots per Attention worker")
    add_coefficient_arguments(p)
    p.add_argument("--max-ratio", type=positive_int, metavar="R",
                   help="largest ratio of the table and of the integer search (default: "
                        "max(32, 2 x the larger continuous optimum), at most 4096)")
    p.add_argument("--price-attention", type=_positive_float, default=1.0, metavar="P",
                   help="price of an Attention instance (default 1)")
    p.add_argument("--price-ffn", type=_positive_float, default=1.0, metavar="P",
                   help="price of an FFN instance (default 1); with unequal prices the "
                        "objective is tokens/s per price unit")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _workload(args):
    """theta, load_std, a description, and the requests when a trace was given."""
    have_direct = args.theta is not None or args.load_std is not None
    if args.trace is not None and have_direct:
        raise CliError("give either --trace or --theta/--load-std, not both")
    if args.trace is not None:
        from afdlib.workload import estimate_load

        trace, requests = load_trace_requests(args)
        est = estimate_load(requests.prompt, requests.decode)
        return est.theta, est.load_std, trace.name, requests
    if args.theta is None or args.load_std is None:
        raise CliError("give a workload: --trace TRACE, or both --theta X and --load-std S")
    return args.theta, args.load_std, "given theta and load_std", None


def run(args) -> int:
    """Compute and print the provisioning result."""
    from afdlib.model import InstancePrices, Objective, OperatingPoint
    from afdlib.provision import provision

    theta, load_std, source, requests = _workload(args)
    coeffs = resolve_coefficients(args, batch=args.batch, theta=theta)
    prices = InstancePrices(attention=args.price_attention, ffn=args.price_ffn)
    point = OperatingPoint(coeffs=coeffs, theta=theta, load_std=load_std, batch=args.batch,
                           objective=Objective(prices=prices))
    result = provision(point, max_ratio=args.max_ratio)
    out = result.to_dict()
    out["workload"] = source
    exact = None
    if requests is not None:
        # with the trace at hand, the barrier with the exact worker-load law as well
        from afdlib.provision.exact import exact_ratio, worker_load_law

        exact = exact_ratio(point, worker_load_law(requests, args.batch),
                            max_ratio=result.max_ratio)
        out["r_int_exact"] = exact.r_int
        for r, lam in zip(exact.ratios, exact.throughputs, strict=True):
            out["throughput_per_instance"][str(int(r))]["exact"] = float(lam)
    if args.json:
        emit_json(out)
        return 0
    _print_summary(source, point, result, exact)
    _print_table(result, exact, out["throughput_unit"])
    return 0


def _print_summary(source, point, result, exact) -> None:
    """The closed forms, the optima and the best integers, one line each."""
    mf = result.mean_field
    print(f"workload        {source}: theta {point.theta:.2f} tokens, load std "
          f"{point.load_std:.2f} tokens")
    print(f"batch           {point.batch} slots per Attention worker; communication scales "
          f"with {point.coeffs.comm_scales_with}")
    print(f"r_A, r_C        {mf.r_A:.3f}, {mf.r_C:.3f}")
    print(f"r_peak          {mf.r_peak:.3f}")
    print(f"r* (closed)     {mf.r_star:.4f}  = {mf.formula}, {mf.regime}-bound regime "
          f"(direct search: {result.r_star_numeric:.4f})")
    print(f"r* (barrier)    {result.barrier.r_star:.4f}")
    print(f"best integer    mean field {result.r_int_mean_field}, barrier "
          f"{result.barrier.r_int}"
          + (f", exact-load barrier {exact.r_int}" if exact is not None else "")
          + f"  (ratios 1..{result.max_ratio})")


def _print_table(result, exact, unit: str) -> None:
    """The objective of each rule at the ratios around the best integers."""
    best = [result.r_int_mean_field, result.barrier.r_int]
    best += [exact.r_int] if exact is not None else []
    lo, hi = max(1, min(best) - 3), min(result.max_ratio, max(best) + 3)
    print(f"{'ratio':>7} {'mean field':>14} {'barrier':>14}"
          + (f" {'exact load':>14}" if exact is not None else "") + f"   ({unit})")
    for r in range(lo, hi + 1):
        mark = []
        if r == result.r_int_mean_field:
            mark.append("mean-field best")
        if r == result.barrier.r_int:
            mark.append("barrier best")
        if exact is not None and r == exact.r_int:
            mark.append("exact best")
        extra = f" {exact.throughputs[r - 1]:>14.1f}" if exact is not None else ""
        print(f"{r:>7} {result.throughput_mean_field[r - 1]:>14.1f} "
              f"{result.throughput_barrier[r - 1]:>14.1f}{extra}   {', '.join(mark)}")
