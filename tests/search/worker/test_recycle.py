"""Worker recycling (search.worker.recycle): the pure decision, and real processes that restart themselves.

``HPSEARCH_RECYCLE_EVERY=1`` forces a restart after every trial, so the end-to-end tests do not
depend on how much memory a tiny trial happens to leave behind. Each restart re-imports
TensorFlow (~4 s here), so the budgets are 3 trials.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import spaces
import storage
from search.study import open_storage
from search.study.create import create_or_load
from search.study.queue import top_up
from search.worker.recycle import EVERY_ENV, STATE_ENV, Recycler, State, should_restart
from tests.helpers import ROOT, TINY, space_text, subprocess_env, write_space

RECYCLED = {**TINY, "dataset": {"name": "digits", "limit": 200}, "budget": {"trials": 3}}


@pytest.mark.parametrize(
    ("case", "kwargs", "expected"),
    [
        ("below the limit", {"rss_mib": 105.0, "baseline_mib": 100.0}, False),
        ("at the limit", {"rss_mib": 110.0, "baseline_mib": 100.0}, False),
        ("above the limit", {"rss_mib": 110.5, "baseline_mib": 100.0}, True),
        ("the next trial would cross", {"rss_mib": 108.0, "baseline_mib": 100.0, "step_mib": 2.5}, True),
        ("the next trial stays under", {"rss_mib": 108.0, "baseline_mib": 100.0, "step_mib": 1.5}, False),
        ("memory shrank last trial", {"rss_mib": 109.0, "baseline_mib": 100.0, "step_mib": -5.0}, False),
        ("warm-up not done", {"rss_mib": 500.0, "baseline_mib": None}, False),
        ("disabled with 0", {"rss_mib": 500.0, "baseline_mib": 100.0, "max_growth_pct": 0.0}, False),
        ("stopping on a signal", {"rss_mib": 500.0, "baseline_mib": 100.0, "stopping": True}, False),
        ("queue empty or budget used", {"rss_mib": 500.0, "baseline_mib": 100.0, "work_left": False}, False),
        ("every N trials", {"rss_mib": 1.0, "baseline_mib": None, "trials_here": 2, "every": 2}, True),
        ("every N, not yet", {"rss_mib": 1.0, "baseline_mib": None, "trials_here": 1, "every": 2}, False),
        (
            "every N but stopping",
            {"rss_mib": 1.0, "baseline_mib": None, "trials_here": 2, "every": 2, "stopping": True},
            False,
        ),
    ],
)
def test_should_restart(case: str, kwargs: dict[str, object], expected: bool) -> None:
    args: dict[str, object] = {"max_growth_pct": 10.0, **kwargs}
    assert should_restart(**args) is expected, case  # type: ignore[arg-type]


def test_budgets_left_after_earlier_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, '{"baseline_mib": 100.0, "restarts": 2, "ran": 3, "deadline": 1e12}')
    recycler = Recycler(10.0)
    assert STATE_ENV not in os.environ  # read once: never passed on to other processes
    assert recycler.state == State(baseline_mib=100.0, restarts=2, ran=3, deadline=1e12)
    max_trials, timeout = recycler.budgets(5, 60.0)  # the deadline carried wins over a fresh timeout
    assert max_trials == 2
    assert timeout is not None and timeout > 60.0


def _env() -> dict[str, str]:
    return subprocess_env(**{EVERY_ENV: "1", "HPSEARCH_OFFLINE": "1"})


def _cli(*args: str) -> tuple[int, int, str]:
    """Run ``python -m search ARGS``; its PID, exit code and output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    out, _ = proc.communicate(timeout=300)
    return proc.pid, proc.returncode, out


def _states(url: str) -> list[str]:
    store = storage.open_storage(storage.resolve(url, {}), heartbeat_interval=None)
    return [t.state.name for t in optuna.load_study(study_name="recycled", storage=store).get_trials()]


def test_run_restarts_after_each_trial_and_ends_with_its_budget(tmp_path: Path) -> None:
    space = write_space(tmp_path, "recycled", base=RECYCLED)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    pid, code, out = _cli("run", str(space), "--storage", url)
    assert code == 0, out
    restarts = re.findall(r"restart (\d+) \(pid (\d+)\)", out)
    # 3 trials, a restart after each but the last (the queue is empty then)
    assert [int(n) for n, _ in restarts] == [1, 2], out
    assert {int(p) for _, p in restarts} == {pid}, out
    assert _states(url) == ["COMPLETE"] * 3
    assert out.count("Pareto-optimal trials") == 1, out  # printed once, by the last process
    # the progress clock goes on across restarts (each new process started it at 0 before): by
    # the last trial it has counted at least the three trials' own durations (0.1 s: the clock is
    # printed to 0.1 s)
    clock = [float(s) for s in re.findall(r"^\[\s*\d+/\d+\s+([\d.]+)s", out, flags=re.M)]
    store = storage.open_storage(storage.resolve(url, {}), heartbeat_interval=None)
    trials = optuna.load_study(study_name="recycled", storage=store).get_trials()
    ran = sum(t.duration.total_seconds() for t in trials if t.duration is not None)
    assert len(clock) == 3 and clock == sorted(clock) and clock[-1] >= ran - 0.1, (ran, out)
    params = re.findall(r"COMPLETE .*?  (units=\S+)", out)
    # a restart re-seeds the sampler: without it the seeded random sampler replays its first point
    # (all three were units=[11]); the seeds are fixed, so this outcome is deterministic
    assert len(params) == 3 and len(set(params)) > 1, out


def test_worker_max_trials_holds_across_restarts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    text = space_text("recycled", base=RECYCLED)
    study = create_or_load(spaces.loads(text, source="test"), open_storage(storage.resolve(url, {})))
    top_up(study, 4)
    pid, code, out = _cli("worker", "--study", "recycled", "--storage", url, "--max-trials", "2")
    assert code == 0, out
    assert re.findall(r"restart (\d+)", out) == ["1"], out  # after trial 1; trial 2 is the last allowed
    assert set(re.findall(r"worker pid (\d+)", out)) == {str(pid)}, out  # same PID after exec
    assert sorted(_states(url)) == ["COMPLETE"] * 2 + ["WAITING"] * 2


def test_in_process_main_never_replaces_its_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # main(argv) inside another program (here pytest) must not exec: that would replace the caller
    from search.cli import main

    monkeypatch.setenv(EVERY_ENV, "1")
    space = write_space(tmp_path, "recycled", base=RECYCLED)
    url = f"sqlite:///{tmp_path / 'i.db'}"
    assert main(["run", str(space), "--storage", url]) == 0
    assert "restart" not in capsys.readouterr().out
    assert _states(url) == ["COMPLETE"] * 3


CLAIM_THEN_EXEC = """\
import os, sys
from search.worker import devices
gpus = [devices.Gpu(0, "GPU-fake-0", "fake", 1000, 0, 0)]  # fake: this machine has no GPU
held = devices.claim(gpus, devices.Policy("gpu"))  # ConfigError if the only slot is still held
print(sys.argv[1], os.getpid(), held.placement.gpu is not None, flush=True)
if sys.argv[1] == "first":
    os.execv(sys.executable, [sys.executable, __file__, "second"])
"""


def test_gpu_claim_is_released_by_exec_and_claimed_again(tmp_path: Path) -> None:
    # one slot on one (fake) GPU, a real flock file: the process after exec gets the slot only if
    # exec closed the first image's lock file (Python opens files non-inheritable)
    script = tmp_path / "claim.py"
    script.write_text(CLAIM_THEN_EXEC)
    env = {**_env(), "HPSEARCH_LOCK_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(script), "first"], capture_output=True, text=True, env=env, cwd=ROOT, check=True
    ).stdout.split()
    assert out == ["first", out[1], "True", "second", out[1], "True"]  # same PID, the slot both times
