"""``hpsearch``: parse the command line, run the subcommand, map errors to exit codes.

Exit codes: the handler's own (0 done, 1 stopped or no trial of the study completed, 130
interrupted), 2 for a user error (one line on stderr: ``hpsearch: error: ...``; ``--debug`` shows the
traceback instead) or a usage error, 141 when whoever reads stdout went away (``hpsearch spaces |
head -1``). docs/failures.md lists every fault and its code.

Example:
    >>> from search.cli import main
    >>> main(["validate", "quickstart"])  # doctest: +ELLIPSIS
    quickstart: ok - quickstart: ...
    0
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import optuna

from search.cli import run, studies, tools
from search.cli.options import ANYWHERE, TOP
from search.cli.output import closed_pipe
from search.cli.registry import Command, build_parser
from search.errors import USER_ERRORS

__all__ = ["COMMANDS", "main", "parser"]

COMMANDS: tuple[Command, ...] = (*run.commands, *studies.commands, *tools.commands)  # --help's order


def parser() -> argparse.ArgumentParser:
    """The ``hpsearch`` argument parser, every registered subcommand included."""
    return build_parser(COMMANDS, top=TOP, anywhere=ANYWHERE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (``--help`` and usage errors included)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # a reader that went away shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        return closed_pipe()


def _dispatch(argv: Sequence[str] | None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help, --version (0) and usage errors (2), already printed
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    args.argv = list(sys.argv[1:]) if argv is None else None  # a worker restarts itself only as a command
    # our progress lines replace Optuna's per-trial logs (failed trials included)
    optuna.logging.set_verbosity(optuna.logging.INFO if args.debug else optuna.logging.ERROR)
    try:
        return int(args.func(args))
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"hpsearch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\nhpsearch: interrupted", file=sys.stderr)
        return 130
