"""How long the database may stay unreachable, and what this process knows of the outage under way.

One clock per process, shared by its threads (a worker's trial loop and its heartbeat thread):
an outage starts at the first transient error that no success has followed, and ends at the next
success, in any thread. :func:`storage.retry.with_retry` keeps retrying while the outage is younger
than the limit, ``$HPSEARCH_DB_OUTAGE_S`` seconds (default 120: a server restart, a fail-over, a
short network cut); past it every database call gets one attempt and raises
:class:`~storage.errors.DatabaseUnavailable`, and the callbacks registered with :func:`on_give_up`
are called once, so a worker can stop its trial and exit instead of hanging.

What it logs (logger ``hpsearch.storage``, one line each): the first error of an outage, a
reminder every 30 s while it lasts, and "reachable again" when an outage of a second or more ends.

Example:
    >>> limit({"HPSEARCH_DB_OUTAGE_S": "300"})
    300.0
    >>> limit({})
    120.0
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from storage.errors import DatabaseUnavailable, StorageError

__all__ = ["DEFAULT_OUTAGE_S", "OUTAGE_VAR", "Outage", "chain", "first_line", "limit", "on_give_up"]

OUTAGE_VAR = "HPSEARCH_DB_OUTAGE_S"
DEFAULT_OUTAGE_S = 120.0  # a server restart or fail-over takes seconds to a minute; 2 minutes covers it
REPORT_EVERY_S = 30.0  # while an outage lasts, say so this often
_log = logging.getLogger("hpsearch.storage")

GiveUpCallback = Callable[[DatabaseUnavailable], None]


def limit(environ: Mapping[str, str] | None = None) -> float:
    """Seconds an outage may last before database calls give up: ``$HPSEARCH_DB_OUTAGE_S`` or 120.

    Raises:
        StorageError: the variable is not a number of seconds >= 0.
    """
    text = (os.environ if environ is None else environ).get(OUTAGE_VAR, "").strip()
    if not text:
        return DEFAULT_OUTAGE_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise StorageError(f"{OUTAGE_VAR}={text!r}: expected a number of seconds >= 0 (default 120)")
    return seconds


def chain(error: BaseException) -> list[BaseException]:
    """``error`` and what caused it, or was being handled when it was raised, in turn."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def first_line(error: BaseException) -> str:
    """The first line of the database driver's message behind ``error`` (else of ``error``'s own).

    Optuna wraps SQLAlchemy's errors in a StorageInternalError whose message ("An exception is
    raised during the commit ...") says nothing of the cause; SQLAlchemy prefixes the driver's.
    """
    for seen in chain(error):
        orig = getattr(seen, "orig", None)  # sqlalchemy.exc.DBAPIError: the driver's own error
        if isinstance(orig, BaseException) and str(orig).strip():
            return str(orig).strip().splitlines()[0]
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Outage:
    """This process's view of the database outage under way, if any (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._listeners: list[GiveUpCallback] = []
        self.since: float | None = None  # first error of the outage under way
        self._reported = 0.0
        self._gave_up = False
        self.ended_at: float | None = None  # when the last outage ended, and how long it had lasted
        self.lasted = 0.0

    def failed(self, where: str, error: BaseException, limit_s: float) -> float:
        """Record a transient error in ``where``; how many seconds the outage has lasted."""
        now = self.clock()
        with self._lock:
            if self.since is None:
                self.since = self._reported = now
                _log.warning(
                    "transient database error in %s: %s; retrying for up to %g s (%s)",
                    where, first_line(error), limit_s, OUTAGE_VAR,
                )  # fmt: skip
            elif now - self._reported >= REPORT_EVERY_S and now - self.since < limit_s:
                self._reported = now
                _log.warning(
                    "database still unreachable after %.0f s (giving up at %g s): %s",
                    now - self.since, limit_s, first_line(error),
                )  # fmt: skip
            return now - self.since

    def succeeded(self) -> None:
        """A database call succeeded: the outage under way, if any, is over."""
        if self.since is None:  # the common case, without the lock
            return
        now = self.clock()
        with self._lock:
            if self.since is None:
                return
            self.ended_at, self.lasted = now, now - self.since
            self.since, self._gave_up = None, False
        if self.lasted >= 1:
            _log.warning("database reachable again after %.0f s", self.lasted)

    def give_up(self, error: BaseException, lasted: float, limit_s: float) -> DatabaseUnavailable:
        """The error to raise past the limit; the first time in an outage, the callbacks are told."""
        failure = DatabaseUnavailable(
            f"database unreachable for {lasted:.0f} s ({OUTAGE_VAR}={limit_s:g}): {first_line(error)}"
        )
        with self._lock:
            first, self._gave_up = not self._gave_up, True
            listeners = list(self._listeners)
        if first:
            for listener in listeners:
                listener(failure)
        return failure

    def recovered_within(self, seconds: float, *, lasting: float) -> bool:
        """True if an outage of at least ``lasting`` seconds ended less than ``seconds`` ago."""
        ended = self.ended_at
        return ended is not None and self.lasted >= lasting and self.clock() - ended < seconds

    @contextlib.contextmanager
    def listening(self, callback: GiveUpCallback) -> Iterator[None]:
        with self._lock:
            self._listeners.append(callback)
        try:
            yield
        finally:
            with self._lock:
                self._listeners.remove(callback)


STATE = Outage()  # this process's; tests replace it (``storage.outage.STATE``)


def on_give_up(callback: GiveUpCallback) -> contextlib.AbstractContextManager[None]:
    """While the block runs, ``callback(error)`` is called (in whichever thread gave up, once per
    outage) when a database call gives up past the limit.

    Example:
        >>> with on_give_up(print):
        ...     pass
    """
    return STATE.listening(callback)
