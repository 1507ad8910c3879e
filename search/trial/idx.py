"""Reading dataset files: IDX (gzip-compressed or not) and Keras' ``mnist.npz``.

Every problem with a file (missing, truncated, wrong magic number) is a one-line ``DataError``
naming the file.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from search.errors import DataError

__all__ = ["IDX_FILES", "Raw", "from_folders"]

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

Raw = tuple[NDArray[Any], NDArray[Any], str]  # images (n, H, W), labels (n,), source


def from_folders(folders: list[Path], split: str, *, idx: bool, npz: bool) -> Raw | None:
    """Loads the first folder's IDX pair (or ``mnist.npz``) of ``split``; ``None`` if there is none."""
    for folder in folders:
        pair = [_first_existing(folder, base) for base in IDX_FILES[split]]
        if idx and pair[0] is not None and pair[1] is not None:
            images = _read_idx(pair[0], IMAGES_MAGIC, ndim=3)
            labels = _read_idx(pair[1], LABELS_MAGIC, ndim=1)
            if len(images) != len(labels):
                raise DataError(f"{folder}: {len(images)} images but {len(labels)} labels")
            return images, labels, str(folder)
        if npz and (folder / "mnist.npz").is_file():
            return _read_npz(folder / "mnist.npz", split)
    return None


def _first_existing(folder: Path, base: str) -> Path | None:
    for candidate in (folder / f"{base}.gz", folder / base):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, magic: int, *, ndim: int) -> NDArray[np.uint8]:
    """Parses an IDX file of unsigned bytes (gzip-compressed when the name ends in ``.gz``)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    header = 4 + 4 * ndim
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        got = f"0x{int.from_bytes(raw[:4], 'big'):08x}" if len(raw) >= 4 else f"{len(raw)} bytes"
        raise DataError(f"{path}: not an IDX file with magic 0x{magic:08x} (got {got})")
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} of {header} bytes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path}: truncated: {dims} needs {expected} bytes, got {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_npz(path: Path, split: str) -> Raw:
    """Reads ``x_{split}`` / ``y_{split}`` from a Keras-format ``mnist.npz`` (the other split unread)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return np.asarray(npz[f"x_{split}"]), np.asarray(npz[f"y_{split}"]), str(path)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: not a readable mnist.npz with x_{split} and y_{split}: {e}") from e
