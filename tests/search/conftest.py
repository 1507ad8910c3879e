"""Fixtures shared by the CLI's tests: a small space file the commands run."""

from __future__ import annotations

from pathlib import Path

import pytest

SPACE = """\
name: e2e
dataset: {name: digits, validation_fraction: 0.2, limit: 200}
sampler: {type: random, seed: 7}
budget: {trials: 2}
model:
  layers: {type: int, low: 1, high: 2}
  units: {type: int, low: 8, high: 32, log: true}
optimizer:
  name: [adam, sgd]
  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
  momentum: {type: float, low: 0.0, high: 0.9, when: {name: sgd}}
training: {batch_size: 64, epochs: 2}
"""


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "e2e.yaml"
    path.write_text(SPACE)
    return path
