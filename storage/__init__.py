"""Where studies live: storage URL resolution, opening Optuna storages, retrying transient errors,
riding out database outages up to ``$HPSEARCH_DB_OUTAGE_S``, claiming queued trials safely.

Imports nothing from ``search`` or ``spaces`` (checked by ``make lint``).

Example:
    >>> import storage
    >>> storage.resolve(None, environ={})
    'sqlite:///hpsearch.db'
"""

from __future__ import annotations

from storage.attrs import set_user_attrs
from storage.claims import claim
from storage.compat import CLAIM_KEY
from storage.engines import HEARTBEAT_INTERVAL_S, open_storage, sqlite_path
from storage.errors import DatabaseUnavailable, StorageError
from storage.heartbeats import HEARTBEAT_KEY
from storage.outage import OUTAGE_VAR, on_give_up
from storage.urls import DEFAULT_URL, ENV_VAR, OPTUNA_ENV_VAR, PASSWORD_FILE_VAR, backend, redact, resolve

__all__ = [
    "CLAIM_KEY",
    "DEFAULT_URL",
    "ENV_VAR",
    "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_KEY",
    "OPTUNA_ENV_VAR",
    "OUTAGE_VAR",
    "PASSWORD_FILE_VAR",
    "DatabaseUnavailable",
    "StorageError",
    "backend",
    "claim",
    "on_give_up",
    "open_storage",
    "redact",
    "resolve",
    "set_user_attrs",
    "sqlite_path",
]
