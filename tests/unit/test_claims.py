"""claims.py: which profiles take the lock, and the claim's wait and release, on a
stand-in for the PostgreSQL connection (the lake suite runs it on a real PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow.claims import CLASS_ID, Claims, catalog_dsn
from dbt.adapters.sqlflow.credentials import SqlflowCredentials


def creds(**kwargs: Any) -> SqlflowCredentials:
    return SqlflowCredentials.from_dict({"path": ":memory:", "schema": "main", **kwargs})


def test_the_dsn_of_a_postgres_catalog() -> None:
    lake = {"path": "ducklake:postgres:dbname=l host=/s user=u", "alias": "lake"}
    found = creds(database="lake", attach=[lake])
    assert catalog_dsn(found, "lake") == "dbname=l host=/s user=u"
    assert catalog_dsn(found, "memory") is None
    laptop = {"path": "ducklake:/data/lake.ducklake", "alias": "lake"}
    assert catalog_dsn(creds(database="lake", attach=[laptop]), "lake") is None


class _Result:
    def __init__(self, value: Any) -> None:
        self.value = value

    def fetchone(self) -> tuple[Any]:
        return (self.value,)


class _Connection:
    """Answers pg_try_advisory_lock with ``free``; records what ran."""

    def __init__(self, free: bool) -> None:
        self.free, self.ran, self.closed = free, [], False

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> _Result:
        self.ran.append((sql.split("(")[0], params))
        return _Result(self.free)

    def close(self) -> None:
        self.closed = True


def test_a_free_table_is_claimed_at_once_and_released() -> None:
    connection, lines = _Connection(True), []
    claims = Claims(lambda dsn: connection, lines.append)
    claims.claim("m", "dsn", '"l"."s"."t"', "model.p.m")
    assert connection.ran == [("select pg_try_advisory_lock", (CLASS_ID, '"l"."s"."t"'))]
    assert lines == []
    claims.release("m")
    claims.release("m")
    assert connection.closed


def test_a_held_table_is_waited_for_with_a_message() -> None:
    connection, lines = _Connection(False), []
    claims = Claims(lambda dsn: connection, lines.append)
    claims.claim("m", "dsn", "t", "model.p.m")
    assert [r[0] for r in connection.ran] == [
        "select pg_try_advisory_lock",
        "select pg_advisory_lock",
    ]
    assert lines[0].startswith("model.p.m: another process is loading t")
    assert lines[1].startswith("model.p.m: the other load of t ended after ")
    claims.release_all()
    assert connection.closed


def test_an_unreachable_catalog_says_so() -> None:
    def refuse(dsn: str) -> Any:
        raise OSError("connection refused")

    with pytest.raises(DbtRuntimeError, match="cannot connect to the lake's PostgreSQL catalog"):
        Claims(refuse, print).claim("m", "dsn", "t", "model.p.m")


class _Dropped(_Connection):
    """A session the catalog may drop (``dropped``): then every statement fails as
    libpq's would."""

    dropped = False

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> _Result:
        if self.dropped:
            raise OSError("server closed the connection unexpectedly")
        return super().execute(sql, params)


def test_a_held_claim_is_checked_and_a_lost_one_taken_again_or_refused() -> None:
    lines: list[str] = []
    opened = [_Dropped(True) for _ in range(3)]
    claims = Claims(lambda dsn: opened.pop(0), lines.append)
    first = opened[0]
    claims.claim("m", "dsn", "t", "model.p.m")
    # Held: one round trip, nothing else.
    assert claims.ensure("m", "dsn", "t", "model.p.m", lambda: True) is False
    assert first.ran[-1] == ("select 1", ())
    # Lost, taken again, nobody loaded meanwhile: going on, said once.
    first.dropped = True
    second = opened[0]
    assert claims.ensure("m", "dsn", "t", "model.p.m", lambda: False) is True
    assert first.closed and second.ran == [("select pg_try_advisory_lock", (CLASS_ID, "t"))]
    assert lines == [
        "model.p.m: the claim on t was lost (the lake's catalog connection dropped) and is"
        " taken again; no other run loaded the model meanwhile; going on"
    ]
    # Lost, taken again, but another run loaded the model meanwhile: refused.
    second.dropped = True
    with pytest.raises(DbtRuntimeError, match="and another run loaded the model meanwhile"):
        claims.ensure("m", "dsn", "t", "model.p.m", lambda: True)
    # Without a claim (a plain DuckDB file): nothing to check.
    assert claims.ensure("other", "dsn", "t", "model.p.other", lambda: True) is False
