"""Reading a user's data: a ``.npz``, a folder of class subfolders of images, a CSV, a loader.

Each reader returns :class:`Arrays`: the training split, and the validation and test splits
when the source has them (:mod:`search.trial.files` parses image folders and CSV files).
Labels come back as class indices ``0..K-1`` with the class names; one-hot labels (KerasTuner's
guide encodes them so) are turned back into indices. Every problem is one ``DataError`` line
naming the file (and the row, column or image).

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(path, x_train=np.zeros((4, 3)), y_train=np.array(["b", "a", "b", "a"]))
    >>> arrays = read_npz(path)
    >>> arrays.y_train.tolist(), arrays.class_names
    ([1, 0, 1, 0], ('a', 'b'))
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from search.errors import ConfigError, DataError
from search.trial import files

if TYPE_CHECKING:
    from spaces import DatasetSpec

__all__ = ["Arrays", "read", "read_npz", "read_test"]

_SPLITS = ("train", "val", "test")


@dataclass
class Arrays:
    """A source's splits as NumPy arrays; ``None`` where the source has no such split."""

    source: str
    x_train: NDArray[Any] = field(repr=False)
    y_train: NDArray[np.int32] = field(repr=False)
    class_names: tuple[str, ...]
    x_val: NDArray[Any] | None = field(default=None, repr=False)
    y_val: NDArray[np.int32] | None = field(default=None, repr=False)
    x_test: NDArray[Any] | None = field(default=None, repr=False)
    y_test: NDArray[np.int32] | None = field(default=None, repr=False)


def read(spec: DatasetSpec) -> Arrays:
    """The training (and validation) data of a file or loader dataset; its test split unread."""
    path = _where(spec)
    if spec.kind == "npz":
        return read_npz(path, test=False)
    if spec.kind == "images":
        return from_splits(str(path), {"train": files.read_images(path, spec.image_size)})
    if spec.kind == "csv":
        return from_splits(str(path), {"train": files.read_csv(path, str(spec.label))})
    if spec.kind == "loader":
        return _call_loader(spec, path, test=False)
    raise ConfigError(f"dataset {spec.name}: not a file dataset")


def read_test(spec: DatasetSpec, class_names: tuple[str, ...]) -> tuple[NDArray[Any], NDArray[np.int32], str]:
    """The test split (``hpsearch evaluate`` only), labelled with the training split's classes."""
    path = _where(spec)
    if spec.kind in ("npz", "loader"):
        raw = _npz(path) if spec.kind == "npz" else _loader_result(spec, path)
        if "x_test" not in raw or "y_test" not in raw:
            raise DataError(f"{path}: no test split (x_test and y_test)")
        x, y, source = raw["x_test"], raw["y_test"], str(path)
    else:
        if spec.test_file is None:
            raise DataError(f"dataset {spec.name}: no test split; name one with dataset.test")
        test = Path(spec.test_file)
        if spec.kind == "images":
            x, y = files.read_images(test, spec.image_size)
        else:
            x, y = files.read_csv(test, str(spec.label))
        source = str(test)
    return np.asarray(x), _indices(np.asarray(y), class_names, source), source


def read_npz(path: str | Path, *, test: bool = False) -> Arrays:
    """``x_train``, ``y_train`` and optionally ``x_val`` / ``y_val`` (and ``x_test`` / ``y_test``)."""
    raw = _npz(Path(path))
    return from_splits(
        str(path),
        {s: (raw[f"x_{s}"], raw[f"y_{s}"]) for s in _SPLITS if f"x_{s}" in raw and (test or s != "test")},
    )


def from_splits(source: str, splits: Mapping[str, tuple[Any, Any]]) -> Arrays:
    """Arrays from ``{"train": (x, y), "val": ..., "test": ...}``: checked, labels as class indices."""
    if "train" not in splits:
        raise DataError(f"{source}: no training split (x_train and y_train)")
    checked: dict[str, tuple[NDArray[Any], NDArray[Any]]] = {}
    for split, (x, y) in splits.items():
        x, y = np.asarray(x), _labels(np.asarray(y), f"{source}: y_{split}")
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise DataError(f"{source}: x_{split} must be numbers, got dtype {x.dtype}")
        if x.ndim < 2 or x.ndim > 4:
            raise DataError(
                f"{source}: x_{split} has shape {x.shape}; expected (n, features) or images (n, H, W[, C])"
            )
        if len(x) != len(y):
            raise DataError(f"{source}: {len(x)} samples in x_{split} but {len(y)} labels in y_{split}")
        checked[split] = (x[..., np.newaxis] if x.ndim == 3 else x, y)
    shapes = {s: xy[0].shape[1:] for s, xy in checked.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{source}: the splits' samples differ in shape: {shapes}")
    seen = np.concatenate([checked[s][1] for s in ("train", "val") if s in checked])
    names = _class_names(seen, source)
    out = {s: (x, _indices(y, names, source)) for s, (x, y) in checked.items()}
    return Arrays(
        source, *out["train"], names,
        *out.get("val", (None, None)), *out.get("test", (None, None)),
    )  # fmt: skip


def _labels(y: NDArray[Any], what: str) -> NDArray[Any]:
    """One label per sample: a one-hot (n, K) matrix becomes indices; (n, 1) becomes (n,)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and np.issubdtype(y.dtype, np.number):
        if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=1) == 1):
            raise DataError(f"{what}: a 2-D label array must be one-hot (one 1 per row), got {y.shape}")
        return np.asarray(np.argmax(y, axis=1))
    if y.ndim != 1:
        raise DataError(f"{what}: expected one label per sample, got shape {y.shape}")
    return np.asarray(y)


def _class_names(y: NDArray[Any], source: str) -> tuple[str, ...]:
    """Integer labels 0..K-1 keep their meaning (class i is named "i"); other labels sorted."""
    if len(y) == 0:
        raise DataError(f"{source}: no samples")
    if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)
    if np.issubdtype(y.dtype, np.integer) and y.min() >= 0 and y.max() < 100_000:
        names = tuple(str(i) for i in range(int(y.max()) + 1))
    else:
        names = tuple(str(v) for v in np.unique(y.astype(str)))
    if len(set(y.tolist())) < 2:
        raise DataError(f"{source}: every label is {y[0].item()!r}; a classifier needs at least 2 classes")
    return names


def _indices(y: NDArray[Any], names: tuple[str, ...], source: str) -> NDArray[np.int32]:
    if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)
    text = y.astype(str)
    lookup = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(text.tolist()) - set(lookup))
    if unknown:
        raise DataError(
            f"{source}: labels {unknown[:5]} are not among the training classes {list(names)[:10]}"
        )
    return np.array([lookup[t] for t in text.tolist()], dtype=np.int32)


def _where(spec: DatasetSpec) -> Path:
    if spec.file is None:
        raise ConfigError(f"dataset {spec.name}: not bound to a local file")
    return Path(spec.file)


def _npz(path: Path) -> dict[str, NDArray[Any]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            raw = {key: np.asarray(npz[key]) for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: not a readable .npz file: {e}") from e
    for split in _SPLITS:
        if (f"x_{split}" in raw) != (f"y_{split}" in raw):
            raise DataError(f"{path}: has only one of x_{split} and y_{split}")
    if "x_train" not in raw:
        raise DataError(f"{path}: no x_train / y_train arrays (it has: {', '.join(sorted(raw)) or 'none'})")
    return raw


def _call_loader(spec: DatasetSpec, path: Path, *, test: bool) -> Arrays:
    raw = _loader_result(spec, path)
    return from_splits(
        f"{path}:{spec.loader}",
        {s: (raw[f"x_{s}"], raw[f"y_{s}"]) for s in _SPLITS if f"x_{s}" in raw and (test or s != "test")},
    )


def _loader_result(spec: DatasetSpec, path: Path) -> dict[str, Any]:
    """What the loader function returns: a mapping like an .npz's arrays, or a pair ``(x, y)``."""
    from search.hypermodels.loader import first_line, load_module, where

    if spec.sha256 is None:
        raise ConfigError(f"dataset loader {spec.name}: not bound to a local file")
    module = load_module(str(path), spec.sha256, "dataset loader")
    function = getattr(module, str(spec.loader), None)
    where_ = f"{path}:{spec.loader}"
    if not callable(function):
        raise ConfigError(f"dataset loader {where_}: no function {spec.loader!r} in the file")
    try:
        result = function()
    except Exception as e:  # the user's function: its error is theirs, in one line
        line = where(e, str(path))
        at = "" if line is None else f" at line {line}"
        raise DataError(f"dataset loader {where_} raised {type(e).__name__}{at}: {first_line(e)}") from e
    if isinstance(result, tuple) and len(result) == 2 and not isinstance(result[0], tuple):
        return {"x_train": result[0], "y_train": result[1]}
    if isinstance(result, Mapping) and "x_train" in result and "y_train" in result:
        return dict(result)
    raise DataError(
        f"dataset loader {where_}: expected a pair (x, y) or a dict with x_train, y_train "
        f"[, x_val, y_val, x_test, y_test], got {type(result).__name__}"
    )
