"""storage.retry and storage.outage: which errors are retried, for how long (time, not attempts),
what is said meanwhile, and what happens past the limit. Time is a fake clock that the injected
``sleep`` advances: nothing here really sleeps.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
import pytest
import sqlalchemy
import sqlalchemy.exc

from storage import outage, retry
from storage.errors import DatabaseUnavailable, StorageError
from storage.retry import is_permanent, is_transient, with_retry


def _operational(message: str = "server closed the connection") -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(message))


class _DriverError(Exception):
    """A driver's error with a SQLSTATE, as psycopg's (``sqlstate``) or psycopg2's (``pgcode``)."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _coded(sqlstate: str, message: str = "refused") -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError(None, None, _DriverError(message, sqlstate))


def _caused_by(error: BaseException) -> Exception:
    try:
        raise error
    except BaseException as cause:
        try:
            raise optuna.exceptions.StorageInternalError("commit failed") from cause
        except optuna.exceptions.StorageInternalError as wrapped:
            return wrapped


def _during(error: BaseException) -> Exception:
    """A ValueError raised while ``error`` was being handled (``__context__``, no ``from``)."""
    try:
        try:
            raise error
        except BaseException:
            raise ValueError("while cleaning up")  # noqa: B904 - the implicit __context__ is the point
    except ValueError as e:
        return e


LIBPQ = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
# error -> (transient, permanent)
ERRORS: dict[str, tuple[BaseException, bool, bool]] = {
    "dropped connection": (_operational(), True, False),
    "connection refused": (_operational(LIBPQ.replace("FATAL:  ", "Connection refused")), True, False),
    "server shutting down (57P01)": (_coded("57P01", "terminating connection"), True, False),
    "interface error": (
        sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("connection closed")),
        True,
        False,
    ),
    "invalidated connection": (
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("reset"), connection_invalidated=True),
        True,
        False,
    ),
    "cause is transient": (_caused_by(_operational()), True, False),  # Optuna wraps SQLAlchemy's errors
    "raised while handling one": (_during(_operational()), True, False),
    "no such database (3D000)": (_coded("3D000"), False, True),
    "wrong password (28P01)": (_coded("28P01"), False, True),
    "no such role (28000)": (_coded("28000"), False, True),
    # libpq's connection errors carry no SQLSTATE: their messages
    "no such database (libpq)": (_operational(LIBPQ + 'database "nope" does not exist'), False, True),
    "wrong password (libpq)": (
        _operational(LIBPQ + 'password authentication failed for user "hp"'),
        False,
        True,
    ),
    "no pg_hba.conf entry": (_operational(LIBPQ + 'no pg_hba.conf entry for host "10.0.0.2"'), False, True),
    "sslmode=bogus": (_operational('connection is bad: invalid sslmode value: "bogus"'), False, True),
    "invalid URI parameter": (
        sqlalchemy.exc.ProgrammingError(None, None, Exception('invalid URI query parameter: "x"')),
        False,
        True,
    ),
    "permanent, wrapped by Optuna": (_caused_by(_coded("3D000")), False, True),
    "a statement's error reading alike": (
        sqlalchemy.exc.DataError("INSERT", {}, Exception('invalid input value for enum: "x"')),
        False,
        False,
    ),
    "other DBAPI error": (
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("bad"), connection_invalidated=False),
        False,
        False,
    ),
    "integrity error": (
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("unique violation")),
        False,
        False,
    ),
    "bad SQL": (sqlalchemy.exc.ProgrammingError("SELEC", {}, Exception("syntax error")), False, False),
    "cause is not": (_caused_by(ValueError("invalid data")), False, False),
    "Optuna's own": (optuna.exceptions.UpdateFinishedTrialError("finished"), False, False),
    "plain error": (ValueError("no"), False, False),
}


@pytest.mark.parametrize(("error", "transient", "permanent"), ERRORS.values(), ids=ERRORS.keys())
def test_is_transient_and_is_permanent(error: BaseException, transient: bool, permanent: bool) -> None:
    assert (is_transient(error), is_permanent(error)) == (transient, permanent)


class Flaky:
    """A call that raises ``errors`` in turn (the last one forever if ``forever``), then returns
    ``"done"``; it counts its calls."""

    def __init__(self, *errors: BaseException, forever: bool = False) -> None:
        self.errors, self.forever, self.calls = list(errors), forever, 0
        self.__name__ = "flaky"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors[0] if self.forever and len(self.errors) == 1 else self.errors.pop(0)
        return ("done", args, kwargs)


class FakeTime:
    """A monotonic clock that only ``sleep`` moves."""

    def __init__(self) -> None:
        self.now, self.sleeps = 1000.0, []  # type: ignore[var-annotated]

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """This process's outage state, on a fake clock; the limit as it is by default."""
    time = FakeTime()
    monkeypatch.setattr(outage, "STATE", outage.Outage(clock=time.clock))
    monkeypatch.delenv(outage.OUTAGE_VAR, raising=False)
    return time


def _logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hpsearch.storage"]


def test_transient_errors_are_retried_with_growing_jittered_backoff_and_said_once(
    fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    call = Flaky(_operational(), _operational(), _operational())
    with caplog.at_level(logging.WARNING, logger="hpsearch.storage"):
        result = with_retry(call, 1, key="v", sleep=fake.sleep)
    assert result == ("done", (1,), {"key": "v"})  # arguments passed through on every attempt
    assert call.calls == 4
    # attempt n waits BASE_DELAY_S * 2**(n-1), times a jitter in [0.5, 1]
    assert len(fake.sleeps) == 3
    for n, delay in enumerate(fake.sleeps, start=1):
        full = retry.BASE_DELAY_S * 2 ** (n - 1)
        assert full / 2 <= delay <= full
    # one line for the outage, none per attempt; under a second: no "reachable again" either
    assert _logged(caplog) == [
        "transient database error in flaky: server closed the connection; "
        "retrying for up to 120 s (HPSEARCH_DB_OUTAGE_S)"
    ]


def test_other_errors_are_raised_at_once(fake: FakeTime) -> None:
    for error in (ValueError("bad value"), sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup"))):
        call = Flaky(error)
        with pytest.raises(type(error)):
            with_retry(call, sleep=fake.sleep)
        assert call.calls == 1
    assert fake.sleeps == []


def test_permanent_errors_raise_database_unavailable_at_once(fake: FakeTime) -> None:
    call = Flaky(_operational(LIBPQ + 'database "nope" does not exist'), forever=True)
    with pytest.raises(DatabaseUnavailable, match=r'database "nope" does not exist \(not retried\)$') as info:
        with_retry(call, sleep=fake.sleep, also=(sqlalchemy.exc.OperationalError,))  # `also` does not apply
    assert info.value.permanent and isinstance(info.value, StorageError)
    assert call.calls == 1 and fake.sleeps == []


def test_an_outage_is_ridden_out_for_the_limit_in_time_not_attempts(
    fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    call = Flaky(_operational("Connection refused"), forever=True)
    with (
        caplog.at_level(logging.WARNING, logger="hpsearch.storage"),
        pytest.raises(DatabaseUnavailable) as info,
    ):
        with_retry(call, sleep=fake.sleep)
    assert sum(fake.sleeps) == pytest.approx(120, abs=0.1)  # the last attempt comes at the limit
    assert max(fake.sleeps) <= retry.MAX_DELAY_S  # the backoff is capped...
    assert call.calls > 20  # ...so the server is tried every few seconds, far more often than 10 times
    assert str(info.value) == "database unreachable for 120 s (HPSEARCH_DB_OUTAGE_S=120): Connection refused"
    assert not info.value.permanent
    # one line at the start, one every 30 s while it lasts
    assert [m.split(" ")[:3] for m in _logged(caplog)] == [["transient", "database", "error"]] + [
        ["database", "still", "unreachable"]
    ] * 3


def test_past_the_limit_calls_fail_fast_until_one_succeeds(
    fake: FakeTime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(outage.OUTAGE_VAR, "10")
    told: list[DatabaseUnavailable] = []
    with outage.on_give_up(told.append):
        with pytest.raises(DatabaseUnavailable):
            with_retry(Flaky(_operational(), forever=True), sleep=fake.sleep)
        another = Flaky(_operational(), forever=True)  # e.g. the heartbeat thread's next beat
        with pytest.raises(DatabaseUnavailable, match="unreachable for 10 s"):
            with_retry(another, sleep=fake.sleep)
        assert another.calls == 1  # one attempt: the outage is already past the limit
        assert len(told) == 1  # the callbacks hear of it once per outage
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hpsearch.storage"):
            assert with_retry(Flaky(), sleep=fake.sleep)[0] == "done"  # the database is back
        assert _logged(caplog) == ["database reachable again after 10 s"]
        after = Flaky(_operational())  # a new outage gets the whole limit again
        assert with_retry(after, sleep=fake.sleep)[0] == "done"
        with pytest.raises(DatabaseUnavailable):
            with_retry(Flaky(_operational(), forever=True), sleep=fake.sleep)
        assert len(told) == 2
    with pytest.raises(DatabaseUnavailable):
        with_retry(Flaky(_operational(), forever=True), sleep=fake.sleep)
    assert len(told) == 2  # the block is over: no longer told


@pytest.mark.parametrize(("value", "seconds"), [("", 120.0), ("300", 300.0), ("0.5", 0.5), ("0", 0.0)])
def test_the_limit_comes_from_the_environment(value: str, seconds: float) -> None:
    assert outage.limit({outage.OUTAGE_VAR: value}) == seconds


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_limit_is_one_clear_error(value: str) -> None:
    with pytest.raises(
        StorageError, match=rf"^HPSEARCH_DB_OUTAGE_S='{value}': expected a number of seconds >= 0"
    ):
        outage.limit({outage.OUTAGE_VAR: value})


def test_a_zero_limit_gives_up_at_the_first_transient_error(
    fake: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(outage.OUTAGE_VAR, "0")
    call = Flaky(_operational(), forever=True)
    with pytest.raises(DatabaseUnavailable):
        with_retry(call, sleep=fake.sleep)
    assert call.calls == 1 and fake.sleeps == []


def test_a_bounded_call_makes_a_few_quiet_attempts_and_raises_the_last_error(
    fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    call = Flaky(*[_operational(f"down {i}") for i in range(5)])
    caplog.set_level(logging.WARNING, logger="hpsearch.storage")
    with pytest.raises(sqlalchemy.exc.OperationalError, match="down 3"):
        with_retry(call, attempts=4, sleep=fake.sleep)
    assert call.calls == 4 and len(fake.sleeps) == 3  # no wait after the last attempt
    assert _logged(caplog) == []
    assert outage.STATE.since is None  # not an outage: opening a storage tries briefly


def test_also_retries_further_errors_at_this_call_site_only(fake: FakeTime) -> None:
    class AlreadyExists(sqlalchemy.exc.ProgrammingError):
        pass

    race = AlreadyExists("CREATE TABLE", {}, Exception("relation already exists"))
    call = Flaky(race, sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup")))
    also = (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)
    assert with_retry(call, attempts=4, also=also, sleep=fake.sleep)[0] == "done"  # a subclass counts too
    assert call.calls == 3 and len(fake.sleeps) == 2

    call = Flaky(race)
    with pytest.raises(AlreadyExists):
        with_retry(call, attempts=4, sleep=fake.sleep)  # without `also`: not transient
    assert call.calls == 1


def test_first_line_is_the_drivers_message() -> None:
    wrapped = _caused_by(_operational("server closed the connection\nunexpectedly"))
    assert outage.first_line(wrapped) == "server closed the connection"
    assert outage.first_line(ValueError("")) == "ValueError"
