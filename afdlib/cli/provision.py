"""``afd provision``: the best Attention/FFN ratio (and batch) for a workload and a bundle."""

from __future__ import annotations

import math
from dataclasses import dataclass

from afdlib.cli._common import (
    CliError,
    add_coefficient_arguments,
    add_command,
    add_objective_arguments,
    add_trace_arguments,
    batch_range,
    curves_warning,
    describe_costs,
    emit_json,
    estimate_warnings,
    float_at_least,
    linearization_objective,
    load_trace_requests,
    positive_float,
    positive_int,
    resolve_costs,
    resolve_objective,
    warn,
)
from afdlib.model import INTERCEPTS

_nonnegative_float = float_at_least(0.0)
#: Rows of the text table around the best ratios (the rest with --json).
TEXT_WINDOW = 3

EXAMPLES = [
    "afd provision --trace sharegpt_8k --batch 64 --model qwen3-235b-a22b --hardware h200",
    "afd provision --trace sharegpt_8k --batch 64 --model qwen3-235b-a22b --hardware h200 "
    "--tpot-p99 0.05",
    "afd provision --trace sharegpt_8k --batches 16:512 --tpot-p99 0.05 "
    "--model qwen3-235b-a22b --hardware h200",
    "afd provision --prompt geometric:100,start=0 --decode geometric:500 --batch 256 "
    "--coeffs my_coeffs.json --gpus 1/8",
    "afd provision --theta 2000 --load-std 1500 --batch 128 --coeffs my_coeffs.json "
    "--objective instance",
    "afd provision --trace my_trace.csv --batch 64 --model deepseek-v3 --hardware h200 "
    "--moe-routing power_law --gpu-price 2.5/2.5",
]


def register(subparsers) -> None:
    """Add the ``provision`` subcommand."""
    p = add_command(
        subparsers, "provision",
        help="best A/F ratio (and batch): mean field, barrier, exact load, latency target",
        description="Size an rA-1F bundle: the mean-field optimum r* = max(r_A, r_C, r_peak) "
                    "(or its generalization when communication grows with r), its regime, the "
                    "best integer ratio of the mean-field, the Gaussian barrier and (with a "
                    "trace or length laws) the exact-load barrier rule, and at every ratio "
                    "1..R the throughput per instance and per GPU and the predicted median and "
                    "p99 step time (the time per output token). With --tpot-p99 the best ratio "
                    "whose p99 step time meets the target (r_int_slo; null, with the smallest "
                    "achievable target, when none does). With --batches the batch and the "
                    "ratio are searched together within KV memory and the target (best, "
                    "pareto); there, a target nothing meets is an error.",
        examples=EXAMPLES)
    add_trace_arguments(p, positional=False)
    p.add_argument("--prompt", metavar="DIST",
                   help="prompt-length law, e.g. geometric:100,start=0 (with --decode, "
                        "instead of --trace): exact theta and sigma")
    p.add_argument("--decode", metavar="DIST", help="decode-length law, e.g. geometric:500")
    p.add_argument("--theta", type=_nonnegative_float, metavar="X",
                   help="per-slot stationary mean load (tokens), instead of --trace")
    p.add_argument("--load-std", type=_nonnegative_float, metavar="S",
                   help="per-slot stationary load standard deviation (tokens), with --theta")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--batch", type=positive_int, metavar="B",
                      help="slots per Attention worker")
    size.add_argument("--batches", type=batch_range, metavar="LO:HI",
                      help="search the batch too, in LO..HI (a geometric grid of at most 40 "
                           "batches when wider), within the KV memory of the instances")
    add_coefficient_arguments(p)
    add_objective_arguments(p)
    p.add_argument("--tpot-p99", type=positive_float, metavar="SECONDS",
                   help="latency target: the largest allowed 99th percentile of the step "
                        "time (= time per output token), in seconds, e.g. 0.05")
    p.add_argument("--microbatches", type=positive_int, default=None, metavar="M",
                   help="Attention workers split their batch into M microbatches (2..6) that "
                        "pipeline through attention, the links and the FFN: the rules become "
                        "pipeline-aware (maximum cycle mean of the pipeline over the loads' "
                        "laws); no latency target then")
    p.add_argument("--intercepts", choices=INTERCEPTS, default=None,
                   help="with --microbatches: each microbatch pays the full intercepts "
                        "(per_microbatch, the default) or 1/M of them (per_step)")
    p.add_argument("--max-ratio", type=positive_int, metavar="R",
                   help="largest ratio of the table and of the integer search (default: "
                        "max(32, 2 x the larger continuous optimum), at most 4096)")
    p.add_argument("--price-attention", type=positive_float, default=None, metavar="P",
                   help="price of an Attention instance (with --price-ffn; per-GPU prices: "
                        "--gpu-price)")
    p.add_argument("--price-ffn", type=positive_float, default=None, metavar="P",
                   help="price of an FFN instance; with unequal prices the default objective "
                        "is tokens/s per price unit")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Workload:
    """The workload of a provisioning command.

    Attributes
    ----------
    theta, load_std : float
        Tokens.
    description : str
    lengths : JointLengths or IndependentLengths or None
        The requests or laws (None for theta and load_std given directly).
    estimate : LoadEstimate or None
        With a trace: the estimate and its intervals.
    kind : {"trace", "laws", "given"}
    """

    theta: float
    load_std: float
    description: str
    lengths: object
    estimate: object
    kind: str

    def to_dict(self) -> dict:
        """JSON-ready description (with the trace's intervals)."""
        out = {"workload": self.description, "workload_kind": self.kind}
        if self.estimate is not None:
            est = self.estimate
            out.update(requests=est.requests, theta_ci95=list(est.theta_ci),
                       load_std_ci95=list(est.load_std_ci))
        return out


def resolve_provision_workload(args) -> Workload:
    """``--trace`` | ``--prompt``/``--decode`` | ``--theta``/``--load-std``."""
    from afdlib.cli.laws import parse_length_law
    from afdlib.workload import IndependentLengths, estimate_load, load_stats

    have_direct = args.theta is not None or args.load_std is not None
    have_laws = args.prompt is not None or args.decode is not None
    given = [n for n, on in (("--trace", args.trace is not None), ("--prompt/--decode", have_laws),
                             ("--theta/--load-std", have_direct)) if on]
    if len(given) > 1:
        raise CliError(f"give one workload: {' or '.join(given)}, not both")
    if args.trace is not None:
        trace, requests = load_trace_requests(args)
        est = estimate_load(requests.prompt, requests.decode)
        return Workload(est.theta, est.load_std, trace.name, requests, est, "trace")
    if have_laws:
        if args.prompt is None or args.decode is None:
            raise CliError("length laws need both --prompt DIST and --decode DIST")
        prompt, decode = parse_length_law(args.prompt), parse_length_law(args.decode)
        laws = IndependentLengths(prompt, decode)
        stats = load_stats(laws)
        return Workload(stats.theta, stats.load_std, f"P ~ {prompt}, D ~ {decode}", laws, None,
                        "laws")
    if args.theta is None or args.load_std is None:
        raise CliError("give a workload: --trace TRACE, --prompt DIST and --decode DIST, or "
                       "both --theta X and --load-std S")
    return Workload(args.theta, args.load_std, "given theta and load_std", None, None, "given")


def instance_prices(args):
    """``--price-attention``/``--price-ffn`` as InstancePrices, or None."""
    from afdlib.model import InstancePrices

    if args.price_attention is None and args.price_ffn is None:
        return None
    return InstancePrices(attention=args.price_attention or 1.0, ffn=args.price_ffn or 1.0)


def operating_point(args, workload: Workload, batch: int, *, check_memory: bool = True):
    """The costs and the operating point at one batch."""
    from afdlib.model import OperatingPoint

    costs = resolve_costs(args, batch=batch, theta=workload.theta,
                          objective=linearization_objective(args), check_memory=check_memory)
    objective = resolve_objective(args, costs.gpus, prices=instance_prices(args))
    point = OperatingPoint(coeffs=costs.coefficients, theta=workload.theta,
                           load_std=workload.load_std, batch=batch, objective=objective)
    return costs, point


def provision_at(args, workload: Workload, batch: int, *, microbatches: int | None = None,
                 intercepts: str | None = None):
    """Every rule at one batch: ``(costs, ProvisionResult)``, pipeline-aware with
    ``microbatches`` (``--microbatches``; :func:`afdlib.provision.provision`)."""
    from afdlib.provision import provision, worker_load_law

    costs, point = operating_point(args, workload, batch)
    if microbatches is not None:
        result = provision(point, max_ratio=args.max_ratio, tpot_p99=args.tpot_p99,
                           microbatches=microbatches, intercepts=intercepts or INTERCEPTS[0],
                           workload=workload.lengths)
        return costs, result
    law = worker_load_law(workload.lengths, batch) if workload.lengths is not None else None
    result = provision(point, max_ratio=args.max_ratio, law=law, tpot_p99=args.tpot_p99)
    return costs, result


def preset_warnings(costs, result) -> list[str]:
    """What to say about a preset's coefficients at the result's ratio (see
    :func:`afdlib.cli._common.curves_warning`)."""
    far = curves_warning(costs, result.r_int(result.best_rule))
    return [] if far is None else [far]


def _header(workload: Workload, costs, result_dict: dict, warnings: list[str]) -> dict:
    out = dict(result_dict)
    out.update(workload.to_dict())
    out["coefficients_source"] = costs.to_dict()
    out["gpus_source"] = costs.gpus_source
    out["warnings"] = warnings
    return out


def run(args) -> int:
    """Compute and print the provisioning result."""
    if args.intercepts is not None and args.microbatches is None:
        raise CliError("--intercepts applies with --microbatches only")
    if args.microbatches is not None and args.batches is not None:
        raise CliError("--microbatches is not searched jointly with --batches: give --batch B")
    workload = resolve_provision_workload(args)
    warnings = estimate_warnings(workload.estimate) if workload.estimate is not None else []
    if args.batches is not None:
        return _run_joint(args, workload, warnings)
    costs, result = provision_at(args, workload, args.batch, microbatches=args.microbatches,
                                 intercepts=args.intercepts)
    warnings = [*warnings, *preset_warnings(costs, result)]
    out = _header(workload, costs, result.to_dict(), warnings)
    if args.json:
        emit_json(out)
        return 0
    for w in warnings:
        warn("provision", w)
    _print_summary(workload, costs, result)
    _print_table(result)
    return 0


# ---------------------------------------------------------------------------
# The joint search over batches
# ---------------------------------------------------------------------------


def _batch_limit(args, workload: Workload, lo: int):
    """``(largest feasible B or None, why)``: the KV memory of fixed instances (--gpus with a
    preset); a preset without --gpus sizes the Attention instance per batch."""
    if args.coeffs is not None:
        return None, "no memory limit is known for a coefficient file"
    if args.gpus is None:
        return None, ("the Attention instance is the smallest that holds each batch's KV "
                      "cache (fix it with --gpus A/F)")
    costs = resolve_costs(args, batch=lo, theta=workload.theta, check_memory=False)
    limit = costs.preset.memory.max_batch
    return limit, (f"KV memory of a {args.gpus.attention}-GPU Attention instance holds at most "
                   f"B = {limit} at theta = {workload.theta:.0f} tokens")


def _run_joint(args, workload: Workload, warnings: list[str]) -> int:
    from afdlib.provision import batch_grid, joint_search

    lo, hi = args.batches
    limit, memory_note = _batch_limit(args, workload, lo)
    if limit is not None and limit < lo:
        raise CliError(f"--batches: no batch in {lo}:{hi} fits: {memory_note}")
    top = hi if limit is None else min(hi, limit)
    batches, grid = batch_grid(lo, top)
    if top < hi:
        grid += f" (capped at {top}: {memory_note})"
    points = {}

    def point_at(b):
        costs, point = operating_point(args, workload, int(b))
        points[int(b)] = (costs, point)
        return point

    result = joint_search(point_at, batches, workload=workload.lengths,
                          max_ratio=args.max_ratio, tpot_p99=args.tpot_p99, grid=grid)
    if result.best is None:
        low = result.lowest_p99
        raise CliError(f"--tpot-p99: no (batch, ratio) meets {_ms(args.tpot_p99)}: the smallest "
                       f"achievable p99 step time is {_ms(low.step_time_p99)} at B = "
                       f"{low.batch}, r = {low.ratio}")
    best = result.best
    costs, result_best = provision_at(args, workload, best.batch)
    out = _header(workload, costs, result_best.to_dict(), warnings)
    out.update(result.to_dict())
    out["memory"] = memory_note
    out["best"]["gpus"] = (None if result_best.point.objective.gpus is None
                           else result_best.point.objective.gpus.to_dict())
    if args.json:
        emit_json(out)
        return 0
    for w in warnings:
        warn("provision", w)
    _print_joint(workload, costs, result, memory_note, points)
    return 0


def _thin(front, best, rows: int = 16):
    """At most ``rows`` frontier points, evenly spaced, the ends and ``best`` kept."""
    if len(front) <= rows:
        return list(front)
    import numpy as np

    keep = set(np.round(np.linspace(0, len(front) - 1, rows)).astype(int).tolist())
    keep |= {i for i, p in enumerate(front) if (p.batch, p.ratio) == (best.batch, best.ratio)}
    return [front[i] for i in sorted(keep)]


def _ms(seconds) -> str:
    return f"{1e3 * seconds:.4g} ms"


def _print_joint(workload, costs, result, memory_note, points) -> None:
    print(f"workload        {workload.description}: theta {workload.theta:.2f} tokens, load std "
          f"{workload.load_std:.2f} tokens")
    for line in describe_costs(costs):
        print(line)
    print(f"batches         {result.grid}"
          + ("" if memory_note in result.grid else f"; {memory_note}"))
    target = ("" if result.target is None else
              f", p99 step time <= {_ms(result.target)}")
    best = result.best
    print(f"best            B = {best.batch}, r = {best.ratio}: {best.throughput:.1f} "
          f"{result.unit}, p99 step time {_ms(best.step_time_p99)} "
          f"({result.method} law{target})")
    gpus = points.get(best.batch, (None, None))[1]
    if gpus is not None and gpus.objective.gpus is not None:
        g = gpus.objective.gpus
        print(f"                Attention instances of {g.attention} GPU(s), an FFN instance of "
              f"{g.ffn}")
    print(f"pareto          throughput against p99 step time ({len(result.pareto)} bundles no "
          "other beats on both)")
    shown = _thin(result.pareto, best)
    if len(shown) < len(result.pareto):
        print(f"                {len(shown)} of them shown, evenly along the frontier "
              "(--json for all)")
    print(f"{'B':>7} {'r':>4} {result.unit:>24} {'p99 step ms':>12} {'mean step ms':>13}")
    for p in shown:
        mark = "  best" if (p.batch, p.ratio) == (best.batch, best.ratio) else ""
        print(f"{p.batch:>7} {p.ratio:>4} {p.throughput:>24.1f} {1e3 * p.step_time_p99:>12.3f} "
              f"{1e3 * p.mean_step_time:>13.3f}{mark}")


# ---------------------------------------------------------------------------
# Text output at one batch
# ---------------------------------------------------------------------------

_NEGATIVE = {
    "r_A": "negative: the FFN's fixed time beta_F alone exceeds the attention time, so "
           "attention never binds",
    "r_FC": "negative: the FFN's fixed time alone exceeds communication, so communication "
            "never binds",
    "r_CA": "negative: communication's fixed time alone exceeds the attention time",
}


def _crossing(name: str, value: float) -> str:
    if value is None or not math.isfinite(value):
        return f"{name} none"
    note = f" ({_NEGATIVE[name]})" if value < 0 and name in _NEGATIVE else ""
    return f"{name} {value:.3f}{note}"


def _print_summary(workload: Workload, costs, result) -> None:
    """The inputs, the closed forms, the optima and the best integers, one line each."""
    mf, point = result.mean_field, result.point
    ci = ""
    if workload.estimate is not None:
        lo, hi = workload.estimate.theta_ci
        ci = f" (95% CI {lo:.2f} .. {hi:.2f})"
    exact = " (exact, from the laws)" if workload.kind == "laws" else ""
    print(f"workload        {workload.description}: theta {point.theta:.2f} tokens{ci}{exact}, "
          f"load std {point.load_std:.2f} tokens")
    for line in describe_costs(costs):
        print(line)
    print(f"batch           {point.batch} slots per Attention worker")
    print(f"objective       {point.objective.unit}")
    crossing_c = "r_FC" if mf.comm_scales_with == "B" else "r_CA"
    print(f"crossings       {_crossing('r_A', mf.r_A)}; {_crossing(crossing_c, mf.r_C)}")
    print(f"r_peak          {mf.r_peak:.3f}")
    print(f"r* (closed)     {mf.r_star:.4f}  = {mf.formula}, {mf.regime}-bound regime "
          f"(direct search: {result.r_star_numeric:.4f})")
    print(f"r* (barrier)    {result.barrier.r_star:.4f}")
    exact_text = f", exact-load barrier {result.exact.r_int}" if result.exact is not None else ""
    print(f"best integer    mean field {result.r_int('mean_field')}, barrier "
          f"{result.r_int('barrier')}{exact_text}  (ratios 1..{result.max_ratio}, "
          f"{point.objective.unit})")
    if result.pipeline is not None:
        print(f"pipeline        {result.pipeline['microbatches']} microbatches, intercepts "
              f"{result.pipeline['intercepts']}: the best integers are the pipeline-aware "
              "rules' (cycle time at mean loads; over normal loads; over the exact laws); "
              "the closed forms above are the step model's")
    from afdlib.model import PER_INSTANCE

    if not point.objective.per_instance:
        per = result.best_ratios(PER_INSTANCE)
        print("per instance    " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in per.items())
              + "  (the paper's objective: every instance counted alike)")
    slo = result.slo
    if slo is not None:
        if slo.met:
            print(f"latency         p99 step time <= {_ms(slo.target)}: r_int_slo {slo.r_int} "
                  f"({slo.method} law; ratios {_ranges(slo.ratios[slo.feasible])} meet it)")
        else:
            print(f"latency         p99 step time <= {_ms(slo.target)}: no ratio meets it; the "
                  f"smallest achievable target is {_ms(slo.smallest_target)} at r = "
                  f"{slo.smallest_at} (r_int_slo null)")


def _ranges(values) -> str:
    """``1..5, 7`` for a sorted set of integers."""
    values = [int(v) for v in values]
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(f"{start}" if start == v else f"{start}..{v}")
            start = None
    return ", ".join(parts)


def _print_table(result) -> None:
    """The objective of each rule and the step time at the ratios around the best ones."""
    rules = result.rules
    best = {rule: result.r_int(rule) for rule in rules}
    marks = list(best.values())
    if result.slo is not None and result.slo.r_int is not None:
        marks.append(result.slo.r_int)
    lo = max(1, min(marks) - TEXT_WINDOW)
    hi = min(result.max_ratio, max(marks) + TEXT_WINDOW)
    table = result.objective_table()
    unit = result.point.objective.unit
    names = {"mean_field": "mean field", "barrier": "barrier", "exact_load": "exact load"}
    if lo > 1 or hi < result.max_ratio:
        print(f"table           ratios {lo}..{hi} of 1..{result.max_ratio} (around the best "
              "ones; --json for every ratio)")
    head = "".join(f" {names[r]:>12}" for r in rules)
    quantiles = result.step_time_p99 is not None
    step_head = (f" {'p50 ms':>9} {'p99 ms':>9}" if quantiles
                 else f" {'step ms':>9}")
    step_note = (f"step times: {result.quantile_method} law" if quantiles
                 else f"mean step time: {names[result.best_rule]} rule")
    print(f"{'ratio':>7}{head}{step_head}   ({unit}; {step_note})")
    for r in range(lo, hi + 1):
        mark = [f"{names[k]} best" for k, v in best.items() if v == r]
        if result.slo is not None and result.slo.r_int == r:
            mark.append("latency best")
        cells = "".join(f" {table[rule][r - 1]:>12.1f}" for rule in rules)
        if quantiles:
            steps = (f" {1e3 * result.step_time_p50[r - 1]:>9.3f} "
                     f"{1e3 * result.step_time_p99[r - 1]:>9.3f}")
        else:
            steps = f" {1e3 * result.mean_step_times[result.best_rule][r - 1]:>9.3f}"
        print(f"{r:>7}{cells}{steps}   {', '.join(mark)}")
