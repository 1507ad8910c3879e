"""One exception tree for hpsearch.

Everything a user can cause (a bad space file, an unreachable database, missing data) is an
``HPSearchError``; the CLI prints its message on one line and exits 2.  ``TrialFailed`` is the
one error that ends a single trial and lets the search go on.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "HPSearchError", "StorageError", "TrialFailed"]


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
