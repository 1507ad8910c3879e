"""GPU discovery, placement and claims -- with a FAKE `nvidia-smi` (this machine has no GPU).

The fake is a shell script put first on PATH; it prints the CSV and `-L` listing that the test
writes, or fails as told. Everything else (parsing, CUDA_VISIBLE_DEVICES, the plan, the file
locks) is the real code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from search.cli import main
from search.errors import ConfigError
from search.worker import devices
from tests.helpers import TINY, subprocess_env, write_space

FAKE_SMI = """#!/bin/sh
# FAKE nvidia-smi for tests: prints files the test wrote
dir="$(dirname "$0")"
if [ -f "$dir/fail" ]; then echo "NVIDIA-SMI has failed: driver not loaded" >&2; exit 9; fi
if [ "$1" = "-L" ]; then cat "$dir/list.txt" 2>/dev/null; exit 0; fi
cat "$dir/query.csv"
"""


def _gpu_line(i: int, used: int = 0, util: int = 0, total: int = 81559) -> str:
    return f"{i}, GPU-{i:08d}-fake, NVIDIA H100 80GB HBM3, {total}, {used}, {util}"


@pytest.fixture
def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding the FAKE nvidia-smi, first on PATH; write query.csv / list.txt into it."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    (bin_dir / "query.csv").write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("HPSEARCH_LOCK_DIR", str(tmp_path / "locks"))
    return bin_dir


def _write(fake_smi: Path, *lines: str, listing: str = "") -> None:
    (fake_smi / "query.csv").write_text("\n".join(lines) + "\n")
    (fake_smi / "list.txt").write_text(listing)


@pytest.mark.parametrize("count", [0, 1, 4, 8])
def test_discovers_every_gpu(fake_smi: Path, count: int) -> None:
    _write(fake_smi, *(_gpu_line(i) for i in range(count)))
    gpus, why = devices.discover()
    assert [g.index for g in gpus] == list(range(count))
    assert (why == "") == (count > 0)
    if count:
        assert gpus[0] == devices.Gpu(0, "GPU-00000000-fake", "NVIDIA H100 80GB HBM3", 81559, 0, 0)


def test_cuda_visible_devices_picks_and_orders_a_subset(
    fake_smi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(fake_smi, *(_gpu_line(i) for i in range(4)))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-00000000-fake")
    assert [g.index for g in devices.discover()[0]] == [2, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert devices.discover() == ([], "CUDA_VISIBLE_DEVICES='-1' hides every GPU")


def test_mig_instances_replace_their_gpu(fake_smi: Path) -> None:
    listing = (
        "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-00000000-fake)\n"
        "  MIG 3g.40gb     Device  0: (UUID: MIG-aaaa)\n"
        "  MIG 3g.40gb     Device  1: (UUID: MIG-bbbb)\n"
        "GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-00000001-fake)\n"
    )
    _write(fake_smi, _gpu_line(0), _gpu_line(1), listing=listing)
    gpus, _ = devices.discover()
    assert [g.uuid for g in gpus] == ["MIG-aaaa", "MIG-bbbb", "GPU-00000001-fake"]
    assert gpus[0].memory_total_mib == 40 * 1024 and "MIG 3g.40gb" in gpus[0].name


def test_missing_or_failing_nvidia_smi_means_cpu_said_clearly(
    fake_smi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake_smi / "fail").write_text("")
    assert devices.discover() == ([], "nvidia-smi failed: NVIDIA-SMI has failed: driver not loaded")
    monkeypatch.setenv("PATH", str(fake_smi.parent / "nowhere"))
    assert devices.discover() == ([], "no nvidia-smi on PATH")


GPUS = [devices.Gpu(i, f"GPU-{i}", "H100", 80000, 0, 0) for i in range(2)]


def test_plan_spreads_four_workers_over_two_gpus_two_per_gpu() -> None:
    policy = devices.Policy(per_gpu=2)
    placed = [devices.plan(i, GPUS, policy) for i in range(4)]
    assert [(p.gpu.uuid if p.gpu else None, p.slot) for p in placed] == [
        ("GPU-0", 0), ("GPU-1", 0), ("GPU-0", 1), ("GPU-1", 1),
    ]  # fmt: skip
    assert placed[0].memory_limit_mib == int(80000 * 0.95) // 2
    assert devices.plan(3, GPUS, policy) == placed[3]  # pure
    assert devices.plan(4, GPUS, policy).gpu is None  # a fifth worker has no slot left


def test_plan_skips_busy_gpus_and_respects_claims() -> None:
    busy = [devices.Gpu(0, "GPU-0", "H100", 80000, 60000, 5), devices.Gpu(1, "GPU-1", "H100", 80000, 0, 0)]
    assert devices.plan(0, busy, devices.Policy()).gpu == busy[1]
    full = devices.plan(0, busy, devices.Policy(), claimed=frozenset({("GPU-1", 0)}))
    assert full.gpu is None and full.note == "every GPU slot is taken"
    assert devices.plan(0, GPUS, devices.Policy(device="cpu")).gpu is None


def test_asking_for_a_gpu_that_is_not_there_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"--device gpu: no free GPU slot"):
        devices.plan(0, [], devices.Policy(device="gpu"))
    with pytest.raises(ConfigError, match=r"--device gpu:7: no such GPU; found: 0:GPU-0, 1:GPU-1"):
        devices.plan(0, GPUS, devices.Policy(device="gpu:7"))
    assert devices.plan(0, GPUS, devices.Policy(device="gpu:1")).gpu == GPUS[1]
    with pytest.raises(ConfigError, match=r"--device: expected auto, cpu, gpu or gpu:N"):
        devices.Policy(device="tpu")


HOLDER = """
import sys
from search.worker import devices
gpus, _ = devices.discover()
held = devices.claim(gpus, devices.Policy())
print(held.placement.gpu.uuid if held.placement.gpu else "cpu", flush=True)
sys.stdin.read()  # hold the claim until the test closes stdin (or kills us)
"""


def _holder() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_separately_started_workers_claim_different_gpus_and_a_killed_claim_is_reclaimed(
    fake_smi: Path,
) -> None:
    _write(fake_smi, _gpu_line(0), _gpu_line(1))
    first, gpu_a = _holder()
    second, gpu_b = _holder()
    third, gpu_c = _holder()
    assert {gpu_a, gpu_b} == {"GPU-00000000-fake", "GPU-00000001-fake"}
    assert gpu_c == "cpu"  # both GPUs held: the third worker falls back to the CPU
    first.kill()  # SIGKILL: no clean-up; the kernel drops its lock
    first.wait()
    fourth, gpu_d = _holder()
    assert gpu_d == gpu_a
    for proc in (second, third, fourth):
        proc.communicate("")


def test_devices_command_prints_gpus_and_plan(fake_smi: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(fake_smi, _gpu_line(0), _gpu_line(1, used=70000, util=95), _gpu_line(2))
    assert main(["devices", "--workers", "3", "--per-gpu", "2"]) == 0
    out = capsys.readouterr().out
    assert "GPU 1  NVIDIA H100 80GB HBM3  GPU-00000001-fake  70000/81559 MiB used  95% util  busy" in out
    assert "worker 0: GPU 0 NVIDIA H100 80GB HBM3 (GPU-00000000-fake, slot 1/2), memory cap 38740 MiB" in out
    assert "worker 1: GPU 2" in out and "worker 2: GPU 0" in out


def test_trials_record_the_device_they_were_placed_on(
    fake_smi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(fake_smi, _gpu_line(0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # so the test's environment is restored after
    space = write_space(tmp_path, "d", base=TINY, budget={"trials": 1})
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert main(["run", str(space), "--storage", url]) == 0
    assert "device: GPU 0 NVIDIA H100 80GB HBM3 (GPU-00000000-fake)" in capsys.readouterr().out
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-00000000-fake"  # applied before training
    trial = optuna.load_study(study_name="d", storage=url).trials[0]
    assert trial.user_attrs["device_info"] == {
        "kind": "gpu", "index": 0, "uuid": "GPU-00000000-fake", "name": "NVIDIA H100 80GB HBM3", "slot": 0,
    }  # fmt: skip
    assert trial.user_attrs["precision"] == "float32"


def test_run_with_workers_spreads_them_over_the_gpus(
    fake_smi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(fake_smi, _gpu_line(0), _gpu_line(1))
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    space = write_space(tmp_path, "d", base=TINY, budget={"trials": 6})
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert main(["run", str(space), "--storage", url, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "[w0] device: GPU 0 " in out and "[w1] device: GPU 1 " in out
    trials = optuna.load_study(study_name="d", storage=url).trials
    assert {t.user_attrs["device_info"]["uuid"] for t in trials} <= {"GPU-00000000-fake", "GPU-00000001-fake"}
