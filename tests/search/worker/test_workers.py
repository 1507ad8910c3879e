"""Many workers on one study: exact budgets, dead and stopped workers, dropped connections, gRPC.

Workers are real `hpsearch worker` processes training real (tiny) Keras models: 60 digits, one
epoch, a few units. Tests of recovery use 2 s heartbeats (stale after 6 s) so it is quick; a dead
worker's trial is recovered on every storage (PostgreSQL, journal file, gRPC proxy).
Database outages are in test_outage.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

import spaces
import storage
from search.cli import main
from search.study import open_storage
from search.study.create import create_or_load
from search.study.queue import top_up
from tests.helpers import (
    TINY,
    answers,
    free_port,
    http_get,
    space_text,
    subprocess_env,
    wait_until,
    write_space,
)

SLOW = {"dataset": {"limit": 400}, "training": {"epochs": 60}}  # ~5-10 s a trial


@pytest.fixture(autouse=True)
def _worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])


def _trials(url: str, name: str = "many") -> list[optuna.trial.FrozenTrial]:
    store = storage.open_storage(storage.resolve(url, {}), heartbeat_interval=None)
    return optuna.load_study(study_name=name, storage=store).get_trials()


def _states(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def _worker(url: str, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "search", "worker", "--study", "many", "--storage", url, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _queued_study(url: str, budget: int, **sections: object) -> None:
    text = space_text("many", base=TINY, **sections)
    study = create_or_load(spaces.loads(text, source="test"), open_storage(storage.resolve(url, {})))
    top_up(study, budget)


def _running_with_params(url: str) -> bool:
    return any(t.state.name == "RUNNING" and t.params for t in _trials(url))


@pytest.mark.backends("sqlite", "postgresql")
def test_four_workers_finish_exactly_the_budget_while_the_dashboard_reads(
    storage_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_storage(storage_url)  # the database exists before the dashboard opens it
    space = write_space(tmp_path, "many", base=TINY)
    with _Dashboard(storage_url) as dashboard:  # the real optuna-dashboard, polled over HTTP throughout
        code = main(["run", str(space), "--storage", storage_url, "--trials", "40", "--workers", "4"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    trials = _trials(storage_url)
    assert _states(trials) == {"COMPLETE": 40}
    assert sorted(t.number for t in trials) == list(range(40))
    assert {f"[w{i}]" for i in range(4)} <= {line.split(" ")[0] for line in out.splitlines()}
    assert dashboard.alive_at_end and dashboard.errors == []
    assert dashboard.trials_seen == 40  # its last read came after the run
    assert "locked" not in out + err + dashboard.log()


class _Dashboard:
    """optuna-dashboard on the study's storage, read over HTTP in a loop while workers write.

    Entering waits for the first complete read; leaving waits for one more that started after
    the block ended, so at least one read sees the study as the workers left it.
    """

    def __init__(self, url: str) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        exe = Path(sys.executable).parent / "optuna-dashboard"
        self.proc = subprocess.Popen(
            [str(exe), url, "--port", str(port), "--host", "127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.reads, self.trials_seen, self.errors = 0, 0, []  # type: ignore[var-annotated]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self._output = ""

    def _loop(self) -> None:
        while not self.done.is_set():
            try:
                seen = 0
                for study in http_get(f"{self.base}/api/studies")["study_summaries"]:
                    seen += len(http_get(f"{self.base}/api/studies/{study['study_id']}")["trials"])
                self.trials_seen = seen
                self.reads += 1
            except Exception as e:  # an error page, a refused connection, a crashed dashboard
                self.errors.append(repr(e))
            self.done.wait(0.05)

    def __enter__(self) -> _Dashboard:
        try:
            wait_until(lambda: answers(f"{self.base}/api/studies"), what="optuna-dashboard answering")
        except AssertionError:
            self.proc.kill()
            raise
        self.thread.start()
        wait_until(lambda: self.reads or self.errors, what="the first read")
        return self

    def __exit__(self, *exc: object) -> None:
        after = self.reads + 1  # the read under way may have started before the block ended
        wait_until(lambda: self.reads > after or self.errors, what="a read after the run")
        self.done.set()
        self.thread.join()
        self.alive_at_end = self.proc.poll() is None
        self.proc.terminate()
        self._output = self.proc.communicate(timeout=30)[0]

    def log(self) -> str:
        return self._output


@pytest.fixture(params=["postgresql", "journal", "grpc"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage of each kind hpsearch offers (the journal and gRPC ones with hpsearch's heartbeats)."""
    if request.param == "journal":
        return f"journal://{tmp_path / 'j.log'}"
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "grpc_url"))


def test_killed_worker_trial_is_failed_requeued_and_finished(
    tmp_path: Path, any_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPSEARCH_HEARTBEAT", "2")
    _queued_study(any_url, budget=3, **SLOW)
    victim = _worker(any_url)
    wait_until(lambda: _running_with_params(any_url), timeout=120, what="a running trial")
    victim.kill()  # SIGKILL: no clean-up at all
    victim.wait()
    lost = next(t for t in _trials(any_url) if t.state.name == "RUNNING")

    rescuer = subprocess.run(
        [sys.executable, "-m", "search", "worker", "--study", "many", "--storage", any_url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert rescuer.returncode == 0, rescuer.stdout + rescuer.stderr
    trials = _trials(any_url)
    assert trials[lost.number].state.name == "FAIL"
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == lost.number)
    assert retry.state.name == "COMPLETE" and retry.params == lost.params
    assert _states(trials) == {"COMPLETE": 3, "FAIL": 1}


def test_sigterm_requeues_the_running_trial_and_exits_0(tmp_path: Path, pg_url: str) -> None:
    _queued_study(pg_url, budget=2, **SLOW)
    worker = _worker(pg_url)
    wait_until(lambda: _running_with_params(pg_url), timeout=120, what="a running trial")
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, out
    assert "SIGTERM: trial " in out and " was re-queued" in out
    trials = _trials(pg_url)
    stopped = next(t for t in trials if t.state.name == "FAIL")
    assert stopped.user_attrs["fail_reason"].startswith("worker stopped")
    copy = next(t for t in trials if t.system_attrs.get("failed_trial") == stopped.number)
    assert copy.state.name == "WAITING" and copy.params == stopped.params
    assert "RUNNING" not in _states(trials)


def test_workers_survive_their_connections_being_killed(tmp_path: Path, pg_url: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    _queued_study(pg_url, budget=24)
    workers = [_worker(pg_url, "--index", str(i)) for i in range(2)]
    with psycopg.connect(pg_url, autocommit=True) as db:
        wait_until(lambda: _running_with_params(pg_url), timeout=120, what="a running trial")
        for _ in range(3):
            _cut_a_query_in_flight(db)
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    # each cut hit a query in flight, so a worker met the error and retried it
    assert "transient database error" in "".join(outputs), outputs
    trials = _trials(pg_url)
    assert _states(trials) == {"COMPLETE": 24}
    assert sorted(t.number for t in trials) == list(range(24))


def _cut_a_query_in_flight(db: Any) -> None:
    """Hold the trials table until a worker's query waits for it, then cut every worker connection.

    The table stays locked until the cut is done, so the connections cut include at least one
    in the middle of a query: the worker sees the error itself, not a dead idle connection that
    the pool's pre-ping replaces quietly.
    """
    waiting = "SELECT count(*) FROM pg_locks WHERE relation = 'trials'::regclass AND NOT granted"
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    with db.transaction():
        db.execute("LOCK TABLE trials IN ACCESS EXCLUSIVE MODE")
        wait_until(
            lambda: db.execute(waiting).fetchone()[0],
            timeout=120,
            what="a worker query waiting on the trials table",
        )
        db.execute(f"SELECT pg_terminate_backend(pid) {others}")


@pytest.fixture
def grpc_url(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("grpc")
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "search", "storage-proxy", "--storage", f"sqlite:///{tmp_path / 'p.db'}",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proxy.stdout is not None
    assert "serving" in proxy.stdout.readline()
    try:
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)


def test_workers_run_through_the_grpc_storage_proxy(
    tmp_path: Path, grpc_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    space = write_space(tmp_path, "many", base=TINY)
    assert main(["run", str(space), "--storage", grpc_url, "--trials", "8", "--workers", "2"]) == 0
    trials = _trials(grpc_url)
    assert _states(trials) == {"COMPLETE": 8}
    sqlite_view = _trials(f"sqlite:///{tmp_path / 'p.db'}")  # the proxy wrote them to its database
    assert [t.number for t in sqlite_view] == list(range(8))
