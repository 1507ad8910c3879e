"""One exception tree for hpsearch, readable at a glance.

Each package owns its errors, so that the layers stay one-way::

    spaces.ConfigError     a space file, preset name or command-line option is invalid
    storage.StorageError   a storage URL is malformed, or the storage cannot be reached or read
    HPSearchError          the engine's own errors:
      DataError              a dataset is unknown or its files cannot be found or parsed
      TrialFailed            this trial failed (NaN loss, OOM, impossible config, an error of the
                             model or the user's code); the search goes on
    WorkerStopping         SIGTERM / SIGINT during a trial: not an error of the user or the trial

Everything in :data:`USER_ERRORS` is something a user can cause and fix; the CLI prints its
message on one line and exits 2. All of them are importable from here.
"""

from __future__ import annotations

from spaces.errors import ConfigError
from storage.errors import StorageError

__all__ = [
    "USER_ERRORS",
    "ConfigError",
    "DataError",
    "HPSearchError",
    "StorageError",
    "TrialFailed",
    "WorkerStopping",
]


class HPSearchError(Exception):
    """Base class of the errors the engine (``search``) raises on purpose."""


class DataError(HPSearchError):
    """A dataset is unknown or its files cannot be found or parsed."""


class TrialFailed(HPSearchError):
    """This trial failed (NaN loss, out of memory, impossible configuration, an error raised by Keras,
    a hypermodel's ``build(hp)`` or a custom layer); the search goes on. The reason is the message,
    also recorded in the trial's ``fail_reason`` user attr."""


class WorkerStopping(Exception):
    """The worker was asked to stop (SIGTERM / SIGINT) while trial ``number`` ran.

    Not an ``HPSearchError``: it is not the user's mistake and not the trial's. The worker
    re-queues the trial and exits cleanly.
    """

    def __init__(self, number: int) -> None:
        super().__init__(f"worker stopped during trial {number}")
        self.number = number


USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, StorageError, HPSearchError)
