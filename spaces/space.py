"""The validated, frozen search space and its define-by-run sampling."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from spaces.domains import Choice, Domain, Fixed, IntRange, Param, grid_size, grid_values, suggest
from spaces.limits import MAX_GRID

if TYPE_CHECKING:
    import optuna

Direction = Literal["maximize", "minimize"]

__all__ = [
    "Budget",
    "DataKind",
    "DatasetSpec",
    "HypermodelRef",
    "Objective",
    "PrunerSpec",
    "SamplerSpec",
    "Space",
]


@dataclass(frozen=True)
class HypermodelRef:
    """A KerasTuner hypermodel named by a space: ``FILE.py:NAME``.

    The loader only resolves and hashes the file; nothing is imported until
    :func:`search.hypermodels.loader.load_builder` is called on a reference the user pointed at.
    ``file`` and ``sha256`` are ``None`` when the space came from a study's stored text: a worker
    must then name its own copy (``hpsearch worker --hypermodel FILE.py:NAME``).
    """

    spec: str  # as written in the space file
    name: str  # the function or kt.HyperModel class in the file
    file: str | None = None  # absolute path of the local file the user pointed at
    sha256: str | None = None  # of that file's bytes
    arguments: Mapping[str, Any] = field(default_factory=dict)  # a kt.HyperModel class's constructor's


DataKind = Literal["bundled", "npz", "images", "csv", "loader"]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a space's data comes from: a bundled dataset by name, a file, or a loader function.

    A file or loader is resolved against the space file's directory and hashed when the user
    named the space file (``file`` and ``sha256`` set); read back from a study's text it stays
    unresolved, and the worker binds it to the study's record (:mod:`search.trial.binding`).
    ``test`` is the test file of an image folder or CSV (``npz`` and loaders carry their own).
    """

    name: str  # the bundled name; for a file or loader, the path or spec as written
    validation_fraction: float = 0.1
    limit: int | None = None
    kind: DataKind = "bundled"
    file: str | None = None  # absolute path of the file, folder or loader module
    sha256: str | None = None  # of its bytes (a folder: of every file's path and bytes)
    label: str | None = None  # csv: the label column
    image_size: tuple[int, int] | None = None  # images: resized to (height, width)
    loader: str | None = None  # loader: the function's name in ``file``
    test: str | None = None  # images / csv: the test split's path as written
    test_file: str | None = None  # ... resolved

    @property
    def is_file(self) -> bool:
        return self.kind != "bundled"


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Direction


@dataclass(frozen=True)
class SamplerSpec:
    type: str
    seed: int
    options: Mapping[str, Any]
    baseline: bool = False  # a fresh study's first trial is the space's centre (search.study.baseline)


@dataclass(frozen=True)
class PrunerSpec:
    type: str
    metric: str
    options: Mapping[str, Any]
    patience: int | None = None  # wrap the pruner in Optuna's PatientPruner
    direction: Direction = "maximize"  # the metric's: better is larger, or smaller


@dataclass(frozen=True)
class Budget:
    trials: int
    timeout: float | None = None  # no new trial starts after this many seconds
    trial_timeout: float | None = None  # a trial still training after this many seconds fails


@dataclass(frozen=True)
class Space:
    """A search space: what to train, what to sample, how to judge and prune.

    Build one with :func:`spaces.load` or :func:`spaces.loads`; the fields are already validated.

    Example:
        >>> import optuna, spaces
        >>> space = spaces.load("quickstart")
        >>> study = optuna.create_study(directions=list(space.directions))
        >>> params = space.sample(study.ask())
        >>> len(params["units"]) == params["layers"]
        True
    """

    name: str
    description: str
    source: str
    text: str  # the file as written; stored in the study so workers need nothing else
    fingerprint: str  # hash of the parsed document: same meaning -> same fingerprint
    seed: int
    family: str
    dataset: DatasetSpec
    objectives: tuple[Objective, ...]
    sampler: SamplerSpec
    pruner: PrunerSpec
    budget: Budget
    params: tuple[Param, ...]
    hypermodel: HypermodelRef | None = None  # family "hypermodel": the model comes from user code
    logged: tuple[str, ...] = ("accuracy", "loss")  # the declarative model's metrics (training.metrics)

    @property
    def directions(self) -> tuple[Direction, ...]:
        return tuple(o.direction for o in self.objectives)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(o.metric for o in self.objectives)

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def watched(self) -> Objective:
        """What early stopping watches and restores the best epoch of: the first objective
        measured on the validation split, else ``val_loss``.

        A trial is then scored by its best epoch of what is searched for, as KerasTuner scores
        one; ``val_loss`` usually bottoms out epochs before ``val_accuracy`` stops improving.

        Example:
            >>> import spaces
            >>> spaces.load("fashion-mlp").watched
            Objective(metric='val_accuracy', direction='maximize')
        """
        validation = (o for o in self.objectives if o.metric.startswith("val_"))
        return next(validation, Objective("val_loss", "minimize"))

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every parameter for ``trial``; fixed and inactive ones take their values.

        Per-layer parameters come back as tuples with one value per existing layer; their Optuna
        names are ``units_0``, ``units_1``, ...
        """
        values: dict[str, Any] = {}
        for p in self.params:
            if p.when is not None and values[p.when.key] not in p.when.values:
                values[p.name] = p.default
            elif p.per_layer is not None:
                n = int(values[p.per_layer])
                values[p.name] = tuple(suggest(trial, f"{p.name}_{i}", p.domain) for i in range(n))
            else:
                values[p.name] = suggest(trial, p.name, p.domain)
        return values

    def grid_axes(self) -> list[tuple[Param, int, int]]:
        """Each searched parameter of a grid: (parameter, its number of values, its slots).

        A per-layer parameter has one slot per possible layer (``units_0`` ... ``units_{N-1}``);
        any other has one. Nothing is listed: a float range with a tiny step costs nothing here.
        """
        axes: list[tuple[Param, int, int]] = []
        by_name = {p.name: p for p in self.params}
        for p in self.params:
            if not p.searched:
                continue
            size = grid_size(p.domain)
            if size is None:  # the loader rejects this for grid samplers
                raise ValueError(f"{p.field} has no grid")
            slots = 1 if p.per_layer is None else _most(by_name[p.per_layer].domain)
            axes.append((p, size, slots))
        return axes

    def grid_size(self) -> int:
        """How many points Optuna's ``GridSampler`` enumerates for :meth:`grid`, without building them."""
        return math.prod(size**slots for _, size, slots in self.grid_axes())

    def grid(self) -> dict[str, list[Any]]:
        """Optuna's ``GridSampler`` search space: every searched parameter and its values.

        Raises ValueError past ``spaces.limits.MAX_GRID`` points (the loader refuses such spaces).
        """
        if self.grid_size() > MAX_GRID:
            raise ValueError(f"the grid has {self.grid_size():,} points; at most {MAX_GRID:,}")
        grid: dict[str, list[Any]] = {}
        for p, _, slots in self.grid_axes():
            values = grid_values(p.domain) or []
            if p.per_layer is None:
                grid[p.name] = values
                continue
            for i in range(slots):
                grid[f"{p.name}_{i}"] = values
        return grid


def _most(count: Domain) -> int:
    """The largest value a layer-count domain can take (0 when it has none)."""
    if isinstance(count, Fixed):
        return int(count.value)
    if isinstance(count, Choice):
        return int(max(count.choices, default=0))
    if isinstance(count, IntRange):
        return count.high
    return 0
