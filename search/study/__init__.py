"""The study and its queue: create or resume a study from a space, open its storage, claim trials.

Owns: the study attrs that carry a space (so a worker needs only a storage URL and a study
name), the budget as a queue of WAITING trials, and re-queueing trials lost with a worker.
May import: ``spaces``, ``storage``, ``search.errors``, ``search.keys``, ``search.hypermodels``.
"""

from __future__ import annotations

import optuna

import storage
from search.study.create import create_or_load, load_space, open_study
from search.study.queue import QueueEmpty, QueueStudy, Slots, requeue, slots, top_up

__all__ = [
    "QueueEmpty",
    "QueueStudy",
    "Slots",
    "create_or_load",
    "load_space",
    "open_storage",
    "open_study",
    "requeue",
    "slots",
    "top_up",
]


def open_storage(
    url: str, *, create: bool = True, heartbeat_interval: int | None = storage.HEARTBEAT_INTERVAL_S
) -> optuna.storages.BaseStorage:
    """:func:`storage.open_storage` for workers: a trial found stale is re-queued (:func:`requeue`)."""
    return storage.open_storage(
        url, create=create, heartbeat_interval=heartbeat_interval, stale_trial_callback=requeue
    )
