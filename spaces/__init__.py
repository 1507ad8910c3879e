"""Search spaces: the YAML schema, its loader and the bundled presets; the rule for names.

Imports nothing from ``search`` or ``storage`` (checked by ``make lint``).

Example:
    >>> import spaces
    >>> space = spaces.load("quickstart")
    >>> space.directions
    ('maximize', 'minimize')
"""

from __future__ import annotations

from spaces.domains import Choice, Condition, Fixed, FloatRange, IntRange, Param
from spaces.errors import ConfigError
from spaces.limits import check_name
from spaces.loader import load, loads, presets
from spaces.space import Budget, DatasetSpec, HypermodelRef, Objective, PrunerSpec, SamplerSpec, Space

__all__ = [
    "Budget",
    "Choice",
    "Condition",
    "ConfigError",
    "DatasetSpec",
    "Fixed",
    "FloatRange",
    "HypermodelRef",
    "IntRange",
    "Objective",
    "Param",
    "PrunerSpec",
    "SamplerSpec",
    "Space",
    "check_name",
    "load",
    "loads",
    "presets",
]
