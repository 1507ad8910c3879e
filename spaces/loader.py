"""Load a space file (or a preset) into a validated :class:`~spaces.space.Space`.

Every problem is reported as one line ``FILE: FIELD: PROBLEM`` through ``ConfigError``.
YAML is read with ``yaml.safe_load`` only, so ``!!python/...`` tags are rejected.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import re
from dataclasses import replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from search.errors import ConfigError
from spaces import schema
from spaces.domains import Choice, Condition, Domain, Fixed, FloatRange, IntRange, Param
from spaces.space import Budget, DatasetSpec, Objective, PrunerSpec, SamplerSpec, Space

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
_DOMAIN_KEYS = ("type", "low", "high", "step", "log", "choices", "when")


class _Err:
    """Builds one-line errors that name the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, field: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {field}: {problem}" if field else f"{self.source}: {problem}")


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
        return loads(text, source=str(path))
    name = str(path_or_preset)
    if "/" in name or name.endswith((".yaml", ".yml")):
        raise ConfigError(f"{name}: no such file")
    preset = resources.files("spaces").joinpath("presets", f"{name}.yaml")
    if not preset.is_file():
        known = ", ".join(presets())
        raise ConfigError(f"{name}: not a file and not a preset; presets: {known}")
    return loads(preset.read_text(encoding="utf-8"), source=f"preset {name}")


def loads(text: str, *, source: str = "<space>") -> Space:
    """Parse and validate a space from YAML text; ``source`` names it in error messages."""
    err = _Err(source)
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        line = f"line {e.problem_mark.line + 1}: " if e.problem_mark else ""
        raise err("", f"{line}invalid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:
        raise err("", f"invalid YAML: {e}") from e
    doc = _mapping(doc, "", err, allowed=_TOP)
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise err("name", f"expected a name of letters, digits, '_', '-' or '.', got {name!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise err("description", f"expected text, got {description!r}")
    seed = _int(doc.get("seed", 0), "seed", err, low=0)
    if seed >= 2**32:
        raise err("seed", f"expected an integer below 2**32, got {seed}")
    model = _mapping(doc.get("model", {}), "model", err)
    family = model.get("family", "mlp")
    if family not in schema.FAMILIES:
        raise err("model.family", f"expected one of {', '.join(schema.FAMILIES)}, got {family!r}")
    objectives = _objectives(doc.get("objectives"), err)
    params = _params(doc, family, err)
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
    )
    if space.sampler.type == "grid":
        for p in params:
            if isinstance(p.domain, FloatRange) and p.domain.step is None:
                raise err(p.field, "the grid sampler needs a step for every float range")
    _check_buildable(space, err)
    return space


def _check_buildable(space: Space, err: _Err) -> None:
    """Build the sampler and pruner once, so that options Optuna rejects fail here, not mid-run."""
    from search.study import make_pruner, make_sampler  # the one place that maps names to Optuna

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


# ---------------------------------------------------------------- sections


def _mapping(value: Any, field: str, err: _Err, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        if not field:
            raise err("", f"expected a YAML mapping at the top, got {_show(value)}")
        raise err(field, f"expected a mapping, got {_show(value)}")
    for key in value:
        if not isinstance(key, str):
            raise err(field, f"keys must be text, got {key!r}")
        if allowed is not None and key not in allowed:
            where = f"{field}.{key}" if field else key
            raise err(where, f"unknown key; expected one of: {', '.join(allowed)}")
    return value


def _dataset(value: Any, err: _Err) -> DatasetSpec:
    if value is None:
        raise err("dataset", f"required; one of {', '.join(schema.DATASETS)}")
    if isinstance(value, str):
        value = {"name": value}
    d = _mapping(value, "dataset", err, allowed=("name", "validation_fraction", "limit"))
    name = d.get("name")
    if name not in schema.DATASETS:
        raise err("dataset.name", f"expected one of {', '.join(schema.DATASETS)}, got {name!r}")
    fraction = _float(d.get("validation_fraction", 0.1), "dataset.validation_fraction", err)
    if not 0.0 < fraction <= 0.5:
        raise err("dataset.validation_fraction", f"expected a number in (0, 0.5], got {fraction:g}")
    limit = d.get("limit")
    if limit is not None:
        limit = _int(limit, "dataset.limit", err, low=1)
    return DatasetSpec(name=name, validation_fraction=fraction, limit=limit)


def _objectives(value: Any, err: _Err) -> tuple[Objective, ...]:
    if value is None:
        value = ["val_accuracy", "train_seconds"]
    if not isinstance(value, list) or not 1 <= len(value) <= 3:
        raise err("objectives", f"expected a list of 1 to 3 objectives, got {_show(value)}")
    out: list[Objective] = []
    for i, item in enumerate(value):
        field = f"objectives[{i}]"
        if isinstance(item, str):
            item = {"metric": item}
        item = _mapping(item, field, err, allowed=("metric", "direction"))
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
    d: dict[str, Any], table: dict[str, schema.Option], field: str, err: _Err
) -> MappingProxyType[str, Any]:
    out: dict[str, Any] = {}
    for key, (kind, default) in table.items():
        value = d.get(key, default)
        if value is None:
            continue
        if kind == "int":
            out[key] = _int(value, f"{field}.{key}", err, low=0)
        elif kind == "float":
            out[key] = _float(value, f"{field}.{key}", err)
        else:
            out[key] = _bool(value, f"{field}.{key}", err)
    return MappingProxyType(out)


def _sampler(value: Any, seed: int, n_objectives: int, err: _Err) -> SamplerSpec:
    d = _mapping(value, "sampler", err)
    kind = d.get("type", "tpe")
    if kind not in schema.SAMPLERS:
        raise err("sampler.type", f"expected one of {', '.join(schema.SAMPLERS)}, got {kind!r}")
    table = schema.SAMPLERS[kind]
    _mapping(d, "sampler", err, allowed=("type", "seed", *table))
    if kind in schema.SINGLE_OBJECTIVE_SAMPLERS and n_objectives > 1:
        raise err("sampler.type", f"{kind} supports one objective only; use tpe, nsga2, gp or random")
    if kind in schema.SAMPLER_NEEDS:
        module, how = schema.SAMPLER_NEEDS[kind]
        if importlib.util.find_spec(module) is None:
            raise err("sampler.type", f"{kind} needs the package {module!r}, which is not installed ({how})")
    s = _int(d.get("seed", seed), "sampler.seed", err, low=0)
    return SamplerSpec(type=kind, seed=s, options=_options(d, table, "sampler", err))


def _pruner(value: Any, objectives: tuple[Objective, ...], err: _Err) -> PrunerSpec:
    d = _mapping(value, "pruner", err)
    kind = d.get("type", "none")
    if kind not in schema.PRUNERS:
        raise err("pruner.type", f"expected one of {', '.join(schema.PRUNERS)}, got {kind!r}")
    table = schema.PRUNERS[kind]
    _mapping(d, "pruner", err, allowed=("type", "metric", "patience", *table))
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
        patience = _int(patience, "pruner.patience", err, low=0)
    options = _options(d, table, "pruner", err)
    if kind == "percentile" and not 0.0 <= options["percentile"] <= 100.0:
        raise err("pruner.percentile", f"expected a number in [0, 100], got {options['percentile']:g}")
    return PrunerSpec(type=kind, metric=metric, options=options, patience=patience)


def _budget(value: Any, err: _Err) -> Budget:
    d = _mapping(value, "budget", err, allowed=("trials", "timeout", "trial_timeout"))
    trials = _int(d.get("trials", 20), "budget.trials", err, low=1)
    timeout = d.get("timeout")
    if timeout is not None:
        timeout = _float(timeout, "budget.timeout", err)
        if timeout <= 0:
            raise err("budget.timeout", f"expected seconds > 0, got {timeout:g}")
    trial_timeout = d.get("trial_timeout")
    if trial_timeout is not None:
        trial_timeout = _float(trial_timeout, "budget.trial_timeout", err)
        if trial_timeout <= 0:
            raise err("budget.trial_timeout", f"expected seconds > 0, got {trial_timeout:g}")
    return Budget(trials=trials, timeout=timeout, trial_timeout=trial_timeout)


# ---------------------------------------------------------------- parameters


def _params(doc: dict[str, Any], family: str, err: _Err) -> tuple[Param, ...]:
    built: list[tuple[Param, Any]] = []
    for section, fields in schema.SECTIONS.items():
        raw = _mapping(doc.get(section, {}), section, err)
        allowed = tuple(k for k, f in fields.items() if family in f.families)
        for key in raw:
            if section == "model" and key == "family":
                continue
            if key in fields and key not in allowed:
                raise err(f"{section}.{key}", f"only for model family {', '.join(fields[key].families)}")
            if key not in fields:
                raise err(f"{section}.{key}", f"unknown key; expected one of: {', '.join(allowed)}")
        for key in allowed:
            f = fields[key]
            field = f"{section}.{key}"
            domain, when = _domain(raw.get(key, f.default), f, field, err)
            if when is not None and f.per_layer is not None:
                raise err(f"{field}.when", "per-layer parameters cannot be conditional")
            param = Param(f.flat or key, field, domain, f.default, per_layer=f.per_layer)
            built.append((param, when))
    known = {p.field: p for p, _ in built} | {p.name: p for p, _ in built}
    params = [
        p if when is None else replace(p, when=_condition(when, p.field, known, err)) for p, when in built
    ]
    return _sampling_order(params, err)


def _sampling_order(params: list[Param], err: _Err) -> tuple[Param, ...]:
    """Schema order, except that a parameter comes after the one its ``when`` looks at."""
    done: list[Param] = []
    names: set[str] = set()
    pending = list(params)
    while pending:
        ready = [
            p
            for p in pending
            if (p.when is None or p.when.key in names) and (p.per_layer is None or p.per_layer in names)
        ]
        if not ready:
            raise err(pending[0].field + ".when", "conditions form a cycle")
        done.extend(ready)
        names.update(p.name for p in ready)
        pending = [p for p in pending if p not in ready]
    return tuple(done)


def _condition(value: Any, field: str, known: dict[str, Param], err: _Err) -> Condition:
    d = _mapping(value, f"{field}.when", err)
    if len(d) != 1:
        raise err(f"{field}.when", f"expected one 'parameter: value(s)' pair, got {len(d)}")
    ((key, wanted),) = d.items()
    section = field.split(".")[0]
    target = known.get(f"{section}.{key}") or known.get(key)
    if target is None:
        raise err(f"{field}.when", f"{key!r} is not a parameter")
    if target.field == field:
        raise err(f"{field}.when", "a parameter cannot depend on itself")
    if target.per_layer is not None:
        raise err(f"{field}.when", f"cannot depend on the per-layer parameter {key!r}")
    values = tuple(wanted) if isinstance(wanted, list) else (wanted,)
    possible = (
        target.domain.choices
        if isinstance(target.domain, Choice)
        else (target.domain.value,)
        if isinstance(target.domain, Fixed)
        else None
    )
    for v in values:
        if possible is not None and v not in possible:
            raise err(f"{field}.when", f"{key} can never be {v!r}; it is one of {list(possible)}")
    return Condition(key=target.name, values=values)


def _domain(value: Any, f: schema.Field, field: str, err: _Err) -> tuple[Domain, Any]:
    """Turn a field's YAML value into a domain (and its raw ``when``, if any)."""
    if isinstance(value, list):
        value = {"type": "categorical", "choices": value}
    if not isinstance(value, dict):
        return Fixed(_value(value, f, field, err)), None
    _mapping(value, field, err, allowed=_DOMAIN_KEYS)
    kind = value.get("type")
    when = value.get("when")
    if kind in ("categorical", "bool"):
        for key in ("low", "high", "step", "log"):
            if key in value:
                raise err(f"{field}.{key}", f"not allowed with type {kind}")
        if kind == "bool":
            if "choices" in value:
                raise err(f"{field}.choices", "not allowed with type bool")
            if f.kind != "bool":
                raise err(f"{field}.type", f"bool does not fit; expected {f.describe()}")
            return Choice((False, True)), when
        choices = value.get("choices")
        if not isinstance(choices, list) or not choices:
            raise err(f"{field}.choices", f"expected a non-empty list, got {_show(choices)}")
        checked = tuple(_value(c, f, f"{field}.choices", err) for c in choices)
        if len(set(checked)) != len(checked):
            raise err(f"{field}.choices", f"duplicate choices in {choices}")
        return Choice(checked), when
    if kind not in ("int", "float"):
        raise err(f"{field}.type", f"expected int, float, categorical or bool, got {kind!r}")
    if "choices" in value:
        raise err(f"{field}.choices", f"not allowed with type {kind}")
    if f.kind not in ("int", "float") or (kind == "float" and f.kind == "int"):
        raise err(f"{field}.type", f"{kind} does not fit; expected {f.describe()}")
    for key in ("low", "high"):
        if key not in value:
            raise err(f"{field}.{key}", f"required for type {kind}")
    log = _bool(value.get("log", False), f"{field}.log", err)
    if kind == "int":
        low: float = _int(value["low"], f"{field}.low", err)
        high: float = _int(value["high"], f"{field}.high", err)
        step = _int(value.get("step", 1), f"{field}.step", err, low=1)
        if log and step != 1:
            raise err(f"{field}.step", f"log=true needs step 1, got {step}")
        if (high - low) % step:
            raise err(f"{field}.step", f"high - low = {high - low} is not a multiple of step {step}")
    else:
        low = _float(value["low"], f"{field}.low", err)
        high = _float(value["high"], f"{field}.high", err)
        step_f = value.get("step")
        fstep = None if step_f is None else _float(step_f, f"{field}.step", err)
        if fstep is not None and fstep <= 0:
            raise err(f"{field}.step", f"expected a step > 0, got {fstep:g}")
        if log and fstep is not None:
            raise err(f"{field}.step", "log=true cannot have a step")
        if fstep is not None:
            count = (high - low) / fstep
            if abs(count - round(count)) > 1e-9 * max(1.0, count):
                raise err(f"{field}.step", f"high - low = {high - low:g} is not a multiple of step {fstep:g}")
    if low > high:
        raise err(field, f"low > high ({low:g} > {high:g})")
    if log and low <= 0:
        raise err(f"{field}.low", f"log=true needs low > 0, got {low:g}")
    _check_bounds(low, f, f"{field}.low", err)
    _check_bounds(high, f, f"{field}.high", err)
    if kind == "int":
        return IntRange(int(low), int(high), step, log), when
    return FloatRange(float(low), float(high), fstep, log), when


def _value(value: Any, f: schema.Field, field: str, err: _Err) -> Any:
    """Check one fixed value (or one choice) against the field's type and bounds."""
    if f.kind == "name":
        if value not in f.names:
            raise err(field, f"expected {f.describe()}, got {value!r}")
        return value
    if f.kind == "bool":
        return _bool(value, field, err)
    number: float = _int(value, field, err) if f.kind == "int" else _float(value, field, err)
    _check_bounds(number, f, field, err)
    return number


def _check_bounds(number: float, f: schema.Field, field: str, err: _Err) -> None:
    too_low = f.low is not None and (number <= f.low if f.low_open else number < f.low)
    too_high = f.high is not None and (number >= f.high if f.high_open else number > f.high)
    if too_low or too_high:
        raise err(field, f"expected {f.describe()}, got {number:g}")


# ---------------------------------------------------------------- scalars


def _show(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _int(value: Any, field: str, err: _Err, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise err(field, f"expected an integer, got {_show(value)}")
    if low is not None and value < low:
        raise err(field, f"expected an integer >= {low}, got {value}")
    return value


def _float(value: Any, field: str, err: _Err) -> float:
    # PyYAML reads `1e-4` (no dot) as text; accept numeric text so users don't trip on it.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise err(field, f"expected a number, got {_show(value)}")
    if not math.isfinite(value):
        raise err(field, f"expected a finite number, got {value}")
    return float(value)


def _bool(value: Any, field: str, err: _Err) -> bool:
    if not isinstance(value, bool):
        raise err(field, f"expected true or false, got {_show(value)}")
    return value
