"""Tests for search.trial.data: real loaders on bundled digits and on tiny IDX / npz files written here."""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from search.errors import ConfigError, DataError
from search.trial import bundled, testsplit
from search.trial.data import DATASETS, load_dataset

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
N = 40  # samples in the synthetic datasets; image i has every pixel equal to i, label i % 10


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No network, no real Keras cache, no Debian files, no env data dir, an empty cache."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(home / "keras"))
    monkeypatch.setenv("HPSEARCH_OFFLINE", "1")
    monkeypatch.delenv("HPSEARCH_DATA_DIR", raising=False)
    monkeypatch.setitem(bundled._DEBIAN_DIRS, "fashion_mnist", tmp_path / "no-debian")
    load_dataset.cache_clear()
    yield
    load_dataset.cache_clear()


def write_idx(path: Path, array: NDArray[np.uint8], magic: int | None = None) -> Path:
    """Writes ``array`` in the IDX format (gzip-compressed when ``path`` ends in ``.gz``)."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def synthetic(n: int = N, size: int = 4) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    images = np.repeat(np.arange(n, dtype=np.uint8), size * size).reshape(n, size, size)
    return images, (np.arange(n) % 10).astype(np.uint8)


def write_pair(folder: Path, *, gz: bool = True, n: int = N) -> tuple[Path, Path]:
    images, labels = synthetic(n)
    ext = ".gz" if gz else ""
    return (
        write_idx(folder / f"train-images-idx3-ubyte{ext}", images),
        write_idx(folder / f"train-labels-idx1-ubyte{ext}", labels),
    )


def indices(x: NDArray[np.float32]) -> list[int]:
    """Recovers the synthetic sample index from each image."""
    return [int(v) for v in x[:, 0, 0, 0]]


# --- digits (bundled with scikit-learn) -------------------------------------------------------


def test_digits_shapes_dtypes_and_split_sizes() -> None:
    ds = load_dataset("digits", validation_fraction=0.2)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.pixel_max == 16.0
    assert ds.input_shape == (8, 8, 1)
    assert ds.source == "scikit-learn digits (bundled)"
    # 1797 digits minus the fixed 360-image test split
    assert len(ds.x_val) == round(1437 * 0.2) == 287
    assert ds.x_train.shape == (1437 - 287, 8, 8, 1) and ds.x_val.shape == (287, 8, 8, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32 and ds.y_val.dtype == np.int32
    assert ds.y_train.shape == (1150,)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 16.0  # raw scale, not normalized
    assert set(np.unique(np.concatenate([ds.y_train, ds.y_val]))) == set(range(10))


def test_split_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    first = load_dataset("digits", seed=3)
    load_dataset.cache_clear()  # force a real reload, not the cached object
    again = load_dataset("digits", seed=3)
    assert first is not again
    for a, b in [(first.x_train, again.x_train), (first.y_val, again.y_val), (first.x_val, again.x_val)]:
        assert a.tobytes() == b.tobytes()
    other = load_dataset("digits", seed=4)
    assert other.x_val.tobytes() != first.x_val.tobytes()


def test_results_are_cached_per_arguments() -> None:
    assert load_dataset("digits", seed=1) is load_dataset("digits", seed=1)
    assert load_dataset("digits", seed=1) is not load_dataset("digits", seed=2)


def test_returned_arrays_are_read_only() -> None:
    ds = load_dataset("digits")
    for arr in (ds.x_train, ds.y_train, ds.x_val, ds.y_val):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0


# --- split semantics on synthetic IDX data (every image is unique) ---------------------------


def test_validation_and_training_partition_the_training_split(tmp_path: Path) -> None:
    write_pair(tmp_path)
    ds = load_dataset("mnist", data_dir=tmp_path, validation_fraction=0.25, seed=7)
    train, val = indices(ds.x_train), indices(ds.x_val)
    assert len(val) == 10 and len(train) == 30
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(N))
    assert [i % 10 for i in train] == ds.y_train.tolist()  # labels stay with their images


def test_limit_truncates_only_training(tmp_path: Path) -> None:
    write_pair(tmp_path)
    full = load_dataset("mnist", data_dir=tmp_path, seed=5)
    limited = load_dataset("mnist", data_dir=tmp_path, seed=5, limit=7)
    assert indices(limited.x_val) == indices(full.x_val)
    assert indices(limited.x_train) == indices(full.x_train)[:7]
    assert len(load_dataset("mnist", data_dir=tmp_path, seed=5, limit=10_000).x_train) == N - 4


# --- where MNIST / Fashion-MNIST come from ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "subdir", "gz"),
    [
        ("mnist", "", True),
        ("mnist", "", False),
        ("mnist", "mnist", True),
        ("fashion_mnist", "fashion_mnist", False),
        ("fashion_mnist", "fashion-mnist", True),
    ],
)
def test_idx_files_from_data_dir(tmp_path: Path, name: str, subdir: str, gz: bool) -> None:
    folder = tmp_path / "d" / subdir if subdir else tmp_path / "d"
    write_pair(folder, gz=gz)
    ds = load_dataset(name, data_dir=str(tmp_path / "d"))
    assert ds.name == name and ds.pixel_max == 255.0 and ds.input_shape == (4, 4, 1)
    assert ds.source == str(folder)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert len(ds.x_train) + len(ds.x_val) == N


def test_env_data_dir_is_used_without_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_pair(tmp_path / "env" / "fashion-mnist")
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path / "env"))
    assert load_dataset("fashion_mnist").source == str(tmp_path / "env" / "fashion-mnist")


def save_npz(path: Path, n: int = N) -> None:
    images, labels = synthetic(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=images, y_train=labels, x_test=images[:3], y_test=labels[:3])


def test_mnist_npz_from_data_dir(tmp_path: Path) -> None:
    save_npz(tmp_path / "mnist.npz")
    ds = load_dataset("mnist", data_dir=tmp_path, validation_fraction=0.5)
    assert ds.source == str(tmp_path / "mnist.npz")
    assert len(ds.x_train) == len(ds.x_val) == N // 2  # the x_test rows are not used
    assert sorted(indices(ds.x_train) + indices(ds.x_val)) == list(range(N))


def test_keras_cache_is_searched(tmp_path: Path) -> None:
    cache = tmp_path / "home" / "keras" / "datasets"
    save_npz(cache / "mnist.npz")
    write_pair(cache / "fashion-mnist")
    assert load_dataset("mnist").source == str(cache / "mnist.npz")
    assert load_dataset("fashion_mnist").source == str(cache / "fashion-mnist")


def test_fashion_mnist_does_not_take_mnist_npz(tmp_path: Path) -> None:
    save_npz(tmp_path / "mnist.npz")
    with pytest.raises(DataError, match=f"fashion_mnist: data_dir {tmp_path}: no train files in it"):
        load_dataset("fashion_mnist", data_dir=tmp_path)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bundled._DEBIAN_DIRS, "fashion_mnist", DEBIAN_FASHION)
    ds = load_dataset("fashion_mnist", validation_fraction=0.1)
    assert ds.source == str(DEBIAN_FASHION)
    assert ds.x_train.shape == (54_000, 28, 28, 1) and ds.x_val.shape == (6_000, 28, 28, 1)
    assert ds.x_train.max() == 255.0 and ds.x_train.min() == 0.0
    labels = np.concatenate([ds.y_train, ds.y_val])
    assert np.bincount(labels).tolist() == [6_000] * 10  # Fashion-MNIST's train split is balanced


# --- missing and corrupt data -----------------------------------------------------------------


def test_missing_mnist_lists_every_place_looked(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "\n" not in message
    assert "$HPSEARCH_DATA_DIR (unset)" in message
    assert str(tmp_path / "home" / "keras" / "datasets" / "mnist.npz") in message
    assert "download disabled (HPSEARCH_OFFLINE=1)" in message
    assert "--data-dir DIR" in message and "train-images-idx3-ubyte.gz" in message


def test_missing_fashion_mnist_names_debian_and_cache(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist")
    message = str(info.value)
    assert str(tmp_path / "no-debian") in message
    assert str(tmp_path / "home" / "keras" / "datasets" / "fashion-mnist") in message
    assert "Install Debian's dataset-fashion-mnist" in message


@pytest.mark.parametrize("named_by", ["argument", "environment"])
def test_a_named_directory_without_the_files_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named_by: str
) -> None:
    """Issue 20: an empty HPSEARCH_DATA_DIR used to fall back silently to another copy of the data."""
    write_pair(tmp_path / "home" / "keras" / "datasets" / "fashion-mnist")  # another copy is there
    empty = tmp_path / "empty"
    (empty / "mnist").mkdir(parents=True)  # the other dataset's subdirectory does not count
    write_pair(empty / "mnist")
    if named_by == "environment":
        monkeypatch.setenv("HPSEARCH_DATA_DIR", str(empty))
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", data_dir=empty if named_by == "argument" else None)
    name = "data_dir" if named_by == "argument" else "$HPSEARCH_DATA_DIR"
    assert str(info.value) == (
        f"fashion_mnist: {name} {empty}: no train files in it or in its fashion_mnist/ or fashion-mnist/ "
        "subdirectory; expected train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (or "
        "uncompressed). Other copies of the data are not searched when a directory is named"
    )


def test_a_named_directory_that_does_not_exist_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_npz(tmp_path / "home" / "keras" / "datasets" / "mnist.npz")
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"^mnist: \$HPSEARCH_DATA_DIR .*/nope: no such directory$"):
        load_dataset("mnist")
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=r"^mnist: data_dir .*/file: not a directory$"):
        testsplit.load_test("mnist", data_dir=tmp_path / "file")


def test_bad_magic_names_the_file(tmp_path: Path) -> None:
    images, _ = write_pair(tmp_path)
    write_idx(images, synthetic()[0], magic=0x00000801)  # a labels magic on the images file
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*magic 0x00000803 \(got 0x00000801\)"):
        load_dataset("mnist", data_dir=tmp_path)


def test_truncated_payload_names_the_file(tmp_path: Path) -> None:
    _, labels = write_pair(tmp_path, gz=False)
    labels.write_bytes(labels.read_bytes()[:-5])
    expected = r"train-labels-idx1-ubyte: truncated: \(40,\) needs 40 bytes, got 35"
    with pytest.raises(DataError, match=expected):
        load_dataset("mnist", data_dir=tmp_path)


def test_truncated_gzip_stream_names_the_file(tmp_path: Path) -> None:
    images, _ = write_pair(tmp_path)
    images.write_bytes(images.read_bytes()[:30])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: cannot read"):
        load_dataset("mnist", data_dir=tmp_path)


def test_image_and_label_counts_must_match(tmp_path: Path) -> None:
    write_pair(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", synthetic()[1][:-1])
    with pytest.raises(DataError, match="40 images but 39 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_corrupt_npz_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"mnist\.npz: not a readable mnist\.npz"):
        load_dataset("mnist", data_dir=tmp_path)


def test_labels_out_of_range_are_rejected(tmp_path: Path) -> None:
    write_pair(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(N, 12, dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels must be in 0\.\.9, found 12\.\.12"):
        load_dataset("mnist", data_dir=tmp_path)


def test_too_few_samples_for_a_split(tmp_path: Path) -> None:
    write_pair(tmp_path, n=3)
    with pytest.raises(DataError, match=r"3 samples are too few for validation_fraction=0\.1"):
        load_dataset("mnist", data_dir=tmp_path)


# --- argument validation ----------------------------------------------------------------------


def test_unknown_dataset_is_a_config_error() -> None:
    expected = "unknown dataset 'foo'; expected one of: digits, mnist, fashion_mnist"
    with pytest.raises(ConfigError) as info:
        load_dataset("foo")
    assert str(info.value) == expected
    assert DATASETS == ("digits", "mnist", "fashion_mnist")


@pytest.mark.parametrize("fraction", [0.0, -0.1, 0.51, 1.0, math.nan, "0.1"])
def test_bad_validation_fraction(fraction: object) -> None:
    with pytest.raises(ConfigError, match=r"^validation_fraction must be in \(0, 0\.5\], got "):
        load_dataset("digits", validation_fraction=fraction)


@pytest.mark.parametrize("limit", [0, -3, True, 2.5])
def test_bad_limit(limit: object) -> None:
    with pytest.raises(ConfigError, match=r"^limit must be an integer >= 1, got "):
        load_dataset("digits", limit=limit)


def test_boundary_arguments_are_accepted() -> None:
    ds = load_dataset("digits", validation_fraction=0.5, limit=1)
    assert len(ds.x_train) == 1 and len(ds.x_val) == round(1437 * 0.5)


# --- the test split (read only by `hpsearch evaluate`) ----------------------------------------


def test_digits_test_split_is_fixed_held_out_and_independent_of_the_seed() -> None:
    test = testsplit.load_test("digits")
    assert test.x.shape == (360, 8, 8, 1) and test.y.shape == (360,) and test.pixel_max == 16.0
    assert set(np.unique(test.y)) == set(range(10))
    held_out = {row.tobytes() for row in test.x}
    for seed in (0, 1, 42):
        ds = load_dataset("digits", validation_fraction=0.2, seed=seed)
        seen = {row.tobytes() for row in np.concatenate([ds.x_train, ds.x_val])}
        assert len(seen) == 1437 and not seen & held_out  # the 1797 digit images are all distinct
    assert testsplit.load_test("digits").x.tobytes() == test.x.tobytes()


def test_test_split_from_idx_and_npz(tmp_path: Path) -> None:
    images, labels = synthetic(12)
    write_idx(tmp_path / "idx" / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz", labels)
    test = testsplit.load_test("fashion_mnist", data_dir=tmp_path / "idx")
    assert test.x.shape == (12, 4, 4, 1) and test.y.tolist() == (np.arange(12) % 10).tolist()
    save_npz(tmp_path / "npz" / "mnist.npz")
    assert indices(testsplit.load_test("mnist", data_dir=tmp_path / "npz").x) == [0, 1, 2]


def test_missing_test_split_names_the_t10k_files(tmp_path: Path) -> None:
    write_pair(tmp_path)  # train files only
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz and t10k-labels-idx1-ubyte\.gz"):
        testsplit.load_test("mnist", data_dir=tmp_path)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_test_split_from_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bundled._DEBIAN_DIRS, "fashion_mnist", DEBIAN_FASHION)
    test = testsplit.load_test("fashion_mnist")
    assert test.x.shape == (10_000, 28, 28, 1)
    assert np.bincount(test.y).tolist() == [1_000] * 10
