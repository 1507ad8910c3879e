"""Recycle a worker process whose resident memory grew too much (``--max-memory-growth``).

Each trial leaves some memory behind in the process (about 0.3 MiB per small model once the
objective has dropped what TensorFlow's gradient registry held, 4-7 MB before), and neither
``keras.backend.clear_session()`` nor ``gc.collect()`` nor ``malloc_trim`` gives it back (see
docs/workers.md, "Memory"). So, like Celery's ``max_memory_per_child``, the worker bounds it itself: after
each finished trial it compares its resident set size (``/proc/self/statm``) with a baseline: its highest
over the first :data:`WARMUP_TRIALS` trials (TensorFlow's first trials allocate kernels and caches once;
that is not a leak). When the growth lasts -- the lowest of the last :data:`SUSTAINED`
measurements is above the limit (one trial's peak, given back afterwards, restarts nothing) --
the queue still holds trials, and the worker is neither
stopping on a signal nor at ``--max-trials`` / ``--timeout``, it replaces itself with a fresh
interpreter running the same command
(:func:`restart`, ``os.execve``):

- same PID, so ``hpsearch run --workers K`` and signals keep working;
- no trial in flight: the finished trial is already told, the new process claims the next one;
- files Python opened (GPU slot flocks, SQLite) are non-inheritable, so exec closes them and
  releases the GPU claim, which the new process takes again;
- the baseline, the restart count, the trials run so far and the ``--timeout`` deadline (wall
  clock) survive in the :data:`STATE_ENV` environment variable, read once and removed.

``HPSEARCH_RECYCLE_EVERY=N`` restarts after every N trials of one process whatever the memory
(Celery's ``max_tasks_per_child``; the tests use it to force restarts deterministically).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, NoReturn

import optuna
from optuna.trial import FrozenTrial

if TYPE_CHECKING:
    from spaces import Space

__all__ = [
    "DEFAULT_MAX_GROWTH",
    "STATE_ENV",
    "WARMUP_TRIALS",
    "Recycler",
    "State",
    "growth_percent",
    "restart",
    "rss_mib",
    "should_restart",
]

DEFAULT_MAX_GROWTH = 8.0  # percent above the post-warm-up memory: a margin under the 10 % goal
SUSTAINED = 3  # memory counts as grown when it stayed up for this many trials in a row
WARMUP_TRIALS = 5  # the baseline: the highest resident memory over this many first trials
STATE_ENV = "HPSEARCH_RECYCLE_STATE"
EVERY_ENV = "HPSEARCH_RECYCLE_EVERY"
_PAGE = os.sysconf("SC_PAGE_SIZE")
# the environment as the command found it (search.cli.main imports this module first thing): devices.apply()
# narrows CUDA_VISIBLE_DEVICES to the claimed GPU, and a restart must discover and claim afresh
_STARTED_WITH = dict(os.environ)


def growth_percent(text: str) -> float:
    """argparse type of ``--max-memory-growth``: a percentage >= 0 (0 = never restart)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a percentage >= 0, got {text}")
    return value


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def should_restart(
    *,
    rss_mib: float,
    baseline_mib: float | None,
    max_growth_pct: float,
    step_mib: float = 0.0,
    trials_here: int = 0,
    every: int = 0,
    stopping: bool = False,
    work_left: bool = True,
) -> bool:
    """Whether the worker should replace itself now (pure; called after a finished trial).

    Args:
        rss_mib: resident memory now.
        baseline_mib: resident memory after the warm-up; None while the warm-up runs.
        max_growth_pct: allowed growth above the baseline in percent; 0 disables the check.
        step_mib: what the last trial added; the worker restarts when one more such trial would
            cross the limit, so resident memory stays under it rather than one trial above.
        trials_here: trials finished by this process (since its last restart).
        every: restart after this many trials of one process whatever the memory; 0 = never.
        stopping: a signal asked the worker to stop.
        work_left: the queue holds trials and this worker's --max-trials / --timeout allow one more.
    """
    if stopping or not work_left:
        return False
    if every > 0 and trials_here >= every:
        return True
    if max_growth_pct <= 0 or baseline_mib is None:
        return False
    return rss_mib + max(step_mib, 0.0) > baseline_mib * (1 + max_growth_pct / 100)


@dataclass
class State:
    """What survives a restart (JSON in :data:`STATE_ENV`)."""

    baseline_mib: float | None = None
    restarts: int = 0
    ran: int = 0  # trials this worker finished in earlier processes
    deadline: float | None = None  # time.time() after which no new trial starts (--timeout)
    started: float | None = None  # time.time() when the first process began (the progress clock)

    @classmethod
    def inherit(cls) -> State:
        """The state left by the process this one replaced (removed from the environment)."""
        text = os.environ.pop(STATE_ENV, None)
        return cls() if text is None else cls(**json.loads(text))


class Recycler:
    """Optuna callback: measures memory after each trial and stops the study when a restart is due.

    The worker loop then confirms with :meth:`confirm` (queue not empty, budgets left) and
    returns; the CLI calls :func:`restart`.
    """

    def __init__(self, max_growth_pct: float, *, enabled: bool = True, state: State | None = None) -> None:
        """``enabled=False``: the CLI runs inside another program (``main(argv)``), which a restart
        would replace; only the budget bookkeeping stays."""
        self.max_growth_pct = max_growth_pct if enabled else 0.0
        self.state = State.inherit() if state is None else state
        self.every = int(os.environ.get(EVERY_ENV, "0") or 0) if enabled else 0
        self.trials_here = 0
        self.rss = 0.0
        self.step = 0.0  # no one-trial projection: only growth that lasted counts (SUSTAINED)
        self.warm_up = 0.0  # the highest resident memory during the warm-up
        self.recent: collections.deque[float] = collections.deque(maxlen=SUSTAINED)
        self.due = False

    def budgets(self, max_trials: int | None, timeout: float | None) -> tuple[int | None, float | None]:
        """This process's share of ``--max-trials`` / ``--timeout`` after earlier restarts."""
        if self.state.started is None:
            self.state.started = time.time()
        if self.state.deadline is None and timeout is not None:
            self.state.deadline = time.time() + timeout
        left = None if self.state.deadline is None else max(self.state.deadline - time.time(), 0.0)
        return (None if max_trials is None else max_trials - self.state.ran), left

    def elapsed(self) -> float:
        """Seconds since this worker's first process took its budgets, earlier restarts included."""
        return 0.0 if self.state.started is None else max(time.time() - self.state.started, 0.0)

    def reseed(self, study: optuna.Study, space: Space, worker: int) -> None:
        """After a restart: a new sampler seed, so a seeded sampler does not replay its points."""
        if self.state.restarts:
            from spaces.optuna import make_sampler

            n = len(study.get_trials(deepcopy=False))
            study.sampler = make_sampler(
                space, seed_offset=n + 100_003 * worker + 1_000_003 * self.state.restarts
            )

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.trials_here += 1
        self.recent.append(rss_mib())
        if self.state.baseline_mib is None:  # the warm-up's high-water mark: not a leak
            self.warm_up = max(self.warm_up, self.recent[-1])
            if self.state.ran + self.trials_here >= WARMUP_TRIALS:
                self.state.baseline_mib = self.warm_up
        # growth that lasts: the lowest of the last SUSTAINED measurements; one trial's peak (a
        # wide model, a large batch) is given back and restarts nothing
        self.rss = min(self.recent) if len(self.recent) == SUSTAINED else 0.0
        self.due = self._decide()
        if self.due:
            study.stop()

    def confirm(self, *, work_left: bool, stopping: bool = False) -> bool:
        """Called by the worker loop after a stop requested here: restart now?"""
        self.due = self._decide(work_left=work_left, stopping=stopping)
        return self.due

    def _decide(self, *, work_left: bool = True, stopping: bool = False) -> bool:
        return should_restart(
            rss_mib=self.rss,
            baseline_mib=self.state.baseline_mib,
            max_growth_pct=self.max_growth_pct,
            step_mib=self.step,
            trials_here=self.trials_here,
            every=self.every,
            stopping=stopping,
            work_left=work_left,
        )

    def message(self) -> str:
        """The line printed before a restart."""
        n, pid = self.state.restarts + 1, os.getpid()
        base = self.state.baseline_mib
        now = self.recent[-1] if self.recent else self.rss
        if base is None or self.max_growth_pct <= 0 or (self.every and self.trials_here >= self.every):
            return f"worker: {EVERY_ENV}={self.every} trials done in this process; restart {n} (pid {pid})"
        return (
            f"worker: resident memory {now:.0f} MiB, at least {self.rss:.0f} MiB for {SUSTAINED} trials: "
            f"{self.rss / base - 1:.1%} above {base:.0f} MiB after warm-up (limit {self.max_growth_pct:g}%); "
            f"restart {n} (pid {pid}) to release it"
        )


def restart(recycler: Recycler, argv: list[str]) -> NoReturn:
    """Replace this process by ``python -m search ARGV`` (same PID), carrying the state."""
    print(recycler.message(), flush=True)
    sys.stderr.flush()
    state = recycler.state
    state.restarts += 1
    state.ran += recycler.trials_here
    env = {**_STARTED_WITH, STATE_ENV: json.dumps(asdict(state))}
    os.execve(sys.executable, [sys.executable, "-m", "search", *argv], env)
