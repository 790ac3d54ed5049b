"""A plain-Python reference of the cdc strategy's semantics, for the tests.

An event is ``(key, seq, rank, op, values)``: ``op`` is ``upsert``, ``delete`` or
``truncate`` (key None); ``rank`` 0 for a snapshot read, 1 otherwise; ``values`` a tuple of
the value columns. Events sort by ``(seq, rank)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Event = tuple[Any, int, int, str, tuple[Any, ...]]


def _order(e: Event) -> tuple[int, int]:
    return (e[1], e[2])


def _fill(old: tuple[Any, ...] | None, new: tuple[Any, ...], nulls: Sequence[int]) -> tuple:
    """``new`` with its NULLs in the ``nulls`` positions taken from ``old``."""
    if old is None:
        return new
    return tuple(old[i] if i in nulls and v is None else v for i, v in enumerate(new))


def scd1_batches(batches: Iterable[Sequence[Event]], ignore_nulls: Sequence[int] = ()) -> dict:
    """The current rows after applying each batch in turn: within a batch in sequence
    order; an event at or before its key's applied sequence (or the last truncate) is
    stale and skipped; a truncate deletes every row applied before it."""
    rows: dict[Any, tuple] = {}
    applied: dict[Any, int] = {}
    mark: int | None = None
    for batch in batches:
        for key, seq, _rank, op, values in sorted(set(batch), key=_order):
            if op == "truncate":
                for k in [k for k in rows if applied[k] < seq]:
                    del rows[k]
                mark = seq if mark is None else max(mark, seq)
                continue
            if (key in applied and seq <= applied[key]) or (mark is not None and seq <= mark):
                continue
            applied[key] = seq
            if op == "delete":
                rows.pop(key, None)
            else:
                rows[key] = _fill(rows.get(key), values, ignore_nulls)
    return rows


def scd1_in_order(events: Iterable[Event]) -> dict:
    """The current rows after applying every distinct event in sequence order."""
    rows: dict[Any, tuple] = {}
    for key, _seq, _rank, op, values in sorted(set(events), key=_order):
        if op == "truncate":
            rows.clear()
        elif op == "delete":
            rows.pop(key, None)
        else:
            rows[key] = values
    return rows


def scd2_in_order(events: Iterable[Event], tracked: Sequence[int] | None = None) -> list[tuple]:
    """The versions ``(key, *values, valid_from, valid_to)`` after applying every distinct
    event in sequence order: an upsert of a key that is not live, or that changes a
    tracked value, starts a version (closing the current one); another upsert updates the
    current version in place; a delete closes it; a truncate closes every current one."""
    versions: list[list[Any]] = []
    current: dict[Any, list[Any]] = {}
    for key, seq, _rank, op, values in sorted(set(events), key=_order):
        if op in ("delete", "truncate"):
            closing = list(current) if op == "truncate" else [key]
            for k in closing:
                version = current.pop(k, None)
                if version is not None:
                    version[-1] = seq
            continue
        version = current.get(key)
        picks = range(len(values)) if tracked is None else tracked
        if version is not None and all(version[1 + i] == values[i] for i in picks):
            version[1 : 1 + len(values)] = values
            continue
        if version is not None:
            version[-1] = seq
        version = [key, *values, seq, None]
        versions.append(version)
        current[key] = version
    return sorted((tuple(v) for v in versions), key=lambda v: (v[0], v[-2]))
