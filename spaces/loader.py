"""Load a space file (or a preset) into a validated :class:`~spaces.space.Space`.

Every problem is reported as one line ``FILE: FIELD: PROBLEM`` through ``ConfigError``.
YAML is read with ``yaml.safe_load`` only, so ``!!python/...`` tags are rejected.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from spaces import schema
from spaces.domains import FloatRange, Param
from spaces.errors import ConfigError
from spaces.fields import Err, as_bool, as_float, as_int, mapping, parse_params, show
from spaces.optuna import make_pruner, make_sampler
from spaces.refs import parse_hypermodel
from spaces.space import Budget, DatasetSpec, HypermodelRef, Objective, PrunerSpec, SamplerSpec, Space

__all__ = ["load", "loads", "presets"]

_TOP = (
    "name",
    "description",
    "seed",
    "dataset",
    "objectives",
    "sampler",
    "pruner",
    "budget",
    "model",
    "optimizer",
    "training",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def presets() -> dict[str, str]:
    """Preset names and their one-line descriptions, sorted by name."""
    out: dict[str, str] = {}
    for entry in sorted(resources.files("spaces").joinpath("presets").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            doc = yaml.safe_load(entry.read_text(encoding="utf-8"))
            out[entry.name[: -len(".yaml")]] = str(doc.get("description", "")).strip()
    return out


def load(path_or_preset: str | Path) -> Space:
    """Load a space from a YAML file, or from a preset when no such file exists.

    A bare name (no ``/`` and no ``.yaml``) that is not a file is looked up among the presets.
    """
    path = Path(path_or_preset)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read: {e}") from e
        return loads(text, source=str(path), base_dir=path.resolve().parent)
    name = str(path_or_preset)
    if "/" in name or name.endswith((".yaml", ".yml")):
        raise ConfigError(f"{name}: no such file")
    preset = resources.files("spaces").joinpath("presets", f"{name}.yaml")
    if not preset.is_file():
        known = ", ".join(presets())
        raise ConfigError(f"{name}: not a file and not a preset; presets: {known}")
    # a bundled preset is the user's explicit choice: its hypermodel resolves next to it
    base = Path(str(resources.files("spaces").joinpath("presets")))
    return loads(preset.read_text(encoding="utf-8"), source=f"preset {name}", base_dir=base)


def loads(text: str, *, source: str = "<space>", base_dir: Path | None = None) -> Space:
    """Parse and validate a space from YAML text; ``source`` names it in error messages.

    ``base_dir`` is the directory of the file the text came from: a ``model.hypermodel`` file
    is resolved (and hashed, never imported) against it. Without it -- text read back from a
    study -- the hypermodel stays unresolved and a worker must name its own copy.
    """
    err = Err(source)
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        line = f"line {e.problem_mark.line + 1}: " if e.problem_mark else ""
        raise err("", f"{line}invalid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:
        raise err("", f"invalid YAML: {e}") from e
    doc = mapping(doc, "", err, allowed=_TOP)
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise err("name", f"expected a name of letters, digits, '_', '-' or '.', got {name!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise err("description", f"expected text, got {description!r}")
    seed = as_int(doc.get("seed", 0), "seed", err, low=0)
    if seed >= 2**32:
        raise err("seed", f"expected an integer below 2**32, got {seed}")
    model = mapping(doc.get("model", {}), "model", err)
    objectives = _objectives(doc.get("objectives"), err)
    hypermodel: HypermodelRef | None = None
    if "hypermodel" in model:
        hypermodel = parse_hypermodel(model, doc, base_dir, err)
        family = "hypermodel"
        params = _training_params(doc, err)
    else:
        family = model.get("family", "mlp")
        if family not in schema.FAMILIES:
            raise err("model.family", f"expected one of {', '.join(schema.FAMILIES)}, got {family!r}")
        params = parse_params(doc, family, err)
    dataset = _dataset(doc.get("dataset"), err)
    sampler = _sampler(doc.get("sampler", {}), seed, len(objectives), err)
    pruner = _pruner(doc.get("pruner", {}), objectives, err)
    budget = _budget(doc.get("budget", {}), err)
    # what the trials mean: not the description, not how many of them to run
    meaning = {k: v for k, v in doc.items() if k not in ("description", "budget")}
    fingerprint = hashlib.sha256(json.dumps(meaning, sort_keys=True, default=str).encode()).hexdigest()[:16]
    space = Space(
        name=name,
        description=description.strip(),
        source=source,
        text=text,
        fingerprint=fingerprint,
        seed=seed,
        family=family,
        dataset=dataset,
        objectives=objectives,
        sampler=sampler,
        pruner=pruner,
        budget=budget,
        params=params,
        hypermodel=hypermodel,
    )
    if hypermodel is not None and space.sampler.type == "grid":
        raise err("sampler.type", "grid needs the whole space up front; a hypermodel's appears as it runs")
    if space.sampler.type == "grid":
        for p in params:
            if isinstance(p.domain, FloatRange) and p.domain.step is None:
                raise err(p.field, "the grid sampler needs a step for every float range")
    _check_buildable(space, err)
    return space


def _training_params(doc: dict[str, Any], err: Err) -> tuple[Param, ...]:
    """A hypermodel space's own parameters: the ``training`` section only."""
    params = parse_params({"training": doc.get("training", {})}, "mlp", err)
    kept = tuple(p for p in params if p.field.startswith("training."))
    names = {p.name for p in kept}
    for p in kept:
        if p.when is not None and p.when.key not in names:
            raise err(f"{p.field}.when", f"{p.when.key!r} is not a training parameter")
    return kept


def _check_buildable(space: Space, err: Err) -> None:
    """Build the sampler and pruner once, so that options Optuna rejects fail here, not mid-run."""

    for section, build in (
        ("pruner", lambda: make_pruner(space.pruner)),
        ("sampler", lambda: make_sampler(space)),
    ):
        try:
            build()
        except (TypeError, ValueError) as e:
            raise err(
                section, f"{space.pruner.type if section == 'pruner' else space.sampler.type}: {e}"
            ) from e


def _dataset(value: Any, err: Err) -> DatasetSpec:
    if value is None:
        raise err("dataset", f"required; one of {', '.join(schema.DATASETS)}")
    if isinstance(value, str):
        value = {"name": value}
    d = mapping(value, "dataset", err, allowed=("name", "validation_fraction", "limit"))
    name = d.get("name")
    if name not in schema.DATASETS:
        raise err("dataset.name", f"expected one of {', '.join(schema.DATASETS)}, got {name!r}")
    fraction = as_float(d.get("validation_fraction", 0.1), "dataset.validation_fraction", err)
    if not 0.0 < fraction <= 0.5:
        raise err("dataset.validation_fraction", f"expected a number in (0, 0.5], got {fraction:g}")
    limit = d.get("limit")
    if limit is not None:
        limit = as_int(limit, "dataset.limit", err, low=1)
    return DatasetSpec(name=name, validation_fraction=fraction, limit=limit)


def _objectives(value: Any, err: Err) -> tuple[Objective, ...]:
    if value is None:
        value = ["val_accuracy", "train_seconds"]
    if not isinstance(value, list) or not 1 <= len(value) <= 3:
        raise err("objectives", f"expected a list of 1 to 3 objectives, got {show(value)}")
    out: list[Objective] = []
    for i, item in enumerate(value):
        field = f"objectives[{i}]"
        if isinstance(item, str):
            item = {"metric": item}
        item = mapping(item, field, err, allowed=("metric", "direction"))
        metric = item.get("metric")
        if metric not in schema.METRICS:
            raise err(f"{field}.metric", f"expected one of {', '.join(schema.METRICS)}, got {metric!r}")
        natural = schema.METRICS[metric]
        direction = item.get("direction", natural)
        if direction != natural:
            raise err(f"{field}.direction", f"{metric} must be {natural}d, got {direction!r}")
        if any(o.metric == metric for o in out):
            raise err(f"{field}.metric", f"{metric} is listed twice")
        out.append(Objective(metric=metric, direction=direction))
    return tuple(out)


def _options(
    d: dict[str, Any], table: dict[str, schema.Option], field: str, err: Err
) -> MappingProxyType[str, Any]:
    out: dict[str, Any] = {}
    for key, (kind, default) in table.items():
        value = d.get(key, default)
        if value is None:
            continue
        if kind == "int":
            out[key] = as_int(value, f"{field}.{key}", err, low=0)
        elif kind == "float":
            out[key] = as_float(value, f"{field}.{key}", err)
        else:
            out[key] = as_bool(value, f"{field}.{key}", err)
    return MappingProxyType(out)


def _sampler(value: Any, seed: int, n_objectives: int, err: Err) -> SamplerSpec:
    d = mapping(value, "sampler", err)
    kind = d.get("type", "tpe")
    if kind not in schema.SAMPLERS:
        raise err("sampler.type", f"expected one of {', '.join(schema.SAMPLERS)}, got {kind!r}")
    registered = schema.SAMPLERS[kind]
    table = registered.options
    mapping(d, "sampler", err, allowed=("type", "seed", *table))
    if registered.single_objective and n_objectives > 1:
        many = ", ".join(k for k, s in schema.SAMPLERS.items() if not s.single_objective and k != "grid")
        raise err("sampler.type", f"{kind} supports one objective only; use one of {many}")
    if registered.needs is not None:
        module, how = registered.needs
        if importlib.util.find_spec(module) is None:
            raise err("sampler.type", f"{kind} needs the package {module!r}, which is not installed ({how})")
    s = as_int(d.get("seed", seed), "sampler.seed", err, low=0)
    return SamplerSpec(type=kind, seed=s, options=_options(d, table, "sampler", err))


def _pruner(value: Any, objectives: tuple[Objective, ...], err: Err) -> PrunerSpec:
    d = mapping(value, "pruner", err)
    kind = d.get("type", "none")
    if kind not in schema.PRUNERS:
        raise err("pruner.type", f"expected one of {', '.join(schema.PRUNERS)}, got {kind!r}")
    table = schema.PRUNERS[kind].options
    mapping(d, "pruner", err, allowed=("type", "metric", "patience", *table))
    default_metric = next((o.metric for o in objectives if o.metric in schema.EPOCH_METRICS), "val_accuracy")
    metric = d.get("metric", default_metric)
    if metric not in schema.EPOCH_METRICS:
        raise err("pruner.metric", f"expected one of {', '.join(schema.EPOCH_METRICS)}, got {metric!r}")
    if len(objectives) == 1 and kind != "none" and schema.METRICS[metric] != objectives[0].direction:
        raise err(
            "pruner.metric",
            f"{metric} is {schema.METRICS[metric]}d but the objective is "
            f"{objectives[0].direction}d; prune on a metric in the same direction",
        )
    patience = d.get("patience")
    if patience is not None:
        patience = as_int(patience, "pruner.patience", err, low=0)
    options = _options(d, table, "pruner", err)
    if kind == "percentile" and not 0.0 <= options["percentile"] <= 100.0:
        raise err("pruner.percentile", f"expected a number in [0, 100], got {options['percentile']:g}")
    return PrunerSpec(type=kind, metric=metric, options=options, patience=patience)


def _budget(value: Any, err: Err) -> Budget:
    d = mapping(value, "budget", err, allowed=("trials", "timeout", "trial_timeout"))
    trials = as_int(d.get("trials", 20), "budget.trials", err, low=1)
    timeout = d.get("timeout")
    if timeout is not None:
        timeout = as_float(timeout, "budget.timeout", err)
        if timeout <= 0:
            raise err("budget.timeout", f"expected seconds > 0, got {timeout:g}")
    trial_timeout = d.get("trial_timeout")
    if trial_timeout is not None:
        trial_timeout = as_float(trial_timeout, "budget.trial_timeout", err)
        if trial_timeout <= 0:
            raise err("budget.trial_timeout", f"expected seconds > 0, got {trial_timeout:g}")
    return Budget(trials=trials, timeout=timeout, trial_timeout=trial_timeout)
