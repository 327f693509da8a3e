"""The ``afd`` command line: ``afd theta``, ``afd provision``, ``afd simulate``, ``afd sweep``.

Every subcommand takes ``--json`` and then prints exactly one JSON object on stdout. Bad
input exits with status 2 and one line on stderr naming the problem; no traceback is
shown unless ``AFD_DEBUG=1`` is set.
"""

from __future__ import annotations

import os
import sys

from afdlib.cli import provision, simulate, theta
from afdlib.cli._common import CliError, OneLineParser
from afdlib.errors import AfdInputError

__all__ = ["main"]

# Each module defines ``register(subparsers)``; order is the order of ``afd --help``.
_COMMAND_MODULES = (theta, provision, simulate)


def build_parser() -> OneLineParser:
    """The argument parser of ``afd`` with every available subcommand."""
    parser = OneLineParser(
        prog="afd",
        description="Provision Attention-FFN disaggregated LLM decoding from request traces.",
    )
    from afdlib import __version__

    parser.add_argument("--version", action="version", version=f"afd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def _option_message(exc: AfdInputError, args) -> str:
    """The library's message, prefixed with ``--option:`` when the parameter it names is
    one of the command's options (the library checks; the command line says which flag)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    name = getattr(exc, "parameter", None)
    if name and args is not None and hasattr(args, name) and not message.startswith("--"):
        return f"--{name.replace('_', '-')}: {message}"
    return message


def main(argv: list[str] | None = None) -> int:
    """Run ``afd`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader went away (``afd ... | head``): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except CliError as exc:
        print(f"afd: error: {exc}", file=sys.stderr)
        return exc.status
    except AfdInputError as exc:
        if os.environ.get("AFD_DEBUG"):
            raise
        print(f"afd: error: {_option_message(exc, args)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        if os.environ.get("AFD_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"afd: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("afd: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, with a way to see more
        if os.environ.get("AFD_DEBUG"):
            raise
        print(f"afd: internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
              "(set AFD_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1
