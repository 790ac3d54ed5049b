"""The sqlflow adapter: dbt-duckdb's adapter plus a thin bridge from Jinja to sqlflow's Python.

Each ``@available`` method is a few lines calling one function of ``execution`` (the
batch loop), ``plan`` or ``state``; the decisions live there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from dbt.adapters.base.meta import available
from dbt.adapters.duckdb.impl import DuckDBAdapter
from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow import execution, maintenance, recovery, restore
from dbt.adapters.sqlflow.catalog import with_sqlflow_stats
from dbt.adapters.sqlflow.claims import Claims, catalog_dsn, psycopg_connect
from dbt.adapters.sqlflow.connections import (
    DbtSession,
    SqlflowConnectionManager,
    profile_redactor,
)
from dbt.adapters.sqlflow.dbt_config import dbt_config_keys, event_time_range
from dbt.adapters.sqlflow.execution import BatchTemplates
from dbt.adapters.sqlflow.intervals import Interval, parse_timestamp
from dbt.adapters.sqlflow.lake import current_layout_sql, lake_layout, relayout
from dbt.adapters.sqlflow.metrics import LoadRecorder
from dbt.adapters.sqlflow.metrics.autoexport import install_export_callback
from dbt.adapters.sqlflow.observe import Tracing, start_tracing, tracing_requested
from dbt.adapters.sqlflow.partitions import (
    PartitionManager,
    PartitionSpec,
    check_model_partitions,
)
from dbt.adapters.sqlflow.plan import jinja_plan, parse_model_config, pinned_now
from dbt.adapters.sqlflow.quality import QualityCheck
from dbt.adapters.sqlflow.recovery import (
    PROBE,
    armed_faults,
    handle_sigterm,
    probe_sql,
    wait_until_stopped,
)
from dbt.adapters.sqlflow.redact import Redactor, RedactSettings
from dbt.adapters.sqlflow.retry import RetrySettings, first_line, is_transient, retrying
from dbt.adapters.sqlflow.run import (
    BatchResult,
    ModelRun,
    RunServices,
    SqlflowAdapterResponse,
    metrics_fields,
    warned_checks_summary,
)
from dbt.adapters.sqlflow.sql import (
    TEMPLATE_TOKENS,
    UNBOUNDED_END,
    UNBOUNDED_START,
    WINDOW_END_MARK,
    WINDOW_START_MARK,
    BufferedWrites,
    Executor,
    sql_string,
    time_literal,
    utc_now,
    window_sql,
)
from dbt.adapters.sqlflow.state import StateStore
from dbt.adapters.sqlflow.strategies import merge_form

if TYPE_CHECKING:
    from tenacity import RetryCallState


class SqlflowAdapter(DuckDBAdapter):
    """dbt-duckdb's adapter under ``type: sqlflow``.

    Everything dbt-duckdb does keeps working; sqlflow's materialization reaches its
    Python (config parsing, planning, the batch loop, state, metrics) through the
    ``@available`` methods below, each returning plain data.
    """

    ConnectionManager = SqlflowConnectionManager

    def __init__(self, config: Any, mp_context: Any) -> None:
        super().__init__(config, mp_context)
        self._sqlflow_runs: dict[str, ModelRun] = {}
        self._sqlflow_lock = threading.RLock()
        self._sqlflow_state_ready = False
        # The profile's sqlflow_redact, checked once here (a bad value is a DbtConfigError
        # before any model runs); each model lays its own over it.
        self._sqlflow_redact = profile_redactor(config.credentials).settings
        # One writer per model on a lake with a PostgreSQL catalog (claims.py).
        self._claims = Claims(psycopg_connect, execution.logger.info)
        # dbt builds a new adapter for every invocation: these records are this run's.
        self.sqlflow_metrics = LoadRecorder()
        # Export at the end of `dbt run` / `dbt build` when the profile sets
        # sqlflow_metrics: dbt announces run_results.json with an ArtifactWritten event.
        # (An on-run-end hook in our dbt_project.yml would add a result to every run,
        # seed, snapshot and test.) An invalid sqlflow_metrics raises DbtConfigError here.
        install_export_callback(
            getattr(config.credentials, "sqlflow_metrics", None),
            target=getattr(config, "target_name", "") or "",
            records=self.sqlflow_metrics.records,
        )
        from dbt_common.events.event_manager_client import add_callback_to_manager

        add_callback_to_manager(self._warned_checks_at_the_end)
        handle_sigterm()
        # OpenTelemetry traces when its environment variables ask for them: started with
        # the first sqlflow model, flushed when dbt's command completes.
        self._sqlflow_tracing: Tracing | None = None
        self._sqlflow_trace_wanted = tracing_requested()
        if self._sqlflow_trace_wanted:
            add_callback_to_manager(self._end_tracing)

    def cancel_open_connections(self) -> list[str] | None:
        """dbt's cancel of the running queries on Ctrl-C or SIGTERM, then a wait (10 s at
        most) until every sqlflow model run has stopped: its open group rolled back and
        its message saying which windows committed logged before dbt exits."""
        names = super().cancel_open_connections()

        def running() -> bool:
            with self._sqlflow_lock:
                return bool(self._sqlflow_runs)

        if not wait_until_stopped(running, super().cancel_open_connections):
            execution.logger.warning(
                "sqlflow: a model run had not stopped 10 s after the interrupt; its open"
                " transaction is discarded when dbt exits (the next run resumes there)"
            )
        return names

    def _tracing(self) -> Tracing | None:
        """The invocation's tracing (started on first use), or None when off."""
        if not self._sqlflow_trace_wanted:
            return None
        with self._sqlflow_lock:
            if self._sqlflow_tracing is None:
                from dbt.flags import get_flags
                from dbt_common.invocation import get_invocation_id

                command = str(getattr(get_flags(), "WHICH", "") or "")
                self._sqlflow_tracing = start_tracing(get_invocation_id(), command)
                # Not requested again when the SDK is missing.
                self._sqlflow_trace_wanted = self._sqlflow_tracing is not None
            return self._sqlflow_tracing

    def _end_tracing(self, msg: Any) -> None:
        """At dbt's CommandCompleted: end the invocation's span, flush the exporter."""
        try:
            if msg.info.name != "CommandCompleted":
                return
            with self._sqlflow_lock:
                tracing, self._sqlflow_tracing = self._sqlflow_tracing, None
                self._sqlflow_trace_wanted = False
            if tracing is not None:
                tracing.shutdown(bool(getattr(msg.data, "success", True)))
        except Exception:  # a logging callback must never break dbt's logging
            pass

    def _warned_checks_at_the_end(self, msg: Any) -> None:
        """After dbt's end-of-run summary, one warning listing the checks that warned
        (dbt counts a model as passed; this is where its users look)."""
        try:
            if msg.info.name != "EndOfRunSummary":
                return
            text = warned_checks_summary(self.sqlflow_metrics.records())
            if text:
                execution.logger.warning(text)
        except Exception:  # a logging callback must never break dbt's logging
            pass

    def valid_incremental_strategies(self) -> Sequence[str]:
        """dbt-duckdb's strategies for ``materialized='incremental'``.

        A new list on every call: dbt's base code appends ``"default"`` to it.
        """
        return list(super().valid_incremental_strategies())

    # -- docs: partition statistics in the catalog --------------------------------------

    def _get_one_catalog(self, information_schema: Any, schemas: Any, used_schemas: Any) -> Any:
        table = super()._get_one_catalog(information_schema, schemas, used_schemas)
        return with_sqlflow_stats(table, self._catalog_stats())

    def _get_one_catalog_by_relations(
        self, information_schema: Any, relations: Any, used_schemas: Any
    ) -> Any:
        table = super()._get_one_catalog_by_relations(information_schema, relations, used_schemas)
        return with_sqlflow_stats(table, self._catalog_stats())

    def _catalog_stats(self) -> list[tuple[Any, ...]]:
        """sqlflow's figures per relation, read without creating the state tables (dbt
        docs generate writes nothing; a project that never loaded has none)."""
        session = self._session()
        try:
            return self._state_store(session.execute).catalog_stats()
        finally:
            session.commit()  # the read transaction the queries opened

    # -- helpers (not exposed to Jinja) ---------------------------------------------

    def _connections(self) -> SqlflowConnectionManager:
        """``self.connections`` as the class it is (dbt types it as its base class)."""
        return cast(SqlflowConnectionManager, self.connections)

    def _session(self, redactor: Redactor | None = None) -> DbtSession:
        return DbtSession(self.connections, redactor)

    def _run(self, run_id: str) -> ModelRun:
        with self._sqlflow_lock:
            return self._sqlflow_runs[run_id]

    def _state_store(self, run: Executor) -> StateStore:
        creds = self.config.credentials
        return StateStore(run, schema=creds.sqlflow_state_schema, database=creds.database)

    def _state(self, run: Executor) -> StateStore:
        """sqlflow's state tables, created once per invocation in their own transaction.

        Two processes starting at once on one lake both create them; the one whose
        commit loses ("another transaction has created a schema with this name") rolls
        back and looks again, under the profile's retry rules."""
        store = self._state_store(run)
        with self._sqlflow_lock:
            if not self._sqlflow_state_ready:
                opened = not self.connections.get_thread_connection().transaction_open
                if opened:
                    settings = self._retry_settings()
                    retrying(settings, is_transient, self._log_state_retry)(
                        self._ensure_in_own_transaction, store, run
                    )
                else:
                    self._ensure(store, run)
                self._sqlflow_state_ready = True
        return store

    @staticmethod
    def _ensure(store: StateStore, run: Executor) -> None:
        store.ensure()
        if armed_faults():
            run(probe_sql(store.table(PROBE)))

    def _ensure_in_own_transaction(self, store: StateStore, run: Executor) -> None:
        self.connections.begin()
        try:
            self._ensure(store, run)
            self.connections.commit()
        except BaseException:
            self._session().rollback()
            raise

    @staticmethod
    def _log_state_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        execution.logger.info(
            f"sqlflow's state tables: {first_line(error) if error else 'failed'}; looking again"
            f" (try {state.attempt_number + 1})"
        )

    def _retry_settings(self) -> RetrySettings:
        return RetrySettings.parse(getattr(self.config.credentials, "sqlflow_retry", None))

    def _services(
        self, config: Any, checks: list[QualityCheck], columns: dict[str, str], now: Any
    ) -> RunServices:
        redactor = self._redactor(config.redact)
        run = BufferedWrites(self._session(redactor).execute)
        state = self._state(run)
        retry = self._retry_settings()
        pm = None
        if config.partition_by is not None:
            part = config.partition_by
            spec = PartitionSpec(part.field, part.granularity, part.data_type or "TIMESTAMP")
            pm = PartitionManager(run, state, spec, unique_key=list(config.unique_key) or None)
        lowered = {k.lower(): v for k, v in columns.items()}
        et_type = lowered.get(config.event_time.lower()) if config.event_time else None
        return RunServices(
            run,
            state,
            pm,
            checks,
            now,
            et_type,
            retry,
            redactor=redactor,
            tracing=self._tracing(),
            memory=self._connections().start_memory_probe(),
            load_history=int(getattr(self.config.credentials, "sqlflow_load_history", 0) or 0),
        )

    def _redactor(self, model: RedactSettings) -> Redactor:
        """The profile's ``sqlflow_redact`` with the model's laid over it."""
        return self._sqlflow_redact.merged(model).redactor()

    def _side(self, sql: str) -> list[tuple]:
        """Run SQL on a second connection to this thread's database, in its own
        transaction (a concurrent writer of fault injection; on a lake, a read of its
        latest snapshot); its rows."""
        # handle.cursor() is the connection's one cursor; its cursor() a new connection.
        cursor = self.connections.get_thread_connection().handle.cursor().cursor()
        try:
            cursor.execute(sql)
            return [] if cursor.description is None else [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def _on_commit(self, run: ModelRun, loaded: list[BatchResult], quiet: bool) -> None:
        for done in loaded:
            self._record_metrics(run, done, "success")
        execution.log_commit(run, loaded, quiet)

    def _record_metrics(
        self, run: ModelRun, batch: BatchResult, status: str, error_type: str | None = None
    ) -> None:
        self.sqlflow_metrics.record(
            run.config.model, **metrics_fields(run, batch, status, error_type)
        )

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
        raw: Any = (run_vars or {}).get(f"sqlflow_{bound}")
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
        empty_flag: bool = False,
        full_refresh: bool = False,
    ) -> dict[str, Any]:
        """Validate the model's config and plan its run.

        On a lake with a PostgreSQL catalog the run first claims its table
        (``claims.py``): a run that waited for another process's load of the model plans
        from what that one committed, and builds no table the other one built.

        Args:
            model: The model node (``model`` in the materialization).
            compiled_code: The model's compiled SQL.
            target_relation: The model's relation.
            incremental: True when the table exists and is not being fully refreshed.
            run_vars: sqlflow's ``--vars`` (``sqlflow_now``, ``sqlflow_start``, ``sqlflow_end``).
            empty_flag: dbt's ``--empty``: the plan loads nothing and records nothing; a table
                that does not exist yet (or a full refresh) is created empty.
            full_refresh: dbt's ``--full-refresh`` (or the model's ``full_refresh``).

        Returns:
            The plan as plain data (``plan.jinja_plan``).

        Raises:
            DbtConfigError: listing every configuration problem, before anything runs.
        """
        key = model["unique_id"]
        # A catalog restarting between two models' batches is met here first: the claim
        # and the plan are tried again from scratch, as a batch would be.
        (run, columns), retried = recovery.outside_batches(
            self._retry_settings(),
            self._session(),
            f"{key}: claiming and planning",
            lambda: self._start(
                model,
                compiled_code,
                target_relation,
                incremental,
                run_vars or {},
                empty_flag,
                full_refresh,
            ),
            undo=lambda: self._claims.release(key),
        )
        run.retries[:0] = retried
        execution.warn_window_time_zone(run)
        with self._sqlflow_lock:
            self._sqlflow_runs[run.id] = run
        return jinja_plan(
            run.id,
            run.config,
            run.plan,
            columns,
            cdc_ledger=run.cdc_ledger,
            source=run.compiled_code,
        )

    def _start(
        self,
        model: dict[str, Any],
        compiled_code: str,
        target_relation: Any,
        incremental: bool,
        run_vars: dict[str, Any],
        empty_flag: bool,
        full_refresh: bool,
    ) -> tuple[ModelRun, Any]:
        """:meth:`sqlflow_start`'s work: claim the table on a lake, plan the run; the run
        and the model's columns."""
        from dbt_common.invocation import get_invocation_id

        dsn = None
        key = model["unique_id"]
        if self.is_ducklake(target_relation):
            dsn = catalog_dsn(self.config.credentials, target_relation.database)
            if dsn is not None and self._claims.claim(key, dsn, str(target_relation), key) > 0:
                if not incremental and not full_refresh:
                    incremental = self._built_meanwhile(target_relation)
        pinned = pinned_now(run_vars)
        now = pinned or utc_now()

        def existing() -> list[tuple[str, str]]:
            return [(c.name, c.dtype) for c in self.get_columns_in_relation(target_relation)]

        compiled_code, columns = execution.model_source(
            self._session(),
            compiled_code,
            (model.get("config") or {}).get("cdc"),
            existing if incremental else None,
        )
        config, checks = parse_model_config(
            model["unique_id"],
            model.get("config") or {},
            columns,
            now,
            dbt_keys=dbt_config_keys(self.AdapterSpecificConfigs),
        )
        services = self._services(config, checks, columns, now)
        services.lake = bool(self.is_ducklake(target_relation))
        if dsn is not None:
            services.claim_check = self._claim_check(key, dsn, str(target_relation), services)
        run = execution.start_run(
            config,
            services,
            relation=str(target_relation),
            incremental=incremental,
            compiled_code=compiled_code,
            run_vars=run_vars,
            invocation_id=get_invocation_id(),
            event_time_range=event_time_range(),
            empty_flag=empty_flag,
            pinned_now=pinned,
        )
        return run, columns

    def _claim_check(
        self, key: str, dsn: str, relation: str, services: RunServices
    ) -> Callable[[], bool]:
        """What a run on a PostgreSQL-catalog lake checks before each COMMIT: that it still
        holds its claim (``Claims.ensure``), or took it again while no other run loaded
        the model (its loads by other invocations, counted in a fresh snapshot, are as
        many as when the run started)."""
        from dbt_common.invocation import get_invocation_id

        loads = services.state.table("loads")
        query = (
            f"select count(*) from {loads} where model = {sql_string(key)}"
            f" and invocation_id <> {sql_string(get_invocation_id())}"
        )

        def others() -> int:
            return int(self._side(query)[0][0])

        before = others()
        return lambda: self._claims.ensure(key, dsn, relation, key, lambda: others() != before)

    def _built_meanwhile(self, relation: Any) -> bool:
        """Whether the table exists now (another process built it while this run
        waited for its claim): the run then loads incrementally instead of building."""
        session = self._session()
        found = session.execute(
            "select count(*) from information_schema.tables"
            f" where table_catalog = {sql_string(relation.database)}"
            f" and table_schema = {sql_string(relation.schema)}"
            f" and table_name = {sql_string(relation.identifier)}"
        )
        session.commit()
        if found[0][0]:
            execution.logger.info(f"{relation} was built by the other process: loading it")
        return bool(found[0][0])

    @available.parse_none
    def sqlflow_lake_layout(
        self, run_id: str, target_relation: Any, sorted_by: Any = None
    ) -> dict[str, Any] | None:
        """The DuckLake layout of the run's table, or None when it is not on DuckLake.

        On DuckLake sqlflow builds the table in place (no ``__dbt_tmp`` and rename), laid
        out by ``partition_by`` (native partitioning) and ``sorted_by`` before any row is
        written.

        Returns:
            ``{"partitioned_by": ..., "sorted_by": ...}`` (SQL lists, or None each).

        Raises:
            DbtConfigError: for a bad ``sorted_by``.
        """
        if not self.is_ducklake(target_relation):
            return None
        config = self._run(run_id).config
        layout = lake_layout(config.model, config.partition_by, sorted_by)
        for note in layout.notes:
            execution.logger.info(note)
        return layout.as_jinja()

    @available.parse_none
    def sqlflow_lake_relayout(
        self, run_id: str, target_relation: Any, sorted_by: Any = None
    ) -> None:
        """Lay an existing lake table out as its config says now (``partition_by``,
        ``sorted_by``), in a transaction of its own, logging what changed: DuckLake
        applies a new layout to the files written from then on.
        """
        run = self._run(run_id)
        config = run.config
        wanted = lake_layout(config.model, config.partition_by, sorted_by)
        session = self._session()

        def lay_out() -> None:
            rows = session.execute(
                current_layout_sql(
                    target_relation.database, target_relation.schema, target_relation.identifier
                )
            )
            for sql, message in relayout(config.model, str(target_relation), wanted, rows):
                session.execute(sql)
                execution.logger.info(message)
            session.commit()

        _, retried = recovery.outside_batches(
            self._retry_settings(), session, f"{config.model}: laying out", lay_out
        )
        run.retries += retried

    @available.parse_none
    def sqlflow_create_in_place(self, run_id: str, create_sql: str, windowed: bool) -> None:
        """Create a lake table in place, empty and laid out (``create_sql``), and commit;
        a windowed build also forgets the model's state in that transaction. Retried from
        scratch after a lost catalog connection or a commit conflict."""
        run = self._run(run_id)
        session = self._session(run.services.redactor)

        def create() -> None:
            session.execute(create_sql)
            if windowed:
                execution.reset_state(run)
            session.commit()

        _, retried = recovery.outside_batches(
            self._retry_settings(), session, f"{run.config.model}: creating its table", create
        )
        run.retries += retried

    @available.parse_none
    def sqlflow_merge_form(self, run_id: str, dest_columns: list[Any], target_relation: Any) -> str:
        """How this run's merge batches are written: ``delete_insert``, ``merge`` or
        ``insert_only`` (see ``strategies.MergeForm``)."""
        config = self._run(run_id).config
        target = [c.name for c in self.get_columns_in_relation(target_relation)]
        form = merge_form(
            config.unique_key,
            [c.name for c in dest_columns],
            target,
            config.merge_update_columns,
            config.merge_exclude_columns,
        )
        return form.value

    @available.parse_none
    def sqlflow_load_batches(
        self,
        run_id: str,
        templates: dict[str, Any],
        stage: Any,
        later: dict[str, Any] | None = None,
    ) -> None:
        """Load every planned batch from SQL rendered once (``templates``).

        Each batch is its own transaction: stage, checks, strategy steps, state writes,
        quality checks, commit; the last batch's transaction is left open for the
        model's post-hooks (``sqlflow_commit`` commits it). ``later``, when
        ``templates`` hold only what groups loaded at once need (a build's): ``{macro,
        args}``, called the first time a batch loads on its own, for the rest.

        Raises:
            DbtRuntimeError: the failing batch rolls back; batches committed before it
                stay loaded (and recorded).
        """
        run = self._run(run_id)
        session = self._session(run.services.redactor)
        execution.run_batches(
            run,
            session,
            BatchTemplates.from_jinja(templates),
            str(stage),
            self._on_commit,
            side=self._side if armed_faults() else None,
            later=None if later is None else _rendering(later["macro"], list(later["args"])),
        )

    @available.parse_none
    def sqlflow_staged(self, run_id: str) -> bool:
        """Whether the run's batch loop created its staging table (a build whose groups
        all loaded at once did not: there is nothing to drop)."""
        loop = self._run(run_id).loop
        return loop is not None and loop.staged

    @available.parse_none
    def sqlflow_build(self, run_id: str, build_sql: str, intermediate: Any) -> None:
        """Build the table from the model's SQL as ``intermediate`` and check its keys,
        in the open transaction (the materialization then swaps it in)."""
        run = self._run(run_id)
        session = self._session(run.services.redactor)
        execution.build_table(run, session, build_sql, str(intermediate))

    @available.parse_none
    def sqlflow_record_build(self, run_id: str, target_relation: Any) -> None:
        """Record the built table in the state (its old intervals and partitions are
        forgotten) and run its quality checks, before its commit.

        Raises:
            DbtRuntimeError: when a quality check of severity ``error`` fails.
        """
        run = self._run(run_id)
        execution.reset_state(run)
        execution.finish_batch(run, str(target_relation), str(target_relation))

    @available.parse_none
    def sqlflow_reset_state(self, run_id: str) -> None:
        """Forget the model's intervals and partitions (its table is being rebuilt)."""
        execution.reset_state(self._run(run_id))

    @available.parse_none
    def sqlflow_commit(self, run_id: str) -> None:
        """Commit the run's open transaction (its last batch, or its empty windows)."""
        run = self._run(run_id)
        execution.finish_run(run, self._session(run.services.redactor), self._on_commit)

    @available.parse_none
    def sqlflow_result(self, run_id: str) -> SqlflowAdapterResponse:
        """Finish the model run and return its ``adapter_response``."""
        with self._sqlflow_lock:
            run = self._sqlflow_runs.pop(run_id)
        self._claims.release(run.config.model)
        return execution.close_run(run)

    def post_model_hook(self, config: Any, context: Any) -> None:
        """dbt-duckdb's hook, plus: a sqlflow model whose run failed is recorded as a
        failed load in the run's metrics (its transaction was rolled back)."""
        try:
            unique_id = getattr(getattr(config, "model", None), "unique_id", None)
            self._claims.release(str(unique_id))
            with self._sqlflow_lock:
                failed = [k for k, r in self._sqlflow_runs.items() if r.config.model == unique_id]
                runs = [self._sqlflow_runs.pop(key) for key in failed]
            for run in runs:
                batch = run.in_flight or run.start_batch(run.config.strategy, None)
                # The retries of the failed batch: those after the committed batches'.
                batch.retries = run.retries[sum(len(r.retries) for r in run.results) :]
                failing = any(c.failed for c in batch.checks if c.severity == "error")
                error = "QualityCheckFailed" if failing else "DbtRuntimeError"
                self._record_metrics(run, batch, "error", error)
                run.fail(error)
        finally:
            self._connections().stop_memory_probe()
            super().post_model_hook(config, context)

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
        removed = self._state(self._session().execute).invalidate(model_id, window)
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
        session = self._session()
        columns = dict(session.describe(f"select * from {relation}"))
        # Value partitions' keys are row values: the report is redacted as the model's
        # messages are.
        redactor = self._redactor(RedactSettings.check(node_config.get("sqlflow_redact"))[0])
        try:
            report = check_model_partitions(
                model_id, str(relation), node_config, columns, session.execute, self._state
            )
        except DbtRuntimeError as e:
            redacted = redactor.text(e.msg)
            if redacted == e.msg:
                raise
            raise DbtRuntimeError(redacted) from None
        self.commit_if_has_connection()
        return redactor.text(report)

    @available.parse_none
    def sqlflow_restore(
        self, model_id: str, relation: Any, before_load: Any = None, at: Any = None
    ) -> str:
        """Undo committed loads of a model on DuckLake (``sqlflow_restore``): its table,
        intervals, partitions and loads as they were before load ``before_load`` (or at
        time ``at``), committed as a new snapshot (``restore.py``), holding the model's
        claim on a PostgreSQL catalog.

        Returns:
            The report, as log lines.

        Raises:
            DbtRuntimeError: on a database that is not a DuckLake, for arguments that do
                not name one point, an unknown load, a load of another model, a time
                before the table existed, or an expired snapshot.
        """
        if (before_load in (None, "")) == (at in (None, "")):
            raise DbtRuntimeError(
                f"sqlflow restore of {model_id}: pass exactly one of before_load and at"
                f" (got before_load={before_load!r}, at={at!r}). Fix: --args"
                " '{model: m, before_load: <load_id>}' or '{model: m, at: 2025-03-01T12:00:00}'"
            )
        if not self.is_ducklake(relation):
            raise restore.needs_ducklake(model_id, str(relation))
        when = None
        if at not in (None, ""):
            try:
                when = parse_timestamp(at)
            except ValueError as e:
                raise DbtRuntimeError(
                    f"sqlflow restore of {model_id}: at {at!r} is not an ISO date or"
                    " timestamp. Fix: pass e.g. at: 2025-03-01T12:00:00 (UTC, or with an"
                    " offset)"
                ) from e
        target = restore.Target(
            model_id, str(relation), relation.database, relation.schema, relation.identifier
        )
        dsn = catalog_dsn(self.config.credentials, relation.database)
        key = f"restore {model_id}"
        if dsn is not None:
            self._claims.claim(key, dsn, str(relation), model_id)
        try:
            session = self._session()
            report = restore.restore_with_retries(
                session,
                self._state(session.execute),
                target,
                self._retry_settings(),
                execution.logger.info,
                before_load=None if before_load in (None, "") else str(before_load),
                at=when,
            )
        finally:
            self._claims.release(key)
        return report.text()

    @available.parse_none
    def sqlflow_lake_maintenance(
        self,
        database: Any = None,
        older_than: Any = None,
        delete_files_older_than: Any = None,
    ) -> str:
        """Compact a DuckLake's small files, expire its old snapshots and delete the
        files nothing reads any more (``sqlflow_lake_maintenance``, ``maintenance.py``).

        Args:
            database: The lake's alias (default: the target database).
            older_than: Snapshots older than this are expired (default ``7 days``).
            delete_files_older_than: Files scheduled for deletion longer ago than this
                are deleted (default ``1 hour``).

        Returns:
            The report (files before and after, each step), as log lines.

        Raises:
            DbtRuntimeError: for a database that is not a DuckLake, a bad age, or a step
                that failed for good.
        """
        database = str(database or self.config.credentials.database)
        if not self.is_ducklake(self.Relation.create(database=database)):
            raise maintenance.needs_ducklake(database)
        settings = maintenance.MaintenanceSettings.parse(older_than, delete_files_older_than)
        report = maintenance.maintain(
            self._session(),
            database,
            settings,
            self._retry_settings(),
            execution.logger.debug,
        )
        return report.text()

    @available
    def sqlflow_pinned_now_literal(self, value: Any = None) -> str | None:
        """The run's pinned "now" as a TIMESTAMP literal (naive UTC): ``value`` (``--vars
        sqlflow_now``) or the ``SQLFLOW_NOW`` environment variable; None when not pinned.

        Raises:
            DbtRuntimeError: when the value is not an ISO date or timestamp.
        """
        pinned = pinned_now({"sqlflow_now": value})
        return time_literal(pinned) if pinned is not None else None

    @available
    def sqlflow_template_tokens(self) -> dict[str, str]:
        """The tokens batch templates carry where each batch substitutes its own SQL."""
        return dict(TEMPLATE_TOKENS)


def _rendering(macro: Callable[..., Any], args: list[Any]) -> Callable[[], BatchTemplates]:
    """A call of the Jinja ``macro`` (``sqlflow_batch_templates``) with ``args``, its
    result as :class:`BatchTemplates`: the batch loop renders the rest of a build's
    templates with it only when a batch loads on its own."""

    def render() -> BatchTemplates:
        return BatchTemplates.from_jinja(macro(*args))

    return render
