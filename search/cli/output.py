"""What the commands write to stdout: ``--json`` documents, and a quiet end when the reader goes away."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from typing import Any

__all__ = ["CLOSED_PIPE_EXIT", "closed_pipe", "print_json"]

CLOSED_PIPE_EXIT = 128 + signal.SIGPIPE  # 141, what a shell reports for `yes | head -1`


def print_json(payload: Any) -> None:
    """One JSON document on stdout (``hpsearch ... --json | jq``)."""
    print(json.dumps(payload, indent=2, default=str))


def closed_pipe() -> int:
    """The exit code after ``BrokenPipeError`` on stdout (``hpsearch spaces | head -1``).

    As Python's documentation advises ("Note on SIGPIPE", in the ``signal`` module): point stdout at
    devnull, so that the interpreter's last flush does not fail again and print a traceback.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):  # in-process stdout without a descriptor
        pass
    return CLOSED_PIPE_EXIT
