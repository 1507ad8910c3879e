"""The worker loop: claim queued trials of one study until the queue is empty.

- A trial that fails by itself (:class:`TrialFailed`) ends FAIL and the worker goes on; after
  ``max_failures_in_row`` such failures in a row the worker stops and says why.
- SIGTERM / SIGINT: the running trial stops at the next batch, is marked FAIL and re-queued with
  the same parameters, and :func:`run` returns normally (the CLI exits 0). A second SIGINT
  interrupts at once.
- Queue empty but trials still running elsewhere: the worker waits, and on each wake-up fails
  the trials whose worker stopped beating (they are re-queued) -- the reaper path, so a dead
  worker's trial is recovered even when no new trial starts.
- The database unreachable: every call retries (:mod:`storage.retry`) until the outage is
  ``$HPSEARCH_DB_OUTAGE_S`` old (default 120 s); the worker simply carries on when it returns.
  Past that limit (or on an error no retry cures) :func:`run` stops the running trial and raises
  :class:`storage.DatabaseUnavailable`, one line saying what became of that trial: re-queued if
  the database answered again in time, else left to heartbeat recovery by the next worker.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, TextIO

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

import storage
from search import keys
from search.errors import TrialFailed, WorkerStopping
from search.results.notes import save_trial_note
from search.study.queue import QueueEmpty, QueueStudy, requeue, slots
from search.worker.progress import ProgressDisplay

if TYPE_CHECKING:
    from search.worker.recycle import Recycler
    from spaces import Space

__all__ = ["MAX_FAILURES_IN_ROW", "RunResult", "run"]

MAX_FAILURES_IN_ROW = 5
POLL_S = 2.0  # how often an idle worker checks for re-queued or stale trials


@dataclass
class RunResult:
    """What one worker did."""

    ran: int
    failed: int = 0  # its own failures (a trial stopped and re-queued is not one)
    last_failure: str | None = None  # the last one's fail_reason
    stop_reason: str | None = None  # set when the worker gave up (failures in a row)
    signalled: str | None = None  # the signal that stopped it, if any
    requeued: int | None = None  # the trial it handed back when stopped mid-trial
    recycle: bool = False  # resident memory grew too much: the caller restarts the process


def run(
    study: QueueStudy,
    space: Space,
    objective: Callable[[optuna.Trial], float | tuple[float, ...]],
    *,
    stop: threading.Event,
    max_trials: int | None = None,
    timeout: float | None = None,
    max_failures_in_row: int = MAX_FAILURES_IN_ROW,
    heartbeat: bool = False,
    out: TextIO | None = None,
    recycle: Recycler | None = None,
) -> RunResult:
    """Claim and run queued trials until the queue is empty (study-wide budget reached).

    Args:
        study: the study, opened as a :class:`QueueStudy`.
        space: the study's space (for progress lines).
        objective: called once per trial; it must watch ``stop``.
        stop: set on SIGTERM / SIGINT (handlers are installed here when on the main thread).
        max_trials: at most this many trials from this worker.
        timeout: no new trial starts after this many seconds.
        max_failures_in_row: stop after this many trials failed in a row.
        heartbeat: the storage records heartbeats, so an idle worker can wait for trials
            still running elsewhere and recover those whose worker died.
        out: where progress lines go (default stdout).
        recycle: measures memory after each trial; when a restart is due (and the queue still
            holds trials) the loop returns with ``RunResult.recycle`` set.

    Raises:
        storage.DatabaseUnavailable: the database stayed unreachable past the outage limit, or
            refused for good; the message says what became of the running trial.
    """
    before = 0.0 if recycle is None else recycle.elapsed()  # the clock goes on across restarts
    display = ProgressDisplay(study, space, out or sys.stdout, timeout=timeout, elapsed=before)
    progress = _Progress(space, max_failures_in_row, display)
    result = RunResult(ran=0)
    lost: list[storage.DatabaseUnavailable] = []

    def database_lost(error: storage.DatabaseUnavailable) -> None:  # in whichever thread gave up
        lost.append(error)
        stop.set()  # the running trial stops at the next batch and is handed back if it can be

    try:
        with _signals(stop, study, result), storage.on_give_up(database_lost):
            _loop(study, progress.tracking(objective), progress, result, stop=stop, max_trials=max_trials,
                  timeout=timeout, heartbeat=heartbeat, recycle=recycle)  # fmt: skip
    except Exception as e:
        down = _unavailable(e)
        if down is None:
            raise
        message = f"worker stopped: {down}; {progress.fate()}"
        raise storage.DatabaseUnavailable(message, permanent=down.permanent) from down
    finally:
        progress.display.close()
    if lost:  # the heartbeat thread (or an idle wait) gave up; the loop stopped its trial cleanly
        raise storage.DatabaseUnavailable(f"worker stopped: {lost[0]}; {progress.fate()}")
    result.ran, result.failed, result.last_failure = progress.ran, progress.failed, progress.last_failure
    result.stop_reason = progress.stop_reason
    return result


def _loop(
    study: QueueStudy,
    objective: Callable[[optuna.Trial], float | tuple[float, ...]],
    progress: _Progress,
    result: RunResult,
    *,
    stop: threading.Event,
    max_trials: int | None,
    timeout: float | None,
    heartbeat: bool,
    recycle: Recycler | None,
) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    while not stop.is_set() and progress.stop_reason is None:
        left = None if deadline is None else deadline - time.monotonic()
        n = None if max_trials is None else max_trials - progress.ran
        if (left is not None and left <= 0) or (n is not None and n <= 0):
            break
        if (
            recycle is not None
            and recycle.due
            and recycle.confirm(work_left=slots(study.get_trials(deepcopy=False)).waiting > 0)
        ):
            result.recycle = True
            break
        try:
            study.optimize(
                objective,
                n_trials=n,
                timeout=left,
                catch=(TrialFailed,),
                callbacks=[progress] if recycle is None else [progress, recycle],
                gc_after_trial=False,  # the objective collects before each build
            )
        except QueueEmpty:
            if not _reap_or_wait(study, stop, heartbeat):
                break
        except WorkerStopping as e:
            progress.running, progress.stopped = None, e.number  # Optuna has told it FAIL
            lost = next(t for t in study.get_trials(deepcopy=False) if t.number == e.number)
            requeue(study, lost, limited=False)
            progress.handed_back = result.requeued = lost.number
            progress(study, lost)
            break
        except (ValueError, AssertionError) as e:
            # Optuna's "Cannot tell a FAIL trial" (or the assertion it ends in): another worker
            # judged this trial stale (its heartbeat was late, e.g. on an overloaded machine),
            # failed and re-queued it. The copy runs again; this worker goes on.
            told = e if isinstance(e, ValueError) else e.__context__
            if _unavailable(e) or not (
                isinstance(told, ValueError) and str(told).startswith("Cannot tell a")
            ):
                raise
            progress.running = None
            progress.display.message(f"note: {told} -- another worker declared it stale and re-queued it")


def _unavailable(error: BaseException) -> storage.DatabaseUnavailable | None:
    """The DatabaseUnavailable behind ``error``, if any.

    Optuna may raise something else while handling it: its ``_run_trial`` ends in an
    ``AssertionError`` (or an ``UnboundLocalError``) when telling a trial fails.
    """
    seen: BaseException | None = error
    for _ in range(20):  # a cycle-proof walk of what caused it or was being handled
        if seen is None or isinstance(seen, storage.DatabaseUnavailable):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _reap_or_wait(study: optuna.Study, stop: threading.Event, heartbeat: bool) -> bool:
    """Queue empty: True if there may be work again (a re-queued trial), False if done."""
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)  # dead workers' trials -> FAIL, re-queued by the storage callback
    counts = slots(study.get_trials(deepcopy=False))
    if counts.waiting:
        return True
    if counts.running == 0 or not heartbeat:
        return False  # budget used up (or no heartbeats: a dead worker's trial cannot be told)
    stop.wait(POLL_S)  # others still train; one of them may die and its trial come back
    return not stop.is_set()


@contextlib.contextmanager
def _signals(stop: threading.Event, study: optuna.Study, result: RunResult) -> Iterator[None]:
    """SIGTERM / SIGINT set ``stop`` (and end the optimize loop); a second SIGINT interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        result.signalled = signal.Signals(signum).name
        stop.set()
        with contextlib.suppress(RuntimeError):  # not inside optimize: nothing to stop
            study.stop()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Progress:
    """Shows each finished trial, writes its dashboard note, enforces the failures-in-a-row limit,
    and knows which trial this worker runs (claimed, not yet told)."""

    def __init__(self, space: Space, limit: int, display: ProgressDisplay) -> None:
        self.space, self.limit, self.display = space, limit, display
        self.ran = self.failed = self.failures_in_row = 0
        self.last_failure: str | None = None
        self.stop_reason: str | None = None
        self.running: int | None = None  # the trial this worker runs, until it is told
        self.stopped: int | None = None  # stopped by a signal or the database: FAIL, to re-queue
        self.handed_back: int | None = None  # ... and re-queued

    def tracking(
        self, objective: Callable[[optuna.Trial], float | tuple[float, ...]]
    ) -> Callable[[optuna.Trial], float | tuple[float, ...]]:
        def tracked(trial: optuna.Trial) -> float | tuple[float, ...]:
            self.running = trial.number
            return objective(trial)

        return tracked

    def fate(self) -> str:
        """What became of this worker's trial when it stopped for the database."""
        if self.handed_back is not None:
            return f"trial {self.handed_back} was re-queued"
        if self.stopped is not None:
            return (
                f"trial {self.stopped} was stopped but not re-queued; `hpsearch run` or `hpsearch create` "
                "queues a trial in its place"
            )
        if self.running is not None:
            return (
                f"trial {self.running} stays RUNNING until its heartbeats are stale; then the next "
                "worker re-queues it"
            )
        return "no trial was running"

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.number == self.running:
            self.running = None
        self.ran += 1
        save_trial_note(study, trial, self.space.metrics)
        self.display.trial_done(study, trial)
        own_failure = trial.state == TrialState.FAIL and not trial.user_attrs.get(keys.REQUEUED, False)
        self.failures_in_row = self.failures_in_row + 1 if own_failure else 0
        if own_failure:
            self.failed += 1
            self.last_failure = trial.user_attrs.get(keys.FAIL_REASON, "see the trial's fail_reason")
        if self.failures_in_row >= self.limit:
            reason = self.last_failure
            self.stop_reason = f"{self.limit} trials failed in a row (last: {reason})"
            study.stop()
