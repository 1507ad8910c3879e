"""A space's data as training and validation arrays: a bundled dataset or the user's file.

The search reads only the training split of a dataset; a fixed, seeded part of it becomes the
validation set unless the source has its own. The test split is read only by ``hpsearch
evaluate`` (:mod:`search.trial.testsplit`). Samples keep their raw scale (the model
rescales images by ``pixel_max`` and standardizes feature rows). Loaded datasets are cached per
process and their arrays are read-only, so every trial of a worker shares one copy. Where the
bundled datasets are found: :mod:`search.trial.bundled`; the user's files: :mod:`search.trial.sources`.

Example:
    >>> ds = load_dataset("digits", validation_fraction=0.2, limit=100)
    >>> ds.input_shape, len(ds.x_train), len(ds.x_val), ds.pixel_max
    ((8, 8, 1), 100, 287, 16.0)
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from search.errors import ConfigError, DataError
from search.trial import bundled, sources
from spaces import schema
from spaces.refs import tree_sha256

if TYPE_CHECKING:
    from spaces import DatasetSpec, Space

__all__ = [
    "DATASETS",
    "Dataset",
    "from_arrays",
    "load_dataset",
    "load_file",
    "load_for",
]

DATASETS: tuple[str, ...] = schema.DATASETS
_Parts = tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]  # x_train, y_train, x_val, y_val


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset's training split, divided into training and validation arrays.

    Attributes:
        name: One of ``DATASETS``, or the file / loader a space names.
        x_train: float32 samples, raw scale: images ``(n, H, W, C)`` (0..``pixel_max``) or
            feature rows ``(n, F)``.
        y_train: int32 class indices in ``0..num_classes-1``, shape ``(n,)``.
        x_val: Validation samples, like ``x_train``.
        y_val: Validation labels, like ``y_train``.
        num_classes: Number of classes (2 or more).
        pixel_max: Largest pixel value of images: 255.0 for 8-bit images, 16.0 for digits.
        source: Where the data came from, for humans (a path, or the bundled digits).
        class_names: One name per class (the bundled datasets' names, a folder's subfolders).
    """

    name: str
    x_train: NDArray[np.float32] = field(repr=False)
    y_train: NDArray[np.int32 | np.float32] = field(repr=False)  # float32 rows: one_hot()
    x_val: NDArray[np.float32] = field(repr=False)
    y_val: NDArray[np.int32 | np.float32] = field(repr=False)
    num_classes: int
    pixel_max: float
    source: str
    class_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: ``(H, W, C)`` for images, ``(F,)`` for feature rows."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    @functools.cached_property
    def feature_stats(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Per-feature mean and variance of the training rows (a model standardizes flat inputs)."""
        return self.x_train.mean(axis=0), self.x_train.var(axis=0)

    def one_hot(self) -> Dataset:
        """The same data with one-hot float32 labels, for a model compiled with a categorical loss.

        Made once per dataset: every trial of a worker that wants one-hot labels shares it.
        """
        cached: Dataset | None = self.__dict__.get("_one_hot")
        if cached is None:
            eye = np.eye(self.num_classes, dtype=np.float32)
            y_train, y_val = eye[self.y_train], eye[self.y_val]
            for arr in (y_train, y_val):
                arr.setflags(write=False)
            cached = dataclasses.replace(self, y_train=y_train, y_val=y_val)
            self.__dict__["_one_hot"] = cached
        return cached


@functools.lru_cache(maxsize=4)
def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    validation_fraction: float = 0.1,
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Loads a dataset's training split and carves a seeded validation set out of it.

    The training split is permuted with ``numpy.random.default_rng(seed)``; the first
    ``round(n * validation_fraction)`` samples are the validation set, the rest the training set,
    which ``limit`` then truncates. The validation set therefore never depends on ``limit``.
    Results are cached per process; the returned arrays are read-only.

    Args:
        name: One of ``DATASETS``.
        data_dir: Directory with IDX files or ``mnist.npz``; defaults to ``$HPSEARCH_DATA_DIR``.
        validation_fraction: Share of the training split held out, in ``(0, 0.5]``.
        limit: Keep at most this many training samples (at least 1); ``None`` keeps all.
        seed: Seed of the split.

    Returns:
        The loaded ``Dataset``.

    Raises:
        ConfigError: Unknown name, or ``validation_fraction`` / ``limit`` out of range.
        DataError: No data found, or a data file is corrupt.

    Example:
        >>> load_dataset("digits", seed=1).x_val.shape
        (144, 8, 8, 1)
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    if not isinstance(validation_fraction, (int, float)) or not 0.0 < validation_fraction <= 0.5:
        raise ConfigError(f"validation_fraction must be in (0, 0.5], got {validation_fraction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be an integer >= 1, got {limit!r}")
    images, labels, source, pixel_max = bundled.read(name, data_dir, "train")
    return _split(name, images, labels, source, pixel_max, validation_fraction, limit, seed)


def load_for(space: Space, data_dir: str | None = None) -> Dataset:
    """The training and validation data a space searches on (its dataset, split, limit and seed).

    Raises:
        ConfigError: a file dataset not bound to a file, one that changed since it was hashed
            (``sha256``), or a ``cnn`` on feature rows.
        DataError: the data cannot be read.
    """
    spec = space.dataset
    if not spec.is_file:
        return load_dataset(
            spec.name,
            data_dir=data_dir,
            validation_fraction=spec.validation_fraction,
            limit=spec.limit,
            seed=space.seed,
        )
    dataset = load_file(spec, space.seed)
    if space.family == "cnn" and not dataset.is_image:
        raise ConfigError(
            f"dataset {spec.name}: model.family cnn needs images (n, H, W, C); the samples have "
            f"shape {dataset.input_shape} (use family mlp)"
        )
    return dataset


def load_file(spec: DatasetSpec, seed: int) -> Dataset:
    """A file or loader dataset, checked against its sha256 on every call, read once per process."""
    if spec.file is None or spec.sha256 is None:
        if spec.kind == "loader":
            raise ConfigError(
                f"dataset {spec.name}: pass --data FILE.py:{spec.loader}, your copy "
                "(hpsearch never imports a path stored in a study)"
            )
        raise ConfigError(f"dataset {spec.name}: no file to read; pass --data PATH")
    try:
        digest = tree_sha256(spec.file)
    except OSError as e:
        raise DataError(f"dataset {spec.name}: cannot read {spec.file}: {e}") from e
    if digest != spec.sha256:
        raise ConfigError(
            f"dataset {spec.file}: changed since the study was created (sha256 {digest[:12]}, "
            f"the study has {spec.sha256[:12]}); restore it, or create a new study"
        )
    return _read_file(spec, seed)


@functools.lru_cache(maxsize=4)
def _read_file(spec: DatasetSpec, seed: int) -> Dataset:
    """Cached by the spec, whose sha256 names the bytes: a changed file is another key."""
    return from_arrays(spec.name, sources.read(spec), spec.validation_fraction, spec.limit, seed)


def from_arrays(
    name: str, arrays: sources.Arrays, validation_fraction: float, limit: int | None, seed: int
) -> Dataset:
    """A :class:`Dataset` from a source's arrays: its own validation split, else a seeded one.

    Example:
        >>> import numpy as np
        >>> arrays = sources.from_splits("mine", {"train": (np.eye(10), np.arange(10) % 2)})
        >>> ds = from_arrays("mine", arrays, 0.2, None, seed=0)
        >>> ds.input_shape, len(ds.y_train), len(ds.y_val), ds.num_classes
        ((10,), 8, 2, 2)
    """
    x, y = arrays.x_train, arrays.y_train
    pixel_max = 255.0 if x.dtype == np.uint8 else max(1.0, float(np.abs(x).max(initial=0.0)))
    if arrays.x_val is not None and arrays.y_val is not None:
        parts = _frozen(
            x[:limit].astype(np.float32), y[:limit], arrays.x_val.astype(np.float32), arrays.y_val
        )
    else:
        parts = _carve(x.astype(np.float32), y, validation_fraction, limit, seed, arrays.source)
    names = arrays.class_names
    return Dataset(name, *parts, len(names), pixel_max, arrays.source, names)


def _split(
    name: str,
    images: NDArray[Any],
    labels: NDArray[Any],
    source: str,
    pixel_max: float,
    fraction: float,
    limit: int | None,
    seed: int,
) -> Dataset:
    n = len(labels)
    if images.ndim != 3 or len(images) != n:
        raise DataError(f"{source}: {len(images)} images of shape {images.shape[1:]} for {n} labels")
    classes = schema.DATASET_INFO[name].num_classes
    if n and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{source}: labels must be in 0..{classes - 1}, found {labels.min()}..{labels.max()}")
    x = images.astype(np.float32)[..., np.newaxis]
    parts = _carve(x, labels.astype(np.int32), fraction, limit, seed, source)
    names = schema.DATASET_INFO[name].class_names
    return Dataset(name, *parts, classes, pixel_max, source, names)


def _carve(
    x: NDArray[Any], y: NDArray[Any], fraction: float, limit: int | None, seed: int, source: str
) -> _Parts:
    """The seeded split: a permutation's first ``round(n * fraction)`` validate, ``limit`` cuts the rest."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_val = round(len(y) * fraction)
    if n_val < 1 or n_val >= len(y):
        raise DataError(f"{source}: {len(y)} samples are too few for validation_fraction={fraction}")
    val, train = order[:n_val], order[n_val:][:limit]
    return _frozen(x[train], y[train], x[val], y[val])


def _frozen(*arrays: NDArray[Any]) -> _Parts:
    """x_train, y_train, x_val, y_val, read-only: every trial of a worker shares them."""
    for arr in arrays:
        arr.setflags(write=False)
    x_train, y_train, x_val, y_val = arrays
    return x_train, y_train, x_val, y_val
