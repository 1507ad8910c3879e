"""Small data files of every kind a space may name, written by the tests that need them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_csv", "write_images", "write_loader", "write_npz"]


def write_npz(path: Path, *, n: int = 120, classes: int = 3, val: bool = True, test: bool = True) -> Path:
    """Feature rows whose class is the arg-max of the first ``classes`` features (learnable)."""
    rng = np.random.default_rng(1)

    def split(m: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(m, 6)).astype(np.float32)
        return x, np.argmax(x[:, :classes], axis=1)

    arrays: dict[str, np.ndarray] = {}
    arrays["x_train"], arrays["y_train"] = split(n)
    if val:
        arrays["x_val"], arrays["y_val"] = split(n // 4)
    if test:
        arrays["x_test"], arrays["y_test"] = split(n // 4)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def write_images(
    folder: Path, *, classes: tuple[str, ...] = ("cat", "dog", "owl"), per_class: int = 12
) -> Path:
    """RGB images, one subfolder per class, of two sizes (so that image_size must resize them)."""
    rng = np.random.default_rng(2)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (10, 12) if i % 2 else (14, 14)
            pixels = rng.integers(0, 60, size=(*size, 3), dtype=np.uint8)
            pixels[..., c] += 150  # each class has its own dominant colour
            Image.fromarray(pixels, "RGB").save(folder / name / f"{i}.png")
    return folder


def write_csv(path: Path, *, n: int = 160) -> Path:
    """A binary table: label "yes" when a + b > 0; one noise column."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 3))
    lines = ["a,b,noise,label"] + [
        f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{'yes' if r[0] + r[1] > 0 else 'no'}" for r in x
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_loader(path: Path) -> Path:
    """A loader module whose ``arrays()`` returns a dict like an .npz's."""
    path.write_text(
        "import numpy as np\n\n\n"
        "def arrays():\n"
        "    rng = np.random.default_rng(4)\n"
        "    x = rng.normal(size=(90, 5)).astype('float32')\n"
        "    return {'x_train': x, 'y_train': (x[:, 0] > 0).astype(int)}\n"
    )
    return path
