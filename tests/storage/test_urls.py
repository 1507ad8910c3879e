"""Storage URL precedence, backend by scheme, password redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

import storage
from search.errors import StorageError


def test_precedence_flag_then_env_then_default() -> None:
    env = {storage.ENV_VAR: "sqlite:///env.db"}
    assert storage.resolve("sqlite:///flag.db", env) == "sqlite:///flag.db"
    assert storage.resolve(None, env) == "sqlite:///env.db"
    assert storage.resolve(None, {}) == storage.DEFAULT_URL == "sqlite:///hpsearch.db"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:///a.db", "sqlite"),
        ("postgresql://u@h/db", "postgresql"),
        ("postgresql+psycopg://u@h/db", "postgresql"),
        ("postgres://u@h/db", "postgresql"),
        ("journal:///tmp/x.log", "journal"),
    ],
)
def test_backend_is_chosen_by_scheme(url: str, kind: str) -> None:
    assert storage.backend(url) == kind


def test_plain_postgresql_url_gets_the_installed_driver() -> None:
    assert storage.resolve("postgresql://u@h:5432/db", {}) == "postgresql+psycopg://u@h:5432/db"
    assert storage.resolve("postgres://u@h/db", {}) == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("studies.db", r"expected a URL such as sqlite:///"),
        ("mysql://root:pw@h/db", r"unknown scheme 'mysql'"),
    ],
)
def test_bad_urls_are_rejected(url: str, match: str) -> None:
    with pytest.raises(StorageError, match=match):
        storage.resolve(url, {})


def test_passwords_are_never_shown() -> None:
    assert storage.redact("postgresql://user:s3cret@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert storage.redact("postgresql://user@db/x") == "postgresql://user@db/x"
    assert "ab/cd" not in storage.redact("postgresql+psycopg://hp:ab/cd+ef@db/hp")  # '/' in a password
    with pytest.raises(StorageError) as info:
        storage.resolve("mysql://root:s3cret@h/db", {})
    assert "s3cret" not in str(info.value)


def test_password_comes_from_a_file_and_is_not_printed(tmp_path: Path) -> None:
    secret = tmp_path / "pg_password"
    secret.write_text("s3cret/+x\n")
    env = {storage.ENV_VAR: "postgresql://hp@db:5432/hp", storage.PASSWORD_FILE_VAR: str(secret)}
    url = storage.resolve(None, env)
    assert url.startswith("postgresql+psycopg://hp:") and url.endswith("@db:5432/hp")
    assert "s3cret" not in storage.redact(url)
    with pytest.raises(StorageError, match=r"HPSEARCH_DB_PASSWORD_FILE=/nope: cannot read"):
        storage.resolve(None, {**env, storage.PASSWORD_FILE_VAR: "/nope"})
