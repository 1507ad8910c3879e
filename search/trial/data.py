"""A space's data as training and validation arrays: a bundled dataset or the user's file.

The search reads only the training split of a dataset; a fixed, seeded part of it becomes the
validation set unless the source has its own. The test split is read only by :func:`load_test`
/ :func:`load_test_for` (``hpsearch evaluate``). Samples keep their raw scale (the model
rescales images by ``pixel_max`` and standardizes feature rows). Loaded datasets are cached per
process and their arrays are read-only, so every trial of a worker shares one copy. Where the
bundled datasets are found: :mod:`search.trial.bundled`; the user's files: :mod:`search.trial.sources`.

Example:
    >>> ds = load_dataset("digits", validation_fraction=0.2, limit=100)
    >>> ds.input_shape, len(ds.x_train), len(ds.x_val), ds.pixel_max
    ((8, 8, 1), 100, 287, 16.0)
    >>> len(load_test("digits").y)
    360
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
    "TestSet",
    "from_arrays",
    "load_dataset",
    "load_for",
    "load_test",
    "load_test_for",
]

DATASETS: tuple[str, ...] = schema.DATASETS


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


@dataclass(frozen=True, eq=False)
class TestSet:
    """A dataset's test split: samples ``x`` (raw scale, shaped like the training ones), labels ``y``."""

    name: str
    x: NDArray[np.float32] = field(repr=False)
    y: NDArray[np.int32] = field(repr=False)
    num_classes: int
    pixel_max: float
    source: str


def load_test(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> TestSet:
    """Loads a dataset's test split (the 10,000 ``t10k`` images; digits: the fixed held-out 360).

    The search never calls this; only the final evaluation of a chosen trial does.

    Raises:
        ConfigError: Unknown name.
        DataError: No test files found, or a data file is corrupt.
    """
    images, labels, source, pixel_max = bundled.read(name, data_dir, "test")
    if images.ndim != 3 or len(images) != len(labels):
        raise DataError(f"{source}: {len(images)} images ({images.shape[1:]}), {len(labels)} labels")
    return TestSet(
        name,
        images.astype(np.float32)[..., np.newaxis],
        labels.astype(np.int32),
        schema.DATASET_INFO[name].num_classes,
        pixel_max,
        source,
    )


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
    dataset = _load_file(spec, space.seed)
    if space.family == "cnn" and not dataset.is_image:
        raise ConfigError(
            f"dataset {spec.name}: model.family cnn needs images (n, H, W, C); the samples have "
            f"shape {dataset.input_shape} (use family mlp)"
        )
    return dataset


def load_test_for(space: Space, data_dir: str | None = None) -> TestSet:
    """The test split of a space's dataset (``hpsearch evaluate`` only)."""
    spec = space.dataset
    if not spec.is_file:
        return load_test(spec.name, data_dir=data_dir)
    train = _load_file(spec, space.seed)
    x, y, source = sources.read_test(spec, train.class_names)
    x = x[..., np.newaxis] if x.ndim == 3 else x
    if tuple(x.shape[1:]) != train.input_shape:
        raise DataError(f"{source}: test samples have shape {x.shape[1:]}, training ones {train.input_shape}")
    return TestSet(spec.name, x.astype(np.float32), y, train.num_classes, train.pixel_max, source)


def _load_file(spec: DatasetSpec, seed: int) -> Dataset:
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
        x_train, y_train = x[:limit].astype(np.float32), y[:limit]
        x_val, y_val = arrays.x_val.astype(np.float32), arrays.y_val
    else:
        order = np.random.default_rng(seed).permutation(len(y))
        n_val = round(len(y) * validation_fraction)
        if n_val < 1 or n_val >= len(y):
            raise DataError(f"{arrays.source}: {len(y)} samples are too few for a validation split")
        val, train = order[:n_val], order[n_val:][:limit]
        x32 = x.astype(np.float32)
        x_train, y_train, x_val, y_val = x32[train], y[train], x32[val], y[val]
    for arr in (x_train, y_train, x_val, y_val):
        arr.setflags(write=False)
    names = arrays.class_names
    return Dataset(name, x_train, y_train, x_val, y_val, len(names), pixel_max, arrays.source, names)


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
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * fraction)
    if n_val < 1 or n_val >= n:
        raise DataError(f"{source}: {n} samples are too few for validation_fraction={fraction}")
    val, train = order[:n_val], order[n_val:][:limit]
    x = images.astype(np.float32)[..., np.newaxis]
    y = labels.astype(np.int32)
    x_train, y_train, x_val, y_val = x[train], y[train], x[val], y[val]
    for arr in (x_train, y_train, x_val, y_val):
        arr.setflags(write=False)
    names = schema.DATASET_INFO[name].class_names
    return Dataset(name, x_train, y_train, x_val, y_val, classes, pixel_max, source, names)
