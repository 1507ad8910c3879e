"""Options shared by several subcommands, each declared once, and the argparse types they use.

A command lists the options and groups it takes (``search.cli.registry``); a variant of a shared
option is made with :meth:`Option.but`, never by declaring the flag again.
"""

from __future__ import annotations

import argparse
from importlib import metadata

import storage
from search.cli.registry import Option, option
from search.worker.recycle import DEFAULT_MAX_GROWTH, growth_percent  # imported first: see recycle
from spaces.errors import ConfigError
from spaces.limits import check_name  # the rule of a space's name, shared with study names
from storage.urls import OPTUNA_ENV_VAR

__all__ = [
    "ANYWHERE",
    "ARTIFACTS",
    "DATA",
    "DATA_DIR",
    "DEBUG",
    "DEVICE",
    "HYPERMODEL",
    "IN_STUDY",
    "JSON",
    "NEW_STUDY",
    "SPACE",
    "STORAGE",
    "STUDY",
    "TOP",
    "TRIALS",
    "VERSION",
    "WARM_START",
    "WORKER",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "server",
    "study_name",
    "version",
]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def study_name(text: str) -> str:
    """A ``--study`` value, by the rule of a space's ``name:`` (a study's name also names files)."""
    try:
        return check_name(text, "--study")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--study: ")) from None


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text}")
    return value


def version() -> str:
    """``hpsearch X.Y.Z``: the installed distribution's version."""
    try:
        return f"hpsearch {metadata.version('hpsearch')}"
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "hpsearch (version unknown: not installed)"


# hpsearch itself
VERSION = option("--version", action="version", version=version(), help="print the version and exit")
DEBUG = option("--debug", action="store_true", help="show tracebacks for errors")
TOP = (VERSION,)  # before the subcommand only
ANYWHERE = (DEBUG,)  # before or after the subcommand

# where and what
STORAGE = option(
    "--storage",
    help=f"storage URL (default: ${storage.ENV_VAR}, else ${OPTUNA_ENV_VAR}, else {storage.DEFAULT_URL})",
)
STUDY = option("--study", required=True, type=study_name, help="study name")
NEW_STUDY = STUDY.but(required=False, help="study name (default: the space's name)")
IN_STUDY = (STUDY, STORAGE)  # a command that reads one existing study
SPACE = option("space", metavar="SPACE", help="a space YAML file or a preset name")
TRIALS = option("--trials", type=positive_int, help="trials the study should hold (default: budget.trials)")
DATA_DIR = option("--data-dir", help="directory with dataset files (default: $HPSEARCH_DATA_DIR)")
HYPERMODEL = option(
    "--hypermodel", metavar="FILE.py:NAME", help="your copy of the study's KerasTuner hypermodel"
)
WARM_START = option(
    "--warm-start",
    metavar="STUDY",
    type=study_name,
    help="a new study's first trials: the best configurations of STUDY (same storage) that fit its space",
)
DATA = option(
    "--data",
    metavar="PATH",
    help="your copy of the study's data file (default: the path the study recorded); "
    "a dataset loader: FILE.py:NAME, required",
)
ARTIFACTS = option(
    "--artifacts",
    metavar="DIR",
    help="trial artifacts directory (default: $HPSEARCH_ARTIFACTS, else next to a SQLite/journal "
    "file, else ./hpsearch-artifacts)",
)
JSON = option("--json", action="store_true", help="print one JSON document (for jq) instead of text")

# training processes
DEVICE = (
    option("--device", default="auto", help="auto (default), cpu, gpu, or gpu:N (index or UUID)"),
    option("--per-gpu", type=positive_int, default=1, help="workers sharing each GPU (default 1)"),
)
WORKER = (
    *DEVICE,
    option(
        "--backend",
        choices=("tensorflow", "jax", "torch"),
        help="Keras 3 backend (default: $KERAS_BACKEND, else the space's training.backend, else tensorflow)",
    ),
    option("--timeout", type=positive_float, help="start no new trial after S seconds"),
    option("--max-failures", type=positive_int, default=5, help="stop after N failed trials in a row"),
    option(
        "--heartbeat",
        type=positive_int,
        default=None,
        help="seconds between heartbeats of a running trial; a trial is stale after 3 missed "
        "(default: $HPSEARCH_HEARTBEAT or 10)",
    ),
    option(
        "--max-memory-growth",
        type=growth_percent,
        default=DEFAULT_MAX_GROWTH,
        metavar="PCT",
        help="restart the worker process between trials when its resident memory grew more than PCT%% "
        "after warm-up (default 8; 0 = never)",
    ),
    ARTIFACTS,
)


def server(*, port: int) -> tuple[Option, ...]:
    """``--storage --host --port`` of a server command listening on ``port`` by default."""
    return (
        STORAGE,
        option("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)"),
        option("--port", type=positive_int, default=port, help=f"port (default: {port})"),
    )
