"""The baseline configuration: the first trial of a fresh study, before the sampler learns.

A sampler's first trials are random draws, and one bad draw (a wide net with plain SGD at a
tiny learning rate) tells it little. So a new study's first trial trains the space's centre:
the middle of each numeric range (the geometric middle on a log scale: ``1e-4 .. 1e-2`` gives
``1e-3``) and the first of each list of choices (KerasTuner's convention for ``hp.Choice``: list
the usual value first). Conditional parameters follow what the baseline chose.

Example:
    >>> import spaces
    >>> params = baseline(spaces.load("quickstart"))
    >>> params["layers"], params["activation"], params["optimizer"]
    (2, 'relu', 'adam')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optuna.distributions import CategoricalChoiceType

from spaces import Space

__all__ = ["baseline"]


def baseline(space: Space) -> dict[str, Any]:
    """The centre of ``space`` as Optuna parameter values (``{"units_0": 91, ...}``)."""
    centre = _Centre()
    space.sample(centre)  # type: ignore[arg-type]  # answers the suggest_* calls sample makes
    return centre.params


class _Centre:
    """Answers ``space.sample``'s suggestions with the middle of each range and the first choice."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        middle = math.sqrt(low * high) if log and low > 0 else (low + high) / 2
        value = min(high, low + round((middle - low) / step) * step)
        self.params[name] = int(value)
        return int(value)

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        middle = math.sqrt(low * high) if log and low > 0 else (low + high) / 2
        if step is not None:
            middle = min(high, low + round((middle - low) / step) * step)
        self.params[name] = float(middle)
        return float(middle)

    def suggest_categorical(self, name: str, choices: Sequence[CategoricalChoiceType]) -> Any:
        self.params[name] = choices[0]
        return choices[0]
