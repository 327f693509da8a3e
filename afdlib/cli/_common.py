"""Pieces shared by the subcommands: one-line errors, help with examples, JSON output, and
the option groups (workload, coefficients and GPU counts, objective, latency target)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

from afdlib.errors import AfdInputError

__all__ = ["CliError", "OneLineParser", "HelpFormatter", "add_command", "emit_json",
           "warn", "add_trace_arguments", "positive_int", "non_negative_int", "int_at_least",
           "float_at_least", "finite_float", "positive_float", "gpu_counts", "gpu_prices",
           "batch_range", "load_trace_requests", "add_workload_arguments", "resolve_workload",
           "add_coefficient_arguments", "resolve_coefficients", "resolve_costs", "Costs",
           "add_objective_arguments", "resolve_objective", "estimate_warnings",
           "describe_costs", "linearization_objective"]

class CliError(Exception):
    """An error the command line reports in one line with a given exit status.

    ``prog`` is the command the line starts with (``"afd provision"``); the entry point
    supplies it where it is not given.
    """

    def __init__(self, message: str, status: int = 2, *, prog: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.prog = prog


class HelpFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph texts as argparse does, but keeps a text with line breaks (the
    examples of an epilog) as it is written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text.strip("\n"):
            return "".join(indent + line if line else line for line in text.splitlines(True))
        return super()._fill_text(text, width, indent)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are a single line on stderr (exit status 2),
    prefixed once with the command (``afd provision: error: ...``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        raise CliError(f"{message} (see '{self.prog} --help')", status=2, prog=self.prog)


def add_command(subparsers, name: str, *, help: str, description: str,
                examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` ends with usage examples (one command per line)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) + "\n"
    return subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                 formatter_class=HelpFormatter)


def warn(command: str, message: str) -> None:
    """One stderr line ``afd COMMAND: warning: MESSAGE``."""
    print(f"afd {command}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _clean(value):
    """Make a value JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit_json(obj: dict) -> None:
    """Print one JSON object on stdout (NaN and infinities become null)."""
    json.dump(_clean(obj), sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def float_at_least(minimum: float, *, strict: bool = False):
    """An argparse type: a finite number >= ``minimum`` (> with ``strict``)."""

    def parse(text: str) -> float:
        value = finite_float(text)
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if strict else '>='} {minimum:g}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
positive_float = float_at_least(0.0, strict=True)


def _pair(text: str, what: str, convert):
    """``A/F`` (or one value for both) as two values via ``convert``."""
    parts = text.split("/")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise argparse.ArgumentTypeError(f"expected {what} as A/F, e.g. 1/8, got {text!r}")
    return tuple(convert(p.strip()) for p in parts)


def gpu_counts(text: str):
    """argparse type: ``A/F``, GPUs of one Attention instance and of the FFN instance
    (integers >= 1), e.g. ``1/8``; one number means both."""
    from afdlib.model import InstanceGPUs

    def one(p: str) -> int:
        try:
            value = int(p)
        except ValueError:
            raise argparse.ArgumentTypeError(f"GPU counts must be integers, got {text!r}") \
                from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"a GPU count must be >= 1, got {text!r}")
        return value

    a, f = _pair(text, "GPU counts", one)
    return InstanceGPUs(attention=a, ffn=f)


def gpu_prices(text: str):
    """argparse type: ``A/F``, the price of one Attention GPU and of one FFN GPU (> 0, any
    unit per time), e.g. ``2.5/2.5``; one number means both."""
    from afdlib.model import GPUPrices

    def one(p: str) -> float:
        value = finite_float(p)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"a GPU price must be > 0, got {text!r}")
        return value

    a, f = _pair(text, "GPU prices", one)
    return GPUPrices(attention=a, ffn=f)


def batch_range(text: str) -> tuple[int, int]:
    """argparse type: ``LO:HI`` (inclusive) slots per Attention worker, ``1 <= LO <= HI``."""
    lo_text, sep, hi_text = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected LO:HI, e.g. 16:512, got {text!r}")
    try:
        lo, hi = int(lo_text), int(hi_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"LO and HI must be integers, got {text!r}") from None
    if lo < 1:
        raise argparse.ArgumentTypeError(f"LO must be >= 1, got {text!r}")
    if hi < lo:
        raise argparse.ArgumentTypeError(f"empty range {text!r}: HI must be >= LO")
    return lo, hi


def finite_float(text: str) -> float:
    """argparse type: a finite real number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def add_trace_arguments(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    """Add the trace file, ``--format`` and ``--first-token-from-prefill`` options."""
    from afdlib.traces import FORMATS, PUBLIC_TRACES

    help_text = ("request trace file, or the name of a public trace ("
                 + ", ".join(PUBLIC_TRACES) + ")")
    if positional:
        parser.add_argument("trace", metavar="TRACE", nargs="?", default=None, help=help_text)
    else:
        parser.add_argument("--trace", metavar="TRACE", help=help_text)
    parser.add_argument("--format", default="auto", choices=FORMATS,
                        help="trace file format (default: auto)")
    parser.add_argument("--first-token-from-prefill", action="store_true",
                        help="prefill produced the first output token: decode steps = output "
                             "tokens - 1 (default: decode steps = output tokens)")


def _check_trace_name(name: str) -> None:
    """A name that is neither a file nor a public trace: say which public traces exist."""
    from pathlib import Path

    from afdlib.traces import PUBLIC_TRACES

    text = str(name)
    if text in PUBLIC_TRACES or Path(text).exists():
        return
    looks_like_name = "/" not in text and "\\" not in text and "." not in Path(text).name
    if looks_like_name:
        raise AfdInputError(f"{text}: no such file, and not a public trace (public traces: "
                            f"{', '.join(PUBLIC_TRACES)})")


def load_trace_requests(args):
    """Read ``args.trace`` and return ``(trace, JointLengths)`` under the chosen convention."""
    from afdlib.traces import load_trace
    from afdlib.workload import JointLengths

    _check_trace_name(args.trace)
    trace = load_trace(args.trace, args.format)
    try:
        requests = JointLengths.from_trace(
            trace, first_token_from_prefill=args.first_token_from_prefill)
    except AfdInputError as exc:
        raise AfdInputError(f"{trace.source or trace.name}: {exc}") from None
    return trace, requests


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--trace TRACE | --prompt DIST --decode DIST`` (and the trace options)."""
    add_trace_arguments(parser, positional=False)
    parser.add_argument("--prompt", metavar="DIST",
                        help="prompt-length law, e.g. geometric:100, deterministic:512, "
                             "lognormal:median=300,sigma=1 (with --decode, instead of --trace)")
    parser.add_argument("--decode", metavar="DIST",
                        help="decode-length law (steps >= 1), e.g. geometric:500")


def resolve_workload(args):
    """The workload named by ``--trace`` or by ``--prompt`` and ``--decode``.

    Returns
    -------
    workload : afdlib.workload.JointLengths or IndependentLengths
    description : str
    """
    from afdlib.cli.laws import parse_length_law
    from afdlib.workload import IndependentLengths

    have_laws = args.prompt is not None or args.decode is not None
    if args.trace is not None and have_laws:
        raise CliError("give either --trace or --prompt/--decode, not both")
    if args.trace is not None:
        trace, requests = load_trace_requests(args)
        return requests, trace.name
    if args.prompt is None or args.decode is None:
        raise CliError("give a workload: --trace TRACE, or both --prompt DIST and --decode DIST")
    prompt = parse_length_law(args.prompt)
    decode = parse_length_law(args.decode)
    return IndependentLengths(prompt, decode), f"P ~ {prompt}, D ~ {decode}"


def add_coefficient_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--coeffs FILE.json | --model NAME --hardware NAME``, ``--gpus A/F`` and
    ``--moe-routing``."""
    from afdlib.costs.measured import ROUTING_ALIASES, ROUTINGS

    parser.add_argument("--coeffs", metavar="FILE.json",
                        help="step-time coefficient file (alpha_A, beta_A, alpha_F, beta_F, "
                             "alpha_C, beta_C, comm_scales_with; optionally \"gpus\": "
                             "{\"attention\": n, \"ffn\": n})")
    parser.add_argument("--model", metavar="NAME", help="model preset (with --hardware)")
    parser.add_argument("--hardware", metavar="NAME",
                        help="hardware preset (short forms such as h100 work); ATTN/FFN (e.g. "
                             "h20/h800) for a heterogeneous bundle (with --model)")
    parser.add_argument("--gpus", type=gpu_counts, metavar="A/F",
                        help="GPUs of one Attention instance and of the FFN instance, e.g. "
                             "1/8 (a preset sizes the smallest instances that hold the "
                             "weights and the KV cache; with --coeffs: the file's \"gpus\")")
    parser.add_argument("--moe-routing", default="balanced",
                        choices=(*ROUTINGS, *ROUTING_ALIASES), metavar="ROUTING",
                        help="MoE presets: measured expert times under balanced routing "
                             "(default) or a power law (the most loaded rank's times): "
                             + ", ".join((*ROUTINGS, *ROUTING_ALIASES))
                             + "; power_law means power_law_1.2")


@dataclass(frozen=True)
class Costs:
    """Where a command's step-time coefficients come from.

    Attributes
    ----------
    coefficients : StepCoefficients
    gpus : InstanceGPUs or None
        GPUs of one Attention instance and of the FFN instance, where known.
    gpus_source : str
        Where the GPU counts come from (or why they are unknown).
    source : str
        One line: the file, or the preset and its operating point.
    roles : dict
        Role -> where its coefficients come from (presets), else empty.
    preset : PresetResult or None
        The preset build, for presets.
    """

    coefficients: object
    gpus: object
    gpus_source: str
    source: str
    roles: dict
    preset: object = None

    def to_dict(self) -> dict:
        """The JSON key ``coefficients_source``."""
        out = {"source": self.source, "roles": dict(self.roles), "gpus_source": self.gpus_source}
        if self.preset is not None:
            p = self.preset
            out.update(model=p.curves.model.name, hardware=_hardware_text(p),
                       linearized_at={"batch": p.batch, "theta": p.theta, "ratio": p.ratio},
                       curves_best_ratio=p.curves_best_ratio,
                       routing=p.curves.routing, kv_memory={
                           "fits": p.memory.fits, "max_batch": p.memory.max_batch})
        return out


#: A linear rule's ratio this far (relative) from the curves' best ratio, where a preset's
#: coefficients are fitted, gets a warning.
CURVES_GAP = 0.25


def curves_warning(costs: Costs, ratio: int) -> str | None:
    """A warning when a preset's linear rules land far from where the lines were fitted.

    The preset's coefficients are tangents to its measured curves at the curves' best ratio
    (mean field); a rule's best ratio more than :data:`CURVES_GAP` (and 2) away from it lies
    where the lines may no longer follow the curves (communication that bends, a FFN past
    its plateau).
    """
    p = costs.preset
    if p is None or p.curves_best_ratio is None:
        return None
    best = p.curves_best_ratio
    if abs(ratio - best) < max(2, CURVES_GAP * best):
        return None
    return (f"the linear rules' ratio {ratio} is far from r = {best}, the best ratio of the "
            f"preset's measured curves, where its coefficients are fitted: the lines may not "
            f"follow the curves there (a bend they do not have); prefer r = {best}")


def _hardware_text(preset) -> str:
    dep = preset.curves.deployment
    a, f = dep.attention_gpu.name, dep.ffn_gpu.name
    return a if a == f else f"{a}/{f}"


def resolve_costs(args, *, batch: int, theta: float, objective: str = "instance",
                  check_memory: bool = True) -> Costs:
    """The coefficients, GPU counts and their source named by the coefficient options.

    Parameters
    ----------
    args : argparse.Namespace
        ``coeffs`` or ``model`` and ``hardware``; ``gpus`` and ``moe_routing`` if present.
    batch, theta : int, float
        The operating point a preset is built (linearized, sized) at.
    objective : {"instance", "gpu"}
        The objective whose best ratio of a preset's curves is the linearization point.
    check_memory : bool
        With ``--gpus`` and a preset: reject a batch whose KV cache does not fit.

    Raises
    ------
    CliError, AfdInputError
        For a missing or doubled source, or a batch that does not fit (``--batch``).
    """
    from afdlib.costs import build_preset, load_coefficient_file

    have_preset = args.model is not None or args.hardware is not None
    gpus = getattr(args, "gpus", None)
    routing = getattr(args, "moe_routing", "balanced") or "balanced"
    if args.coeffs is not None and have_preset:
        raise CliError("give either --coeffs or --model/--hardware, not both")
    if args.coeffs is not None:
        if routing != "balanced":
            raise AfdInputError("--moe-routing applies to presets (--model/--hardware), not to "
                                "a coefficient file", parameter="moe_routing")
        loaded = load_coefficient_file(args.coeffs)
        if gpus is not None:
            where = "--gpus"
        elif loaded.gpus is not None:
            gpus, where = loaded.gpus, f"{args.coeffs} (\"gpus\")"
        else:
            where = "unknown (no \"gpus\" in the file, no --gpus)"
        return Costs(loaded.coefficients, gpus, where, f"coefficient file {args.coeffs}", {})
    if args.model is None or args.hardware is None:
        raise CliError("give step-time coefficients: --coeffs FILE.json, or both --model NAME "
                       "and --hardware NAME")
    sizes = {} if gpus is None else {"attention_gpus": gpus.attention, "ffn_gpus": gpus.ffn}
    preset = build_preset(args.model, args.hardware, batch=batch, theta=theta,
                          routing=routing, objective=objective, **sizes)
    if gpus is not None and check_memory and not preset.memory.fits:
        raise AfdInputError(
            f"{batch} slots at theta = {theta:.0f} tokens do not fit the KV memory of a "
            f"{gpus.attention}-GPU Attention instance of {_hardware_text(preset)} for "
            f"{preset.curves.model.name} (largest feasible B: {preset.memory.max_batch}; give "
            "more GPUs with --gpus)", parameter="batch")
    where = ("--gpus" if gpus is not None else
             "preset: the smallest instances that hold the weights and the KV cache")
    source = (f"preset {preset.curves.model.name} on {_hardware_text(preset)}, linearized at "
              f"B = {batch}, r = {preset.ratio:g}"
              + (" (the best ratio of its measured curves)"
                 if preset.curves_best_ratio is not None else "")
              + (f", {preset.curves.routing} MoE routing" if preset.curves.model.is_moe else ""))
    return Costs(preset.coefficients, preset.gpus, where, source,
                 dict(preset.curves.provenance), preset)


def linearization_objective(args) -> str:
    """The objective a preset's curves are linearized for (at the best ratio of the curves
    under it): per instance for a command without ``--objective`` or with ``--objective
    instance``; per GPU otherwise (the default objective of presets, whose GPU counts are
    known; per-GPU prices are close to it)."""
    if not hasattr(args, "objective") or args.objective == "instance":
        return "instance"
    return "gpu"


def resolve_coefficients(args, **operating_point):
    """The :class:`afdlib.costs.StepCoefficients` named by the coefficient options.

    ``operating_point`` (e.g. ``batch=``, ``theta=``) is passed to the preset builder, which
    may linearize non-linear curves there (see :func:`resolve_costs` for the GPU counts and
    the source as well; :func:`linearization_objective` for the linearization point).
    """
    point = {"batch": 256, "theta": 599.0, **operating_point}
    return resolve_costs(args, batch=point["batch"], theta=point["theta"],
                         objective=linearization_objective(args)).coefficients


def describe_costs(costs: Costs) -> list[str]:
    """Text lines: the coefficients, the GPU counts and where both come from."""
    c = costs.coefficients
    lines = [f"coefficients    alpha_A {c.alpha_A:.4g} s/token, beta_A {1e3 * c.beta_A:.4g} ms, "
             f"alpha_F {c.alpha_F:.4g} s/token, beta_F {1e3 * c.beta_F:.4g} ms, alpha_C "
             f"{c.alpha_C:.4g} s/token, beta_C {1e3 * c.beta_C:.4g} ms "
             f"(communication scales with {c.comm_scales_with})",
             f"source          {costs.source}"]
    for role, text in costs.roles.items():
        lines.append(f"  {role + ':':<13} {text}")
    if costs.gpus is not None:
        lines.append(f"gpus            {costs.gpus.attention} per Attention instance, "
                     f"{costs.gpus.ffn} in the FFN instance ({costs.gpus_source})")
    else:
        lines.append(f"gpus            {costs.gpus_source}")
    return lines


def add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--objective`` and ``--gpu-price``."""
    from afdlib.model import OBJECTIVES

    parser.add_argument("--objective", choices=OBJECTIVES, default=None,
                        help="what the throughput is divided by: instances (the paper's), GPUs "
                             "(default where the GPU counts are known) or prices (default "
                             "with --gpu-price)")
    parser.add_argument("--gpu-price", type=gpu_prices, metavar="A/F",
                        help="price of one Attention GPU and of one FFN GPU (> 0, any unit "
                             "per time, e.g. $/GPU-hour); one number for both")


def resolve_objective(args, gpus, *, prices=None):
    """The :class:`afdlib.model.Objective` of ``--objective`` and ``--gpu-price`` (and
    instance ``prices`` where a command has them)."""
    from afdlib.model import choose_objective

    return choose_objective(getattr(args, "objective", None), gpus=gpus,
                            gpu_prices=getattr(args, "gpu_price", None), prices=prices)


def estimate_warnings(est) -> list[str]:
    """An estimate's warnings (small samples, clipped intervals), where it has them."""
    return [str(w) for w in getattr(est, "warnings", ())]
