"""Where studies live: storage URL resolution and opening Optuna storages.

Example:
    >>> import storage
    >>> storage.resolve(None, environ={})
    'sqlite:///hpsearch.db'
"""

from __future__ import annotations

from storage.attrs import set_user_attrs
from storage.engines import open_storage, sqlite_path
from storage.urls import DEFAULT_URL, ENV_VAR, PASSWORD_FILE_VAR, backend, redact, resolve

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "PASSWORD_FILE_VAR",
    "backend",
    "open_storage",
    "redact",
    "resolve",
    "set_user_attrs",
    "sqlite_path",
]
