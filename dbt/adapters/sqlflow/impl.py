"""The sqlflow adapter: dbt-duckdb's adapter plus a thin bridge from Jinja to sqlflow's Python."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from dbt.adapters.base.meta import available
from dbt.adapters.duckdb.impl import DuckDBAdapter
from dbt.adapters.events.logging import AdapterLogger
from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow.config import SqlflowConfig, parse_timestamp
from dbt.adapters.sqlflow.connections import SqlflowConnectionManager
from dbt.adapters.sqlflow.load import (
    UNBOUNDED_END,
    UNBOUNDED_START,
    WINDOW_END_MARK,
    WINDOW_START_MARK,
    ModelLoad,
    SqlflowAdapterResponse,
    substitute_window,
    time_literal,
    utc_now,
    window_sql,
)
from dbt.adapters.sqlflow.strategies import (
    BatchFacts,
    choose_strategy,
    needs_matched_keys,
    raise_key_problems,
)

logger = AdapterLogger("sqlflow")

Executor = Callable[[str], list[tuple]]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqlflowAdapter(DuckDBAdapter):
    """dbt-duckdb's adapter under ``type: sqlflow``.

    Everything dbt-duckdb does keeps working; sqlflow's materialization reaches its
    Python (config parsing, strategy choice, state, metrics) through the ``@available``
    methods below, each returning plain data.
    """

    ConnectionManager = SqlflowConnectionManager

    def __init__(self, config: Any, mp_context: Any) -> None:
        super().__init__(config, mp_context)
        self._sqlflow_loads: dict[str, ModelLoad] = {}
        self._sqlflow_lock = threading.Lock()

    def valid_incremental_strategies(self) -> Sequence[str]:
        """dbt-duckdb's strategies for ``materialized='incremental'``.

        A new list on every call: dbt's base code appends ``"default"`` to it.
        """
        return list(super().valid_incremental_strategies())

    # -- helpers (not exposed to Jinja) ---------------------------------------------

    def _executor(self) -> Executor:
        """Run SQL on this thread's connection, inside its open transaction."""

        def run(sql: str) -> list[tuple]:
            _, cursor = self.connections.add_query(sql, auto_begin=True)
            if cursor.description is None:
                return []
            return [tuple(row) for row in cursor.fetchall()]

        return run

    def _load(self, load_id: str) -> ModelLoad:
        with self._sqlflow_lock:
            return self._sqlflow_loads[load_id]

    def _log(self, load: ModelLoad, message: str, load_id: str | None = None) -> None:
        # AdapterLogger prefixes "sqlflow adapter: "; the ids let JSON logs join metrics.
        logger.info(f"{load.config.model} {message} {load.log_context(load_id)}")

    def _now(self, run_vars: dict[str, Any]) -> datetime:
        pinned = run_vars.get("sqlflow_now")
        if pinned in (None, ""):
            return utc_now()
        try:
            return parse_timestamp(pinned)
        except ValueError as e:
            raise DbtRuntimeError(
                f"--vars sqlflow_now {pinned!r} is not an ISO date or timestamp."
                ' Pass e.g. --vars \'{"sqlflow_now": "2025-03-01T00:00:00"}\'.'
            ) from e

    # -- Jinja bridge ------------------------------------------------------------------

    @available
    def sqlflow_window_sql(self, bound: str, run_vars: dict[str, Any] | None = None) -> str:
        """What ``sqlflow_window_start()`` / ``sqlflow_window_end()`` render.

        Args:
            bound: ``"start"`` or ``"end"``.
            run_vars: ``{"sqlflow_start": ..., "sqlflow_end": ...}`` from ``--vars``.

        Returns:
            A TIMESTAMP literal with a marker comment; each batch substitutes its bounds.
        """
        run_vars = run_vars or {}
        raw = run_vars.get(f"sqlflow_{bound}")
        try:
            value = parse_timestamp(raw) if raw not in (None, "") else None
        except ValueError:
            value = None
        if bound == "start":
            return window_sql(WINDOW_START_MARK, value, UNBOUNDED_START)
        return window_sql(WINDOW_END_MARK, value, UNBOUNDED_END)

    @available.parse_none
    def sqlflow_start(
        self,
        model: dict[str, Any],
        compiled_code: str,
        target_relation: Any,
        incremental: bool,
        run_vars: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Validate the model's config and plan its execution.

        Args:
            model: The model node (``model`` in the materialization).
            compiled_code: The model's compiled SQL.
            target_relation: The model's relation.
            incremental: True when the table exists and is not being fully refreshed.
            run_vars: sqlflow's ``--vars`` (``sqlflow_now``, ``sqlflow_start``, ``sqlflow_end``).

        Returns:
            The plan as plain data: ``id``, ``mode`` (``build``/``incremental``),
            ``batches`` (``None`` or ``{"start", "end"}`` each) and the SQL settings.

        Raises:
            DbtConfigError: listing every configuration problem, before anything runs.
        """
        run_vars = run_vars or {}
        now = self._now(run_vars)
        columns = {name: dtype for name, dtype in self._describe(compiled_code)}
        config = SqlflowConfig.parse(
            model["unique_id"], model.get("config") or {}, columns, now=now
        )
        from dbt_common.invocation import get_invocation_id

        batches: list[tuple[datetime, datetime] | None] = [None]
        load = ModelLoad.create(
            config,
            str(target_relation),
            "incremental" if incremental else "build",
            batches,
            get_invocation_id(),
        )
        with self._sqlflow_lock:
            self._sqlflow_loads[load.id] = load
        part = config.partition_by
        order_by = part.field if part is not None else config.event_time
        return {
            "id": load.id,
            "mode": load.mode,
            "batches": [None if b is None else {"start": b[0], "end": b[1]} for b in load.batches],
            "strategy": config.strategy,
            "unique_key": list(config.unique_key),
            "dedupe_by": list(config.dedupe_by),
            "event_time": config.event_time,
            "order_by": order_by,
            "on_schema_change": config.on_schema_change,
            "merge_update_columns": list(config.merge_update_columns or []),
            "merge_exclude_columns": list(config.merge_exclude_columns or []),
            "incremental_predicates": list(config.incremental_predicates),
        }

    def _describe(self, sql: str) -> list[tuple[str, str]]:
        _, cursor = self.connections.add_query(f"describe ({sql})", auto_begin=False)
        return [(str(row[0]), str(row[1])) for row in cursor.fetchall()]

    @available
    def sqlflow_batch_sql(self, load_id: str, compiled_code: str, batch: Any) -> str:
        """The model's SQL for one batch: its window bounds substituted, if it has one."""
        if not batch:
            return compiled_code
        return substitute_window(compiled_code, batch["start"], batch["end"])

    @available.parse_none
    def sqlflow_inspect(
        self,
        load_id: str,
        batch_relation: Any,
        target_relation: Any,
        target_exists: bool,
        batch: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Check a staged batch and choose its strategy.

        Refuses null or duplicated keys (unless ``dedupe_by`` made them unique), measures
        how many of the batch's keys exist in the target, and decides ``auto``.

        Returns:
            ``strategy``, ``plain_insert``, ``rows`` of the batch and
            ``target_predicate``: the target-side restriction to the batch's partition
            range (SQL on the alias ``DBT_INTERNAL_DEST``), or None.

        Raises:
            DbtRuntimeError: naming the model, the key columns and up to five bad keys.
        """
        load = self._load(load_id)
        config = load.config
        run = self._executor()
        keys = [_quote(k) for k in config.unique_key]
        staged = str(batch_relation)
        keyed = bool(keys) and config.strategy != "append"
        null_filter = " or ".join(f"{k} is null" for k in keys) or "false"
        rows, null_rows = run(
            f"select count(*), count(*) filter (where {null_filter}) from {staged}"
        )[0]
        if keyed:
            samples: list[tuple[Any, ...]] = []
            duplicates = 0
            if not config.dedupe_by:
                key_list = ", ".join(keys)
                found = run(
                    f"select {key_list}, n, count(*) over () from ("
                    f" select {key_list}, count(*) as n from {staged}"
                    f" group by all having count(*) > 1)"
                    f" order by n desc, {key_list} limit 5"
                )
                samples = [tuple(r[:-1]) for r in found]
                duplicates = int(found[0][-1]) if found else 0
            raise_key_problems(
                config.model,
                config.unique_key,
                null_key_rows=int(null_rows) if keyed else 0,
                duplicate_keys=duplicates,
                samples=samples,
            )
        matched: int | None = None
        if target_exists and needs_matched_keys(config) and rows:
            on = " and ".join(f"t.{k} = s.{k}" for k in keys)
            matched = int(
                run(
                    f"select count(*) from {staged} as s"
                    f" where exists (select 1 from {target_relation} as t where {on})"
                )[0][0]
            )
        choice = choose_strategy(
            config, BatchFacts(rows=int(rows), matched_keys=matched, target_exists=target_exists)
        )
        window = (batch["start"], batch["end"]) if batch else None
        current = load.current or load.start_batch(choice.strategy, window)
        current.matched = matched or 0
        if config.strategy == "auto" and load.mode == "incremental":
            self._log(load, f"strategy auto -> {choice.strategy} ({choice.reason})")
        return {
            "strategy": choice.strategy,
            "plain_insert": choice.plain_insert,
            "rows": int(rows),
            "target_predicate": self._target_predicate(load, batch_relation, batch, run),
        }

    def _target_predicate(
        self, load: ModelLoad, batch_relation: Any, batch: dict[str, Any] | None, run: Executor
    ) -> str | None:
        """The target-side restriction to the batch's time-partition range, if any."""
        part = load.config.partition_by
        if part is None or not part.is_time:
            return None
        if batch:
            lo, hi = batch["start"], batch["end"]
        else:
            g = part.granularity
            field = _quote(part.field)
            lo, hi = run(
                f"select date_trunc('{g}', min({field}))::timestamp,"
                f" (date_trunc('{g}', max({field})) + interval 1 {g})::timestamp"
                f" from {batch_relation}"
            )[0]
            if lo is None:
                return None
        col = f"DBT_INTERNAL_DEST.{_quote(part.field)}"
        return (
            f"{col} >= {time_literal(lo, part.data_type)}"
            f" and {col} < {time_literal(hi, part.data_type)}"
        )

    @available.parse_none
    def sqlflow_start_build(self, load_id: str) -> None:
        """Open the figures of a build (the table created from the model's SQL)."""
        load = self._load(load_id)
        load.start_batch("full_refresh", None)

    @available.parse_none
    def sqlflow_execute(self, load_id: str, sql: str, role: str) -> int:
        """Run one DML statement of the load and count its rows.

        Args:
            load_id: The model execution.
            sql: One statement.
            role: ``inserted``, ``updated``, ``deleted``, or ``merged`` (a MERGE whose
                count splits into the matched keys, updated, and the rest, inserted).

        Returns:
            The statement's row count.
        """
        load = self._load(load_id)
        response, _ = self.connections.execute(sql, auto_begin=True, fetch=False)
        count = int(response.rows_affected or 0)
        if role == "merged":
            matched = load.current.matched if load.current else 0
            load.add_count("updated", min(matched, count))
            load.add_count("inserted", max(count - matched, 0))
        else:
            load.add_count(role, count)
        return count

    @available.parse_none
    def sqlflow_commit_batch(self, load_id: str) -> None:
        """Record that the current batch's transaction committed."""
        load = self._load(load_id)
        done = load.commit_batch()
        self._log(
            load,
            f"{done.strategy}: {done.rows_inserted:,} inserted, {done.rows_updated:,} updated,"
            f" {done.rows_deleted:,} deleted",
            done.load_id,
        )

    @available.parse_none
    def sqlflow_result(self, load_id: str) -> SqlflowAdapterResponse:
        """Finish the model execution and return its ``adapter_response``."""
        with self._sqlflow_lock:
            load = self._sqlflow_loads.pop(load_id)
        return load.response()
