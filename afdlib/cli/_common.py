"""Pieces shared by the subcommands: one-line errors, JSON output, workload options."""

from __future__ import annotations

import argparse
import json
import math
import sys

from afdlib.errors import AfdInputError

__all__ = ["CliError", "OneLineParser", "emit_json", "add_trace_arguments", "positive_int",
           "non_negative_int", "int_at_least", "float_at_least", "finite_float",
           "load_trace_requests", "add_workload_arguments", "resolve_workload",
           "add_coefficient_arguments", "resolve_coefficients"]


class CliError(Exception):
    """An error the command line reports in one line with a given exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are a single line on stderr (exit status 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise CliError(f"{self.prog}: {message} (see '{self.prog} --help')", status=2)


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
        parser.add_argument("trace", metavar="TRACE", help=help_text)
    else:
        parser.add_argument("--trace", metavar="TRACE", help=help_text)
    parser.add_argument("--format", default="auto", choices=FORMATS,
                        help="trace file format (default: auto)")
    parser.add_argument("--first-token-from-prefill", action="store_true",
                        help="prefill produced the first output token: decode steps = output "
                             "tokens - 1 (default: decode steps = output tokens)")


def load_trace_requests(args):
    """Read ``args.trace`` and return ``(trace, JointLengths)`` under the chosen convention."""
    from afdlib.traces import load_trace
    from afdlib.workload import JointLengths

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
    """Add ``--coeffs FILE.json | --model NAME --hardware NAME``."""
    parser.add_argument("--coeffs", metavar="FILE.json",
                        help="step-time coefficient file (alpha_A, beta_A, alpha_F, beta_F, "
                             "alpha_C, beta_C, comm_scales_with)")
    parser.add_argument("--model", metavar="NAME", help="model preset (with --hardware)")
    parser.add_argument("--hardware", metavar="NAME",
                        help="hardware preset; ATTN/FFN (e.g. h20/h800) for a heterogeneous "
                             "bundle (with --model)")


def resolve_coefficients(args, **operating_point):
    """The :class:`afdlib.costs.StepCoefficients` named by the coefficient options.

    ``operating_point`` (e.g. ``batch=``, ``theta=``) is passed to the preset builder, which
    may linearize non-linear curves there.
    """
    from afdlib.costs import load_coefficients

    have_preset = args.model is not None or args.hardware is not None
    if args.coeffs is not None and have_preset:
        raise CliError("give either --coeffs or --model/--hardware, not both")
    if args.coeffs is not None:
        return load_coefficients(args.coeffs)
    if args.model is None or args.hardware is None:
        raise CliError("give step-time coefficients: --coeffs FILE.json, or both --model NAME "
                       "and --hardware NAME")
    from afdlib.costs import preset_coefficients

    return preset_coefficients(args.model, args.hardware, **operating_point)
