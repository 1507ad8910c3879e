"""A dataset's test split, read only by the final evaluation of a chosen trial (``hpsearch evaluate``).

The search never calls this module: it trains and validates on :mod:`search.trial.data`'s
training split alone.

Example:
    >>> len(load_test("digits").y)
    360
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from search.errors import DataError
from search.trial import bundled, sources
from search.trial.data import load_file
from spaces import schema

if TYPE_CHECKING:
    from spaces import Space

__all__ = ["TestSet", "load_test", "load_test_for"]


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


def load_test_for(space: Space, data_dir: str | None = None) -> TestSet:
    """The test split of a space's dataset (``hpsearch evaluate`` only)."""
    spec = space.dataset
    if not spec.is_file:
        return load_test(spec.name, data_dir=data_dir)
    train = load_file(spec, space.seed)
    x, y, source = sources.read_test(spec, train.class_names)
    x = x[..., np.newaxis] if x.ndim == 3 else x
    if tuple(x.shape[1:]) != train.input_shape:
        raise DataError(f"{source}: test samples have shape {x.shape[1:]}, training ones {train.input_shape}")
    return TestSet(spec.name, x.astype(np.float32), y, train.num_classes, train.pixel_max, source)
