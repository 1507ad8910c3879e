"""Which device a worker trains on: GPU discovery, a pure placement plan, claims, and applying it.

- :func:`discover` asks ``nvidia-smi`` (never a Keras backend, which must not be imported before
  the choice is applied) and honours a ``CUDA_VISIBLE_DEVICES`` the user already set.
- :func:`plan` is a pure function: (worker index, visible GPUs, policy, claimed slots) -> placement.
  Workers are spread over GPUs first (slot 0 of every GPU before slot 1 of any).
- :func:`claim` makes separately started workers on one host take distinct slots: each slot is
  an exclusive ``flock`` on a file, which the kernel releases when the holder dies, even by
  ``kill -9``.
- :func:`apply` sets ``CUDA_VISIBLE_DEVICES`` and the backend's memory settings before the
  backend is imported; :func:`configure` sets memory growth, or a memory cap of about 1/K of the
  card when K workers share it, after (per backend: :mod:`search.trial.backend`).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from search.errors import ConfigError
from search.trial import backend

__all__ = ["Gpu", "Placement", "Policy", "apply", "claim", "configure", "discover", "plan"]

QUERY = "index,uuid,name,memory.total,memory.used,utilization.gpu"
SMI_TIMEOUT_S = 10


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_total_mib: int
    memory_used_mib: int
    utilization: int  # percent


@dataclass(frozen=True)
class Policy:
    """``device``: auto | cpu | gpu | gpu:N (N an index or a UUID); ``per_gpu`` workers per GPU."""

    device: str = "auto"
    per_gpu: int = 1
    busy_memory_fraction: float = 0.5  # a GPU with more memory in use than this is busy
    busy_utilization: int = 50  # ... or busier than this (percent)

    def __post_init__(self) -> None:
        named = self.device.startswith("gpu:") and len(self.device) > 4
        if self.device not in ("auto", "cpu", "gpu") and not named:
            raise ConfigError(f"--device: expected auto, cpu, gpu or gpu:N, got {self.device!r}")
        if self.per_gpu < 1:
            raise ConfigError(f"--per-gpu: expected an integer >= 1, got {self.per_gpu}")


@dataclass(frozen=True)
class Placement:
    gpu: Gpu | None  # None: the CPU
    slot: int = 0
    per_gpu: int = 1
    note: str = ""

    @property
    def memory_limit_mib(self) -> int | None:
        """About 1/K of the card for each of K workers sharing it (5 % kept back); None: grow."""
        if self.gpu is None or self.per_gpu == 1:
            return None
        return int(self.gpu.memory_total_mib * 0.95) // self.per_gpu

    @property
    def memory_fraction(self) -> float | None:
        """:attr:`memory_limit_mib` as a fraction of the card (JAX's and PyTorch's unit)."""
        limit = self.memory_limit_mib
        if limit is None or self.gpu is None or not self.gpu.memory_total_mib:
            return None
        return limit / self.gpu.memory_total_mib

    def describe(self) -> str:
        if self.gpu is None:
            return "CPU" + (f" ({self.note})" if self.note else "")
        share = f", slot {self.slot + 1}/{self.per_gpu}" if self.per_gpu > 1 else ""
        return f"GPU {self.gpu.index} {self.gpu.name} ({self.gpu.uuid}{share})"


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run_smi(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    cmd = ["nvidia-smi", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=SMI_TIMEOUT_S, check=False)


def discover(environ: Mapping[str, str] | None = None, run: Runner = _run_smi) -> tuple[list[Gpu], str]:
    """The GPUs this process may use, and a note saying why there are none (empty if there are).

    MIG instances (from ``nvidia-smi -L``) replace their parent GPU; they are addressed by UUID.
    """
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return [], f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    try:
        result = run(["--query-gpu=" + QUERY, "--format=csv,noheader,nounits"])
    except FileNotFoundError:
        return [], "no nvidia-smi on PATH"
    except (OSError, subprocess.TimeoutExpired) as e:
        return [], f"nvidia-smi failed: {e}"
    if result.returncode != 0:
        first = (result.stderr or result.stdout).strip().splitlines()
        return [], f"nvidia-smi failed: {first[0] if first else 'exit code ' + str(result.returncode)}"
    gpus = [_parse(line) for line in result.stdout.splitlines() if line.strip()]
    gpus = _with_mig(gpus, run)
    if visible is not None:
        gpus = _visible(gpus, visible)
    return gpus, "" if gpus else "nvidia-smi lists no GPU"


def _parse(line: str) -> Gpu:
    cells = [c.strip() for c in line.split(",")]
    if len(cells) != 6:
        raise ConfigError(f"nvidia-smi: unexpected line {line!r}")

    def number(text: str) -> int:
        return int(float(text)) if text.replace(".", "", 1).isdigit() else 0  # "[N/A]" -> 0

    return Gpu(int(cells[0]), cells[1], cells[2], number(cells[3]), number(cells[4]), number(cells[5]))


def _with_mig(gpus: list[Gpu], run: Runner) -> list[Gpu]:
    try:
        listing = run(["-L"])
    except (OSError, subprocess.TimeoutExpired):
        return gpus
    if listing.returncode != 0:
        return gpus
    out: list[Gpu] = []
    parent: Gpu | None = None
    migs: dict[str, list[Gpu]] = {}
    for line in listing.stdout.splitlines():
        text = line.strip()
        if text.startswith("GPU "):
            uuid = text.rsplit("UUID: ", 1)[-1].rstrip(")")
            parent = next((g for g in gpus if g.uuid == uuid), None)
        elif text.startswith("MIG ") and parent is not None:
            profile = text.split("Device")[0][4:].strip()
            uuid = text.rsplit("UUID: ", 1)[-1].rstrip(")")
            size = profile.split(".")[-1].removesuffix("gb")
            mib = int(float(size) * 1024) if size.replace(".", "", 1).isdigit() else 0
            migs.setdefault(parent.uuid, []).append(
                Gpu(parent.index, uuid, f"{parent.name} MIG {profile}", mib, 0, 0)
            )
    for g in gpus:
        out.extend(migs.get(g.uuid, [g]))
    return out


def _visible(gpus: list[Gpu], visible: str) -> list[Gpu]:
    """The GPUs named in CUDA_VISIBLE_DEVICES (indices or UUIDs), in its order."""
    out: list[Gpu] = []
    for item in (v.strip() for v in visible.split(",") if v.strip()):
        whole = [g for g in gpus if not g.uuid.startswith("MIG-")]
        match = [g for g in whole if item.isdigit() and g.index == int(item)]
        match = match or [g for g in gpus if g.uuid == item or g.uuid.startswith(item)]
        out.extend(g for g in match if g not in out)
    return out


def busy(gpu: Gpu, policy: Policy) -> bool:
    used = gpu.memory_total_mib and gpu.memory_used_mib / gpu.memory_total_mib > policy.busy_memory_fraction
    return bool(used) or gpu.utilization > policy.busy_utilization


def slots(gpus: Sequence[Gpu], policy: Policy) -> list[tuple[Gpu, int]]:
    """Every (GPU, slot) a worker may take, spread first: slot 0 of each GPU, then slot 1, ..."""
    if policy.device == "cpu":
        return []
    chosen = [g for g in gpus if not busy(g, policy)]
    if policy.device.startswith("gpu:"):
        want = policy.device[4:]
        chosen = [g for g in gpus if (want.isdigit() and g.index == int(want)) or g.uuid == want]
        if not chosen:
            raise ConfigError(f"--device {policy.device}: no such GPU; found: {_names(gpus)}")
    return [(g, s) for s in range(policy.per_gpu) for g in chosen]


def plan(
    worker: int, gpus: Sequence[Gpu], policy: Policy, claimed: frozenset[tuple[str, int]] = frozenset()
) -> Placement:
    """Where worker number ``worker`` trains. Pure: same inputs, same placement.

    Raises:
        ConfigError: ``--device gpu`` (or ``gpu:N``) and no such free GPU.
    """
    options = slots(gpus, policy)
    free = [(g, s) for g, s in options if (g.uuid, s) not in claimed]
    if worker < len(free):  # more workers than slots: the rest train on the CPU
        gpu, slot = free[worker]
        return Placement(gpu=gpu, slot=slot, per_gpu=policy.per_gpu)
    if policy.device == "auto" or policy.device == "cpu":
        why = "every GPU slot is taken" if options else "no free GPU"
        return Placement(gpu=None, note="asked for" if policy.device == "cpu" else why)
    raise ConfigError(f"--device {policy.device}: no free GPU slot; found: {_names(gpus)}")


def _names(gpus: Sequence[Gpu]) -> str:
    return ", ".join(f"{g.index}:{g.uuid}" for g in gpus) or "none"


@dataclass
class Claim:
    """A held slot; the lock lives as long as this process (or until :meth:`release`)."""

    placement: Placement
    handle: IO[str] | None = field(default=None, repr=False)

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def lock_dir() -> Path:
    return Path(os.environ.get("HPSEARCH_LOCK_DIR", Path(tempfile.gettempdir()) / "hpsearch-gpu-locks"))


def claim(gpus: Sequence[Gpu], policy: Policy, *, start: int = 0) -> Claim:
    """Take the first free slot in plan order (from ``start``), held by an exclusive flock."""
    options = slots(gpus, policy)
    if not options:
        return Claim(plan(start, gpus, policy))
    directory = lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(len(options)):
        gpu, slot = options[(start + k) % len(options)]
        handle = open(directory / f"{gpu.uuid}.slot{slot}.lock", "a+")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return Claim(Placement(gpu=gpu, slot=slot, per_gpu=policy.per_gpu), handle)
    taken = frozenset((g.uuid, s) for g, s in options)
    return Claim(plan(0, gpus, policy, claimed=taken))


def apply(
    placement: Placement, environ: dict[str, str] | None = None, *, backend_name: str = backend.DEFAULT
) -> None:
    """Make only the placement's GPU visible (and cap JAX's memory); before the backend's import."""
    env = os.environ if environ is None else environ
    env["CUDA_VISIBLE_DEVICES"] = "-1" if placement.gpu is None else placement.gpu.uuid
    if placement.gpu is not None:
        backend.limit_memory(backend_name, placement.memory_fraction, env)


def configure(placement: Placement, backend_name: str = backend.DEFAULT) -> None:
    """After the backend's import: memory growth, or the memory cap of a shared GPU."""
    backend.configure(
        backend_name, memory_limit_mib=placement.memory_limit_mib, fraction=placement.memory_fraction
    )


def as_dict(placement: Placement) -> dict[str, Any]:
    """For a trial's user attrs."""
    if placement.gpu is None:
        return {"kind": "cpu"}
    g = placement.gpu
    return {"kind": "gpu", "index": g.index, "uuid": g.uuid, "name": g.name, "slot": placement.slot}
