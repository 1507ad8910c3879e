"""The top-level sections of a space file that are not parameters: objectives (and the metrics
the model logs), sampler, pruner and budget, each checked into its frozen spec (the dataset:
:mod:`spaces.datasets`).

Every problem becomes one ``FILE: FIELD: PROBLEM`` line through :class:`~spaces.fields.Err`.

Example:
    >>> from spaces.fields import Err
    >>> budget({"trials": 30}, Err("s.yaml"))
    Budget(trials=30, timeout=None, trial_timeout=None)
"""

from __future__ import annotations

import importlib.util
import re
from types import MappingProxyType
from typing import Any

from spaces import schema
from spaces.fields import Err, as_bool, as_float, as_int, known, mapping, show
from spaces.limits import MAX_OPTION, MAX_TRIALS
from spaces.space import Budget, Objective, PrunerSpec, SamplerSpec

__all__ = ["budget", "logged_metrics", "objectives", "pruner", "sampler"]


def logged_metrics(value: Any, err: Err) -> tuple[str, ...]:
    """``training.metrics``: Keras metrics the declarative model logs besides accuracy and loss."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise err("training.metrics", f"expected a list of metric names, got {show(value)}")
    out: list[str] = []
    for i, name in enumerate(value):
        if not known(name, schema.KERAS_METRICS):
            choices = ", ".join(schema.KERAS_METRICS)
            raise err(f"training.metrics[{i}]", f"expected one of {choices}, got {show(name)}")
        if name not in out:
            out.append(name)
    return tuple(out)


def objectives(value: Any, logged: tuple[str, ...] | None, err: Err) -> tuple[Objective, ...]:
    """The objectives; ``logged``: the epoch metrics the model logs (``None``: a hypermodel, any).

    A well-known metric has its natural direction (maximizing ``val_loss`` is an error); any
    other a hypermodel logs needs ``direction``.
    """
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
        metric = _metric(item.get("metric"), logged, f"{field}.metric", err)
        natural = schema.METRICS.get(metric)
        direction = item.get("direction", natural)
        if direction not in ("maximize", "minimize"):
            if direction is None:
                raise err(
                    f"{field}.direction", f"{metric} is not a metric hpsearch knows: give its direction"
                )
            raise err(f"{field}.direction", f"expected maximize or minimize, got {show(direction)}")
        if natural is not None and direction != natural:
            raise err(f"{field}.direction", f"{metric} must be {natural}d, got {direction!r}")
        if any(o.metric == metric for o in out):
            raise err(f"{field}.metric", f"{metric} is listed twice")
        out.append(Objective(metric=metric, direction=direction))
    return tuple(out)


def _metric(metric: Any, logged: tuple[str, ...] | None, field: str, err: Err, *, epoch: bool = False) -> str:
    """A metric name the objectives or the pruner may use: logged per epoch, or measured by hpsearch."""
    study = () if epoch else tuple(schema.STUDY_METRICS)
    if logged is None:  # a hypermodel: any name it may log, checked when it is built once
        if not isinstance(metric, str) or not _IDENTIFIER.match(metric):
            raise err(field, f"expected a metric name the model logs, got {show(metric)}")
        if epoch and metric in schema.STUDY_METRICS:
            raise err(field, f"{metric} is measured once per trial, not per epoch")
        return metric
    names = (*(f"{p}{m}" for m in logged for p in ("val_", "")), *study)
    if epoch and metric in schema.STUDY_METRICS:
        raise err(field, f"{metric} is measured once per trial, not per epoch; prune on {', '.join(names)}")
    if not known(metric, names):
        extra = "" if len(logged) > 2 else "; add others with training.metrics (e.g. [auc])"
        raise err(field, f"expected one of {', '.join(names)}, got {metric!r}{extra}")
    return metric


# samplers that learn from trials: their first trial is the space's centre unless baseline: false
BASELINE_SAMPLERS = ("tpe", "gp", "cmaes")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


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
    mapping(d, "sampler", err, allowed=("type", "seed", "baseline", *table))
    if registered.single_objective and n_objectives > 1:
        many = ", ".join(k for k, s in schema.SAMPLERS.items() if not s.single_objective and k != "grid")
        raise err("sampler.type", f"{kind} supports one objective only; use one of {many}")
    if registered.needs is not None:
        module, how = registered.needs
        if importlib.util.find_spec(module) is None:
            raise err("sampler.type", f"{kind} needs the package {module!r}, which is not installed ({how})")
    s = as_int(d.get("seed", seed), "sampler.seed", err, low=0)
    first = as_bool(d.get("baseline", kind in BASELINE_SAMPLERS), "sampler.baseline", err)
    return SamplerSpec(type=kind, seed=s, options=_options(d, table, "sampler", err), baseline=first)


def pruner(value: Any, goals: tuple[Objective, ...], logged: tuple[str, ...] | None, err: Err) -> PrunerSpec:
    d = mapping(value, "pruner", err)
    kind = d.get("type", "asha" if len(goals) == 1 else "none")
    if not known(kind, schema.PRUNERS):
        raise err("pruner.type", f"expected one of {', '.join(schema.PRUNERS)}, got {kind!r}")
    table = schema.PRUNERS[kind].options
    mapping(d, "pruner", err, allowed=("type", "metric", "patience", *table))
    default = next((o.metric for o in goals if o.metric not in schema.STUDY_METRICS), "val_accuracy")
    metric = _metric(d.get("metric", default), logged, "pruner.metric", err, epoch=True)
    direction = next((o.direction for o in goals if o.metric == metric), schema.METRICS.get(metric))
    if direction not in ("maximize", "minimize"):
        raise err("pruner.metric", f"{metric}: its direction is unknown; list it among the objectives")
    if len(goals) == 1 and kind != "none" and direction != goals[0].direction:
        raise err(
            "pruner.metric",
            f"{metric} is {direction}d but the objective is "
            f"{goals[0].direction}d; prune on a metric in the same direction",
        )
    patience = d.get("patience")
    if patience is not None:
        patience = as_int(patience, "pruner.patience", err, low=0)
    options = _options(d, table, "pruner", err)
    if kind == "asha" and options["reduction_factor"] < 2:
        raise err("pruner.reduction_factor", f"expected an integer >= 2, got {options['reduction_factor']}")
    if kind == "asha" and options["min_epochs"] < 1:
        raise err("pruner.min_epochs", f"expected an integer >= 1, got {options['min_epochs']}")
    if kind == "percentile" and not 0.0 <= options["percentile"] <= 100.0:
        raise err("pruner.percentile", f"expected a number in [0, 100], got {options['percentile']:g}")
    return PrunerSpec(
        type=kind, metric=metric, options=options, patience=patience,
        direction="maximize" if direction == "maximize" else "minimize",
    )  # fmt: skip


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
