"""One concrete configuration of a space: ``--trial-params KEY=VALUE`` overrides, the rest picked.

Example:
    >>> import spaces
    >>> params = pick_params(spaces.load("quickstart"), parse_overrides(["optimizer=sgd"]))
    >>> params["optimizer"]
    'sgd'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml

import spaces
from search.errors import ConfigError
from spaces import schema
from spaces.domains import Choice, Fixed, FloatRange, IntRange

if TYPE_CHECKING:
    from spaces import Space

__all__ = ["parse_overrides", "pick_params"]


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["optimizer=sgd", "training.batch_size=64", "units=[128,64]"]`` -> ``{field: value}``.

    Keys are a field (``section.key``), a key of the ``model`` / ``optimizer`` / ``training``
    sections, or ``optimizer`` for ``optimizer.name``; values are YAML scalars or lists.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--trial-params {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--trial-params {item!r}: the value is not valid YAML") from e
        out[_field(key)] = value
    return out


def _field(key: str) -> str:
    if "." in key:
        section, _, name = key.partition(".")
        if section in schema.SECTIONS and name in schema.SECTIONS[section]:
            return key
    elif key == "optimizer":
        return "optimizer.name"
    else:
        for section, fields in schema.SECTIONS.items():
            if key in fields:
                return f"{section}.{key}"
    known = ", ".join(f"{s}.{k}" for s, f in schema.SECTIONS.items() for k in f)
    raise ConfigError(f"--trial-params {key!r}: unknown parameter; expected one of {known}")


def pick_params(space: Space, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """One concrete configuration of ``space``: the overrides, and for every other searched
    parameter its first choice, or its default when inside the range (else the range's low end).

    The overrides are validated by the space loader (types and bounds), so a bad value fails with
    the usual one-line message.
    """
    doc = yaml.safe_load(space.text)
    for field, value in overrides.items():
        section, _, key = field.partition(".")
        doc.setdefault(section, {})
        if not isinstance(doc[section], dict):
            raise ConfigError(f"{space.source}: {section}: expected a mapping")
        doc[section][key] = value
        _settle_conditions(doc, field, value)
    doc["sampler"] = {"type": "random"}  # a grid would reject ranges left open by the overrides
    fixed = spaces.loads(yaml.safe_dump(doc, sort_keys=False), source=f"{space.source} with --trial-params")
    values: dict[str, Any] = {}
    for p in fixed.params:
        if p.when is not None and values[p.when.key] not in p.when.values:
            values[p.name] = p.default
        elif p.per_layer is not None:
            values[p.name] = tuple(_first(p.domain, p.default) for _ in range(int(values[p.per_layer])))
        else:
            values[p.name] = _first(p.domain, p.default)
    return values


def _settle_conditions(doc: dict[str, Any], field: str, value: Any) -> None:
    """Parameters conditional on the overridden ``field``: always active now, or never.

    An active one keeps its domain (without ``when``); an inactive one is dropped from the copy,
    so it takes its default, as an inactive parameter does in a trial.
    """
    section, _, key = field.partition(".")
    names = {field, schema.SECTIONS[section][key].flat or key}
    for other, fields in schema.SECTIONS.items():
        raw = doc.get(other)
        if not isinstance(raw, dict):
            continue
        for name, spec in list(raw.items()):
            when = spec.get("when") if isinstance(spec, dict) else None
            if not isinstance(when, dict) or len(when) != 1 or name not in fields:
                continue
            ((target, wanted),) = when.items()
            if target in names or (other == section and target == key):
                if value in (wanted if isinstance(wanted, list) else [wanted]):
                    del spec["when"]
                else:
                    del raw[name]


def _first(domain: Any, default: Any) -> Any:
    if isinstance(domain, Fixed):
        return domain.value
    if isinstance(domain, Choice):
        return domain.choices[0]
    if isinstance(domain, (IntRange, FloatRange)) and domain.low <= default <= domain.high:
        return default
    return domain.low
