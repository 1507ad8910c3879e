"""One exception tree for hpsearch.

Everything a user can cause (a bad space file, an unreachable database, missing data) is an
``HPSearchError``; the CLI prints its message on one line and exits 2.  ``TrialFailed`` is the
one error that ends a single trial and lets the search go on.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "HPSearchError", "StorageError", "TrialFailed", "WorkerStopping"]


class HPSearchError(Exception):
    """Base class of every error hpsearch raises on purpose."""


class ConfigError(HPSearchError):
    """A space file, preset name or command-line option is invalid."""


class StorageError(HPSearchError):
    """A storage URL is malformed or the storage cannot be reached or read."""


class DataError(HPSearchError):
    """A dataset is unknown or its files cannot be found or parsed."""


class TrialFailed(HPSearchError):
    """This trial failed (NaN loss, out of memory, impossible configuration); the search goes on."""


class WorkerStopping(Exception):
    """The worker was asked to stop (SIGTERM / SIGINT) while trial ``number`` ran.

    Not an ``HPSearchError``: it is not the user's mistake and not the trial's. The worker
    re-queues the trial and exits cleanly.
    """

    def __init__(self, number: int) -> None:
        super().__init__(f"worker stopped during trial {number}")
        self.number = number
