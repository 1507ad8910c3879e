"""The worker loop: claim queued trials of one study until the queue is empty.

- A trial that fails by itself (:class:`TrialFailed`) ends FAIL and the worker goes on; after
  ``max_failures_in_row`` such failures in a row the worker stops and says why.
- SIGTERM / SIGINT: the running trial stops at the next batch, is marked FAIL and re-queued with
  the same parameters, and :func:`run` returns normally (the CLI exits 0). A second SIGINT
  interrupts at once.
- Queue empty but trials still running elsewhere: the worker waits, and on each wake-up fails
  the trials whose worker stopped beating (they are re-queued) -- the reaper path, so a dead
  worker's trial is recovered even when no new trial starts.
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
    """
    progress = _Progress(space, max_failures_in_row, ProgressDisplay(study, space, out or sys.stdout))
    deadline = None if timeout is None else time.monotonic() + timeout
    result = RunResult(ran=0)
    with _signals(stop, study, result):
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
            except (ValueError, AssertionError) as e:
                # Optuna's "Cannot tell a FAIL trial" (or the assertion it ends in): another worker
                # judged this trial stale (its heartbeat was late, e.g. on an overloaded machine),
                # failed and re-queued it. The copy runs again; this worker goes on.
                told = e if isinstance(e, ValueError) else e.__context__
                if not (isinstance(told, ValueError) and str(told).startswith("Cannot tell a")):
                    raise
                progress.display.message(f"note: {told} -- another worker declared it stale and re-queued it")
            except WorkerStopping as e:
                lost = next(t for t in study.get_trials(deepcopy=False) if t.number == e.number)
                requeue(study, lost, limited=False)
                result.requeued = lost.number
                progress(study, lost)
                break
    progress.display.close()
    result.ran = progress.ran
    result.stop_reason = progress.stop_reason
    return result


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
    """Shows each finished trial, writes its dashboard note, enforces the failures-in-a-row limit."""

    def __init__(self, space: Space, limit: int, display: ProgressDisplay) -> None:
        self.space, self.limit, self.display = space, limit, display
        self.ran = 0
        self.failures_in_row = 0
        self.stop_reason: str | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.ran += 1
        save_trial_note(study, trial, self.space.metrics)
        self.display.trial_done(study, trial)
        own_failure = trial.state == TrialState.FAIL and not trial.user_attrs.get(keys.REQUEUED, False)
        self.failures_in_row = self.failures_in_row + 1 if own_failure else 0
        if self.failures_in_row >= self.limit:
            reason = trial.user_attrs.get(keys.FAIL_REASON, "see the trial's fail_reason")
            self.stop_reason = f"{self.limit} trials failed in a row (last: {reason})"
            study.stop()
