"""The CLI's shared options and output: --version, --debug anywhere, --json, a closed pipe,
storage precedence, study names, warnings on open addresses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import optuna
import pytest

import spaces
import storage
from search.cli import main
from search.study import open_storage
from tests.helpers import free_port, subprocess_env


def _study(url: str, name: str = "e2e") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(storage.resolve(url, {})))


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out == f"hpsearch {metadata.version('hpsearch')}\n"
    assert re.fullmatch(r"hpsearch \d+\.\d+\.\d+\S*\n", out)


@pytest.mark.parametrize("where", ["before", "after", "absent"])
def test_debug_is_accepted_before_or_after_the_command(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["best", "--study", "s", "--storage", f"sqlite:///{tmp_path / 'none.db'}"]
    argv = {"before": ["--debug", *command], "after": [*command, "--debug"], "absent": command}[where]
    if where == "absent":  # one line and exit 2
        assert main(argv) == 2
        assert capsys.readouterr().err.count("\n") == 1
    else:  # --debug: the traceback, i.e. the exception itself
        with pytest.raises(storage.StorageError, match="no such file"):
            main(argv)


def test_spaces_and_validate_json(
    tmp_path: Path, space_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["spaces", "--json"]) == 0
    presets = json.loads(capsys.readouterr().out)["presets"]
    assert [p["name"] for p in presets] == list(spaces.presets())
    assert all(p["description"] for p in presets)
    assert main(["validate", str(space_file), "quickstart", "--json"]) == 0
    first, second = json.loads(capsys.readouterr().out)["spaces"]
    assert first == {
        "source": str(space_file),
        "name": "e2e",
        "family": "mlp",
        "dataset": "digits",
        "searched": ["layers", "optimizer", "learning_rate", "units", "momentum"],
        "hypermodel": None,
        "objectives": [
            {"metric": "val_accuracy", "direction": "maximize"},
            {"metric": "train_seconds", "direction": "minimize"},
        ],
        "sampler": "random",
        "pruner": spaces.load(space_file).pruner.type,
        "trials": 2,
    }
    assert (second["source"], second["name"]) == ("quickstart", "quickstart")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndataset: digits\nmodel: {units: {type: int, low: 9, high: 3}}\n")
    assert main(["validate", "quickstart", str(bad), "--json"]) == 2  # no half document on stdout
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"hpsearch: error: {bad}: model.units: low > high (9 > 3)\n")


FAKE_SMI = """#!/bin/sh
# FAKE nvidia-smi (this machine may have no GPU): one idle 80 GB card, no MIG
[ "$1" = "-L" ] && exit 0
echo "0, GPU-00000000-fake, NVIDIA H100 80GB HBM3, 81559, 0, 0"
"""


def test_devices_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main(["devices", "--workers", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["gpus"] == [] and "hides every GPU" in payload["no_gpu"]
    assert [w["placement"] for w in payload["workers"]] == [{"kind": "cpu"}] * 2

    (tmp_path / "nvidia-smi").write_text(FAKE_SMI)
    (tmp_path / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert main(["devices", "--workers", "3", "--per-gpu", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["gpus"] == [
        {
            "index": 0,
            "uuid": "GPU-00000000-fake",
            "name": "NVIDIA H100 80GB HBM3",
            "memory_used_mib": 0,
            "memory_total_mib": 81559,
            "utilization": 0,
            "busy": False,
        }
    ]
    assert payload["no_gpu"] is None
    workers = payload["workers"]
    assert [(w["placement"]["kind"], w["placement"].get("slot")) for w in workers] == [
        ("gpu", 0),
        ("gpu", 1),
        ("cpu", None),  # two slots on one card: the third worker trains on the CPU
    ]
    assert [w["memory_cap_mib"] for w in workers] == [int(81559 * 0.95) // 2] * 2 + [None]


@pytest.mark.parametrize("command", ["spaces", "studies"])
def test_a_closed_pipe_ends_quietly(command: str, tmp_path: Path, space_file: Path) -> None:
    """`hpsearch spaces | head -n 0`, deterministic: the reader has exited before hpsearch writes."""
    url = f"sqlite:///{tmp_path / 'pipe.db'}"
    if command == "studies":
        assert main(["create", str(space_file), "--storage", url]) == 0
    read_end, write_end = os.pipe()
    reader = subprocess.Popen(["head", "-n", "0"], stdin=read_end)
    os.close(read_end)
    assert reader.wait(timeout=30) == 0  # nothing holds the read end any more
    cmd = [sys.executable, "-m", "search", command, *(["--storage", url] if command == "studies" else [])]
    try:
        done = subprocess.run(cmd, stdout=write_end, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")  # 128 + SIGPIPE, like `yes | head -1`; no traceback


@pytest.mark.parametrize(
    "given",  # in order of precedence; the first one given wins
    [
        (),
        ("OPTUNA_STORAGE",),
        ("HPSEARCH_STORAGE", "OPTUNA_STORAGE"),
        ("flag", "HPSEARCH_STORAGE", "OPTUNA_STORAGE"),
    ],
)
def test_storage_precedence_flag_then_hpsearch_then_optuna_storage(
    given: tuple[str, ...], tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default, sqlite:///hpsearch.db, is a file here
    argv = ["create", str(space_file)]
    for source in ("flag", "HPSEARCH_STORAGE", "OPTUNA_STORAGE"):
        url = f"sqlite:///{tmp_path / source}.db"
        if source not in given:
            monkeypatch.delenv(source, raising=False)
        elif source == "flag":
            argv += ["--storage", url]
        else:
            monkeypatch.setenv(source, url)
    assert main(argv) == 0
    assert {db.stem for db in tmp_path.glob("*.db")} == {given[0] if given else "hpsearch"}


# ---- unsafe input: study names, open servers ------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "create", "worker", "best", "evaluate"])
@pytest.mark.parametrize("name", ["../escaped", ".hidden", "x" * 65])
def test_a_study_name_follows_the_rule_of_a_space_name(
    command: str, name: str, tmp_path: Path, space_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "never.db"
    argv = [command, *([str(space_file)] if command in ("run", "create") else [])]
    assert main([*argv, "--study", name, "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert (
        "argument --study: expected a name of letters, digits, '_', '-' or '.'" in err and repr(name) in err
    )
    assert not db.exists()


def test_storage_proxy_on_an_open_address_warns(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    cmd = [sys.executable, "-m", "search", "storage-proxy", "--storage", url, "--host", "0.0.0.0"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=subprocess_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert first.startswith(f"serving {url} to gRPC clients at grpc://0.0.0.0:")
    assert second.startswith("warning: the storage proxy has no authentication; bound to 0.0.0.0")
