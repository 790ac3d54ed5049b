"""The incremental strategies: what each one is, which one a batch runs, and the key checks.

Every module asks :data:`REGISTRY` what a strategy does (is it keyed, may it re-read a
window, does an empty batch still write, may its batches skip staging, which macro
renders its SQL) instead of comparing names. Adding a strategy is one record here and one
macro file under ``macros/strategies/``.

Pure functions over plain data: the batch loop gathers the facts (row counts, how many of
the batch's keys already exist) and these decide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow.redact import DEFAULT, Redactor

if TYPE_CHECKING:
    from dbt.adapters.sqlflow.config import SqlflowConfig

MAX_SAMPLES = 5


class CountRole(str, Enum):
    """What the row count of one strategy step means for the batch's figures."""

    INSERTED = "inserted"
    UPDATED = "updated"
    DELETED = "deleted"
    #: A MERGE's count: each batch row without a match was inserted, the rest updated.
    MERGED = "merged"
    #: A merge's keyed delete of the matched rows: counted as updated; more rows than
    #: matched keys means the target's key is not unique (refused).
    REPLACED = "replaced"
    #: A merge's insert after its keyed delete: the rows beyond the matched keys are new.
    UPSERTED = "upserted"
    #: Change events not applied (``cdc``: older than what is applied for their key).
    IGNORED = "ignored"
    #: A helper statement whose rows are not changes of the target.
    NONE = "none"


class MergeForm(str, Enum):
    """How a merge batch is written (decided in Python, rendered by ``merge.sql``)."""

    #: Every column of every matched row is replaced: a keyed DELETE plus an INSERT (the
    #: same rows as MERGE ... UPDATE; DuckDB only marks deleted rows, where an UPDATE
    #: rewrites each row group it touches: 2-3x the time at 10M rows).
    DELETE_INSERT = "delete_insert"
    #: MERGE ... WHEN MATCHED UPDATE (some columns kept) ... WHEN NOT MATCHED INSERT.
    MERGE = "merge"
    #: No column to update (the key is every column): MERGE that only inserts.
    INSERT_ONLY = "insert_only"


@dataclass(frozen=True)
class Strategy:
    """What one incremental strategy does, as the batch loop and the planner need it.

    Attributes:
        name: The ``incremental_strategy`` value.
        keyed: Writes by ``unique_key`` (required; a batch's keys must be unique).
        rereads_window: A window may be loaded again (``lookback``, invalidation): false
            for append, whose re-read rows would be appended twice.
        replaces_window: The window's target rows are replaced by the batch, so a window
            with target rows but no source rows is not empty.
        writes_when_empty: An empty batch may still change the target (a snapshot closes
            the rows that disappeared; insert_overwrite deletes the window's rows).
        may_skip_staging: Windowed batches may go from the model's query straight into
            the target when nothing needs the staged batch.
        change_feed: The batch is a feed of change events, several per key (``cdc``): its
            keys are checked per sequence, not for uniqueness.
    """

    name: str
    keyed: bool
    rereads_window: bool
    replaces_window: bool
    writes_when_empty: bool
    may_skip_staging: bool
    change_feed: bool = False

    @property
    def macro(self) -> str:
        """The macro that renders this strategy's steps (found by ``sqlflow_strategy_sql``)."""
        return "get_sqlflow_" + self.name.replace("+", "_") + "_sql"

    @property
    def judges_empty_windows(self) -> bool:
        """Whether a window without source rows may be skipped (recorded as loaded)."""
        return self.replaces_window or not self.writes_when_empty


REGISTRY: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("append", False, False, False, False, True),
        Strategy("merge", True, True, False, False, False),
        Strategy("delete+insert", True, True, False, False, False),
        Strategy("insert_overwrite", False, True, True, True, True),
        Strategy("snapshot", True, True, False, True, False),
        # A window re-read with lookback holds events already applied: they are stale
        # (same sequence) and ignored.
        Strategy("cdc", True, True, False, False, False, change_feed=True),
    )
}
"""Every strategy, by name."""

AUTO = "auto"
"""The configured strategy that lets each batch choose (see :func:`choose_strategy`)."""

STRATEGY_NAMES: tuple[str, ...] = (*REGISTRY, AUTO)
KEYED_STRATEGIES: tuple[str, ...] = tuple(n for n, s in REGISTRY.items() if s.keyed)


def get_strategy(name: str) -> Strategy:
    """The registry record of ``name``.

    Raises:
        DbtRuntimeError: naming the strategy, the known ones and the fix.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise DbtRuntimeError(
            f"sqlflow: unknown incremental strategy {name!r}; known: {', '.join(REGISTRY)}"
            f" ('{AUTO}' chooses one of them per batch). Set incremental_strategy to one of them."
        ) from None


def is_keyed(config: SqlflowConfig) -> bool:
    """Whether a batch of this model is written by key (its keys are checked)."""
    if not config.unique_key:
        return False
    return config.strategy == AUTO or get_strategy(config.strategy).keyed


def merge_form(
    unique_key: Sequence[str],
    batch_columns: Sequence[str],
    target_columns: Sequence[str],
    update_columns: Sequence[str] | None,
    exclude_columns: Sequence[str] | None,
) -> MergeForm:
    """How a merge batch is written.

    The delete + insert form needs every non-key column replaced (no
    ``merge_update_columns``/``merge_exclude_columns``) and the batch to carry every
    target column: a column the model no longer returns (kept by
    ``on_schema_change='append_new_columns'``) keeps its values under MERGE ... UPDATE.
    """
    keys = {k.lower() for k in unique_key}
    excluded = {c.lower() for c in exclude_columns or ()}
    updated = [
        c
        for c in (update_columns or batch_columns)
        if c.lower() not in keys and c.lower() not in excluded
    ]
    if not updated:
        return MergeForm.INSERT_ONLY
    batch = {c.lower() for c in batch_columns}
    whole_rows = all(c.lower() in batch for c in target_columns)
    if whole_rows and not update_columns and not exclude_columns:
        return MergeForm.DELETE_INSERT
    return MergeForm.MERGE


@dataclass(frozen=True)
class BatchFacts:
    """What the adapter measured of a staged batch."""

    rows: int
    matched_keys: int | None = None
    target_exists: bool = True


@dataclass(frozen=True)
class StrategyChoice:
    """The strategy a batch runs with, the statement kind and why."""

    strategy: str
    reason: str
    plain_insert: bool = False


def needs_matched_keys(config: SqlflowConfig) -> bool:
    """Whether choosing the strategy (or counting a merge) needs the matched-key count."""
    return bool(config.unique_key) and config.strategy in (AUTO, "merge")


def resolve_static(config: SqlflowConfig) -> StrategyChoice | None:
    """The strategy when config alone decides it; None when auto must look at the data."""
    if config.strategy != AUTO:
        return StrategyChoice(config.strategy, "configured")
    if config.snapshot is not None:
        return StrategyChoice("snapshot", "snapshot config present")
    if config.partition_by is not None and not config.unique_key:
        return StrategyChoice("insert_overwrite", "partition_by set without unique_key")
    if not config.unique_key:
        return StrategyChoice("append", "no unique_key, no partition_by")
    return None


def choose_strategy(config: SqlflowConfig, facts: BatchFacts) -> StrategyChoice:
    """Choose the strategy of one batch.

    ``auto``: snapshot config -> snapshot; partition_by without unique_key ->
    insert_overwrite; unique_key -> merge, or a plain insert when none of the batch's
    keys exist in the target; otherwise append. An explicit ``merge`` whose keys are all
    new also runs as a plain insert (the same result, cheaper than MERGE).
    """
    static = resolve_static(config)
    if static is not None and static.strategy != "merge":
        return static
    matched = facts.matched_keys or 0
    detail = f"{matched:,} of {facts.rows:,} batch keys exist"
    if not facts.target_exists or matched == 0:
        reason = f"unique_key set, {detail}: plain insert"
        if static is not None:
            return StrategyChoice("merge", reason, plain_insert=True)
        return StrategyChoice("append", reason, plain_insert=True)
    return StrategyChoice("merge", f"unique_key set, {detail}")


#: Keys per pass of the duplicate-key check. It sorts the keys (a window over them) and
#: compares neighbours: at 100M keys one pass takes 3.8 s and 2.7 GB, five passes of 20M
#: keys (split by hash) 5.7 s and 0.7 GB, where a GROUP BY took 12 s and 5.4 GB.
KEY_CHECK_PASS_ROWS = 20_000_000


def count_duplicate_keys(
    run: Callable[[str], list[tuple[Any, ...]]],
    relation: str,
    keys: list[str],
    null_filter: str,
    rows: int,
    pass_rows: int = KEY_CHECK_PASS_ROWS,
) -> int:
    """How many key values occur more than once among the non-null keys of ``relation``.

    ``keys`` are quoted column names, ``rows`` the relation's row count. The keys are
    sorted and each row compared with its neighbours: a key value counts once, at the
    first of its equal rows. With more rows than ``pass_rows`` the keys are split by
    ``hash(keys) % passes`` and counted per part (a key's rows always fall in the same
    part, so the sum is exact).

    A single integer key whose values span a range not much wider than the row count is
    first checked by a bitmap (:func:`_unique_by_bitmap`): one scan, a few MB, no sort;
    only when that finds a repeated value are the duplicated keys counted as above.
    """
    if len(keys) == 1 and _unique_by_bitmap(run, relation, keys[0], null_filter):
        return 0
    passes = max(1, -(-rows // pass_rows))
    key_list = ", ".join(keys)
    names = [f"sqlflow_k{i}" for i in range(len(keys))]
    same_as_next = " and ".join(f"{n} = {n}_next" for n in names)
    new_after_previous = " or ".join(f"{n} is distinct from {n}_prev" for n in names)
    neighbours = ", ".join(
        f"{k} as {n}, lead({k}) over w as {n}_next, lag({k}) over w as {n}_prev"
        for k, n in zip(keys, names, strict=True)
    )
    total = 0
    for part in range(passes):
        only_part = f" and hash({key_list}) % {passes} = {part}" if passes > 1 else ""
        total += int(
            run(
                f"select count(*) from (select {neighbours} from {relation}"
                f" where not ({null_filter}){only_part} window w as (order by {key_list}))"
                f" where {same_as_next} and ({new_after_previous})"
            )[0][0]
        )
    return total


#: The integer types a bitmap of their values can check (DuckDB's ``bitstring_agg``).
_BITMAP_TYPES = frozenset(
    ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
)
#: A bitmap is used when the key's range holds at most this many values per row (the
#: bitmap costs range / 8 bytes per thread) ...
BITMAP_SPAN_PER_ROW = 64
#: ... and at most this many values in all (32 MB per thread).
BITMAP_MAX_SPAN = 1 << 28


def _unique_by_bitmap(
    run: Callable[[str], list[tuple[Any, ...]]], relation: str, key: str, null_filter: str
) -> bool:
    """Whether a single integer key is proven unique by a bitmap of its values.

    One scan gives the key's type, range and count; when the range is narrow enough
    (:data:`BITMAP_SPAN_PER_ROW`, :data:`BITMAP_MAX_SPAN`), a second sets one bit per
    value (``bitstring_agg``): the key is unique exactly when as many bits are set as
    there are non-null keys. False means "not proven" (another type, a sparse range, or a
    repeated value), and the caller counts the duplicates by sorting.
    """
    where = f"where not ({null_filter})"
    kind, low, high, count = run(
        f"select any_value(typeof({key})), min({key}), max({key}), count({key})"
        f" from {relation} {where}"
    )[0]
    if kind not in _BITMAP_TYPES or not count:
        return not count  # no keys: nothing repeats
    span = int(high) - int(low) + 1
    if span > min(BITMAP_MAX_SPAN, BITMAP_SPAN_PER_ROW * int(count)):
        return False
    distinct = run(
        f"select bit_count(bitstring_agg({key}, {int(low)}, {int(high)})) from {relation} {where}"
    )[0][0]
    return int(distinct) == int(count)


def key_problems(
    model: str,
    unique_key: tuple[str, ...],
    *,
    null_key_rows: int,
    duplicate_keys: int,
    samples: list[tuple[Any, ...]],
    tied_keys: int = 0,
    tied_samples: list[tuple[Any, ...]] | None = None,
    dedupe_by: tuple[str, ...] = (),
    redactor: Redactor = DEFAULT,
) -> str | None:
    """The error message for a batch with null or duplicated keys, or None if it has none.

    ``tied_keys`` counts the keys whose last rows by ``dedupe_by`` are several different
    rows (which one to keep is undefined); ``samples`` and ``tied_samples`` are up to
    :data:`MAX_SAMPLES` ``(*key values, rows)`` tuples, their key values shown redacted
    by ``redactor``.
    """
    if not null_key_rows and not duplicate_keys and not tied_keys:
        return None
    keys = ", ".join(unique_key)
    parts = [f"sqlflow_incremental model '{model}': the batch cannot be loaded by key ({keys})."]
    if duplicate_keys:
        shown = _format_samples(unique_key, samples, redactor)
        parts.append(
            f"{duplicate_keys:,} key value(s) occur more than once in the batch, e.g. {shown}."
            " Set dedupe_by (e.g. dedupe_by='updated_at') to keep the last row per key,"
            " or fix the duplicates upstream."
        )
    if tied_keys:
        shown = _format_samples(unique_key, tied_samples or [], redactor)
        order = ", ".join(dedupe_by)
        parts.append(
            f"{tied_keys:,} key value(s) have different rows tied for last by dedupe_by"
            f" ({order}), e.g. {shown}: which of them to keep is undefined. Add a column to"
            f" dedupe_by that breaks the tie (e.g. dedupe_by=[{', '.join(map(repr, dedupe_by))},"
            " 'seq']), or fix the duplicates upstream (rows equal in every column are"
            " kept once)."
        )
    if null_key_rows:
        parts.append(
            f"{null_key_rows:,} row(s) have a null in the key column(s) {keys}."
            " Filter them out in the model or fill the key."
        )
    parts.append("Nothing was written.")
    return " ".join(parts)


def target_duplicates(
    model: str, unique_key: tuple[str, ...], relation: str, matched: int, deleted: int
) -> str | None:
    """The error message for a merge whose matched keys have more target rows than keys.

    A merge runs as a delete of the matched rows plus an insert of the batch; that equals
    MERGE ... UPDATE only when each matched key has one target row.
    """
    if deleted <= matched:
        return None
    keys = ", ".join(unique_key)
    return (
        f"sqlflow_incremental model '{model}': the merge on unique_key ({keys}) matched"
        f" {matched:,} key value(s) of the batch to {deleted:,} rows of {relation}, so the"
        f" target holds {deleted - matched:,} extra row(s) with an existing key: unique_key"
        " is not unique in the target table. Find them with `select"
        f" {keys}, count(*) from {relation} group by all having count(*) > 1`, then"
        f" rebuild the table (dbt run --full-refresh -s {model.split('.')[-1]}) or choose a"
        " key that is unique."
        " Nothing was written."
    )


def raise_key_problems(model: str, unique_key: tuple[str, ...], **facts: Any) -> None:
    """Raise ``DbtRuntimeError`` when ``key_problems`` finds any."""
    message = key_problems(model, unique_key, **facts)
    if message:
        raise DbtRuntimeError(message)


def _format_samples(
    unique_key: tuple[str, ...], samples: list[tuple[Any, ...]], redactor: Redactor
) -> str:
    return "; ".join(
        _format_key(unique_key, s[:-1], redactor) + f" ({s[-1]} rows)" for s in samples
    )


def _format_key(unique_key: tuple[str, ...], values: tuple[Any, ...], redactor: Redactor) -> str:
    def shown(column: str, value: Any) -> str:
        if redactor.listed(column):
            return str(redactor.value(column, value))
        return repr(redactor.value(column, value))

    pairs = [f"{k}={shown(k, v)}" for k, v in zip(unique_key, values, strict=False)]
    return pairs[0] if len(unique_key) == 1 else "(" + ", ".join(pairs) + ")"
