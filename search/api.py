"""hpsearch from Python (a notebook, a script): :func:`run` a search, or take its :func:`objective`.

::

    import search
    study = search.run("fashion-mlp", x=x, y=y, validation_data=(x_val, y_val), trials=20)
    study.best_trial.user_attrs["val_accuracy"]

``space`` is a space file, a preset name, a dict (the YAML's mapping) or a loaded
:class:`spaces.Space`. Arrays given as ``x`` / ``y`` replace the space's dataset; they are saved
once, by content, as an ``.npz`` next to the study (``<db>-data/`` beside a SQLite file, else
``./hpsearch-data/``) and recorded by sha256, so that ``hpsearch worker``, ``evaluate`` and a
resumed run read the same data. The study is a plain Optuna study: ``hpsearch best``,
``report`` and optuna-dashboard show it like any other.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import yaml

import spaces
import storage as storages  # `storage=` is run's argument, as Optuna names it
from search.errors import ConfigError
from spaces.refs import tree_sha256

if TYPE_CHECKING:
    from search.trial.data import Dataset

__all__ = ["as_space", "objective", "run"]

SpaceLike = str | Path | Mapping[str, Any] | spaces.Space
Pair = tuple[Any, Any]


def as_space(space: SpaceLike) -> spaces.Space:
    """A loaded space from a file, a preset name, a dict or a Space (paths resolve from the cwd)."""
    if isinstance(space, spaces.Space):
        return space
    if isinstance(space, Mapping):  # one object used twice is written twice, not as a YAML alias
        text = yaml.dump(dict(space), Dumper=_NoAliases, sort_keys=False)
        return spaces.loads(text, source="<dict>", base_dir=Path.cwd())
    if isinstance(space, (str, Path)):
        return spaces.load(space)
    raise ConfigError(f"space: expected a file, a preset name, a dict or a Space, got {type(space).__name__}")


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def run(
    space: SpaceLike,
    *,
    x: Any = None,
    y: Any = None,
    validation_data: Pair | None = None,
    test_data: Pair | None = None,
    storage: str | None = None,
    study: str | None = None,
    trials: int | None = None,
    timeout: float | None = None,
    workers: int = 1,
    device: str = "auto",
    data_dir: str | Path | None = None,
    warm_start: str | None = None,
) -> optuna.Study:
    """Create or resume the space's study and run its trials; the Optuna study.

    Args:
        space: a space file, preset name, dict or :class:`spaces.Space`.
        x, y: training samples and labels (any number of classes; images or feature rows); they
            replace the space's dataset. Without them the space's own dataset is used.
        validation_data: ``(x_val, y_val)``; without it a seeded ``dataset.validation_fraction``
            of ``x`` is held out.
        test_data: ``(x_test, y_test)``, kept for ``hpsearch evaluate`` only.
        storage: the storage URL where the study lives (default: ``$HPSEARCH_STORAGE``, ..., ``sqlite:///hpsearch.db``).
        study: the study's name (default: the space's name).
        trials: the trials the study should hold (default: ``budget.trials``).
        timeout: start no new trial after this many seconds (default: ``budget.timeout``).
        workers: worker processes; 1 trains in this process.
        device: ``auto``, ``cpu``, ``gpu`` or ``gpu:N``.
        data_dir: where in-memory arrays are saved (default: next to the study, see above).
        warm_start: a finished study in the same storage whose best configurations that fit
            run first (:mod:`search.study.warm`).

    Raises:
        ConfigError, DataError, StorageError: one line saying what is wrong; nothing is written.
    """
    from search.trial.data import load_for

    url = storages.resolve(storage)
    if x is not None or y is not None:
        if x is None or y is None:
            raise ConfigError("run: give both x and y, or neither (then the space's dataset is used)")
        saved = save_arrays(_folder(url, data_dir), x, y, validation_data, test_data)
        if isinstance(space, Mapping):  # a dict may leave the dataset out: the arrays are it
            loaded = as_space({**space, "dataset": {"path": str(saved), **_split_of(space.get("dataset"))}})
        else:
            loaded = with_dataset(as_space(space), saved)
    elif validation_data is not None or test_data is not None:
        raise ConfigError("run: validation_data and test_data go with x and y")
    else:
        loaded = as_space(space)
    dataset = load_for(loaded)  # bad data stops here, before the study is written
    if (
        loaded.hypermodel is not None
    ):  # as `hpsearch run` does: built once (in a child), before anything is written
        from search.trial.check import check_in_child

        check_in_child(loaded)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # hpsearch's progress says it once
    try:
        return _run(loaded, dataset, url, study, trials, timeout, workers, device, warm_start)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _run(
    loaded: spaces.Space,
    dataset: Dataset,
    url: str,
    study: str | None,
    trials: int | None,
    timeout: float | None,
    workers: int,
    device: str,
    warm_start: str | None,
) -> optuna.Study:
    from search.study import open_storage
    from search.study.create import create_or_load
    from search.study.queue import top_up
    from search.worker import run_worker

    store = open_storage(url, heartbeat_interval=10)
    opened = create_or_load(loaded, store, study_name=study)
    budget = trials or loaded.budget.trials
    if warm_start is not None:
        from search.study.warm import start_from

        print(start_from(opened, loaded, store, warm_start, budget), flush=True)
    top_up(opened, budget)
    if workers > 1:
        from search.hypermodels.binding import worker_argument
        from search.study.data_ref import worker_argument as data_argument
        from search.worker.launcher import launch

        common = ["--device", device]
        for flag, value in (
            ("--timeout", timeout),
            ("--hypermodel", worker_argument(loaded)),  # the workers import the file this run named
            ("--data", data_argument(loaded)),  # ... and call the data loader it named
        ):
            if value is not None:
                common += [flag, str(value)]
        launch(
            url,
            [["worker", "--study", opened.study_name, "--index", str(i), *common] for i in range(workers)],
        )
    else:
        run_worker(
            opened, loaded, dataset, url, device=device, index=0, timeout=timeout, heartbeat_interval=10
        )
    if timeout or loaded.budget.timeout:
        from search.study.queue import drop_unrun

        drop_unrun(opened)  # the blank trials a timeout left unrun
    return optuna.load_study(study_name=opened.study_name, storage=store)


def objective(space: SpaceLike, data: Dataset | Pair | None = None) -> Callable[[optuna.Trial], Any]:
    """A plain Optuna objective for ``study.optimize``; create the study with its ``directions``.

    ``data``: ``(x, y)`` arrays, a loaded dataset, or ``None`` for the space's own dataset.
    Pruning is the study's: each epoch is reported with ``trial.report`` and stops on
    ``trial.should_prune()`` (ASHA's pausing and promotions need hpsearch's queue: ``run``).

    Example:
        >>> import search, optuna
        >>> f = search.objective("quickstart")  # doctest: +SKIP
        >>> study = optuna.create_study(directions=f.directions)  # doctest: +SKIP
        >>> study.optimize(f, n_trials=5)  # doctest: +SKIP
    """
    from search.trial import sources
    from search.trial.data import Dataset, from_arrays, load_for
    from search.trial.objective import Objective

    if isinstance(space, Mapping) and "dataset" not in space and data is not None:
        space = {**space, "dataset": "digits"}  # never loaded: ``data`` is the dataset
    loaded = as_space(space)
    if data is None:
        dataset = load_for(loaded)
    elif isinstance(data, Dataset):
        dataset = data
    else:
        arrays = sources.from_splits("arrays", {"train": data})
        spec = loaded.dataset
        dataset = from_arrays("arrays", arrays, spec.validation_fraction, spec.limit, loaded.seed)
    f = Objective(loaded, dataset, schedule=False)  # no queue to promote paused trials: the study's pruner
    f.directions = list(loaded.directions)  # type: ignore[attr-defined]
    return f


def save_arrays(folder: Path, x: Any, y: Any, validation: Pair | None, test: Pair | None) -> Path:
    """The arrays in ``folder/<sha256 of their bytes>.npz`` (written once; the same arrays, the same file)."""
    arrays = {"x_train": np.asarray(x), "y_train": np.asarray(y)}
    for split, pair in (("val", validation), ("test", test)):
        if pair is not None:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigError(
                    f"run: {'validation_data' if split == 'val' else 'test_data'} must be (x, y)"
                )
            arrays[f"x_{split}"], arrays[f"y_{split}"] = np.asarray(pair[0]), np.asarray(pair[1])
    from search.trial.sources import from_splits

    from_splits(
        "arrays",
        {s: (arrays[f"x_{s}"], arrays[f"y_{s}"]) for s in ("train", "val", "test") if f"x_{s}" in arrays},
    )
    digest = hashlib.sha256()  # the arrays are checked: nothing is written for bad ones
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    path = folder / f"{digest.hexdigest()[:16]}.npz"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, **arrays)  # type: ignore[arg-type]  # numpy types allow_pickle as one of **kwds
        partial.replace(path)  # a reader never sees half a file
    return path


def with_dataset(space: spaces.Space, path: Path) -> spaces.Space:
    """``space`` with ``dataset: {path: PATH}`` (its split settings kept), reloaded and hashed."""
    doc = yaml.safe_load(space.text)
    doc["dataset"] = {"path": str(path.resolve()), **_split_of(doc.get("dataset"))}
    text = yaml.safe_dump(doc, sort_keys=False)
    reread = spaces.loads(text, source=space.source)  # checked; nothing resolved (a hypermodel stays bound)
    spec = dataclasses.replace(reread.dataset, file=str(path.resolve()), sha256=tree_sha256(path))
    return dataclasses.replace(space, text=text, fingerprint=reread.fingerprint, dataset=spec)


def _split_of(dataset: Any) -> dict[str, Any]:
    """The split settings of a dataset section, which arrays in memory keep."""
    if not isinstance(dataset, Mapping):
        return {}
    return {k: v for k, v in dataset.items() if k in ("validation_fraction", "limit")}


def _folder(url: str, data_dir: str | Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    db = storages.sqlite_path(url) if storages.backend(url) == "sqlite" else None
    return db.parent / f"{db.stem}-data" if db is not None else Path("hpsearch-data")
