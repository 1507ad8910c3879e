"""A space's sampler and pruner as Optuna objects: the one place that maps their names to Optuna.

The names and the options each takes are registered in :mod:`spaces.schema`; here they become
``optuna.samplers`` / ``optuna.pruners`` instances. The loader builds both once while it
validates a space, so that options Optuna rejects fail at load time, not mid-run.

Example:
    >>> import spaces
    >>> type(make_sampler(spaces.load("quickstart"))).__name__
    'TPESampler'
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import optuna

from spaces import schema

if TYPE_CHECKING:
    from spaces.space import PrunerSpec, Space

__all__ = ["make_pruner", "make_sampler"]


def make_sampler(space: Space, *, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler a space names, seeded with ``sampler.seed + seed_offset``.

    ``seed_offset`` (the number of trials already in the study) keeps a resumed study from
    replaying the random start-up points it already tried.
    """
    spec = space.sampler
    cls = getattr(optuna.samplers, schema.SAMPLERS[spec.type].cls)
    seed = (spec.seed + seed_offset) % 2**32  # numpy's seed range
    args: tuple[Any, ...] = (space.grid(),) if spec.type == "grid" else ()
    with warnings.catch_warnings():  # NSGA-III, GP: "experimental" in Optuna's sense only
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler: optuna.samplers.BaseSampler = cls(*args, seed=seed, **dict(spec.options))
    return sampler


def make_pruner(spec: PrunerSpec) -> optuna.pruners.BasePruner:
    """Optuna's pruner for a space's ``pruner`` section (wrapped in PatientPruner with ``patience``)."""
    if spec.type == "asha":  # hpsearch schedules it (search.study.asha); Optuna prunes nothing
        return optuna.pruners.NopPruner()
    pruner: optuna.pruners.BasePruner = getattr(optuna.pruners, schema.PRUNERS[spec.type].cls)(
        **dict(spec.options)
    )
    if spec.patience is not None and spec.type != "none":
        with warnings.catch_warnings():  # "experimental" since Optuna 2.8; its interface is stable
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            pruner = optuna.pruners.PatientPruner(pruner, patience=spec.patience)
    return pruner
