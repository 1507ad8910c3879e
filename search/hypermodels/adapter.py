"""KerasTuner's ``HyperParameters`` API on top of an Optuna trial.

:class:`OptunaHyperParameters` is a ``keras_tuner.HyperParameters``: KerasTuner's own code
validates every ``hp.Int`` / ``hp.Float`` / ``hp.Choice`` / ``hp.Boolean`` / ``hp.Fixed`` call,
keeps name scopes and ``conditional_scope``, and answers ``hp.values``, ``hp.get`` and
``hp["name"]``. The one difference: when a hyperparameter is first registered *and active*,
its value comes from the Optuna trial under the same name, instead of from its default.
Inactive ones (a ``conditional_scope`` whose parent has another value) return ``None`` and
are never suggested, so they do not appear in the trial's parameters.

How each KerasTuner type maps to Optuna (:func:`suggest`):

=================================================  ===============================================
KerasTuner                                         Optuna
=================================================  ===============================================
``Int(min, max, step=s)`` (linear; s defaults 1)   ``suggest_int(min, max', step=s)``, ``max'`` the
                                                   last grid point <= max (KerasTuner's grid)
``Int(..., sampling="log")`` without step          ``suggest_int(min, max, log=True)``
``Float(min, max)`` / with ``step``                ``suggest_float(min, max[', step])``
``Float(..., sampling="log")`` without step        ``suggest_float(min, max, log=True)``
``Int``/``Float`` ``sampling="log"`` with step     ``suggest_categorical`` of KerasTuner's own
                                                   grid ``min * step**k`` (values exact; the
                                                   sampler does not see their order)
``sampling="reverse_log"``                         rejected (:class:`ConfigError`): Optuna has no
                                                   such distribution
``Choice(values, ordered=...)``                    ``suggest_categorical(values)`` (``ordered`` is
                                                   not used by Optuna's samplers)
``Boolean``                                        ``suggest_categorical([False, True])``
``Fixed(value)``                                   ``suggest_categorical([value])``: shown in the
                                                   study, never searched
``default=``                                       the value when built without a trial
                                                   (``OptunaHyperParameters(None)``), as in
                                                   ``build(kt.HyperParameters())``
=================================================  ===============================================

Example:
    >>> import optuna
    >>> trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    >>> hp = OptunaHyperParameters(trial)
    >>> units = hp.Int("units", min_value=32, max_value=512, step=32)
    >>> units % 32 == 0 and trial.params["units"] == units
    True
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from search.errors import ConfigError
from storage import compat

if TYPE_CHECKING:
    import optuna

__all__ = ["OptunaHyperParameters", "suggest", "supported"]


_Base: Any = compat.suggesting_hyperparameters()  # keras_tuner.HyperParameters, hooked


class OptunaHyperParameters(_Base):
    """A ``keras_tuner.HyperParameters`` whose active values are suggested by ``trial``.

    Args:
        trial: the Optuna trial to sample from; ``None`` gives KerasTuner's defaults.
    """

    def __init__(self, trial: optuna.trial.BaseTrial | None = None) -> None:
        super().__init__()
        self.trial = trial

    def suggest(self, hyperparameter: Any) -> Any:
        """The value of a newly registered, active hyperparameter (its default without a trial)."""
        if self.trial is None:  # the default value, once it is known Optuna can sample it
            supported(hyperparameter)
            return self.values[hyperparameter.name]
        return suggest(self.trial, hyperparameter)


def supported(hp: Any) -> str:
    """The KerasTuner kind of ``hp`` (fixed, boolean, choice, int, float) if Optuna can sample it.

    Raises:
        ConfigError: a kind or ``sampling`` Optuna has no equivalent for.
    """
    kind = str(compat.kt_kind(hp))
    if kind not in ("fixed", "boolean", "choice", "int", "float"):
        raise ConfigError(f"hyperparameter {hp.name!r}: {type(hp).__name__} has no Optuna equivalent")
    if kind in ("int", "float") and hp.sampling == "reverse_log":
        raise ConfigError(
            f"hyperparameter {hp.name!r}: sampling='reverse_log' has no Optuna equivalent; "
            "use 'log' or 'linear'"
        )
    return kind


def suggest(trial: optuna.trial.BaseTrial, hp: Any) -> Any:
    """Sample one KerasTuner hyperparameter object through Optuna under its own name."""
    name = hp.name
    kind = supported(hp)
    if kind == "fixed":
        return trial.suggest_categorical(name, [hp.value])
    if kind == "boolean":
        return trial.suggest_categorical(name, [False, True])
    if kind == "choice":
        return trial.suggest_categorical(name, list(hp.values))
    is_int = kind == "int"
    low, high, step = hp.min_value, hp.max_value, hp.step
    if hp.sampling == "log":
        if step is None:
            if is_int:
                return trial.suggest_int(name, low, high, log=True)
            return trial.suggest_float(name, low, high, log=True)
        grid = [int(v) if is_int else float(v) for v in hp.values]  # KerasTuner's min * step**k
        return trial.suggest_categorical(name, grid)
    if step is None:  # linear Float without a step
        return trial.suggest_float(name, low, high)
    # the last grid point <= max (with a float tolerance), printed short so that Optuna's
    # decimal divisibility check sees 0.9, not 0.8999999999999999
    last = low + math.floor((high - low) / step + 1e-9) * step
    if is_int:
        return trial.suggest_int(name, low, int(last), step=step)
    return trial.suggest_float(name, low, float(f"{last:.12g}"), step=step)
