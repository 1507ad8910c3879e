"""Exponential learning-rate range test (Smith 2015; fastai's ``lr_find``) for a space's model.

Over one epoch of the training split, the learning rate starts at ``min_lr`` and is multiplied
by a constant factor after every batch so that the last batch trains at ``max_lr``. The
per-batch loss is smoothed (exponential moving average, bias-corrected); the test stops early
once the smoothed loss exceeds four times its minimum. The rate with the lowest smoothed loss is
where training starts to become unstable; one tenth of it is the suggested rate, and the
suggested search range spans two decades below it.

Example:
    >>> import spaces
    >>> from search.trial.data import load_dataset
    >>> space = spaces.load("quickstart")
    >>> params = pick_params(space, parse_overrides(["optimizer=adam"]))
    >>> found = range_test(space, load_dataset("digits", limit=200), params)  # doctest: +SKIP
    >>> found.min_lr <= found.suggested <= found.max_lr  # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import yaml

import spaces
from search.errors import ConfigError
from search.tools.configs import parse_overrides, pick_params

if TYPE_CHECKING:
    from search.trial.data import Dataset
    from spaces import Space

__all__ = ["RangeTest", "parse_overrides", "pick_params", "plot", "range_test", "write_space"]

_DIVERGED = 4.0  # stop once the smoothed loss exceeds this many times its minimum
_BETA = 0.98  # smoothing of the per-batch loss
GRID_POINTS = 5  # rates written into a grid space


@dataclass(frozen=True)
class RangeTest:
    """The outcome of a range test; ``rates[i]`` trained batch ``i`` whose loss is ``losses[i]``."""

    rates: tuple[float, ...]
    losses: tuple[float, ...]  # raw per-batch training loss
    smoothed: tuple[float, ...]
    min_lr: float  # the tested range
    max_lr: float
    best: float  # the rate with the lowest smoothed loss
    suggested: float  # best / 10
    low: float  # suggested search range: [best / 100, best]
    high: float
    stopped_early: bool  # the loss diverged before the last batch


def range_test(
    space: Space,
    dataset: Dataset,
    params: Mapping[str, Any],
    *,
    min_lr: float = 1e-6,
    max_lr: float = 10.0,
) -> RangeTest:
    """Train ``params``' model for one epoch with an exponentially growing learning rate.

    Raises:
        ConfigError: ``min_lr`` / ``max_lr`` are not ``0 < min_lr < max_lr``, or the training
            split has fewer than two batches.
    """
    from search.trial.build import fresh_model

    if space.hypermodel is not None:
        raise ConfigError(
            f"lr-find: {space.name} runs the hypermodel {space.hypermodel.spec}, whose build(hp) "
            "chooses its own learning rate; run lr-find on a declarative space"
        )
    if not 0 < min_lr < max_lr or not math.isfinite(max_lr):
        raise ConfigError(f"--min-lr / --max-lr: expected 0 < min < max, got {min_lr:g} and {max_lr:g}")
    steps = math.ceil(len(dataset.y_train) / int(params["batch_size"]))
    if steps < 2:
        raise ConfigError(
            f"{len(dataset.y_train)} training images at batch size {params['batch_size']} make "
            f"{steps} batch; the range test needs at least 2"
        )
    model = fresh_model(space, params, dataset, seed=space.seed, trial_params={})
    sweep = _Sweep(min_lr, (max_lr / min_lr) ** (1.0 / (steps - 1)), int(params["batch_size"]))
    model.fit(
        dataset.x_train,
        dataset.y_train,
        batch_size=int(params["batch_size"]),
        epochs=1,
        callbacks=[sweep],
        verbose=0,
    )
    if len(sweep.losses) < 2 or not np.isfinite(sweep.smoothed).any():
        raise ConfigError("the loss was not finite at any tested rate; lower --min-lr")
    smoothed = np.asarray(sweep.smoothed, dtype=float)
    best = float(sweep.rates[int(np.nanargmin(np.where(np.isfinite(smoothed), smoothed, np.nan)))])
    return RangeTest(
        rates=tuple(sweep.rates),
        losses=tuple(sweep.losses),
        smoothed=tuple(sweep.smoothed),
        min_lr=min_lr,
        max_lr=max_lr,
        best=best,
        suggested=max(best / 10, min_lr),
        low=max(best / 100, min_lr),
        high=best,
        stopped_early=len(sweep.losses) < steps,
    )


class _Sweep(keras.callbacks.Callback):
    """Sets the rate before each batch; turns Keras' running mean loss back into batch losses."""

    def __init__(self, start: float, factor: float, batch_size: int) -> None:
        super().__init__()
        self.start, self.factor, self.batch_size = start, factor, batch_size
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._seen = 0  # samples so far this epoch
        self._mean = 0.0  # Keras' running mean of the loss over them
        self._avg = 0.0

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        rate = self.start * self.factor**batch
        self.model.optimizer.learning_rate.assign(rate)
        self.rates.append(rate)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        mean = float((logs or {}).get("loss", math.nan))
        seen = self._seen + self.batch_size  # only the last batch may be smaller
        loss = (mean * seen - self._mean * self._seen) / self.batch_size
        self._seen, self._mean = seen, mean
        self.losses.append(loss)
        self._avg = _BETA * self._avg + (1 - _BETA) * loss
        smooth = self._avg / (1 - _BETA ** len(self.losses))
        self.smoothed.append(smooth)
        finite = [v for v in self.smoothed if math.isfinite(v)]
        if not math.isfinite(smooth) or (batch > 10 and smooth > _DIVERGED * min(finite)):
            self.model.stop_training = True


def plot(result: RangeTest, path: str | Path, *, title: str) -> Path:
    """Loss against learning rate (log scale), with the loss minimum and the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(result.rates, result.losses, color="0.75", linewidth=0.8, label="batch loss")
    ax.plot(result.rates, result.smoothed, color="C0", label="smoothed loss")
    ax.axvline(result.best, color="C3", linestyle="--", label=f"lowest loss at {result.best:.2g}")
    ax.axvline(result.suggested, color="C2", linestyle="--", label=f"suggested {result.suggested:.2g}")
    ax.axvspan(result.low, result.high, color="C2", alpha=0.1, label="suggested range")
    finite = [s for s in result.smoothed if math.isfinite(s)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), _DIVERGED * min(finite)) * 1.05)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_space(space: Space, result: RangeTest, path: str | Path) -> Path:
    """A copy of the space whose ``optimizer.learning_rate`` is the suggested log range.

    A grid space gets ``GRID_POINTS`` log-spaced rates from the range instead, and its
    ``budget.trials`` becomes the size of the new grid.

    The copy is validated before it is written; an existing file (the input included) is never
    overwritten. YAML comments of the original are not kept.
    """
    out = Path(path)
    if out.exists():
        raise ConfigError(
            f"--write-space {out}: the file exists; pick a new name (inputs are never overwritten)"
        )
    doc = yaml.safe_load(space.text)
    doc.setdefault("optimizer", {})
    low, high = float(f"{result.low:.3g}"), float(f"{result.high:.3g}")
    if space.sampler.type == "grid":  # a grid needs points: five log-spaced rates, and a budget to match
        points = np.geomspace(low, high, GRID_POINTS)
        doc["optimizer"]["learning_rate"] = [float(f"{v:.3g}") for v in points]
        grid = spaces.loads(yaml.safe_dump(doc, sort_keys=False), source=str(out)).grid()
        doc.setdefault("budget", {})["trials"] = math.prod(len(v) for v in grid.values())
    else:
        doc["optimizer"]["learning_rate"] = {"type": "float", "low": low, "high": high, "log": True}
    text = yaml.safe_dump(doc, sort_keys=False)
    spaces.loads(text, source=str(out))  # a space the loader rejects is not written
    out.write_text(text, encoding="utf-8")
    return out
