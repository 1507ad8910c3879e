"""The bundled datasets: scikit-learn's digits, MNIST and Fashion-MNIST, found on this machine.

Where MNIST / Fashion-MNIST come from: ``data_dir`` (else ``$HPSEARCH_DATA_DIR``) when one is
named -- only there: a named directory without the files is a ``DataError``, never a silent switch
to another copy of the data; otherwise the first of Debian's ``dataset-fashion-mnist`` files,
Keras' download cache, then a Keras download unless ``HPSEARCH_OFFLINE`` is true. The bundled
digits have no test split of their own: a fixed 20 % of them (independent of any space's seed)
is held out as one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import ConfigError, DataError
from search.trial.idx import IDX_FILES, Raw, from_folders
from spaces import schema

__all__ = ["read"]

_DIGITS_TEST_SEED = 20_260_801  # fixed: the digits test split never depends on a space's seed
_DIGITS_TEST_SIZE = 360  # 20 % of the 1797 digits
_SUBDIRS = {"mnist": ("mnist",), "fashion_mnist": ("fashion_mnist", "fashion-mnist")}
_DEBIAN_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
_KERAS_CACHE = {"mnist": "mnist.npz", "fashion_mnist": "fashion-mnist"}
_TRUE = ("1", "true", "yes")


def read(name: str, data_dir: str | os.PathLike[str] | None, split: str) -> tuple[Any, Any, str, float]:
    """One split of a bundled dataset: its images, labels, where they came from, and the pixel scale."""
    if name not in schema.DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of: {', '.join(schema.DATASETS)}")
    pixel_max = schema.DATASET_INFO[name].pixel_max
    if name == "digits":
        return (*_load_digits(split), pixel_max)
    return (*_load_28x28(name, data_dir, split), pixel_max)


def _load_digits(split: str) -> Raw:
    from sklearn.datasets import load_digits  # lazy: scikit-learn is slow to import

    bunch = load_digits()
    images, labels = np.asarray(bunch.images), np.asarray(bunch.target)
    order = np.random.default_rng(_DIGITS_TEST_SEED).permutation(len(labels))
    keep = np.sort(order[:_DIGITS_TEST_SIZE] if split == "test" else order[_DIGITS_TEST_SIZE:])
    return images[keep], labels[keep], "scikit-learn digits (bundled)"


def _load_28x28(name: str, data_dir: str | os.PathLike[str] | None, split: str) -> Raw:
    env_dir = os.environ.get("HPSEARCH_DATA_DIR")
    if data_dir is not None or env_dir:  # the user named a directory: it, and nothing else
        return _from_named_dir(name, data_dir, env_dir, split)
    looked = ["$HPSEARCH_DATA_DIR (unset)"]
    if name in _DEBIAN_DIRS:
        looked.append(str(_DEBIAN_DIRS[name]))
        found = from_folders([_DEBIAN_DIRS[name]], split, idx=True, npz=False)
        if found is not None:
            return found
    cache = Path(os.environ.get("KERAS_HOME") or Path("~/.keras").expanduser()) / "datasets"
    if name == "mnist":
        looked.append(str(cache / "mnist.npz"))
        found = from_folders([cache], split, idx=False, npz=True)
    else:
        looked.append(str(cache / "fashion-mnist"))
        found = from_folders([cache / "fashion-mnist"], split, idx=True, npz=False)
    if found is not None:
        return found
    if os.environ.get("HPSEARCH_OFFLINE", "").strip().lower() in _TRUE:
        download = "download disabled (HPSEARCH_OFFLINE=1)"
    else:
        try:
            return _download(name, split)
        except Exception as e:  # any failure (no network, bad cache) falls through to the report
            reason = (str(e).splitlines() or [""])[0][:200]
            download = f"download failed ({type(e).__name__}: {reason})"
    raise DataError(
        f"{name}: no data found; looked in {', '.join(looked)}; {download}. "
        + ("Install Debian's dataset-fashion-mnist, or put" if name == "fashion_mnist" else "Put")
        + f" {IDX_FILES[split][0]}.gz and {IDX_FILES[split][1]}.gz"
        + (" (or mnist.npz)" if name == "mnist" else "")
        + " in a directory and pass --data-dir DIR (or set HPSEARCH_DATA_DIR)."
    )


def _from_named_dir(
    name: str, data_dir: str | os.PathLike[str] | None, env_dir: str | None, split: str
) -> Raw:
    """The files in the directory the user named; never another copy of the data instead."""
    named = "data_dir" if data_dir is not None else "$HPSEARCH_DATA_DIR"
    directory = Path(data_dir if data_dir is not None else str(env_dir)).expanduser()
    if not directory.is_dir():
        what = "not a directory" if directory.exists() else "no such directory"
        raise DataError(f"{name}: {named} {directory}: {what}")
    folders = [directory, *(directory / sub for sub in _SUBDIRS[name])]
    found = from_folders(folders, split, idx=True, npz=name == "mnist")
    if found is not None:
        return found
    subdirs = " or ".join(f"{sub}/" for sub in _SUBDIRS[name])
    raise DataError(
        f"{name}: {named} {directory}: no {split} files in it or in its {subdirs} subdirectory; "
        f"expected {IDX_FILES[split][0]}.gz and {IDX_FILES[split][1]}.gz (or uncompressed)"
        + (" or mnist.npz" if name == "mnist" else "")
        + ". Other copies of the data are not searched when a directory is named"
    )


def _download(name: str, split: str) -> Raw:
    import keras  # lazy: TensorFlow is slow to import and only needed here

    module = keras.datasets.mnist if name == "mnist" else keras.datasets.fashion_mnist
    train, test = module.load_data()
    x, y = train if split == "train" else test
    return np.asarray(x), np.asarray(y), f"keras.datasets.{name} download"
