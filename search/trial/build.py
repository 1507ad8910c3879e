"""A trial's compiled Keras model: from the space's declarative model or its KerasTuner hypermodel.

Building runs code hpsearch does not control (Keras, a hypermodel's ``build(hp)``, a custom
layer); :func:`failure_reason` says which of its exceptions are the trial's own failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna

from search import keys
from search.errors import ConfigError, StorageError, TrialFailed, WorkerStopping
from search.hypermodels.loader import first_line, load_builder, where
from spaces import schema

if TYPE_CHECKING:
    import keras

    from search.trial.data import Dataset
    from spaces import HypermodelRef, Space

__all__ = [
    "build_hypermodel",
    "build_model",
    "check_hypermodel",
    "failure_reason",
    "fresh_model",
    "label_encoding",
]

# a database that cannot be reached is not the trial's fault: these propagate (see storage.retry)
_STORAGE_LIBRARIES = ("sqlalchemy", "grpc", "psycopg", "psycopg2", "sqlite3")
_OOM_TYPES = ("MemoryError", "ResourceExhaustedError", "OutOfMemoryError")  # Python, TensorFlow, PyTorch
_OOM_TEXT = ("out of memory", "oom when allocating", "resource_exhausted", "dst tensor is not initialized")


def build_model(
    space: Space, trial: optuna.trial.BaseTrial, params: Mapping[str, Any], data: Dataset
) -> keras.Model:
    """The compiled model for a trial, from the space's declarative model or its hypermodel.

    For a hypermodel, its parameters are suggested under their KerasTuner names and added to
    the trial's ``params`` user attr; with ``training.normalize`` the model gets the same
    ``Rescaling(1 / pixel_max)`` input layer as the declarative models (KerasTuner examples
    expect inputs in [0, 1]).

    Raises:
        ConfigError: the hypermodel's model is not a compiled ``keras.Model`` with the metrics
            the objectives need. Whatever Keras or ``build(hp)`` raise passes through unchanged;
            :func:`failure_reason` describes it.
    """
    from search.trial.models import build

    if space.hypermodel is None:
        return build(
            params,
            family=space.family,
            input_shape=data.input_shape,
            num_classes=data.num_classes,
            pixel_max=data.pixel_max,
            metrics=[m for m in space.logged if m not in ("accuracy", "loss")],
            feature_stats=None if data.is_image else data.feature_stats,
        )
    from search.hypermodels.adapter import OptunaHyperParameters

    return build_hypermodel(space, OptunaHyperParameters(trial), params, data)


def build_hypermodel(space: Space, hp: Any, params: Mapping[str, Any], data: Dataset) -> keras.Model:
    """The compiled model of a space's hypermodel for ``hp`` (an ``OptunaHyperParameters``)."""
    import keras

    if space.hypermodel is None:
        raise ValueError(f"space {space.name} has no hypermodel")
    trial = hp.trial
    builder = load_builder(space.hypermodel)
    model = builder(hp)
    if trial is not None:
        trial.set_user_attr(keys.PARAMS, {**trial.user_attrs.get(keys.PARAMS, {}), **hp.values})
    name = f"hypermodel {space.hypermodel.spec}"
    if not isinstance(model, keras.Model):
        raise ConfigError(f"{name}: build(hp) must return a keras.Model, got {type(model).__name__}")
    config = model.get_compile_config() if getattr(model, "compiled", False) else None
    if config is None:
        raise ConfigError(f"{name}: build(hp) must compile the model (model.compile(...)), as in KerasTuner")
    wanted = {m.removeprefix("val_") for m in (*space.metrics, space.pruner.metric)} & {"accuracy"}
    if wanted and "accuracy" not in _metric_names(config.get("metrics")):
        raise ConfigError(f"{name}: the objectives need accuracy; compile with metrics=['accuracy']")
    if not params["normalize"]:
        return model
    inputs = keras.Input(shape=data.input_shape)
    if data.is_image:
        scaled = keras.layers.Rescaling(1.0 / data.pixel_max)(inputs)
    else:
        mean, variance = data.feature_stats
        scaled = keras.layers.Normalization(mean=mean, variance=variance)(inputs)
    try:
        wrapped = keras.Model(inputs, model(scaled))
    except (ValueError, TypeError) as e:  # the hypermodel's own Input disagrees with the data
        raise ConfigError(
            f"{name}: its model does not take {data.name}'s samples of shape {data.input_shape}: "
            + first_line(e)
        ) from e
    wrapped.compile_from_config(config)
    return wrapped


def check_hypermodel(space: Space, data: Dataset) -> None:
    """Build a space's hypermodel once with its default values and score it on a few samples.

    What would fail every trial fails here, in one line, before a study is written: a
    constructor that needs arguments, a ``build(hp)`` error, an input shape that is not the
    data's, a loss that does not fit the labels, an objective the model does not log.

    Raises:
        ConfigError: what went wrong, naming the hypermodel.
    """
    import keras

    from search.hypermodels.adapter import OptunaHyperParameters

    ref = space.hypermodel
    if ref is None:
        return
    normalize = next((p.domain for p in space.params if p.name == "normalize"), None)
    params = {"normalize": getattr(normalize, "value", True)}
    try:
        model = build_hypermodel(space, OptunaHyperParameters(None), params, data)
    except Exception as e:
        reason = failure_reason(e, during="build", hypermodel=ref)
        if reason is None:
            raise
        keras.backend.clear_session()
        raise ConfigError(f"{reason} (built once with its default values)") from e
    try:  # the data through the compiled model: its input shape, its loss against the labels
        ds = data.one_hot() if label_encoding(model) == "one_hot" else data
        logged = model.evaluate(ds.x_val[:32], ds.y_val[:32], verbose=0, return_dict=True)
    except Exception as e:
        if failure_reason(e, during="train", hypermodel=ref) is None:
            raise
        line = where(e, ref.file)
        at = "" if line is None else f" (line {line})"
        raise ConfigError(
            f"hypermodel {ref.spec}: its model (default values) fails on {data.name}'s samples of shape "
            f"{data.input_shape}{at}: {type(e).__name__}: {first_line(e)}"
        ) from e
    finally:
        keras.backend.clear_session()
    names = {*logged, *(f"val_{k}" for k in logged)}
    wanted = [m for m in (*space.metrics, space.pruner.metric) if m not in schema.STUDY_METRICS]
    if space.pruner.type == "none":
        wanted = wanted[: len(space.metrics)]
    for metric in dict.fromkeys(wanted):
        if metric not in names:
            raise ConfigError(
                f"hypermodel {ref.spec}: the model logs no {metric} (it logs {', '.join(sorted(logged))}); "
                "compile it with that metric, or pick another objective"
            )


def label_encoding(model: keras.Model) -> str:
    """How the compiled loss wants the labels: ``"sparse"`` indices, or ``"one_hot"`` rows.

    KerasTuner's guide compiles ``categorical_crossentropy`` on one-hot labels; hpsearch keeps
    labels as indices and hands such a model one-hot ones, as a KerasTuner user would.
    """
    loss = getattr(model, "loss", None)
    if isinstance(loss, str) or loss is None:
        text = loss or ""
    else:  # a Loss object (its name) or a loss function (its __name__)
        text = getattr(loss, "name", None) or getattr(loss, "__name__", "") or type(loss).__name__
    text = text.lower().replace("_", "")
    if "sparse" in text or "binary" in text:
        return "sparse"
    if "categorical" in text or "kldivergence" in text or "poisson" in text:
        return "one_hot"
    return "sparse"


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
        ConfigError: the configuration cannot be built (the reason of :func:`failure_reason`).
    """
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy("float32")
    try:
        return build_model(space, optuna.trial.FixedTrial(dict(trial_params)), params, data)
    except Exception as e:
        reason = failure_reason(e, during="build", hypermodel=space.hypermodel)
        if reason is None:
            raise
        raise ConfigError(reason) from e


def failure_reason(error: Exception, *, during: str, hypermodel: HypermodelRef | None = None) -> str | None:
    """Why a trial failed, when ``error`` came from building (``during="build"``) or training its model.

    Any exception of Keras, a hypermodel's ``build(hp)`` or a custom layer is the trial's own
    failure, described in one line: out of memory, an impossible configuration (a ``ValueError``
    or ``TypeError`` of a declarative model), or what the hypermodel raised and where. ``None``
    for what is not the trial's fault and must reach the worker: a database error, a stop
    (SIGTERM / SIGINT), a pruning decision.

    Example:
        >>> failure_reason(MemoryError("no room"), during="build")
        'out of memory while building the model: no room'
        >>> failure_reason(ValueError("kernel larger than the image"), during="build")
        'impossible configuration: kernel larger than the image'
        >>> failure_reason(WorkerStopping(3), during="train") is None
        True
    """
    if _not_the_trials(error):
        return None
    if isinstance(error, (TrialFailed, ConfigError)):  # already one line of ours
        return str(error)
    phase = "building the model" if during == "build" else "training"
    text = first_line(error)
    if type(error).__name__ in _OOM_TYPES or any(t in text.lower() for t in _OOM_TEXT):
        return f"out of memory while {phase}: {_strip_tf_node(text)}"
    kind = type(error).__name__
    line = None if hypermodel is None else where(error, hypermodel.file)
    if hypermodel is not None and during == "build":
        at = "" if line is None else f" at line {line}"
        return f"hypermodel {hypermodel.spec}: build(hp) raised {kind}{at}: {text}"
    if during == "build" and isinstance(error, (ValueError, TypeError)):
        return f"impossible configuration: {text}"
    at = "" if hypermodel is None or line is None else f" (hypermodel {hypermodel.spec}, line {line})"
    return f"{phase} raised {kind}{at}: {_strip_tf_node(text)}"


def _not_the_trials(error: BaseException) -> bool:
    """A stop, a pruning decision, or a database error anywhere in the exception's chain."""
    if isinstance(error, (WorkerStopping, optuna.TrialPruned)):
        return True
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (StorageError, optuna.exceptions.StorageInternalError)):
            return True
        if type(seen).__module__.split(".")[0] in _STORAGE_LIBRARIES:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _strip_tf_node(text: str) -> str:
    """TensorFlow's messages start with ``{{function_node ...}}``; the rest says what happened."""
    if text.startswith("{{") and "}}" in text:
        return text[text.index("}}") + 2 :].strip()
    return text
