"""Which storage a command uses: ``--storage`` > ``HPSEARCH_STORAGE`` > ``OPTUNA_STORAGE`` > the default
SQLite file (``OPTUNA_STORAGE`` is the variable the ``optuna`` command line reads).

The backend is chosen by the URL's scheme, never guessed from what exists on disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import sqlalchemy.engine
import sqlalchemy.exc

from storage.errors import StorageError

__all__ = ["DEFAULT_URL", "ENV_VAR", "OPTUNA_ENV_VAR", "backend", "redact", "resolve"]

ENV_VAR = "HPSEARCH_STORAGE"
OPTUNA_ENV_VAR = "OPTUNA_STORAGE"  # honoured after ours, as `optuna --storage` does
PASSWORD_FILE_VAR = "HPSEARCH_DB_PASSWORD_FILE"  # e.g. a compose secret: /run/secrets/pg_password
DEFAULT_URL = "sqlite:///hpsearch.db"  # relative: a file in the working directory

_BACKENDS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgresql+psycopg": "postgresql",
    "postgres": "postgresql",
    "journal": "journal",
    "grpc": "grpc",
}


def resolve(cli_url: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The storage URL to use, by precedence; postgres URLs get the installed psycopg driver.

    ``cli_url`` > ``$HPSEARCH_STORAGE`` > ``$OPTUNA_STORAGE`` > :data:`DEFAULT_URL`; an empty variable
    counts as unset.

    Example:
        >>> resolve(None, {"OPTUNA_STORAGE": "sqlite:///o.db"})
        'sqlite:///o.db'
        >>> resolve(None, {"HPSEARCH_STORAGE": "sqlite:///h.db", "OPTUNA_STORAGE": "sqlite:///o.db"})
        'sqlite:///h.db'
    """
    env = os.environ if environ is None else environ
    url = cli_url or env.get(ENV_VAR) or env.get(OPTUNA_ENV_VAR) or DEFAULT_URL
    kind = backend(url)
    scheme = url.split("://", 1)[0]
    if kind == "postgresql" and scheme in ("postgresql", "postgres"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if kind == "postgresql" and env.get(PASSWORD_FILE_VAR):
        url = _with_password_file(url, env[PASSWORD_FILE_VAR])
    return url


def _with_password_file(url: str, path: str) -> str:
    """The URL with the password read from ``path`` (kept out of URLs, commands and images)."""
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.password:
        return url
    try:
        with open(path, encoding="utf-8") as f:
            password = f.read().strip()
    except OSError as e:
        raise StorageError(f"{PASSWORD_FILE_VAR}={path}: cannot read: {e.strerror}") from None
    return parsed.set(password=password).render_as_string(hide_password=False)


def backend(url: str) -> str:
    """``sqlite``, ``postgresql``, ``journal`` or ``grpc`` for a storage URL; StorageError otherwise."""
    if "://" not in url:
        raise StorageError(
            f"storage {redact(url)!r}: expected a URL such as sqlite:///hpsearch.db, "
            "postgresql://user@host/db or journal:///path/to/file.log"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _BACKENDS:
        raise StorageError(
            f"storage {redact(url)!r}: unknown scheme {scheme!r}; expected one of: "
            + ", ".join(sorted(_BACKENDS))
        )
    return _BACKENDS[scheme]


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to print."""
    if url.split("://", 1)[0].lower().startswith("postgres"):
        try:
            return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
        except (sqlalchemy.exc.ArgumentError, ValueError):  # unparsable (a port that is not a number)
            pass
    return re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)
