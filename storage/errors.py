"""The one error of this package: a storage URL is malformed or its storage cannot be used."""

from __future__ import annotations

__all__ = ["StorageError"]


class StorageError(Exception):
    """A storage URL is malformed, or the storage cannot be reached or read."""
