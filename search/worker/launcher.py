"""``hpsearch run --workers K``: K local ``hpsearch worker`` processes on one study.

Each worker is a separate process (its own TensorFlow, its own database connections), exactly as
on separate machines; their output is streamed here with a ``[wN]`` prefix. SIGINT / SIGTERM
are passed on to every worker, which re-queues its running trial and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import IO

__all__ = ["launch"]


def _stream(prefix: str, pipe: IO[str]) -> None:
    for line in pipe:
        sys.stdout.write(f"{prefix} {line}")
        sys.stdout.flush()


def launch(url: str, workers: Sequence[Sequence[str]]) -> int:
    """Run one ``python -m search ARGV`` process per ``workers`` item to completion; 0 if all exited 0.

    ``url`` reaches them as ``$HPSEARCH_STORAGE``, never on a command line (where ``ps`` shows it).
    """
    env = {**os.environ, "HPSEARCH_STORAGE": url, "PYTHONUNBUFFERED": "1"}  # no password in `ps`
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "search", *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C reaches them through us, once
        )
        for argv in workers
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
