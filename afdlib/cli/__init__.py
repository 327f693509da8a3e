"""The ``afd`` command line: ``afd theta``, ``provision``, ``simulate``, ``sweep``, ``report``.

Every subcommand takes ``--json`` and then prints exactly one JSON object on stdout (``afd
report`` writes an HTML file). Bad input exits with status 2 and one line on stderr naming
the problem, prefixed once with the command (``afd provision: error: ...``); no traceback
is shown unless ``AFD_DEBUG=1`` is set. ``afd`` alone prints the help.
"""

from __future__ import annotations

import os
import sys

from afdlib.cli import provision, report, simulate, theta
from afdlib.cli._common import CliError, OneLineParser
from afdlib.errors import AfdInputError

__all__ = ["main"]

# Each module defines ``register(subparsers)``; order is the order of ``afd --help``.
_COMMAND_MODULES = (theta, provision, simulate, report)


def build_parser() -> OneLineParser:
    """The argument parser of ``afd`` with every available subcommand."""
    parser = OneLineParser(
        prog="afd",
        description="Provision Attention-FFN disaggregated LLM decoding from request traces: "
                    "how many Attention workers (r) share one FFN worker, at which batch B, "
                    "under a latency target. Each command has --help with examples.",
        epilog="examples:\n"
               "  afd theta sharegpt_8k\n"
               "  afd provision --trace sharegpt_8k --batch 64 --model qwen3-235b-a22b "
               "--hardware h200\n"
               "  afd provision --trace sharegpt_8k --batches 16:512 --tpot-p99 0.05 "
               "--model qwen3-235b-a22b --hardware h200\n"
               "  afd simulate --trace sharegpt_8k --batch 64 --ratio 6 --model "
               "qwen3-235b-a22b --hardware h200\n"
               "  afd report --trace sharegpt_8k --batch 64 --model qwen3-235b-a22b "
               "--hardware h200 -o report.html\n",
    )
    from afdlib import __version__

    parser.add_argument("--version", action="version", version=f"afd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def _prog(args) -> str:
    """``afd COMMAND`` once the command is known, else ``afd``."""
    command = getattr(args, "command", None)
    return f"afd {command}" if command else "afd"


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
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader went away (``afd ... | head``): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except CliError as exc:
        print(f"{exc.prog or _prog(args)}: error: {' '.join(str(exc).split())}",
              file=sys.stderr)
        return exc.status
    except AfdInputError as exc:
        if os.environ.get("AFD_DEBUG"):
            raise
        print(f"{_prog(args)}: error: {_option_message(exc, args)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        if os.environ.get("AFD_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{_prog(args)}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("afd: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, with a way to see more
        if os.environ.get("AFD_DEBUG"):
            raise
        print(f"{_prog(args)}: internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
              "(set AFD_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1
