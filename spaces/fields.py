"""Parameters of a space file: scalar checks, domains, conditions and sampling order.

Every problem becomes one ``FILE: FIELD: PROBLEM`` line through :class:`Err`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace
from typing import Any, TypeGuard

from spaces import schema
from spaces.domains import Choice, Condition, Domain, Fixed, FloatRange, IntRange, Param
from spaces.errors import ConfigError
from spaces.limits import MAX_MESSAGE, MAX_STEPS, shorten

__all__ = ["Err", "as_bool", "as_float", "as_int", "known", "mapping", "parse_params", "show"]

_DOMAIN_KEYS = ("type", "low", "high", "step", "log", "choices", "when")


class Err:
    """Builds one-line errors that name the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, field: str, problem: str) -> ConfigError:
        message = f"{self.source}: {field}: {problem}" if field else f"{self.source}: {problem}"
        return ConfigError(shorten(message, MAX_MESSAGE))  # one line, however long the input


def mapping(value: Any, field: str, err: Err, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        if not field:
            raise err("", f"expected a YAML mapping at the top, got {show(value)}")
        raise err(field, f"expected a mapping, got {show(value)}")
    for key in value:
        if not isinstance(key, str):
            raise err(field, f"keys must be text, got {shorten(repr(key))}")
        if allowed is not None and key not in allowed:
            where = f"{field}.{key}" if field else key
            raise err(where, f"unknown key; expected one of: {', '.join(allowed)}")
    return value


def parse_params(doc: dict[str, Any], family: str, err: Err) -> tuple[Param, ...]:
    built: list[tuple[Param, Any]] = []
    for section, fields in schema.SECTIONS.items():
        raw = mapping(doc.get(section, {}), section, err)
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


def _sampling_order(params: list[Param], err: Err) -> tuple[Param, ...]:
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


def _condition(value: Any, field: str, known: dict[str, Param], err: Err) -> Condition:
    d = mapping(value, f"{field}.when", err)
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
    if not values:
        raise err(f"{field}.when", f"expected a value or a non-empty list of values for {key}, got []")
    if isinstance(target.domain, FloatRange):
        raise err(
            f"{field}.when", f"{key} is a float range, which never takes one exact value; make it a list"
        )
    for v in values:
        if not _can_take(target.domain, v):
            raise err(f"{field}.when", f"{key} can never be {shorten(repr(v))}; {_describe(target.domain)}")
    return Condition(key=target.name, values=values)


def _same(a: Any, b: Any) -> bool:
    """``a == b``, except that a bool equals only a bool (YAML's ``1`` is not ``true``)."""
    return (isinstance(a, bool) == isinstance(b, bool)) and a == b


def _can_take(domain: Domain, v: Any) -> bool:
    """Whether a parameter with ``domain`` (not a float range) can ever take the value ``v``."""
    if isinstance(domain, Fixed):
        return _same(v, domain.value)
    if isinstance(domain, Choice):
        return any(_same(v, c) for c in domain.choices)
    if isinstance(v, bool) or not isinstance(v, int) or not isinstance(domain, IntRange):
        return False
    return domain.low <= v <= domain.high and (v - domain.low) % domain.step == 0


def _describe(domain: Domain) -> str:
    if isinstance(domain, Fixed):
        return f"it is fixed at {shorten(repr(domain.value))}"
    if isinstance(domain, Choice):
        return f"it is one of {shorten(repr(list(domain.choices)))}"
    if isinstance(domain, IntRange):
        step = f" in steps of {domain.step}" if domain.step != 1 else ""
        return f"it is an integer from {domain.low} to {domain.high}{step}"
    return "it is a float range"


def _domain(value: Any, f: schema.Field, field: str, err: Err) -> tuple[Domain, Any]:
    """Turn a field's YAML value into a domain (and its raw ``when``, if any)."""
    if not f.searchable and isinstance(value, list | dict):
        raise err(field, f"one value per space, not searched; expected {f.describe()}, got {show(value)}")
    if isinstance(value, list):
        value = {"type": "categorical", "choices": value}
    if not isinstance(value, dict):
        return Fixed(_value(value, f, field, err)), None
    mapping(value, field, err, allowed=_DOMAIN_KEYS)
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
            raise err(f"{field}.choices", f"expected a non-empty list, got {show(choices)}")
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
    log = as_bool(value.get("log", False), f"{field}.log", err)
    if kind == "int":
        low: float = as_int(value["low"], f"{field}.low", err)
        high: float = as_int(value["high"], f"{field}.high", err)
        step = as_int(value.get("step", 1), f"{field}.step", err, low=1)
        if log and step != 1:
            raise err(f"{field}.step", f"log=true needs step 1, got {step}")
        if (high - low) % step:
            raise err(f"{field}.step", f"high - low = {high - low} is not a multiple of step {step}")
    else:
        low = as_float(value["low"], f"{field}.low", err)
        high = as_float(value["high"], f"{field}.high", err)
        step_f = value.get("step")
        fstep = None if step_f is None else as_float(step_f, f"{field}.step", err)
        if fstep is not None and fstep <= 0:
            raise err(f"{field}.step", f"expected a step > 0, got {fstep:g}")
        if log and fstep is not None:
            raise err(f"{field}.step", "log=true cannot have a step")
        if fstep is not None:
            count = (high - low) / fstep
            if not count <= MAX_STEPS:  # also inf: a step below float precision
                raise err(
                    f"{field}.step",
                    f"{fstep:g} is too small for [{low:g}, {high:g}]: more than {MAX_STEPS:.0e} values; "
                    "leave step out for a continuous range",
                )
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


def _value(value: Any, f: schema.Field, field: str, err: Err) -> Any:
    """Check one fixed value (or one choice) against the field's type and bounds."""
    if f.kind == "name":
        if value not in f.names:
            raise err(field, f"expected {f.describe()}, got {value!r}")
        return value
    if f.kind == "bool":
        return as_bool(value, field, err)
    number: float = as_int(value, field, err) if f.kind == "int" else as_float(value, field, err)
    _check_bounds(number, f, field, err)
    return number


def _check_bounds(number: float, f: schema.Field, field: str, err: Err) -> None:
    too_low = f.low is not None and (number <= f.low if f.low_open else number < f.low)
    too_high = f.high is not None and (number >= f.high if f.high_open else number > f.high)
    if too_low or too_high:
        raise err(field, f"expected {f.describe()}, got {number:g}")


def show(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {shorten(repr(value))}"


def known(value: Any, names: Any) -> TypeGuard[str]:
    """``value in names`` for a registry (a tuple or dict of names), False for any non-text value."""
    return isinstance(value, str) and value in names


def as_int(value: Any, field: str, err: Err, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise err(field, f"expected an integer, got {show(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = [f">= {low}"] if low is not None else []
        bounds += [f"<= {high:,}"] if high is not None else []
        raise err(field, f"expected an integer {' and '.join(bounds)}, got {value}")
    return value


def as_float(value: Any, field: str, err: Err) -> float:
    # PyYAML reads `1e-4` (no dot) as text; accept numeric text so users don't trip on it.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise err(field, f"expected a number, got {show(value)}")
    if not math.isfinite(value):
        raise err(field, f"expected a finite number, got {value}")
    return float(value)


def as_bool(value: Any, field: str, err: Err) -> bool:
    if not isinstance(value, bool):
        raise err(field, f"expected true or false, got {show(value)}")
    return value
