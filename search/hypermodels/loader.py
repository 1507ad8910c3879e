"""KerasTuner hypermodels as hpsearch models: load the user's file, check it, build per trial.

Safety rule: a hypermodel is user code, so it is imported only from a local file the user
pointed at -- the space file given to ``hpsearch run`` (relative to that file) or a worker's
``--hypermodel FILE.py:NAME``. A study stores the reference and the file's sha256, never code;
a worker checks its own copy against them (:func:`bind_worker`) and refuses a mismatch.

Example:
    >>> import spaces
    >>> space = spaces.load("kt-tutorial")
    >>> space.family, space.hypermodel.name
    ('hypermodel', 'build')
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.errors import ConfigError
from spaces.refs import file_sha256, split_spec
from spaces.space import HypermodelRef

if TYPE_CHECKING:
    import keras
    import optuna

    from search.trial.data import Dataset
    from spaces import Space

__all__ = [
    "HYPERMODEL_ATTR",
    "bind_worker",
    "build_model",
    "check_resume",
    "load_builder",
    "record",
    "worker_argument",
]

HYPERMODEL_ATTR = "hpsearch:hypermodel"
Builder = Callable[[Any], Any]
_BUILDERS: dict[tuple[str, str, str], Builder] = {}  # (file, sha256, name) -> build; per process


def load_builder(ref: HypermodelRef) -> Builder:
    """Import the hypermodel file once per process and return its ``build(hp)``.

    ``NAME`` may be a function ``build(hp)``, a ``kt.HyperModel`` subclass (instantiated with no
    arguments) or a ``kt.HyperModel`` instance.
    """
    if ref.file is None or ref.sha256 is None:
        raise ConfigError(f"hypermodel {ref.spec}: not bound to a local file; pass --hypermodel FILE.py:NAME")
    key = (ref.file, ref.sha256, ref.name)
    if key in _BUILDERS:
        return _BUILDERS[key]
    import keras_tuner as kt

    try:
        source = Path(ref.file).read_bytes()
    except OSError as e:
        raise ConfigError(f"hypermodel {ref.file}: cannot read: {e}") from e
    if hashlib.sha256(source).hexdigest() != ref.sha256:  # run exactly the bytes that were checked
        raise ConfigError(f"hypermodel {ref.file}: changed since it was checked; run again")
    module_name = f"hpsearch_hypermodel_{ref.sha256[:16]}"
    module = types.ModuleType(module_name)
    module.__file__ = ref.file
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        exec(compile(source, ref.file, "exec"), module.__dict__)
    except Exception as e:  # the user's module: any error is theirs, reported in one line
        del sys.modules[module_name]
        raise ConfigError(f"hypermodel {ref.file}: importing it failed: {type(e).__name__}: {e}") from e
    target = getattr(module, ref.name, None)
    if isinstance(target, type) and issubclass(target, kt.HyperModel):
        target = target()
    if isinstance(target, kt.HyperModel):
        builder: Builder = target.build
    elif callable(target):
        builder = target
    else:
        found = "nothing" if target is None else type(target).__name__
        raise ConfigError(
            f"hypermodel {ref.file}: {ref.name!r} must be a function build(hp) or a kt.HyperModel, "
            f"found {found}"
        )
    _BUILDERS[key] = builder
    return builder


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
    trial.set_user_attr("params", {**trial.user_attrs.get("params", {}), **hp.values})
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


def record(study: optuna.Study, space: Space) -> None:
    """Store a hypermodel space's reference and file hash in a new study."""
    ref = space.hypermodel
    if ref is not None:
        file = Path(ref.file).name if ref.file else None
        study.set_user_attr(
            HYPERMODEL_ATTR, {"spec": ref.spec, "name": ref.name, "file": file, "sha256": ref.sha256}
        )


def check_resume(attrs: Mapping[str, Any], space: Space, study_name: str) -> None:
    """Refuse to resume a study whose hypermodel file changed since it was created."""
    stored = attrs.get(HYPERMODEL_ATTR)
    ref = space.hypermodel
    if ref is None or not isinstance(stored, Mapping) or ref.sha256 is None:
        return
    if stored.get("sha256") != ref.sha256:
        raise ConfigError(
            f"study {study_name!r}: hypermodel {ref.file} changed since the study was created "
            f"(sha256 {ref.sha256[:12]}, study has {str(stored.get('sha256'))[:12]}); "
            "restore the file or pick another --study"
        )


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


def bind_worker(space: Space, attrs: Mapping[str, Any], study_name: str, hypermodel: str | None) -> Space:
    """Bind a study's hypermodel to the worker's own copy given as ``--hypermodel FILE.py:NAME``.

    Raises:
        ConfigError: the option is missing or not needed, malformed, the file is missing, or its
            name or sha256 differs from what the study recorded.
    """
    ref = space.hypermodel
    if ref is None:
        if hypermodel is not None:
            raise ConfigError(f"study {study_name!r} has no hypermodel; drop --hypermodel")
        return space
    if hypermodel is None:
        raise ConfigError(
            f"study {study_name!r} runs the hypermodel {ref.spec}; pass --hypermodel FILE.py:{ref.name} "
            "(your local copy: hpsearch never imports a path stored in a study)"
        )
    parts = split_spec(hypermodel)
    if parts is None:
        raise ConfigError(f"--hypermodel: expected FILE.py:NAME, got {hypermodel!r}")
    file, name = parts
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"--hypermodel: {file}: no such file")
    stored = attrs.get(HYPERMODEL_ATTR)
    want = stored.get("sha256") if isinstance(stored, Mapping) else None
    digest = file_sha256(path)
    if name != ref.name:
        raise ConfigError(f"--hypermodel {hypermodel}: the study runs {ref.name!r}, not {name!r}")
    if digest != want:
        raise ConfigError(
            f"--hypermodel {hypermodel}: sha256 {digest[:12]} differs from the study's "
            f"{str(want)[:12]}; use the same file the study was created with"
        )
    return dataclasses.replace(space, hypermodel=dataclasses.replace(ref, file=str(path), sha256=digest))


def worker_argument(space: Space) -> str | None:
    """``--hypermodel`` for local workers started by ``hpsearch run --workers K``."""
    ref = space.hypermodel
    return None if ref is None or ref.file is None else f"{ref.file}:{ref.name}"
