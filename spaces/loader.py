"""Load a space file (or a preset) into a validated :class:`~spaces.space.Space`.

Every problem is reported as one line ``FILE: FIELD: PROBLEM`` through ``ConfigError``, after
bounded work: the YAML is read by :mod:`spaces.yaml_safe` (safe constructors only, no aliases,
bounded nesting and numbers) and every limit is in :mod:`spaces.limits`.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from spaces import datasets, schema, sections
from spaces.domains import FloatRange, Param
from spaces.errors import ConfigError
from spaces.fields import Err, as_int, known, mapping, parse_params, show
from spaces.limits import MAX_BYTES, MAX_GRID, check_name, count
from spaces.optuna import make_pruner, make_sampler
from spaces.refs import parse_hypermodel
from spaces.space import HypermodelRef, Space
from spaces.yaml_safe import parse

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


def presets() -> dict[str, str]:
    """Preset names and their one-line descriptions, sorted by name."""
    out: dict[str, str] = {}
    for entry in sorted(resources.files("spaces").joinpath("presets").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            doc = yaml.safe_load(entry.read_text(encoding="utf-8"))
            out[entry.name[: -len(".yaml")]] = str(doc.get("description", "")).strip()
    return out


def _preset_names() -> list[str]:
    files = resources.files("spaces").joinpath("presets").iterdir()
    return sorted(e.name[: -len(".yaml")] for e in files if e.name.endswith(".yaml"))


def load(path_or_preset: str | Path) -> Space:
    """Load a space from a YAML file, or from a preset when no such file exists.

    A bare name (no ``/`` and no ``.yaml``) that is not a file is looked up among the presets.
    At most ``spaces.limits.MAX_BYTES`` of a file are read.
    """
    path = Path(path_or_preset)
    if path.is_file():
        try:
            with path.open("rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e}") from e
        if len(data) > MAX_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_BYTES:,} bytes; a space file is a few kB")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{path}: not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} ({e.reason})"
            ) from e
        return loads(text, source=str(path), base_dir=path.resolve().parent)
    name = str(path_or_preset)
    if "/" in name or name.endswith((".yaml", ".yml")):
        raise ConfigError(f"{name}: no such file")
    if name not in _preset_names():
        raise ConfigError(f"{name}: not a file and not a preset; presets: {', '.join(_preset_names())}")
    preset = resources.files("spaces").joinpath("presets", f"{name}.yaml")
    # a bundled preset is the user's explicit choice: its hypermodel resolves next to it
    base = Path(str(resources.files("spaces").joinpath("presets")))
    return loads(preset.read_text(encoding="utf-8"), source=f"preset {name}", base_dir=base)


def loads(text: str, *, source: str = "<space>", base_dir: Path | None = None) -> Space:
    """Parse and validate a space from YAML text; ``source`` names it in error messages.

    ``base_dir`` is the directory of the file the text came from: a ``model.hypermodel`` file
    and a dataset's file or loader are resolved (and hashed, never read or imported) against it.
    Without it -- text read back from a study -- they stay unresolved: a worker binds them.
    """
    err = Err(source)
    doc = mapping(parse(text, err), "", err, allowed=_TOP)
    name = check_name(doc.get("name"), f"{source}: name")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise err("description", f"expected text, got {show(description)}")
    seed = as_int(doc.get("seed", 0), "seed", err, low=0)
    if seed >= 2**32:
        raise err("seed", f"expected an integer below 2**32, got {seed}")
    model = mapping(doc.get("model", {}), "model", err)
    training = dict(mapping(doc.get("training", {}), "training", err))
    extra = sections.logged_metrics(training.pop("metrics", None), err)
    param_doc = {**doc, "training": training}  # the parameters, without the list of metrics
    hypermodel: HypermodelRef | None = None
    if "hypermodel" in model:
        if extra:
            raise err("training.metrics", "not used with model.hypermodel: it compiles its own metrics")
        hypermodel = parse_hypermodel(model, doc, base_dir, err)
        family = "hypermodel"
        params = _training_params(param_doc, err)
    else:
        family = model.get("family", "mlp")
        if not known(family, schema.FAMILIES):
            raise err("model.family", f"expected one of {', '.join(schema.FAMILIES)}, got {family!r}")
        params = parse_params(param_doc, family, err)
    logged = None if hypermodel is not None else ("accuracy", "loss", *extra)
    objectives = sections.objectives(doc.get("objectives"), logged, err)
    dataset = datasets.dataset(doc.get("dataset"), base_dir, err)
    if family == "cnn" and dataset.kind == "csv":
        raise err("model.family", f"cnn needs images; {dataset.name} holds table rows (use family mlp)")
    sampler = sections.sampler(doc.get("sampler", {}), seed, len(objectives), err)
    pruner = sections.pruner(doc.get("pruner", {}), objectives, logged, err)
    budget = sections.budget(doc.get("budget", {}), err)
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
        hypermodel=hypermodel,
        logged=logged or (),
    )
    if space.sampler.type == "grid":
        _check_grid(space, err)
    _check_buildable(space, err)
    return space


def _training_params(doc: dict[str, Any], err: Err) -> tuple[Param, ...]:
    """A hypermodel space's own parameters: the ``training`` section only."""
    params = parse_params({"training": doc.get("training", {})}, "mlp", err)
    kept = tuple(p for p in params if p.field.startswith("training."))
    names = {p.name for p in kept}
    for p in kept:
        if p.when is not None and p.when.key not in names:
            raise err(f"{p.field}.when", f"{p.when.key!r} is not a training parameter")
    return kept


def _check_grid(space: Space, err: Err) -> None:
    """A grid the sampler can enumerate: a step on every float range, at most MAX_GRID points.

    Optuna's ``GridSampler`` materializes every point when it is built, so the points are
    counted here, without listing them.
    """
    if space.hypermodel is not None:
        raise err("sampler.type", "grid needs the whole space up front; a hypermodel's appears as it runs")
    for p in space.params:
        if isinstance(p.domain, FloatRange) and p.domain.step is None:
            raise err(p.field, "the grid sampler needs a step for every float range")
    axes = space.grid_axes()
    size = space.grid_size()
    if size > MAX_GRID:
        shown = " x ".join(f"{p.field} {n:,}" + (f"^{slots}" if slots > 1 else "") for p, n, slots in axes)
        raise err(
            "sampler.type",
            f"grid has {count(size)} points ({shown}); at most {MAX_GRID:,}: "
            "search fewer values, or use sampler tpe or random",
        )


def _check_buildable(space: Space, err: Err) -> None:
    """Build the sampler and pruner once, so that options Optuna rejects fail here, not mid-run."""

    for section, kind, build in (
        ("pruner", space.pruner.type, lambda: make_pruner(space.pruner)),
        ("sampler", space.sampler.type, lambda: make_sampler(space)),
    ):
        try:
            build()
        except (TypeError, ValueError, OverflowError) as e:
            raise err(section, f"{kind}: {e}") from e
