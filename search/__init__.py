"""The hpsearch engine: studies, trials, workers, results and the CLI.

Data flows down; a subpackage imports only those below it (``make lint`` checks it)::

    cli | api               the `hpsearch` command line | search.run / search.objective in Python
    tools | worker          evaluate, lr-find | the worker loop, launcher, devices, memory
    trial                   objective, training loop, models, callbacks, pruning, data
    study                   create / resume a study, its budget as a queue of trials
    results                 tables, trial selection, report, export, notes, artifacts
    hypermodels             KerasTuner hypermodels: load, adapt, bind
    errors | keys           the exception tree; every attr key hpsearch writes

Below them all: ``spaces`` (what to search) and ``storage`` (where studies live, and the one
door to third-party internals, ``storage.compat``).

Importing ``search`` is cheap; Keras and TensorFlow load only when a trial is about to run.
"""

from __future__ import annotations

from typing import Any

from search.errors import USER_ERRORS, ConfigError, DataError, HPSearchError, StorageError, TrialFailed

__all__ = [
    "USER_ERRORS",
    "ConfigError",
    "DataError",
    "HPSearchError",
    "StorageError",
    "TrialFailed",
    "objective",
    "run",
]


def __getattr__(name: str) -> Any:
    """``search.run`` and ``search.objective`` (:mod:`search.api`), imported on first use."""
    if name in ("run", "objective"):
        from search import api

        return getattr(api, name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
