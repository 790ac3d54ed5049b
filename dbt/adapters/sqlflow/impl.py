"""The sqlflow adapter: dbt-duckdb's adapter plus a thin bridge from Jinja to sqlflow's Python."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from dbt.adapters.base.meta import available
from dbt.adapters.duckdb.impl import DuckDBAdapter
from dbt.adapters.events.logging import AdapterLogger
from dbt_common.exceptions import DbtConfigError, DbtRuntimeError

from dbt.adapters.sqlflow.config import SNAPSHOT_META_COLUMNS, SqlflowConfig
from dbt.adapters.sqlflow.connections import SqlflowConnectionManager
from dbt.adapters.sqlflow.intervals import Interval, parse_timestamp
from dbt.adapters.sqlflow.load import (
    UNBOUNDED_END,
    UNBOUNDED_START,
    WINDOW_END_MARK,
    WINDOW_START_MARK,
    BatchResult,
    BufferedWrites,
    LoadServices,
    ModelLoad,
    SqlflowAdapterResponse,
    as_naive,
    batch_order_by,
    empty_windows,
    finish_batch,
    plan_batches,
    record_empty,
    substitute_window,
    time_literal,
    touched_partitions,
    utc_now,
    window_sql,
)
from dbt.adapters.sqlflow.metrics import MetricsCollector
from dbt.adapters.sqlflow.metrics.autoexport import install_export_callback
from dbt.adapters.sqlflow.partitions import (
    PartitionManager,
    PartitionSpec,
    covering_range,
    sql_identifier,
)
from dbt.adapters.sqlflow.quality import QualityCheck
from dbt.adapters.sqlflow.state import StateStore
from dbt.adapters.sqlflow.strategies import (
    BatchFacts,
    choose_strategy,
    count_duplicate_keys,
    needs_matched_keys,
    raise_key_problems,
    resolve_static,
    target_duplicates,
)

logger = AdapterLogger("sqlflow")

Executor = Callable[[str], list[tuple]]


TEMPLATE_TOKENS = {
    "start": "__SQLFLOW_WINDOW_START__",
    "end": "__SQLFLOW_WINDOW_END__",
    "model_sql": "__SQLFLOW_MODEL_SQL__",
    "target_predicate": "(__SQLFLOW_TARGET_PREDICATE__)",
    "overwrite_predicate": "(__SQLFLOW_OVERWRITE_PREDICATE__)",
}


def _batch(window: tuple[datetime, datetime], data_type: str | None) -> dict[str, Any]:
    """A batch as Jinja and the templates see it: bounds and their SQL literals."""
    return {
        "start": window[0],
        "end": window[1],
        "start_literal": time_literal(window[0], data_type),
        "end_literal": time_literal(window[1], data_type),
    }


def fill_template(
    sql: str,
    batch: dict[str, Any],
    *,
    model_sql: str | None = None,
    target_predicate: str | None = None,
    overwrite_predicate: str | None = None,
) -> str:
    """A batch template with one batch's window bounds, model SQL and predicates.

    The model's SQL goes in last, so a token-like text in it is never replaced.
    """
    sql = sql.replace(TEMPLATE_TOKENS["start"], batch["start_literal"])
    sql = sql.replace(TEMPLATE_TOKENS["end"], batch["end_literal"])
    if target_predicate is not None:
        sql = sql.replace(TEMPLATE_TOKENS["target_predicate"], target_predicate)
    if overwrite_predicate is not None:
        sql = sql.replace(TEMPLATE_TOKENS["overwrite_predicate"], overwrite_predicate)
    if model_sql is not None:
        sql = sql.replace(TEMPLATE_TOKENS["model_sql"], model_sql)
    return sql


STAT_LABELS = {
    "sqlflow_partitions": ("Partitions", "Partitions recorded by dbt-sqlflow"),
    "sqlflow_rows": ("Rows in partitions", "Rows counted in the recorded partitions"),
    "sqlflow_last_load": ("Last sqlflow load", "When the last committed load finished"),
    "sqlflow_watermark": ("Watermark", "Newest event_time loaded"),
}


def _split_relation(relation: str) -> list[str]:
    """The parts of a rendered relation name (``"db"."schema"."table"``)."""
    import re

    return re.findall(r'"(?:[^"]|"")*"|[^.]+', relation)


def _direct_strategy(config: SqlflowConfig, services: LoadServices) -> str | None:
    """The strategy whose batches may skip staging, or None.

    A windowed insert_overwrite or append with no key to check and time partitions (if
    any) on event_time reads the model's query straight into the target; its batch checks
    then run on the target's window (insert_overwrite only: after an append the window
    holds more than the batch).
    """
    static = resolve_static(config)
    if not config.windowed or static is None:
        return None
    if static.strategy not in ("insert_overwrite", "append") or config.snapshot is not None:
        return None
    if static.strategy == "insert_overwrite" and config.unique_key:
        return None
    pm = services.partitions
    if pm is not None and not (pm.spec.is_time and pm.spec.field == config.event_time):
        return None
    if static.strategy == "append" and any(c.scope == "batch" for c in services.checks):
        return None
    return static.strategy


def _variants(config: SqlflowConfig) -> list[dict[str, Any]]:
    """The strategies (and plain-insert forms) a batch of this model may run with."""
    static = resolve_static(config)
    if static is not None and static.strategy != "merge":
        return [{"strategy": static.strategy, "plain_insert": False}]
    return [
        {"strategy": "merge", "plain_insert": False},
        {"strategy": "merge", "plain_insert": True},
        {"strategy": "append", "plain_insert": True},
    ]


def _snapshot_plan(config: SqlflowConfig) -> dict[str, Any] | None:
    """The snapshot settings as plain data for the snapshot strategy's macros."""
    spec = config.snapshot
    if spec is None or config.strategy not in ("snapshot", "auto"):
        return None
    names = {name: spec.column(name) for name in SNAPSHOT_META_COLUMNS}
    return {
        "strategy": spec.strategy,
        "updated_at": spec.updated_at,
        "check_cols": spec.check_cols if spec.check_cols == "all" else list(spec.check_cols),
        "hard_deletes": spec.hard_deletes,
        "dbt_valid_to_current": spec.valid_to_current,
        "columns": names,
    }


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
        self._sqlflow_lock = threading.RLock()
        self._sqlflow_state_ready = False
        # dbt builds a new adapter for every invocation: these records are this run's.
        self.sqlflow_metrics = MetricsCollector()
        # Export at the end of `dbt run` / `dbt build` when the profile sets
        # sqlflow_metrics: dbt announces run_results.json with an ArtifactWritten event.
        # (An on-run-end hook in our dbt_project.yml would add a result to every run,
        # seed, snapshot and test.) An invalid sqlflow_metrics raises DbtConfigError here.
        install_export_callback(
            getattr(config.credentials, "sqlflow_metrics", None),
            target=getattr(config, "target_name", "") or "",
            records=self.sqlflow_metrics.records,
        )

    def valid_incremental_strategies(self) -> Sequence[str]:
        """dbt-duckdb's strategies for ``materialized='incremental'``.

        A new list on every call: dbt's base code appends ``"default"`` to it.
        """
        return list(super().valid_incremental_strategies())

    # -- docs: partition statistics in the catalog --------------------------------------

    def _get_one_catalog(self, information_schema: Any, schemas: Any, used_schemas: Any) -> Any:
        table = super()._get_one_catalog(information_schema, schemas, used_schemas)
        return self._with_sqlflow_stats(table)

    def _get_one_catalog_by_relations(
        self, information_schema: Any, relations: Any, used_schemas: Any
    ) -> Any:
        table = super()._get_one_catalog_by_relations(information_schema, relations, used_schemas)
        return self._with_sqlflow_stats(table)

    def _with_sqlflow_stats(self, table: Any) -> Any:
        """The catalog with sqlflow's figures as table stats (shown by ``dbt docs``)."""
        import agate

        stats = self._sqlflow_catalog_stats()
        if not stats:
            return table
        names = list(STAT_LABELS)
        columns = list(table.column_names)
        types = list(table.column_types)
        for stat in names:
            columns += [f"stats:{stat}:label", f"stats:{stat}:value"]
            columns += [f"stats:{stat}:description", f"stats:{stat}:include"]
            types += [agate.Text(), agate.Text(), agate.Text(), agate.Boolean()]
        rows = []
        for row in table.rows:
            key = (str(row["table_database"]), str(row["table_schema"]), str(row["table_name"]))
            found = stats.get(tuple(k.lower() for k in key))
            extra: list[Any] = []
            for stat in names:
                label, description = STAT_LABELS[stat]
                value = found.get(stat) if found else None
                extra += [label, value, description, value is not None]
            rows.append([*row.values(), *extra])
        return agate.Table(rows, columns, types)

    def _sqlflow_catalog_stats(self) -> dict[tuple[str, ...], dict[str, str]]:
        """Per sqlflow relation: partition count, rows, last load time, watermark."""
        creds = self.config.credentials
        schema = creds.sqlflow_state_schema.replace("'", "''")
        _, present = self.execute(
            "select count(*) from duckdb_tables()"
            f" where schema_name = '{schema}' and table_name in ('partitions', 'loads')",
            fetch=True,
        )
        if int(present.rows[0][0]) < 2:
            return {}
        state = StateStore(self._executor(), schema=creds.sqlflow_state_schema)
        _, found = self.execute(
            "select l.relation, p.partitions, p.total_rows, l.last_load, l.watermark"
            f" from (select relation, max(finished_at) as last_load,"
            f" max(watermark_after) as watermark from {state.table('loads')} group by 1) l"
            f" left join (select relation, count(*) as partitions, sum(row_count) as total_rows"
            f" from {state.table('partitions')} group by 1) p using (relation)",
            fetch=True,
        )
        out: dict[tuple[str, ...], dict[str, str]] = {}
        for relation, partitions, total_rows, last_load, watermark in found.rows:
            parts = tuple(
                p.strip('"').replace('""', '"').lower() for p in _split_relation(relation)
            )
            figures = {
                "sqlflow_partitions": partitions,
                "sqlflow_rows": total_rows,
                "sqlflow_last_load": f"{last_load} UTC" if last_load is not None else None,
                "sqlflow_watermark": watermark,
            }
            out[parts] = {k: str(v) for k, v in figures.items() if v is not None}
        return out

    # -- helpers (not exposed to Jinja) ---------------------------------------------

    def _executor(self) -> Executor:
        """Run SQL on this thread's connection, inside its open transaction.

        sqlflow's own small queries (inspection, state, checks) go straight to the DuckDB
        cursor of dbt's connection: the same transaction, without dbt's per-statement
        events, which cost ~1 ms each (5x the query). Errors are dbt's, chained.
        """

        def run(sql: str) -> list[tuple]:
            connection = self.connections.get_thread_connection()
            if not connection.transaction_open:
                # BEGIN as dbt does (the state it keeps), without its events.
                with self.connections.exception_handler("BEGIN"):
                    connection.handle.cursor().execute("BEGIN")
                connection.transaction_open = True
            with self.connections.exception_handler(sql):
                cursor = connection.handle.cursor()
                cursor.execute(sql)
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
        pinned: Any = run_vars.get("sqlflow_now")
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
        raw: Any = run_vars.get(f"sqlflow_{bound}")
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
        empty: bool = False,
    ) -> dict[str, Any]:
        """Validate the model's config and plan its execution.

        Args:
            model: The model node (``model`` in the materialization).
            compiled_code: The model's compiled SQL.
            target_relation: The model's relation.
            incremental: True when the table exists and is not being fully refreshed.
            run_vars: sqlflow's ``--vars`` (``sqlflow_now``, ``sqlflow_start``, ``sqlflow_end``).
            empty: dbt's ``--empty`` (the model's refs and sources read no rows): the plan
                loads nothing and records nothing; a table that does not exist yet (or a
                full refresh) is created empty, with no loaded intervals.

        Returns:
            The plan as plain data: ``id``, ``mode`` (``build``/``incremental``),
            ``batches`` (``None`` or ``{"start", "end"}`` each) and the SQL settings.

        Raises:
            DbtConfigError: listing every configuration problem, before anything runs.
        """
        run_vars = run_vars or {}
        now = self._now(run_vars)
        model_id = model["unique_id"]
        columns = dict(self._describe(compiled_code))
        raw = model.get("config") or {}
        config, checks = self._parse_config(model_id, raw, columns, now)
        explicit = self._explicit_range(model_id, config, run_vars)
        from dbt_common.invocation import get_invocation_id

        load = ModelLoad.create(
            config,
            str(target_relation),
            "incremental" if incremental else "build",
            [None],
            get_invocation_id(),
        )
        services = self._services(load, checks, columns, now)
        load.services = services
        load.compiled_code = compiled_code
        self._warn_window_time_zone(load, services)
        if incremental and services.partitions is not None:
            services.partitions.remember_keys(str(target_relation))
        if config.event_time is not None:
            if incremental:
                value = services.run(
                    f"select max({sql_identifier(config.event_time)}) from {target_relation}"
                )[0][0]
                load.watermark_before = load.watermark_after = as_naive(value)

            def data_start() -> datetime | None:
                sql = substitute_window(compiled_code, UNBOUNDED_START, UNBOUNDED_END)
                found = services.run(
                    f"select min({sql_identifier(config.event_time or '')}) from ({sql}\n) as m"
                )
                return as_naive(found[0][0])

            windows = plan_batches(load, services, explicit=explicit, data_start=data_start)
            if windows:
                hull_sql = substitute_window(compiled_code, windows[0].start, windows[-1].end)
                static = resolve_static(config)
                idle = empty_windows(
                    load,
                    services,
                    windows,
                    hull_sql,
                    str(target_relation) if incremental else None,
                    static.strategy if static else None,
                )
                load.empty = [(w.start, w.end) for i, w in enumerate(windows) if i in idle]
                windows = [w for i, w in enumerate(windows) if i not in idle]
            load.batches = [(w.start, w.end) for w in windows]
        if empty and (incremental or config.windowed):
            # --empty: no batch would see a row, yet each would replace or close rows of the
            # target and record its window as loaded. Only the (empty) table is built.
            load.batches, load.empty = [], []
        with self._sqlflow_lock:
            self._sqlflow_loads[load.id] = load
        et_type = services.event_time_type
        return {
            "id": load.id,
            "mode": load.mode,
            "windowed": config.windowed,
            "empty_batches": len(load.empty),
            "batches": [None if b is None else _batch(b, et_type) for b in load.batches],
            "unique_key": list(config.unique_key),
            "dedupe_by": list(config.dedupe_by),
            "event_time": sql_identifier(config.event_time) if config.event_time else None,
            "order_by": batch_order_by(config, load.batches),
            "on_schema_change": config.on_schema_change,
            "merge_update_columns": list(config.merge_update_columns or []),
            "merge_exclude_columns": list(config.merge_exclude_columns or []),
            "incremental_predicates": list(config.incremental_predicates),
            "snapshot": _snapshot_plan(config),
            "variants": _variants(config),
            "direct": _direct_strategy(config, services),
        }

    def _parse_config(
        self, model_id: str, raw: dict[str, Any], columns: dict[str, str], now: datetime
    ) -> tuple[SqlflowConfig, list[QualityCheck]]:
        """The model's config and quality checks, every problem in one error."""
        from dbt.adapters.sqlflow.quality import parse_quality_checks

        problems: list[str] = []
        config = None
        checks: list[QualityCheck] = []
        try:
            config = SqlflowConfig.parse(model_id, raw, columns, now=now)
        except DbtConfigError as e:
            problems.append(str(e.msg))
        try:
            checks = parse_quality_checks(
                raw.get("quality_checks") or [],
                model=model_id,
                columns=list(columns),
                event_time=config.event_time if config else raw.get("event_time"),
                has_partitions=bool(raw.get("partition_by")),
            )
        except DbtConfigError as e:
            problems.append(str(e.msg))
        if problems or config is None:
            raise DbtConfigError("\n".join(problems))
        return config, checks

    def _explicit_range(
        self, model_id: str, config: SqlflowConfig, run_vars: dict[str, Any]
    ) -> tuple[datetime, datetime] | None:
        """An explicit backfill range from --vars or dbt's --event-time-start/-end."""
        from dbt.flags import get_flags

        flags = get_flags()
        start = run_vars.get("sqlflow_start")
        end = run_vars.get("sqlflow_end")
        if start in (None, "") and end in (None, ""):
            if not config.windowed:
                # dbt's --event-time-start/-end apply to the models with an event time.
                return None
            start = getattr(flags, "EVENT_TIME_START", None)
            end = getattr(flags, "EVENT_TIME_END", None)
        if start in (None, "") and end in (None, ""):
            return None
        fix = (
            'pass both, e.g. --vars \'{"sqlflow_start": "2025-01-01",'
            ' "sqlflow_end": "2025-02-01"}\''
        )
        problems = []
        bounds: list[datetime | None] = []
        value: Any
        for key, value in (("sqlflow_start", start), ("sqlflow_end", end)):
            if value in (None, ""):
                problems.append(f"{key} is missing. Fix: {fix}.")
                bounds.append(None)
                continue
            try:
                bounds.append(parse_timestamp(value))
            except ValueError:
                problems.append(
                    f"{key} {str(value)!r} is not an ISO date or timestamp. Fix: {fix}."
                )
                bounds.append(None)
        lo, hi = bounds
        if lo is not None and hi is not None and lo >= hi:
            problems.append(
                f"sqlflow_start {lo.isoformat()} is not before sqlflow_end {hi.isoformat()}"
                " (the range [start, end) includes start, excludes end). Fix: swap them."
            )
        if not config.windowed:
            problems.append(
                "an explicit backfill range was given, but the model has no event_time or"
                " time partition_by. Fix: set event_time, or run without sqlflow_start/end."
            )
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise DbtConfigError(
                f"sqlflow_incremental model '{model_id}': bad backfill range (nothing was"
                f" written):\n{lines}"
            )
        assert lo is not None and hi is not None
        return lo, hi

    def _state(self, run: Executor) -> StateStore:
        """sqlflow's state tables, created once per invocation in their own transaction."""
        creds = self.config.credentials
        store = StateStore(run, schema=creds.sqlflow_state_schema, database=creds.database)
        with self._sqlflow_lock:
            if not self._sqlflow_state_ready:
                connection = self.connections.get_thread_connection()
                opened = not connection.transaction_open
                if opened:
                    self.connections.begin()
                store.ensure()
                if opened:
                    self.connections.commit()
                self._sqlflow_state_ready = True
        return store

    def _services(
        self,
        load: ModelLoad,
        checks: list[QualityCheck],
        columns: dict[str, str],
        now: datetime,
    ) -> LoadServices:
        config = load.config
        run = BufferedWrites(self._executor())
        state = self._state(run)
        pm = None
        if config.partition_by is not None:
            part = config.partition_by
            spec = PartitionSpec(part.field, part.granularity, part.data_type or "TIMESTAMP")
            pm = PartitionManager(run, state, spec, unique_key=list(config.unique_key) or None)
        lowered = {k.lower(): v for k, v in columns.items()}
        et_type = lowered.get(config.event_time.lower()) if config.event_time else None
        return LoadServices(run, state, pm, checks, now, et_type)

    def _warn_window_time_zone(self, load: ModelLoad, services: LoadServices) -> None:
        """Warn when the window macros meet a TIMESTAMPTZ event_time in a non-UTC session.

        The macros render TIMESTAMP literals in UTC; DuckDB compares them with a
        TIMESTAMPTZ column in the session's ``TimeZone``, so an upstream filter written
        with them would shift by the zone's offset and miss rows at the window's edges.
        """
        code = load.compiled_code
        marks = code.count(WINDOW_START_MARK) + code.count(WINDOW_END_MARK)
        if not marks or "TIME ZONE" not in (services.event_time_type or "").upper():
            return
        import re

        converted = re.findall(
            r"timezone\(\s*'utc'\s*,\s*timestamp\s*'[^']*'/\*sqlflow_window_(?:start|end)\*/",
            code,
            re.IGNORECASE,
        )
        if len(converted) == marks:
            return
        zone = str(services.run("select current_setting('TimeZone')")[0][0])
        if zone.upper() in ("UTC", "ETC/UTC", "GMT", "ETC/GMT", "Z"):
            return
        logger.warning(
            f"{load.config.model}: reads its window with sqlflow_window_start()/"
            f"sqlflow_window_end() and has a TIMESTAMPTZ event_time, while DuckDB's TimeZone"
            f" is {zone}: compared with a TIMESTAMPTZ column, the window's TIMESTAMP literals"
            f" are read in {zone} and the window shifts (rows at its edges are missed). Set"
            " settings: {TimeZone: UTC} in the profile, or compare with"
            " timezone('UTC', {{ sqlflow_window_start() }})."
            f" {load.log_context()}"
        )

    def _describe(self, sql: str) -> list[tuple[str, str]]:
        _, cursor = self.connections.add_query(f"describe ({sql}\n)", auto_begin=False)
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
        keys = [sql_identifier(k) for k in config.unique_key]
        staged = str(batch_relation)
        keyed = bool(keys) and config.strategy != "append"
        null_filter = " or ".join(f"{k} is null" for k in keys) or "false"
        newest = f"max({sql_identifier(config.event_time)})" if config.event_time else "null"
        key_list = ", ".join(keys)
        rows, null_rows, batch_max = run(
            f"select count(*), count(*) filter (where {null_filter}), {newest} from {staged}"
        )[0]
        duplicates = 0
        if keyed and not config.dedupe_by:
            duplicates = count_duplicate_keys(run, staged, keys, null_filter, int(rows))
        if keyed and (null_rows or duplicates):
            samples: list[tuple[Any, ...]] = []
            if duplicates:
                found = run(
                    f"select {key_list}, count(*) as n from {staged} where not ({null_filter})"
                    f" group by all having count(*) > 1 order by n desc, {key_list} limit 5"
                )
                samples = [tuple(r) for r in found]
            raise_key_problems(
                config.model,
                config.unique_key,
                null_key_rows=int(null_rows),
                duplicate_keys=int(duplicates),
                samples=samples,
            )
        window = (batch["start"], batch["end"]) if batch else None
        current = load.current or load.start_batch(config.strategy, window)
        target_predicate, overwrite_predicate = self._predicates(load, batch_relation, batch)
        matched: int | None = None
        if target_exists and needs_matched_keys(config) and rows:
            on = " and ".join(f"DBT_INTERNAL_DEST.{k} = DBT_INTERNAL_SOURCE.{k}" for k in keys)
            if target_predicate:
                on += f" and {target_predicate}"
            # The MERGE matches only under its incremental_predicates too.
            for predicate in config.incremental_predicates:
                on += f" and ({predicate})"
            matched = int(
                run(
                    f"select count(*) from {staged} as DBT_INTERNAL_SOURCE where exists"
                    f" (select 1 from {target_relation} as DBT_INTERNAL_DEST where {on})"
                )[0][0]
            )
        choice = choose_strategy(
            config, BatchFacts(rows=int(rows), matched_keys=matched, target_exists=target_exists)
        )
        if load.mode == "incremental" or config.windowed:
            current.strategy = choice.strategy
        current.matched = matched or 0
        current.batch_rows = int(rows)
        current.batch_max = as_naive(batch_max)
        if config.strategy == "auto" and target_exists:
            self._log(load, f"strategy auto -> {choice.strategy} ({choice.reason})")
        # An empty batch changes nothing, except where absence is the change: the rows
        # of a window that insert_overwrite replaces, the deletions a snapshot records.
        skip = int(rows) == 0 and not (
            choice.strategy == "snapshot"
            or (choice.strategy == "insert_overwrite" and overwrite_predicate)
        )
        return {
            "strategy": choice.strategy,
            "plain_insert": choice.plain_insert,
            "rows": int(rows),
            "target_predicate": target_predicate,
            "overwrite_predicate": overwrite_predicate,
            "skip_dml": skip,
        }

    def _predicates(
        self, load: ModelLoad, batch_relation: Any, batch: dict[str, Any] | None
    ) -> tuple[str | None, str | None]:
        """The batch's partition restrictions on the target.

        Returns ``(target_predicate, overwrite_predicate)``: the first restricts the
        target-side scans of merge and delete+insert to the batch's partition range (on
        the alias ``DBT_INTERNAL_DEST``); the second selects the rows insert_overwrite
        replaces: the window on event_time, or the partitions present in the batch.
        """
        config = load.config
        services = load.services
        pm = services.partitions if services else None
        window = Interval(batch["start"], batch["end"]) if batch else None
        overwrite = None
        if batch and window is not None and config.event_time is not None:
            column = sql_identifier(config.event_time)
            overwrite = (
                f"{column} >= {batch['start_literal']} and {column} < {batch['end_literal']}"
            )
        if services is None or pm is None or load.current is None:
            return None, overwrite
        if window is not None and pm.spec.is_time and pm.spec.field == config.event_time:
            return pm.predicate(window, "DBT_INTERNAL_DEST"), overwrite
        keys = touched_partitions(load, services, str(batch_relation), load.relation)
        load.current.keys = keys
        if overwrite is None:
            overwrite = pm.keys_predicate(keys)
        if not pm.spec.is_time or not keys:
            return None, overwrite
        ranges = covering_range(keys, pm.spec.granularity or "day")
        hull = Interval(ranges[0].start, ranges[-1].end)
        return pm.predicate(hull, "DBT_INTERNAL_DEST"), overwrite

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
            role: ``inserted``, ``updated``, ``deleted``, ``merged`` (a MERGE whose
                count splits into the matched keys, updated, and the rest, inserted),
                ``replaced`` (a merge's delete of its matched rows, counted as updated),
                ``upserted`` (a merge's insert: the rows beyond the matched keys are
                inserted), or ``none`` (a helper statement whose rows are not target
                changes).

        Returns:
            The statement's row count.
        """
        load = self._load(load_id)
        response, _ = self.connections.execute(sql, auto_begin=True, fetch=False)
        return self._count(load, role, [(int(response.rows_affected or 0),)])

    @available.parse_none
    def sqlflow_finish_batch(self, load_id: str, batch_relation: Any, target_relation: Any) -> None:
        """Write the batch's state and run its quality checks, before its commit.

        Partition statistics, the loaded interval, the load row and the check outcomes go
        into sqlflow's state tables in the load's own transaction.

        Raises:
            DbtRuntimeError: when a quality check of severity ``error`` fails; the load's
                transaction is then rolled back.
        """

        load = self._load(load_id)
        assert load.services is not None
        outcomes = finish_batch(load, load.services, str(batch_relation), str(target_relation))
        self._warn(load, outcomes)

    @available.parse_none
    def sqlflow_invalidate(self, model_id: str, start: Any, end: Any) -> str:
        """Mark ``[start, end)`` of a model as not loaded (``sqlflow_invalidate``).

        Returns:
            A description of the ranges that were unmarked.

        Raises:
            DbtRuntimeError: for unparsable or reversed bounds.
        """
        try:
            window = Interval(parse_timestamp(start), parse_timestamp(end))
        except ValueError as e:
            raise DbtRuntimeError(
                f"sqlflow_invalidate of '{model_id}': {e}. Pass ISO bounds with start < end,"
                " e.g. --args '{model: m, start: 2025-01-01, end: 2025-01-02}'."
            ) from e
        run = self._executor()
        state = self._state(run)
        removed = state.invalidate(model_id, window)
        self.commit_if_has_connection()
        return ", ".join(f"[{r.start}, {r.end})" for r in removed) or "nothing was loaded there"

    @available.parse_none
    def sqlflow_check_partitions(
        self, model_id: str, relation: Any, node_config: dict[str, Any]
    ) -> str:
        """Run the partition manager's consistency check (``sqlflow_check_partitions``).

        Returns:
            The report, when the partitions are consistent.

        Raises:
            DbtRuntimeError: listing every inconsistency found.
        """
        part = node_config.get("partition_by")
        if not part:
            raise DbtRuntimeError(
                f"sqlflow_check_partitions: model '{model_id}' has no partition_by."
                " Set partition_by in its config to give it partitions."
            )
        if isinstance(part, str):
            part = {"field": part}
        run = self._executor()
        columns = {
            name.lower(): dtype for name, dtype in self._describe(f"select * from {relation}")
        }
        spec = PartitionSpec(
            part["field"], part.get("granularity"), columns.get(part["field"].lower(), "TIMESTAMP")
        )
        key = node_config.get("unique_key")
        keys = [key] if isinstance(key, str) else list(key or [])
        pm = PartitionManager(run, self._state(run), spec, unique_key=keys or None)
        report = pm.validate_consistency(str(relation))
        self.commit_if_has_connection()
        if not report.ok:
            raise DbtRuntimeError(f"sqlflow: model '{model_id}': {report.format()}")
        return f"sqlflow: model '{model_id}': {report.format()}"

    @available
    def sqlflow_timestamp_literal(self, value: Any) -> str:
        """A TIMESTAMP literal (naive UTC) of an ISO date or timestamp, e.g. ``--vars sqlflow_now``.

        Raises:
            DbtRuntimeError: when the value is not an ISO date or timestamp.
        """
        return time_literal(self._now({"sqlflow_now": value}))

    @available
    def sqlflow_template_tokens(self) -> dict[str, str]:
        """The tokens batch templates carry where each batch substitutes its own SQL."""
        return dict(TEMPLATE_TOKENS)

    @available.parse_none
    def sqlflow_commit_if_open(self) -> None:
        """Commit this thread's transaction if one is open."""
        self.commit_if_has_connection()

    @available.parse_none
    def sqlflow_load_batches(
        self, load_id: str, templates: dict[str, Any], stage: Any, target_relation: Any
    ) -> None:
        """Load every batch after the first from SQL rendered once (``templates``).

        Each batch is its own transaction: stage, checks, strategy steps, state writes,
        quality checks, commit. The SQL is the templates with the batch's window bounds,
        model SQL and partition predicates substituted, run on dbt's connection.

        Raises:
            DbtRuntimeError: as the per-batch path does; the failing batch rolls back,
                batches committed before it stay loaded (and recorded).
        """
        load = self._load(load_id)
        run = self._executor()
        for start, end in [b for b in load.batches[1:] if b is not None]:
            et_type = load.services.event_time_type if load.services else None
            batch = _batch((start, end), et_type)
            model_sql = substitute_window(load.compiled_code, start, end)
            if "direct" in templates["variants"]:
                self._load_direct(load, templates["variants"]["direct"], batch, model_sql)
                continue
            run(fill_template(templates["stage"], batch, model_sql=model_sql))
            facts = self.sqlflow_inspect(load_id, stage, target_relation, True, batch)
            if not facts["skip_dml"]:
                key = f"{facts['strategy']}:{facts['plain_insert']}"
                steps = templates["variants"].get(key)
                if steps is None:
                    raise DbtRuntimeError(
                        f"sqlflow: no batch template for strategy {key!r} of"
                        f" '{load.config.model}' (rendered: {sorted(templates['variants'])})."
                        " This is a bug in dbt-sqlflow; run with --threads 1 and report it."
                    )
                for step in steps:
                    sql = fill_template(
                        step["sql"],
                        batch,
                        target_predicate=facts["target_predicate"] or "true",
                        overwrite_predicate=facts["overwrite_predicate"] or "false",
                    )
                    self._count(load, step["count"], run(sql))
            self.sqlflow_finish_batch(load_id, stage, target_relation)
            self._commit_quietly()
            self.sqlflow_commit_batch(load_id, quiet=True)

    def _load_direct(
        self, load: ModelLoad, steps: list[dict[str, Any]], batch: dict[str, Any], model_sql: str
    ) -> None:
        """One batch written from the model's query without staging, in one transaction."""
        config = load.config
        assert load.services is not None and config.event_time is not None
        run = self._executor()
        column = sql_identifier(config.event_time)
        window = f"{column} >= {batch['start_literal']} and {column} < {batch['end_literal']}"
        strategy = resolve_static(config)
        load.start_batch(
            strategy.strategy if strategy else "append", (batch["start"], batch["end"])
        )
        for step in steps:
            sql = fill_template(
                step["sql"], batch, model_sql=model_sql, overwrite_predicate=f"({window})"
            )
            self._count(load, step["count"], run(sql))
        outcomes = finish_batch(
            load, load.services, load.relation, load.relation, batch_filter=window
        )
        self._warn(load, outcomes)
        self._commit_quietly()
        self.sqlflow_commit_batch(load.id, quiet=True)

    def _warn(self, load: ModelLoad, outcomes: list[Any]) -> None:
        from dbt.adapters.sqlflow import quality

        for outcome in quality.failed_warnings(outcomes):
            logger.warning(
                f"{quality.format_warning(load.config.model, outcome)} {load.log_context()}"
            )

    def _count(self, load: ModelLoad, role: str, result: list[tuple]) -> int:
        """Add a DML statement's DuckDB count (its one-row result) to the load's figures."""
        count = 0
        if result and len(result[0]) == 1 and isinstance(result[0][0], int):
            count = int(result[0][0])
        if role == "none":
            return count
        matched = load.current.matched if load.current else 0
        if role == "merged":
            # Each batch row without a match is inserted once; the rest of the MERGE's
            # count are updated target rows (more than the matched keys when the target
            # holds a key twice: MERGE updates every matching row).
            rows = load.current.batch_rows if load.current else None
            inserted = max(rows - matched, 0) if rows is not None else max(count - matched, 0)
            inserted = min(inserted, count)
            load.add_count("updated", count - inserted)
            load.add_count("inserted", inserted)
        elif role == "replaced":
            # A merge's delete of the matched rows: one row per matched key, or the
            # target's key is not unique and the delete + insert would drop rows.
            problem = target_duplicates(
                load.config.model, load.config.unique_key, str(load.relation), matched, count
            )
            if problem:
                raise DbtRuntimeError(problem)
            load.add_count("updated", count)
        elif role == "upserted":
            load.add_count("inserted", count - matched)
        else:
            load.add_count(role, count)
        return count

    @available.parse_none
    def sqlflow_record_empty(self, load_id: str) -> None:
        """Record the windows that had nothing to load as loaded, in one statement script
        (a run with no batch to load; otherwise each batch records the ones before it)."""
        load = self._load(load_id)
        if not load.empty or load.services is None:
            return
        record_empty(load, load.services)
        self._log(
            load,
            f"{len(load.empty)} empty window(s) recorded as loaded",
            load.results[-1].load_id if load.results else None,
        )

    @available.parse_none
    def sqlflow_reset_state(self, load_id: str) -> None:
        """Forget the model's intervals and partitions (its table is being rebuilt)."""
        load = self._load(load_id)
        assert load.services is not None
        load.services.state.forget_model(load.config.model, load.relation)
        if load.services.partitions is not None:
            load.services.partitions.known_keys = set()

    @available.parse_none
    def sqlflow_commit_batch(self, load_id: str, quiet: bool = False) -> None:
        """Record that the current batch's transaction committed.

        Args:
            load_id: The model execution.
            quiet: Log the batch at debug level (batches after the first of a windowed
                load: one info line each would flood a 365-day backfill's output).
        """
        load = self._load(load_id)
        empties = len(load.pending_empty)
        done = load.commit_batch()
        self._record_metrics(load, done, "success")
        if empties:
            logger.debug(
                f"{load.config.model} {empties} empty window(s) recorded as loaded"
                f" {load.log_context(done.load_id)}"
            )
        window = f" [{done.window[0]}, {done.window[1]})" if done.window else ""
        message = (
            f"{done.strategy}{window}: {done.rows_inserted:,} inserted,"
            f" {done.rows_updated:,} updated, {done.rows_deleted:,} deleted"
        )
        if quiet:
            logger.debug(f"{load.config.model} {message} {load.log_context(done.load_id)}")
        else:
            self._log(load, message, done.load_id)

    def _commit_quietly(self) -> None:
        """COMMIT on dbt's connection without dbt's per-statement events.

        The batches of a windowed load commit one by one; dbt's events for each COMMIT
        cost more than the COMMIT. The connection's state is kept as dbt keeps it.
        """
        connection = self.connections.get_thread_connection()
        if connection.transaction_open:
            with self.connections.exception_handler("COMMIT"):
                connection.handle.cursor().execute("COMMIT")
            connection.transaction_open = False

    def _record_metrics(
        self, load: ModelLoad, batch: BatchResult, status: str, error_type: str | None = None
    ) -> None:
        self.sqlflow_metrics.record(
            load.config.model,
            strategy=batch.strategy,
            status=status,
            duration_seconds=(batch.finished or time.time()) - batch.started,
            rows_inserted=batch.rows_inserted if status == "success" else 0,
            rows_updated=batch.rows_updated if status == "success" else 0,
            rows_deleted=batch.rows_deleted if status == "success" else 0,
            partitions_touched=batch.partitions_touched if status == "success" else 0,
            watermark_before=load.watermark_before,
            watermark_after=load.watermark_after if status == "success" else None,
            quality_checks=[
                (c.check_name, c.severity, c.status, c.failing_rows) for c in batch.checks
            ],
            error_type=error_type,
            load_id=batch.load_id,
            invocation_id=load.invocation_id,
        )

    def post_model_hook(self, config: Any, context: Any) -> None:
        """dbt-duckdb's hook, plus: a sqlflow model whose execution failed is recorded as a
        failed load in the run's metrics (its transaction was rolled back)."""
        try:
            model = getattr(config, "model", None)
            unique_id = getattr(model, "unique_id", None)
            with self._sqlflow_lock:
                failed = [
                    key
                    for key, load in self._sqlflow_loads.items()
                    if load.config.model == unique_id
                ]
                loads = [self._sqlflow_loads.pop(key) for key in failed]
            for load in loads:
                batch = load.current or load.start_batch(load.config.strategy, None)
                failing = any(c.failed for c in batch.checks if c.severity == "error")
                self._record_metrics(
                    load, batch, "error", "QualityCheckFailed" if failing else "DbtRuntimeError"
                )
        finally:
            super().post_model_hook(config, context)

    @available.parse_none
    def sqlflow_result(self, load_id: str) -> SqlflowAdapterResponse:
        """Finish the model execution and return its ``adapter_response``."""
        with self._sqlflow_lock:
            load = self._sqlflow_loads.pop(load_id)
        response = load.response()
        if len(load.results) > 1:
            self._log(
                load,
                f"{len(load.results)} batches: {response._message}",
                load.results[-1].load_id,
            )
        return response
