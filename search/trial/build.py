"""A trial's compiled Keras model: from the space's declarative model or its KerasTuner hypermodel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from search import keys
from search.errors import ConfigError
from search.hypermodels.loader import load_builder

if TYPE_CHECKING:
    import keras
    import optuna

    from search.trial.data import Dataset
    from spaces import Space

__all__ = ["build_model", "fresh_model"]


def build_model(
    space: Space, trial: optuna.trial.BaseTrial, params: Mapping[str, Any], data: Dataset
) -> keras.Model:
    """The compiled model for a trial, from the space's declarative model or its hypermodel.

    For a hypermodel, its parameters are suggested under their KerasTuner names and added to
    the trial's ``params`` user attr; with ``training.normalize`` the model gets the same
    ``Rescaling(1 / pixel_max)`` input layer as the declarative models (KerasTuner examples
    expect inputs in [0, 1]).
    """
    from search.trial.models import build

    if space.hypermodel is None:
        return build(
            params,
            family=space.family,
            input_shape=data.input_shape,
            num_classes=data.num_classes,
            pixel_max=data.pixel_max,
        )
    import keras

    from search.hypermodels.adapter import OptunaHyperParameters

    builder = load_builder(space.hypermodel)
    hp = OptunaHyperParameters(trial)
    model = builder(hp)
    trial.set_user_attr(keys.PARAMS, {**trial.user_attrs.get(keys.PARAMS, {}), **hp.values})
    where = f"hypermodel {space.hypermodel.spec}"
    if not isinstance(model, keras.Model):
        raise ConfigError(f"{where}: build(hp) must return a keras.Model, got {type(model).__name__}")
    config = model.get_compile_config() if getattr(model, "compiled", False) else None
    if config is None:
        raise ConfigError(f"{where}: build(hp) must compile the model (model.compile(...)), as in KerasTuner")
    wanted = {m.removeprefix("val_") for m in (*space.metrics, space.pruner.metric)} & {"accuracy"}
    if wanted and "accuracy" not in _metric_names(config.get("metrics")):
        raise ConfigError(f"{where}: the objectives need accuracy; compile with metrics=['accuracy']")
    if not params["normalize"]:
        return model
    inputs = keras.Input(shape=data.input_shape)
    scaled = keras.layers.Rescaling(1.0 / data.pixel_max)(inputs)
    wrapped = keras.Model(inputs, model(scaled))
    wrapped.compile_from_config(config)
    return wrapped


def _metric_names(metrics: Any) -> set[str]:
    """Names of compiled metrics from a compile config (strings or serialized metric objects)."""
    if isinstance(metrics, str):
        return {metrics}
    if isinstance(metrics, Mapping):
        inner = metrics.get("config")
        if isinstance(inner, Mapping) and isinstance(inner.get("name"), str):
            return {inner["name"]}
        return set().union(*(_metric_names(v) for v in metrics.values()))
    if isinstance(metrics, (list, tuple)):
        return set().union(*(_metric_names(m) for m in metrics))
    return set()


def fresh_model(
    space: Space, params: Mapping[str, Any], data: Dataset, *, seed: int, trial_params: Mapping[str, Any]
) -> keras.Model:
    """A model built outside a running trial (``evaluate``, ``lr-find``), in a clean, seeded session.

    ``trial_params`` are the Optuna parameters to replay (a hypermodel reads its ``hp`` values
    from them); ``params`` is the sampled dict of :meth:`spaces.Space.sample`.

    Raises:
        ConfigError: the configuration cannot be built.
    """
    import gc

    import keras
    import optuna

    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy("float32")
    try:
        return build_model(space, optuna.trial.FixedTrial(dict(trial_params)), params, data)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"impossible configuration: {e}") from e
