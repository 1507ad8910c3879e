"""Many workers on one study: exact budgets, dead and stopped workers, dropped connections, gRPC.

Workers are real `hpsearch worker` processes training real (tiny) Keras models: 60 digits, one
epoch, a few units. Tests of recovery use 2 s heartbeats (stale after 6 s) so it is quick.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
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

ROOT = Path(__file__).resolve().parents[2]
TINY = """\
name: many
dataset: {name: digits, limit: 60}
sampler: {type: random, seed: 0}
model: {layers: 1, units: {type: int, low: 4, high: 16}}
training: {batch_size: 64, epochs: 1}
"""
SLOW = TINY.replace("limit: 60", "limit: 400").replace("epochs: 1", "epochs: 60")  # ~5-10 s a trial


@pytest.fixture(autouse=True)
def _worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'w.db'}"
    return str(request.getfixturevalue("pg_url"))


def _trials(url: str, name: str = "many") -> list[optuna.trial.FrozenTrial]:
    store = storage.open_storage(storage.resolve(url, {}), heartbeat_interval=None)
    return optuna.load_study(study_name=name, storage=store).get_trials()


def _states(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def _wait_for(condition: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        time.sleep(0.2)


def _worker(url: str, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "search", "worker", "--study", "many", "--storage", url, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _queued_study(url: str, text: str, budget: int) -> None:
    study = create_or_load(spaces.loads(text, source="test"), open_storage(storage.resolve(url, {})))
    top_up(study, budget)


def _running_with_params(url: str) -> bool:
    return any(t.state.name == "RUNNING" and t.params for t in _trials(url))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_four_workers_finish_exactly_the_budget_while_the_dashboard_reads(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    url = storage.resolve(_url(backend, tmp_path, request), {})
    open_storage(url)  # the database exists before the dashboard opens it
    space = tmp_path / "many.yaml"
    space.write_text(TINY)
    with _Dashboard(url) as dashboard:  # the real optuna-dashboard, polled over HTTP throughout
        code = main(["run", str(space), "--storage", url, "--trials", "40", "--workers", "4"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    trials = _trials(url)
    assert _states(trials) == {"COMPLETE": 40}
    assert sorted(t.number for t in trials) == list(range(40))
    assert {f"[w{i}]" for i in range(4)} <= {line.split(" ")[0] for line in out.splitlines()}
    assert dashboard.alive_at_end and dashboard.errors == []
    assert dashboard.reads > 0 and dashboard.trials_seen > 0  # it read the study while it grew
    assert "locked" not in out + err + dashboard.log()


class _Dashboard:
    """optuna-dashboard on the study's storage, read over HTTP in a loop while workers write."""

    def __init__(self, url: str) -> None:
        self.port = _free_port()
        exe = Path(sys.executable).parent / "optuna-dashboard"
        self.proc = subprocess.Popen(
            [str(exe), url, "--port", str(self.port), "--host", "127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.reads, self.trials_seen, self.errors = 0, 0, []  # type: ignore[var-annotated]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self._output = ""

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as response:
            return json.loads(response.read())

    def _loop(self) -> None:
        while not self.done.is_set():
            try:
                for study in self._get("/api/studies")["study_summaries"]:
                    self.trials_seen = max(
                        self.trials_seen, len(self._get(f"/api/studies/{study['study_id']}")["trials"])
                    )
                self.reads += 1
            except Exception as e:  # an error page, a refused connection, a crashed dashboard
                self.errors.append(repr(e))
            self.done.wait(0.05)

    def __enter__(self) -> _Dashboard:
        try:
            _wait_for(lambda: _answers(self.port), seconds=60)
        except AssertionError:
            self.proc.kill()
            raise
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.alive_at_end = self.proc.poll() is None
        self.proc.terminate()
        self._output = self.proc.communicate(timeout=30)[0]

    def log(self) -> str:
        return self._output


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5):
            return True
    except (urllib.error.URLError, ConnectionError):
        return False


def test_killed_worker_trial_is_failed_requeued_and_finished(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPSEARCH_HEARTBEAT", "2")
    _queued_study(pg_url, SLOW, budget=3)
    victim = _worker(pg_url)
    _wait_for(lambda: _running_with_params(pg_url))
    victim.kill()  # SIGKILL: no clean-up at all
    victim.wait()
    lost = next(t for t in _trials(pg_url) if t.state.name == "RUNNING")

    rescuer = subprocess.run(
        [sys.executable, "-m", "search", "worker", "--study", "many", "--storage", pg_url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert rescuer.returncode == 0, rescuer.stdout + rescuer.stderr
    trials = _trials(pg_url)
    assert trials[lost.number].state.name == "FAIL"
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == lost.number)
    assert retry.state.name == "COMPLETE" and retry.params == lost.params
    assert _states(trials) == {"COMPLETE": 3, "FAIL": 1}


def test_sigterm_requeues_the_running_trial_and_exits_0(tmp_path: Path, pg_url: str) -> None:
    _queued_study(pg_url, SLOW, budget=2)
    worker = _worker(pg_url)
    _wait_for(lambda: _running_with_params(pg_url))
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
    _queued_study(pg_url, TINY, budget=24)
    database = pg_url.rsplit("/", 1)[1]
    workers = [_worker(pg_url, "--index", str(i)) for i in range(2)]
    kills = 0
    with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        while any(w.poll() is None for w in workers):  # keep cutting every worker connection
            kills += admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            ).fetchone()[0]
            time.sleep(0.3)
    outputs = [w.communicate()[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert kills >= 3  # connections really were cut while they worked
    trials = _trials(pg_url)
    assert _states(trials) == {"COMPLETE": 24}
    assert sorted(t.number for t in trials) == list(range(24))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def grpc_url(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("grpc")
    port = _free_port()
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
    space = tmp_path / "many.yaml"
    space.write_text(TINY)
    assert main(["run", str(space), "--storage", grpc_url, "--trials", "8", "--workers", "2"]) == 0
    trials = _trials(grpc_url)
    assert _states(trials) == {"COMPLETE": 8}
    sqlite_view = _trials(f"sqlite:///{tmp_path / 'p.db'}")  # the proxy wrote them to its database
    assert [t.number for t in sqlite_view] == list(range(8))
