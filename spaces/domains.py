"""Typed, frozen value domains of a search space and how each one is sampled.

This is the one place where a declarative domain turns into an Optuna ``suggest_*`` call or an
Optuna distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["Choice", "Condition", "Domain", "Fixed", "FloatRange", "IntRange", "Param", "grid_size"]


@dataclass(frozen=True)
class Fixed:
    """A value that is not searched."""

    value: Any


@dataclass(frozen=True)
class IntRange:
    """Integers in ``[low, high]`` (both inclusive) on a grid of ``step``, optionally log-scaled."""

    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class FloatRange:
    """Floats in ``[low, high]`` (both inclusive), optionally on a grid or log-scaled."""

    low: float
    high: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """One of a fixed tuple of values."""

    choices: tuple[Any, ...]


Domain = Fixed | IntRange | FloatRange | Choice


@dataclass(frozen=True)
class Condition:
    """The parameter is sampled only when parameter ``key`` took one of ``values``."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its flat name, where it came from, its domain and default.

    ``per_layer`` names the count parameter (``layers`` or ``conv_blocks``) when one value is
    sampled for each layer that exists; the sampled value is then a tuple.
    """

    name: str
    field: str
    domain: Domain
    default: Any
    when: Condition | None = None
    per_layer: str | None = None

    @property
    def searched(self) -> bool:
        return not isinstance(self.domain, Fixed)


def suggest(trial: optuna.Trial, name: str, domain: Domain) -> Any:
    """Sample ``domain`` under ``name`` through Optuna's define-by-run API."""
    if isinstance(domain, Fixed):
        return domain.value
    if isinstance(domain, IntRange):
        return trial.suggest_int(name, domain.low, domain.high, step=domain.step, log=domain.log)
    if isinstance(domain, FloatRange):
        return trial.suggest_float(name, domain.low, domain.high, step=domain.step, log=domain.log)
    return trial.suggest_categorical(name, list(domain.choices))


def grid_size(domain: Domain) -> int | None:
    """How many values ``grid_values`` would list, counted without listing them; None if no grid."""
    if isinstance(domain, Fixed):
        return 1
    if isinstance(domain, Choice):
        return len(domain.choices)
    if isinstance(domain, IntRange):
        return max(0, (domain.high - domain.low) // domain.step + 1)
    if domain.step is None:
        return None
    return round((domain.high - domain.low) / domain.step) + 1


def grid_values(domain: Domain) -> list[Any] | None:
    """All values of a domain for a grid search, or None if it has no finite grid.

    This builds the list: check :func:`grid_size` first (the loader does, for every grid space).
    """
    if isinstance(domain, Fixed):
        return [domain.value]
    if isinstance(domain, Choice):
        return list(domain.choices)
    if isinstance(domain, IntRange):
        return list(range(domain.low, domain.high + 1, domain.step))
    if domain.step is None:
        return None
    count = round((domain.high - domain.low) / domain.step)
    return [domain.low + i * domain.step for i in range(count + 1)]
