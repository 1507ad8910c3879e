"""The bounds on a space, so that loading any input is bounded work; and the rule for names.

Each limit is stated in the error that enforces it. A space file is a few kB with a dozen
parameters, so every limit sits far above what a real space needs:

==================  ==================  ===================================================
limit               value               why
==================  ==================  ===================================================
``MAX_BYTES``       64 KiB              the largest preset is under 2 kB; parsing stays fast
``MAX_DEPTH``       20 levels           a space nests 7 deep; PyYAML's composer recurses
``MAX_INT``         2**63 - 1           what SQLite, NumPy and Optuna's storage hold
``MAX_STEPS``       10**15              values of a stepped float range (float precision)
``MAX_GRID``        100,000             points the grid sampler enumerates up front
``MAX_TRIALS``      100,000             ``budget.trials``: the budget is queued up front
``MAX_OPTION``      1,000,000           an integer sampler or pruner option
==================  ==================  ===================================================

Example:
    >>> check_name("fashion-mlp", "--study")
    'fashion-mlp'
    >>> check_name("a b", "--study")
    Traceback (most recent call last):
    ...
    spaces.errors.ConfigError: --study: expected a name of letters, digits, ... got 'a b'
"""

from __future__ import annotations

import re
from typing import Any

from spaces.errors import ConfigError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_GRID",
    "MAX_INT",
    "MAX_MESSAGE",
    "MAX_OPTION",
    "MAX_STEPS",
    "MAX_TRIALS",
    "check_name",
    "count",
    "shorten",
]

MAX_BYTES = 64 * 1024
MAX_DEPTH = 20
MAX_INT = 2**63 - 1
MAX_STEPS = 10**15
MAX_GRID = 100_000
MAX_TRIALS = 100_000
MAX_OPTION = 1_000_000
MAX_MESSAGE = 400  # characters of one error line; a longer one is cut in the middle

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(value: Any, what: str) -> str:
    """``value`` if it is a valid space or study name, else a one-line ``ConfigError``.

    A name is 1 to 64 letters, digits, ``_``, ``-`` or ``.``, starting with a letter or digit:
    safe in a file name, a URL and a shell command line.

    Args:
        value: the name to check (anything: a non-string is refused).
        what: what the name is, for the message (``"--study"``, ``"space.yaml: name"``).
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        shown = (
            "nothing"
            if value is None
            else shorten(repr(value))
            if isinstance(value, str)
            else f"{type(value).__name__} {shorten(repr(value))}"
        )
        raise ConfigError(
            f"{what}: expected a name of letters, digits, '_', '-' or '.' "
            f"(1 to 64, starting with a letter or digit), got {shown}"
        )
    return value


def shorten(text: str, width: int = 80) -> str:
    """``text`` cut in the middle to at most ``width`` characters, on one line."""
    text = " ".join(text.splitlines())
    if len(text) <= width:
        return text
    half = (width - 1) // 2
    return f"{text[:half]}…{text[-half:]}"


def count(n: int) -> str:
    """A count for a message: ``3,003,000`` or, past a trillion, ``about 10**77``."""
    return f"{n:,}" if n < 10**12 else f"about 10**{len(str(n)) - 1}"
