"""One storage test class run over every backend: real SQLite file, real PostgreSQL, journal file."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

import spaces
import storage
from search.cli import main
from search.errors import ConfigError, StorageError
from search.study import open_storage
from search.study.create import create_or_load, load_space
from search.study.queue import top_up
from storage import compat, engines, retry
from tests.helpers import free_port, int_range, space_text
from tests.storage.pg_cluster import Cluster, own_cluster

SPACE = space_text("roundtrip", model={"layers": int_range(1, 2)})


class TestEveryBackend:
    def test_study_keeps_its_space_and_trials_across_processes(self, storage_url: str) -> None:
        space = spaces.loads(SPACE, source="test")
        study = create_or_load(space, open_storage(storage_url))
        top_up(study, 1)
        trial = study.ask()
        space.sample(trial)
        study.tell(trial, [0.9, 1.5])

        reopened = open_storage(storage_url, create=False)  # as a second worker would
        stored = load_space(reopened, "roundtrip")
        assert stored.fingerprint == space.fingerprint
        assert stored.text == SPACE
        again = create_or_load(stored, reopened)
        assert [t.values for t in again.trials] == [[0.9, 1.5]]
        assert again.directions == [
            optuna.study.StudyDirection.MAXIMIZE,
            optuna.study.StudyDirection.MINIMIZE,
        ]

    def test_resuming_with_a_different_space_is_refused(self, storage_url: str) -> None:
        store = open_storage(storage_url)
        create_or_load(spaces.loads(SPACE, source="a.yaml"), store)
        changed = spaces.loads(space_text("roundtrip", model={"layers": int_range(1, 3)}), source="b.yaml")
        with pytest.raises(
            ConfigError, match=r"study 'roundtrip' exists with a different space \(from a\.yaml\)"
        ):
            create_or_load(changed, store)

    def test_user_attrs_written_in_one_batch_read_back_as_optunas(self, storage_url: str) -> None:
        study = optuna.create_study(storage=storage.open_storage(storage_url, heartbeat_interval=None))
        trial = study.ask()
        trial.set_user_attr("kept", 1)
        trial.set_user_attr("replaced", "old")
        attrs = {"replaced": "new", "curves": {"loss": [0.5, 0.25]}, "fast_paths": {"jit_compile": True}}
        storage.set_user_attrs(compat.study_storage(study), compat.trial_id(trial), attrs)
        study.tell(trial, 1.0)
        reopened = optuna.load_study(study_name=study.study_name, storage=open_storage(storage_url))
        assert reopened.trials[0].user_attrs == {"kept": 1, **attrs}
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_user_attrs(compat.study_storage(study), compat.trial_id(trial), {"late": 1})

    def test_unknown_study_names_the_ones_there(self, storage_url: str) -> None:
        store = open_storage(storage_url)
        create_or_load(spaces.loads(SPACE, source="a.yaml"), store)
        with pytest.raises(StorageError, match=r"no study named 'other'.*studies: roundtrip"):
            load_space(store, "other")


def test_sqlite_file_uses_wal_so_readers_do_not_block_writers(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    open_storage(f"sqlite:///{db}")
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_read_only_commands_do_not_create_files(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"no such file"):
        storage.open_storage(f"sqlite:///{tmp_path / 'missing.db'}", create=False)
    with pytest.raises(StorageError, match=r"no such file"):
        storage.open_storage(f"journal://{tmp_path / 'missing.log'}", create=False)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_postgresql_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(StorageError, match=r"cannot open") as info:
        storage.open_storage("postgresql+psycopg://u:s3cret@127.0.0.1:1/db?connect_timeout=2")
    assert "s3cret" not in str(info.value)
    assert "\n" not in str(info.value)


# ---- PostgreSQL URLs that cannot work: one line, at once, no retry -------------------------------


@pytest.fixture(scope="module")
def own_server() -> Iterator[Cluster]:
    """A PostgreSQL server of this module's own (the role ``pwuser`` needs its password)."""
    with own_cluster() as cluster:
        yield cluster


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The attempts after which storage.retry waited to try again (none: no retry)."""
    waited: list[int] = []
    monkeypatch.setattr(retry, "backoff", lambda attempt: waited.append(attempt) or 0.0)
    return waited


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("postgres@{host}/nope", r'database "nope" does not exist'),
        ("postgres@{host}/postgres?sslmode=bogus", r'invalid sslmode value: "bogus"'),
        ("pwuser:s3cret-wrong@{host}/postgres", r'password authentication failed for user "pwuser"'),
        ("nobody@{host}/postgres", r'role "nobody" does not exist'),
    ],
    ids=["no such database", "sslmode=bogus", "wrong password", "no such role"],
)
def test_a_postgresql_url_that_cannot_work_fails_at_once_in_one_line(
    own_server: Cluster, backoffs: list[int], capsys: pytest.CaptureFixture[str], path: str, expected: str
) -> None:
    url = "postgresql+psycopg://" + path.format(host=f"127.0.0.1:{own_server.port}")
    assert main(["studies", "--storage", url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and backoffs == []  # refused for good: not tried again
    (line,) = err.splitlines()
    assert line.startswith(f"hpsearch: error: storage {storage.redact(url)}: cannot open: ")
    assert re.search(expected + r".* \(not retried\)$", line), line
    assert "s3cret" not in err


def test_a_server_that_does_not_answer_is_tried_a_few_times_then_one_line(
    backoffs: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/db"  # nothing listens there
    assert main(["studies", "--storage", url]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "Connection refused" in line and "not retried" not in line
    assert backoffs == list(range(1, engines.OPEN_ATTEMPTS))  # transient: a few quick attempts
