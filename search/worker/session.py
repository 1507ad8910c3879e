"""One worker process's share of a study: claim a device, build the objective, run the loop.

:func:`run_worker` is what ``hpsearch run`` (one process) and ``hpsearch worker`` do once the
study, its space and the data are open; it takes plain values, not parsed command-line arguments.
Heavy imports (Keras and its backend, through the objective) happen inside it, after the backend
and the device are fixed.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import storage

if TYPE_CHECKING:
    from search.study.queue import QueueStudy
    from search.trial.data import Dataset
    from spaces import Space

__all__ = ["HEARTBEAT_BACKENDS", "run_worker"]

# storages that record a running trial's heartbeats: all of them (the journal and gRPC ones
# through hpsearch's own, see storage.heartbeats), so a dead worker's trial is
# recovered on each
HEARTBEAT_BACKENDS = ("sqlite", "postgresql", "journal", "grpc")


def run_worker(
    study: QueueStudy,
    space: Space,
    dataset: Dataset,
    url: str,
    *,
    device: str = "auto",
    per_gpu: int = 1,
    backend: str | None = None,
    index: int | None = None,
    max_trials: int | None = None,
    timeout: float | None = None,
    max_failures: int | None = None,
    heartbeat_interval: int | None = None,
    max_memory_growth: float | None = None,
    artifacts_dir: str | None = None,
    restart_argv: Sequence[str] | None = None,
    quiet: bool = True,
    exit_on_signal: int = 130,
    own_verdict: bool = False,
) -> int:
    """Run queued trials of ``study`` in this process until the queue is empty; the exit code.

    Args:
        study: the study, opened as a :class:`~search.study.queue.QueueStudy`.
        space: its space.
        dataset: the data, loaded once for every trial of this process.
        url: the storage URL (for the artifacts directory and whether heartbeats are recorded).
        device: ``auto``, ``cpu``, ``gpu`` or ``gpu:N``.
        per_gpu: workers sharing each GPU.
        backend: ``--backend`` (tensorflow, jax or torch); None: ``$KERAS_BACKEND``, else the
            space's ``training.backend`` (:func:`search.trial.backend.resolve`).
        index: the worker's index (device slot and sampler seed); None: 0.
        max_trials: at most this many trials from this worker (across memory restarts).
        timeout: start no new trial after this many seconds; None: the space's ``budget.timeout``.
        max_failures: stop after this many trials failed in a row; None: ``MAX_FAILURES_IN_ROW``.
        heartbeat_interval: the storage was opened with heartbeats every so many seconds.
        max_memory_growth: percent of resident-memory growth that makes the process restart
            itself between trials; None: ``DEFAULT_MAX_GROWTH``; 0: never.
        artifacts_dir: where trial artifacts go; None: ``$HPSEARCH_ARTIFACTS`` or next to the storage.
        restart_argv: the ``python -m search`` arguments a memory restart runs again (same PID);
            None when called inside another program, which a restart would replace: no restart.
        quiet: hide TensorFlow's native start-up chatter on stderr.
        exit_on_signal: the exit code after SIGINT / SIGTERM handed the running trial back
            (``hpsearch run``: 130, as for any interrupted command; ``hpsearch worker``: 0).
        own_verdict: exit 1 when every trial this process ran failed (``hpsearch worker``;
            ``hpsearch run`` judges the whole study instead, with one line of its own).

    Returns:
        0 when the queue is done (or a limit was reached), ``exit_on_signal`` when a signal
        stopped it, 1 when too many trials failed in a row (or, with ``own_verdict``, all of them).

    Raises:
        ConfigError: the backend is not installed, or Keras already runs on another one here.
        storage.DatabaseUnavailable: the database stayed unreachable for longer than
            ``$HPSEARCH_DB_OUTAGE_S`` seconds (default 120), or refused for good (the CLI prints
            its one line and exits 2); the message says what became of the running trial.
    """
    from search.trial import backend as backends
    from search.worker import devices, recycle
    from search.worker.loop import MAX_FAILURES_IN_ROW, run
    from search.worker.native import quiet_native_stderr

    chosen = backends.resolve(backend, space)
    backends.select(chosen)  # before Keras is imported; a conflict stops here, in one line
    start = index or 0
    gpus, why = devices.discover()
    held = devices.claim(gpus, devices.Policy(device, per_gpu), start=start)
    devices.apply(held.placement, backend_name=chosen.name)  # before the backend is imported
    print(f"device: {held.placement.describe() if gpus else 'CPU (' + why + ')'}", flush=True)
    if chosen.name != backends.DEFAULT:
        print(f"backend: {chosen.name} ({chosen.source})", flush=True)
    from search.results import artifacts

    if importlib.util.find_spec("matplotlib") is None:  # a minimal install (e.g. a GPU box's bundle)
        print("artifacts: none (matplotlib is not installed, so no learning-curve SVGs)", flush=True)
        artifacts.use(None)
    else:
        artifacts.use(artifacts.open_store(artifacts.resolve_dir(artifacts_dir, url)))
    checkpoints = artifacts.resolve_dir(artifacts_dir, url) / "checkpoints"  # ASHA's paused trials
    stop = threading.Event()
    with quiet_native_stderr(enabled=quiet):
        from search.trial.objective import Objective

        devices.configure(held.placement, chosen.name)
        objective = Objective(
            space,
            dataset,
            stop=stop,
            device=held.placement.describe(),
            device_info=devices.as_dict(held.placement),
            on_gpu=held.placement.gpu is not None,
            checkpoints=checkpoints,
            timeout=timeout or space.budget.timeout,
        )
    growth = recycle.DEFAULT_MAX_GROWTH if max_memory_growth is None else max_memory_growth
    recycler = recycle.Recycler(growth, enabled=restart_argv is not None)  # budgets survive a restart
    recycler.reseed(study, space, start)
    trials_left, seconds_left = recycler.budgets(max_trials, timeout or space.budget.timeout)
    result = run(
        study,
        space,
        objective,
        stop=stop,
        max_trials=trials_left,
        timeout=seconds_left,
        max_failures_in_row=MAX_FAILURES_IN_ROW if max_failures is None else max_failures,
        heartbeat=heartbeat_interval is not None and storage.backend(url) in HEARTBEAT_BACKENDS,
        recycle=recycler,
    )
    if result.recycle:
        recycle.restart(recycler, list(restart_argv or []))  # does not return: a fresh process
    _forget_paused(study, checkpoints)
    if result.signalled:
        handed_back = "" if result.requeued is None else f"trial {result.requeued} was re-queued; "
        print(f"{result.signalled}: {handed_back}the study resumes where it stopped", file=sys.stderr)
        return exit_on_signal
    if result.stop_reason:
        print(f"hpsearch: stopped: {result.stop_reason}", file=sys.stderr)
        return 1
    if own_verdict and result.ran and result.failed == result.ran:
        last = result.last_failure
        print(f"hpsearch: all {result.ran} trials of this worker failed (last: {last})", file=sys.stderr)
        return 1
    return 0


def _forget_paused(study: QueueStudy, checkpoints: Path) -> None:
    """The study's search is over (nothing queued or running): no paused trial will continue."""
    from search.study.queue import slots
    from search.trial import checkpoint

    counts = slots(study.get_trials(deepcopy=False))
    if counts.waiting == 0 and counts.running == 0:
        checkpoint.discard_study(checkpoints, study.study_name)
