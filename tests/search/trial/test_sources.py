"""Datasets from files: each spelling of the dataset section, the readers, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import spaces
from search.errors import ConfigError, DataError
from search.trial import sources
from search.trial.data import load_for
from search.trial.testsplit import load_test_for
from tests.helpers import TINY, write_space
from tests.search.data_files import write_csv, write_images, write_loader, write_npz

BASE = {k: v for k, v in TINY.items() if k != "dataset"}


def _space(tmp_path: Path, dataset: object, **sections: object) -> spaces.Space:
    return spaces.load(write_space(tmp_path, "files", base=BASE, dataset=dataset, **sections))


def test_npz_keeps_its_own_validation_and_test_splits(tmp_path: Path) -> None:
    write_npz(tmp_path / "d.npz", n=120)
    space = _space(tmp_path, {"path": "d.npz", "limit": 50})
    assert space.dataset.kind == "npz" and space.dataset.file == str(tmp_path / "d.npz")
    ds = load_for(space)
    assert ds.input_shape == (6,) and not ds.is_image
    assert (len(ds.y_train), len(ds.y_val), ds.num_classes) == (50, 30, 3)
    assert load_test_for(space).x.shape == (30, 6)


def test_npz_labels_of_any_kind_become_class_indices(tmp_path: Path) -> None:
    one_hot = np.eye(3)[[2, 0, 1, 2]]
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 2)), y_train=one_hot)
    assert sources.read_npz(path).y_train.tolist() == [2, 0, 1, 2]
    np.savez(path, x_train=np.zeros((4, 2)), y_train=np.array(["b", "c", "a", "b"]))
    arrays = sources.read_npz(path)
    assert arrays.y_train.tolist() == [1, 2, 0, 1] and arrays.class_names == ("a", "b", "c")
    np.savez(path, x_train=np.zeros((3, 2)), y_train=np.array([7, 7, 7]))
    with pytest.raises(DataError, match="every label is 7; a classifier needs at least 2 classes"):
        sources.read_npz(path)
    np.savez(path, x_train=np.zeros((3, 2)), y_train=np.array([0, 1]))
    with pytest.raises(DataError, match="3 samples in x_train but 2 labels in y_train"):
        sources.read_npz(path)


def test_image_folder_rgb_resized_with_class_names_from_subfolders(tmp_path: Path) -> None:
    write_images(tmp_path / "images")
    space = _space(tmp_path, {"path": "images/", "image_size": [8, 10]}, model={"family": "cnn"})
    ds = load_for(space)
    assert ds.input_shape == (8, 10, 3) and ds.pixel_max == 255.0
    assert ds.class_names == ("cat", "dog", "owl") and ds.num_classes == 3
    assert len(ds.y_train) + len(ds.y_val) == 36


def test_grayscale_image_folder_keeps_one_channel(tmp_path: Path) -> None:
    from PIL import Image

    for name in ("left", "right"):
        (tmp_path / "gray" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((6, 6), 40 * i, dtype=np.uint8), "L").save(
                tmp_path / "gray" / name / f"{i}.png"
            )
    (tmp_path / "gray" / "left" / ".DS_Store").write_text("not an image")  # hidden files are left out
    ds = load_for(_space(tmp_path, {"path": "gray"}))
    assert ds.input_shape == (6, 6, 1) and ds.class_names == ("left", "right")


def test_a_folder_named_without_a_slash_reads_back_from_the_study_text(tmp_path: Path) -> None:
    write_images(tmp_path / "images")
    space = _space(tmp_path, {"path": "images", "image_size": [8, 8]})
    assert space.dataset.kind == "images"
    again = spaces.loads(space.text, source="study s")  # as a worker reads it: nothing resolved
    assert again.dataset.kind == "images" and again.dataset.file is None


def test_image_folder_of_mixed_sizes_without_image_size_names_the_first_odd_file(tmp_path: Path) -> None:
    write_images(tmp_path / "images")
    space = _space(tmp_path, {"path": "images"})
    with pytest.raises(
        DataError, match=r"cat/1.png: 12x10 pixels, the first image is 14x14; give dataset.image_size"
    ):
        load_for(space)


def test_csv_binary_labels_from_a_named_column(tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv", n=100)
    ds = load_for(_space(tmp_path, {"path": "t.csv", "label": "label"}))
    assert ds.input_shape == (3,) and ds.class_names == ("no", "yes") and ds.num_classes == 2
    mean, variance = ds.feature_stats
    assert mean.shape == (3,) and np.all(variance > 0)


def test_csv_errors_name_the_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,x\n3,oops,y\n")
    with pytest.raises(DataError, match=r"t.csv: line 3, column 'b': 'oops' is not a number"):
        load_for(_space(tmp_path, {"path": "t.csv", "label": "label"}))
    with pytest.raises(DataError, match=r"no column 'kind' \(dataset.label\); columns: a, b, label"):
        load_for(_space(tmp_path, {"path": "t.csv", "label": "kind"}))


def test_loader_function_is_hashed_and_called(tmp_path: Path) -> None:
    write_loader(tmp_path / "load.py")
    space = _space(tmp_path, {"loader": "load.py:arrays"})
    assert space.dataset.kind == "loader" and space.dataset.sha256 is not None
    ds = load_for(space)
    assert ds.num_classes == 2 and ds.input_shape == (5,)
    (tmp_path / "bad.py").write_text("def arrays():\n    return ((1, 2), (3, 4))\n")
    with pytest.raises(DataError, match=r"expected a pair \(x, y\) or a dict with x_train, y_train"):
        load_for(_space(tmp_path, {"loader": "bad.py:arrays"}))


def test_a_file_changed_after_it_was_hashed_is_refused(tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv")
    space = _space(tmp_path, {"path": "t.csv", "label": "label"})
    with (tmp_path / "t.csv").open("a") as f:
        f.write("0,0,0,no\n")
    with pytest.raises(ConfigError, match=r"t.csv: changed since the study was created \(sha256 "):
        load_for(space)


@pytest.mark.parametrize(
    ("dataset", "sections", "message"),
    [
        ({"path": "missing.npz"}, {}, r"dataset.path: missing.npz: no such file \(looked at .*missing.npz\)"),
        ({"path": "t.csv"}, {}, r"dataset.label: required for a CSV: the name of its label column"),
        (
            {"path": "t.csv", "label": "label"},
            {"model": {"family": "cnn"}},
            r"model.family: cnn needs images",
        ),
        ({"name": "digits", "path": "t.csv"}, {}, r"dataset: expected exactly one of name, path or loader"),
        ({"path": "t.txt"}, {}, r"dataset.path: t.txt: expected a .npz or .csv file, or a folder"),
        ({"path": "t.csv", "label": "label", "image_size": [8, 8]}, {}, r"dataset.image_size: unknown key"),
        ({"loader": "load.py"}, {}, r"dataset.loader: expected 'FILE.py:NAME'"),
        (
            {"path": "d.npz"},
            {"objectives": ["val_auc"]},
            r"objectives\[0\].metric: expected one of .*add others",
        ),
    ],
)
def test_dataset_section_errors_are_one_line(
    tmp_path: Path, dataset: object, sections: dict[str, object], message: str
) -> None:
    write_csv(tmp_path / "t.csv")
    write_npz(tmp_path / "d.npz")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(spaces.ConfigError, match=message) as info:
        _space(tmp_path, dataset, **sections)
    assert len(str(info.value).splitlines()) == 1


def test_a_cnn_on_feature_rows_of_an_npz_is_refused_when_the_data_is_read(tmp_path: Path) -> None:
    write_npz(tmp_path / "d.npz")
    space = _space(tmp_path, {"path": "d.npz"}, model={"family": "cnn"})
    with pytest.raises(ConfigError, match=r"cnn needs images \(n, H, W, C\); the samples have shape \(6,\)"):
        load_for(space)
