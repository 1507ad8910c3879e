"""A corpus of malformed space files: each fails with its one expected line, and nothing is written.

``malformed/*.yaml`` are small files, one mistake each (wrong types, unknown keys, bad ranges and
steps, impossible conditions, bad objectives, samplers, pruners and datasets, and hostile YAML:
aliases, duplicate keys, deep nesting, huge numbers, NUL bytes, binary junk). ``malformed/
expected.txt`` holds each file's line: ``spaces.load`` must raise a ConfigError whose message is
exactly one line, ``PATH: `` followed by a match of that regex. A few go through the real CLI too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import spaces
from tests.helpers import subprocess_env

HERE = Path(__file__).parent / "malformed"


def _expected() -> dict[str, str]:
    table: dict[str, str] = {}
    for line in (HERE / "expected.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, regex = line.split(None, 1)
            assert name not in table, f"{name} is listed twice in expected.txt"
            table[name] = regex
    return table


EXPECTED = _expected()


def test_every_file_has_one_expected_line_and_the_corpus_is_broad() -> None:
    files = sorted(p.name for p in HERE.glob("*.yaml"))
    assert files == sorted(EXPECTED)
    assert len(files) >= 80


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_fails_with_its_one_line(name: str) -> None:
    path = HERE / name
    with pytest.raises(spaces.ConfigError) as info:
        spaces.load(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    prefix = f"{path}: "
    assert message.startswith(prefix), message
    assert re.fullmatch(EXPECTED[name], message[len(prefix) :]), message


# one of each kind that used to print a traceback, several lines, run out of memory or pass
THROUGH_CLI = [
    "grid-units-by-layers.yaml",
    "yaml-billion-laughs.yaml",
    "yaml-duplicate-top.yaml",
    "yaml-deep-flow.yaml",
    "int-400-digits.yaml",
    "nul-byte.yaml",
    "budget-trials-trillion.yaml",
    "when-out-of-int-range.yaml",
]


@pytest.mark.parametrize("name", THROUGH_CLI)
@pytest.mark.parametrize("command", ["validate", "create"])
def test_cli_prints_the_one_line_exits_2_and_writes_nothing(tmp_path: Path, name: str, command: str) -> None:
    db = tmp_path / "x.db"
    args = [sys.executable, "-m", "search", command, str(HERE / name)]
    if command == "create":
        args += ["--storage", f"sqlite:///{db}"]
    done = subprocess.run(
        args, capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(), timeout=120, check=False
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(rf"hpsearch: error: {re.escape(str(HERE / name))}: {EXPECTED[name]}", lines[0])
    assert not db.exists()
    assert list(tmp_path.iterdir()) == []  # no default database in the working directory either
