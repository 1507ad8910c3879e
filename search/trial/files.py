"""Image folders and CSV files as NumPy arrays: samples and their labels as read (text or numbers).

:mod:`search.trial.sources` turns the labels into class indices and checks the splits.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from search.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "read_csv", "read_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_images(folder: Path, size: tuple[int, int] | None) -> tuple[NDArray[np.uint8], NDArray[Any]]:
    """One subfolder per class, as Keras' ``image_dataset_from_directory`` reads them.

    Grayscale when every image is; otherwise RGB. Without ``size`` every image must have the
    first one's size.
    """
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{folder}: expected one subfolder per class (at least 2), found {len(classes)}")
    images: list[Any] = []
    labels: list[str] = []
    for cls in classes:
        for file in sorted(cls.rglob("*")):
            if file.suffix.lower() not in IMAGE_SUFFIXES or file.name.startswith("."):
                continue
            try:
                with Image.open(file) as img:
                    img.load()
                    images.append((file, img.copy()))
            except (OSError, UnidentifiedImageError) as e:
                raise DataError(f"{file}: not a readable image: {e}") from e
            labels.append(cls.name)
    if not images:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class subfolders")
    gray = all(img.mode in ("1", "L", "LA", "I;16", "I") for _, img in images)
    want = size[::-1] if size is not None else images[0][1].size  # PIL sizes are (width, height)
    out = np.empty((len(images), want[1], want[0], 1 if gray else 3), dtype=np.uint8)
    for i, (file, img) in enumerate(images):
        if img.size != want and size is None:
            raise DataError(
                f"{file}: {img.size[0]}x{img.size[1]} pixels, the first image is {want[0]}x{want[1]}; "
                "give dataset.image_size: [height, width] to resize them all"
            )
        img = img.convert("L" if gray else "RGB")
        if img.size != want:
            img = img.resize(want, Image.Resampling.BILINEAR)
        pixels = np.asarray(img, dtype=np.uint8)
        out[i] = pixels[..., np.newaxis] if gray else pixels
    return out, np.array(labels)


def read_csv(path: Path, label: str) -> tuple[NDArray[np.float32], NDArray[Any]]:
    """Numeric feature columns and one label column (a header row names them)."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and data rows, got {len(rows)} rows")
    header = [h.strip() for h in rows[0]]
    if label not in header:
        raise DataError(f"{path}: no column {label!r} (dataset.label); columns: {', '.join(header)[:200]}")
    at = header.index(label)
    features = [i for i in range(len(header)) if i != at]
    if not features:
        raise DataError(f"{path}: no feature columns besides {label!r}")
    x = np.empty((len(rows) - 1, len(features)), dtype=np.float32)
    y: list[str] = []
    for n, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(f"{path}: line {n + 2}: {len(row)} fields, the header has {len(header)}")
        for j, i in enumerate(features):
            try:
                x[n, j] = float(row[i])
            except ValueError:
                raise DataError(
                    f"{path}: line {n + 2}, column {header[i]!r}: {row[i]!r} is not a number"
                ) from None
        y.append(row[at].strip())
    return x, _numeric_labels(np.array(y))


def _numeric_labels(y: NDArray[Any]) -> NDArray[Any]:
    """CSV labels are text; "0", "1", ... become integers, so that class i is still "i"."""
    try:
        return y.astype(np.int64)
    except ValueError:
        return y
