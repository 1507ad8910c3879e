"""Training a KerasTuner hypermodel that overrides ``HyperModel.fit``, with KerasTuner's contract.

KerasTuner calls ``hypermodel.fit(hp, model, *args, **kwargs)`` with what ``tuner.search`` was
given (the data, ``epochs``, ``validation_data``, ``callbacks``); the override may tune training
through ``hp`` (``shuffle=hp.Boolean("shuffle")``, ``batch_size=hp.Choice(...)``) and returns a
``History``, a dict of metrics or one number, which is then scored. hpsearch does the same:
the same ``hp`` that built the model suggests the override's hyperparameters through the
trial, its callbacks (curves, pruning, NaN guard, stop) go in ``callbacks``, and
``training.batch_size`` applies unless the override passes its own.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["overrides_fit", "run_fit", "scores"]


def overrides_fit(hypermodel: Any) -> bool:
    """Whether a ``kt.HyperModel`` instance has its own ``fit`` (a function hypermodel has none)."""
    if hypermodel is None:
        return False
    import keras_tuner as kt

    return type(hypermodel).fit is not kt.HyperModel.fit


def run_fit(
    hypermodel: Any,
    hp: Any,
    model: Any,
    data: Any,
    *,
    batch_size: int,
    epochs: int,
    callbacks: Sequence[Any],
    validate: bool = True,
) -> Any:
    """``hypermodel.fit(hp, model, x, y, validation_data=..., epochs=..., callbacks=...)``; its result.

    ``validate=False`` (``evaluate``'s retrain on train + validation, KerasTuner's way of
    retraining a best model): ``data.x_train`` / ``y_train`` only, no ``validation_data``.
    """
    model.fit = _with_default(model.fit, batch_size=batch_size)  # the override's own batch_size wins
    validation = {"validation_data": (data.x_val, data.y_val)} if validate else {}
    return hypermodel.fit(
        hp, model, data.x_train, data.y_train, **validation,
        epochs=epochs, callbacks=list(callbacks), verbose=0,
    )  # fmt: skip


def scores(result: Any, curves: Mapping[str, Sequence[float]], first_objective: str) -> dict[str, float]:
    """The metrics an override's result gives, as KerasTuner scores them.

    A dict: its numbers; one number: the first objective; a ``History`` (or ``None``): the last
    epoch of its ``history`` when the override did not pass hpsearch's callbacks on (``curves``
    empty). What the curves already hold is not repeated.
    """
    if isinstance(result, Mapping):
        return {str(k): float(v) for k, v in result.items() if _number(v)}
    if _number(result):
        return {first_objective: float(result)}
    history = getattr(result, "history", None)
    if isinstance(history, Mapping) and not any(curves.get(k) for k in history):
        return {str(k): float(v[-1]) for k, v in history.items() if v and _number(v[-1])}
    return {}


def _number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _with_default(fit: Callable[..., Any], **defaults: Any) -> Callable[..., Any]:
    @functools.wraps(fit)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return fit(*args, **{**defaults, **kwargs})

    return wrapped
