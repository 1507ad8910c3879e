"""A worker's progress display: trials done / budget, best so far and ETA.

On a terminal, an in-place bar (tqdm, as Optuna's own ``show_progress_bar``) with a line per
finished trial above it; elsewhere (pipes, CI, tests, ``run --workers K``) one line per trial
that carries the same facts::

    [ 3/10   12.3s eta 28s] trial 2   COMPLETE val_accuracy=0.9100 ...  | best val_accuracy=0.9500 (#1)

The budget and the counts are study-wide, so the ETA counts every worker's trials.
"""

from __future__ import annotations

import math
import shutil
import time
from typing import TYPE_CHECKING, Any, TextIO

import optuna
from optuna.trial import FrozenTrial

from search.results.tables import best_trials, fmt, trial_line
from search.study.queue import slots

if TYPE_CHECKING:
    from spaces import Space

__all__ = ["ProgressDisplay", "best_so_far", "format_eta"]


def format_eta(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(max(seconds, 0.0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def best_so_far(study: optuna.Study, metrics: tuple[str, ...] | list[str]) -> str:
    """``val_accuracy=0.95 (#3)``; for several objectives the front's size and its best first value."""
    best = best_trials(study)
    if not best:
        return "none yet"
    head = f"{metrics[0]}={fmt(best[0].values[0])} (#{best[0].number})"
    return head if len(study.directions) == 1 else f"front of {len(best)}, {head}"


class ProgressDisplay:
    """Shows a worker's progress on ``out``; a bar when ``out`` is a terminal."""

    def __init__(
        self,
        study: optuna.Study,
        space: Space,
        out: TextIO,
        *,
        tty: bool | None = None,
        timeout: float | None = None,
        elapsed: float = 0.0,
    ) -> None:
        """``timeout``: seconds left before no new trial starts (the ETA never runs past it);
        ``elapsed``: seconds the worker ran before this process (a restart), shown in its lines."""
        self.space, self.out = space, out
        self.start = time.perf_counter()
        self.before = elapsed
        self.timeout = timeout
        counts = slots(study.get_trials(deepcopy=False))
        self.done_at_start = counts.done
        isatty = getattr(out, "isatty", None)
        self.bar: Any = None
        if tty if tty is not None else bool(isatty and isatty()) or _in_notebook(out):
            from tqdm.auto import tqdm

            sized = shutil.get_terminal_size((0, 0)).columns > 0  # a pty without a size: 0 columns
            self.bar = tqdm(
                total=counts.used,
                initial=counts.done,
                file=out,
                unit="trial",
                dynamic_ncols=sized,
                ncols=None if sized else 100,
                nrows=None if sized else 20,
            )
            self.bar.set_postfix_str(f"best {best_so_far(study, space.metrics)}")

    def eta(self, done: int, budget: int, elapsed: float) -> float | None:
        """Seconds left at the study-wide rate seen since this worker started, or to the timeout if sooner.

        With ``--trials 1000 --timeout 600`` the timeout binds: the ETA is what is left of it.
        """
        finished_here = done - self.done_at_start
        if done >= budget:
            return 0.0
        by_rate = elapsed / finished_here * (budget - done) if finished_here > 0 else None
        if self.timeout is None:
            return by_rate
        left = max(self.timeout - elapsed, 0.0)
        return left if by_rate is None else min(by_rate, left)

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Show one finished trial and where the study stands."""
        counts = slots(study.get_trials(deepcopy=False))
        elapsed = time.perf_counter() - self.start  # in this process: the ETA's rate
        shown = self.before + elapsed
        best = best_so_far(study, self.space.metrics)
        if self.bar is not None:
            self.bar.write(
                trial_line(trial, self.space.metrics, counts.done, counts.used, shown), file=self.out
            )
            self.bar.total = counts.used
            self.bar.update(counts.done - self.bar.n)
            self.bar.set_postfix_str(f"best {best}")
            return
        eta = format_eta(self.eta(counts.done, counts.used, elapsed))
        line = trial_line(trial, self.space.metrics, counts.done, counts.used, shown, eta=eta)
        print(f"{line}  | best {best}", file=self.out, flush=True)

    def message(self, text: str) -> None:
        """A line that does not garble the bar."""
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _in_notebook(out: TextIO) -> bool:
    """``out`` is a Jupyter kernel's stream: tqdm draws its notebook bar there (with ipywidgets)."""
    return type(out).__module__.startswith("ipykernel")
