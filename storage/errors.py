"""The errors of this package: a storage URL is malformed, or its storage cannot be used."""

from __future__ import annotations

__all__ = ["DatabaseUnavailable", "StorageError"]


class StorageError(Exception):
    """A storage URL is malformed, or the storage cannot be reached or read."""


class DatabaseUnavailable(StorageError):
    """The database stayed unreachable past the outage limit, or refused this storage for good.

    ``permanent``: the database answered, and no retry can help (it does not exist, the password
    is wrong, a connection option is invalid). Otherwise it did not answer for longer than
    ``HPSEARCH_DB_OUTAGE_S`` seconds (see :mod:`storage.outage`).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
