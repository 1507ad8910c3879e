"""The worker: claim a study's queued trials and run them until the budget is spent.

Owns: the worker loop (:mod:`.loop`), local launches of several workers (:mod:`.launcher`),
restarting a worker whose memory grew (:mod:`.recycle`), GPU discovery and placement
(:mod:`.devices`), the progress display (:mod:`.progress`) and native-stderr quieting
(:mod:`.native`).
May import: ``spaces``, ``storage`` and every ``search`` subpackage but ``cli`` and ``tools``.
"""

from __future__ import annotations

from search.worker.loop import RunResult, run
from search.worker.session import run_worker

__all__ = ["RunResult", "run", "run_worker"]
