"""``hpsearch run --workers K``: K local ``hpsearch worker`` processes on one study.

Each worker is a separate process (its own TensorFlow, its own database connections), exactly as
on separate machines; their output is streamed here with a ``[wN]`` prefix. SIGINT / SIGTERM
are passed on to every worker, which re-queues its running trial and exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from types import FrameType
from typing import IO

__all__ = ["launch"]


def _command(study: str, index: int, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "search"]
    if args.debug:
        cmd.append("--debug")
    cmd += ["worker", "--study", study, "--index", str(index), "--heartbeat", str(args.heartbeat)]
    cmd += ["--max-failures", str(args.max_failures), "--device", args.device, "--per-gpu", str(args.per_gpu)]
    cmd += ["--max-memory-growth", str(args.max_memory_growth)]
    if args.timeout:
        cmd += ["--timeout", str(args.timeout)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.artifacts:
        cmd += ["--artifacts", args.artifacts]
    if getattr(args, "hypermodel", None):
        cmd += ["--hypermodel", args.hypermodel]
    return cmd


def _stream(prefix: str, pipe: IO[str]) -> None:
    for line in pipe:
        sys.stdout.write(f"{prefix} {line}")
        sys.stdout.flush()


def launch(study: str, url: str, args: argparse.Namespace) -> int:
    """Run ``args.workers`` workers to completion; 0 if all exited 0."""
    env = {**os.environ, "HPSEARCH_STORAGE": url, "PYTHONUNBUFFERED": "1"}  # no password in `ps`
    procs = [
        subprocess.Popen(
            _command(study, i, args),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C reaches them through us, once
        )
        for i in range(args.workers)
    ]
    readers = [
        threading.Thread(target=_stream, args=(f"[w{i}]", p.stdout), daemon=True) for i, p in enumerate(procs)
    ]
    for r in readers:
        r.start()
    signalled: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        signalled.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [p.wait() for p in procs]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    for r in readers:
        r.join()
    if signalled:
        print("interrupted: running trials were re-queued; run the same command to resume", file=sys.stderr)
        return 130
    failed = [f"w{i} exited {c}" for i, c in enumerate(codes) if c]
    if failed:
        print(f"hpsearch: workers failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
