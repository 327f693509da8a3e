"""Pieces shared by the subcommands: one-line errors, JSON output, workload options."""

from __future__ import annotations

import argparse
import json
import math
import sys

from afdlib.errors import AfdInputError

__all__ = ["CliError", "OneLineParser", "emit_json", "add_trace_arguments", "positive_int",
           "finite_float"]


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


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


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
