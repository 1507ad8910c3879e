"""Heartbeats for the storages Optuna gives none: the journal file and the gRPC storage proxy.

Optuna's heartbeats (a thread beside each running trial; stale trials failed and handed to a
callback before each new trial) exist only on its RDB storage, so a worker killed while it ran
a trial on a journal file or through a gRPC proxy left that trial RUNNING for ever. Mixed into
those storage classes (:mod:`storage.engines`), :class:`SystemAttrHeartbeat` plugs into the same
machinery of Optuna's: a beat writes ``time.time()`` into the trial system attr
:data:`HEARTBEAT_KEY` (through the storage, so through the proxy, like any write); a RUNNING
trial whose last beat is older than the grace period is stale.

The times are the workers' own clocks: workers on several machines need clocks that agree within
a few seconds (NTP), well under the grace period (30 s by default). On a journal file each beat
is one more line in the log: one per running trial every ``--heartbeat`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import compat

__all__ = ["HEARTBEAT_KEY", "SystemAttrHeartbeat"]

HEARTBEAT_KEY = "hpsearch:heartbeat"  # trial system attr: wall-clock time of the trial's last beat
_log = logging.getLogger("hpsearch.storage")

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class SystemAttrHeartbeat(compat.BaseHeartbeat):
    """Heartbeats kept in a trial system attr; mixed into a storage class, before it."""

    heartbeat_interval: int | None = None
    grace_period: int | None = None
    heartbeat_stale_trial_callback: StaleCallback | None = None

    def set_heartbeat(
        self,
        *,
        heartbeat_interval: int,
        grace_period: int,
        heartbeat_stale_trial_callback: StaleCallback | None,
    ) -> None:
        """Beat every ``heartbeat_interval`` s; stale after ``grace_period`` s (RDBStorage's names)."""
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        """One beat. Never raises: Optuna's heartbeat thread would die of it, and its trial go stale
        while it still trains."""
        store: optuna.storages.BaseStorage = self  # type: ignore[assignment]  # mixed into a storage
        try:
            store.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # finished meanwhile: by its worker, or failed as stale by another
        except Exception as e:
            _log.warning("heartbeat of trial id %d not recorded: %s", trial_id, str(e).strip()[:200])

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        store: optuna.storages.BaseStorage = self  # type: ignore[assignment]
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        now = time.time()
        stale = []
        for trial in store.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_KEY)
            if isinstance(beat, (int, float)) and now - beat > grace:  # never beaten: not stale, as Optuna's
                stale.append(compat.trial_id(trial))
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self.heartbeat_stale_trial_callback
