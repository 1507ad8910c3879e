"""Where studies live: storage URL resolution, opening Optuna storages, retrying transient errors.

Imports nothing from ``search`` or ``spaces`` (checked by ``make lint``).

Example:
    >>> import storage
    >>> storage.resolve(None, environ={})
    'sqlite:///hpsearch.db'
"""

from __future__ import annotations

from storage.attrs import set_user_attrs
from storage.engines import HEARTBEAT_INTERVAL_S, open_storage, sqlite_path
from storage.errors import StorageError
from storage.urls import DEFAULT_URL, ENV_VAR, OPTUNA_ENV_VAR, PASSWORD_FILE_VAR, backend, redact, resolve

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "HEARTBEAT_INTERVAL_S",
    "OPTUNA_ENV_VAR",
    "PASSWORD_FILE_VAR",
    "StorageError",
    "backend",
    "open_storage",
    "redact",
    "resolve",
    "set_user_attrs",
    "sqlite_path",
]
