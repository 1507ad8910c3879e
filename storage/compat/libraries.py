"""optuna-dashboard, KerasTuner and TensorFlow internals (see the package); each loads lazily."""

from __future__ import annotations

import functools
import sys
from typing import Any

# -- optuna-dashboard ------------------------------------------------------------------------------


def dashboard_note_attrs(trial: int, body: str) -> dict[str, Any]:
    """The study system attrs that hold a trial's optuna-dashboard note, as version 1.

    Public API: ``optuna_dashboard.save_note`` reads every note of the study twice to find the
    version and stale chunks (43-47 ms per trial at 1,000 trials on SQLite here); a trial's note
    is written once, when it ends, so version 1 is known.
    """
    from optuna_dashboard._note import note_ver_key, split_body  # the note's storage format

    return {note_ver_key(trial): 1, **split_body(body, trial)}


# -- KerasTuner ------------------------------------------------------------------------------------


def kt_kind(hp: Any) -> str | None:
    """``fixed``, ``boolean``, ``choice``, ``int`` or ``float`` for a KerasTuner hyperparameter.

    Public API: the classes are reachable only as ``keras_tuner.engine.hyperparameters.*``
    (KerasTuner documents the ``hp.Int(...)`` methods, not the classes they register).
    """
    import keras_tuner as kt

    types = kt.engine.hyperparameters
    for name, cls in (
        ("fixed", types.Fixed),
        ("boolean", types.Boolean),
        ("choice", types.Choice),
        ("int", types.Int),
        ("float", types.Float),
    ):
        if isinstance(hp, cls):
            return name
    return None


@functools.cache
def suggesting_hyperparameters() -> type:
    """A ``keras_tuner.HyperParameters`` subclass whose newly registered, active values come from
    ``self.suggest(hp)`` instead of their defaults.

    Public API: none; every ``hp.Int`` / ``hp.Choice`` / ... call goes through the private
    ``HyperParameters._register``, where KerasTuner validates the hyperparameter, applies name
    scopes and conditions, and sets its default. Overriding it keeps all of that.
    """
    import keras_tuner as kt

    class SuggestingHyperParameters(kt.HyperParameters):
        def suggest(self, hyperparameter: Any) -> Any:  # pragma: no cover - overridden
            raise NotImplementedError

        def _register(self, hyperparameter: Any, overwrite: bool = False) -> Any:
            fresh = hyperparameter.name not in self.values
            value = super()._register(hyperparameter, overwrite)  # validates; sets the default if active
            if not fresh or hyperparameter.name not in self.values:
                return value  # an already sampled name, or inactive (None)
            value = self.suggest(hyperparameter)
            self.values[hyperparameter.name] = value
            return value

    return SuggestingHyperParameters


# -- TensorFlow ------------------------------------------------------------------------------------


def release_custom_gradients() -> int:
    """Forget the gradient functions graph-mode ``tf.custom_gradient`` registered; how many.

    Public API: none. Each trace of a ``tf.custom_gradient`` function (one Keras ``fit``
    registered two here) registers its gradient as ``CustomGradient-<uid>`` in TensorFlow's
    process-global gradient registry and never removes it; the entry holds the traced graph, so
    every trial left 4-7 MB behind in a worker (benchmarks/memory.py: 3.84 MiB per tiny digits
    trial without this, 0.33 MiB with it). Call it only between trials, with nothing being
    traced: a finished trace no longer looks its gradient up. A no-op until TensorFlow is
    imported.
    """
    ops = sys.modules.get("tensorflow.python.framework.ops")
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if not isinstance(registry, dict):
        return 0
    stale = [name for name in registry if str(name).startswith("CustomGradient-")]
    for name in stale:
        del registry[name]
    return len(stale)
