"""The top-level sections of a space file that are not parameters: dataset, objectives, sampler,
pruner and budget, each checked into its frozen spec.

Every problem becomes one ``FILE: FIELD: PROBLEM`` line through :class:`~spaces.fields.Err`.

Example:
    >>> from spaces.fields import Err
    >>> budget({"trials": 30}, Err("s.yaml"))
    Budget(trials=30, timeout=None, trial_timeout=None)
"""

from __future__ import annotations

import importlib.util
from types import MappingProxyType
from typing import Any

from spaces import schema
from spaces.fields import Err, as_bool, as_float, as_int, known, mapping, show
from spaces.limits import MAX_OPTION, MAX_TRIALS
from spaces.space import Budget, DatasetSpec, Objective, PrunerSpec, SamplerSpec

__all__ = ["budget", "dataset", "objectives", "pruner", "sampler"]


def dataset(value: Any, err: Err) -> DatasetSpec:
    if value is None:
        raise err("dataset", f"required; one of {', '.join(schema.DATASETS)}")
    if isinstance(value, str):
        value = {"name": value}
    d = mapping(value, "dataset", err, allowed=("name", "validation_fraction", "limit"))
    name = d.get("name")
    if not known(name, schema.DATASETS):
        raise err("dataset.name", f"expected one of {', '.join(schema.DATASETS)}, got {name!r}")
    fraction = as_float(d.get("validation_fraction", 0.1), "dataset.validation_fraction", err)
    if not 0.0 < fraction <= 0.5:
        raise err("dataset.validation_fraction", f"expected a number in (0, 0.5], got {fraction:g}")
    limit = d.get("limit")
    if limit is not None:
        limit = as_int(limit, "dataset.limit", err, low=1)
    return DatasetSpec(name=name, validation_fraction=fraction, limit=limit)


def objectives(value: Any, err: Err) -> tuple[Objective, ...]:
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
        if not known(metric, schema.METRICS):
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
            out[key] = as_int(value, f"{field}.{key}", err, low=0, high=MAX_OPTION)
        elif kind == "float":
            out[key] = as_float(value, f"{field}.{key}", err)
        else:
            out[key] = as_bool(value, f"{field}.{key}", err)
    return MappingProxyType(out)


def sampler(value: Any, seed: int, n_objectives: int, err: Err) -> SamplerSpec:
    d = mapping(value, "sampler", err)
    kind = d.get("type", "tpe")
    if not known(kind, schema.SAMPLERS):
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


def pruner(value: Any, goals: tuple[Objective, ...], err: Err) -> PrunerSpec:
    d = mapping(value, "pruner", err)
    kind = d.get("type", "none")
    if not known(kind, schema.PRUNERS):
        raise err("pruner.type", f"expected one of {', '.join(schema.PRUNERS)}, got {kind!r}")
    table = schema.PRUNERS[kind].options
    mapping(d, "pruner", err, allowed=("type", "metric", "patience", *table))
    default_metric = next((o.metric for o in goals if o.metric in schema.EPOCH_METRICS), "val_accuracy")
    metric = d.get("metric", default_metric)
    if not known(metric, schema.EPOCH_METRICS):
        raise err("pruner.metric", f"expected one of {', '.join(schema.EPOCH_METRICS)}, got {metric!r}")
    if len(goals) == 1 and kind != "none" and schema.METRICS[metric] != goals[0].direction:
        raise err(
            "pruner.metric",
            f"{metric} is {schema.METRICS[metric]}d but the objective is "
            f"{goals[0].direction}d; prune on a metric in the same direction",
        )
    patience = d.get("patience")
    if patience is not None:
        patience = as_int(patience, "pruner.patience", err, low=0)
    options = _options(d, table, "pruner", err)
    if kind == "percentile" and not 0.0 <= options["percentile"] <= 100.0:
        raise err("pruner.percentile", f"expected a number in [0, 100], got {options['percentile']:g}")
    return PrunerSpec(type=kind, metric=metric, options=options, patience=patience)


def budget(value: Any, err: Err) -> Budget:
    d = mapping(value, "budget", err, allowed=("trials", "timeout", "trial_timeout"))
    trials = as_int(d.get("trials", 20), "budget.trials", err, low=1)
    if trials > MAX_TRIALS:  # the budget is queued as WAITING trials when the study is created
        raise err("budget.trials", f"expected at most {MAX_TRIALS:,} trials per study, got {trials:,}")
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
