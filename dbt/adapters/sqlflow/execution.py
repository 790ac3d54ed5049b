"""One run of a sqlflow_incremental model: its plan, the one batch loop, figures, state.

A :class:`ModelRun` is created when the materialization starts (:func:`start_run`) and
lives until it stores its result. Every batch, the first included, goes through
:func:`run_batches`: stage (or read the model's query straight into the target), inspect
and choose the strategy, run the strategy's steps, check quality, record state, commit.
Each batch is one transaction; the last one is left open so the model's post-hooks with
``inside_transaction=True`` run in it, and :func:`finish_run` commits it.

Jinja renders the SQL once per run, with tokens where batches differ
(:class:`BatchTemplates`); this module fills the tokens per batch.
"""

from __future__ import annotations

import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from dbt.adapters.events.logging import AdapterLogger
from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow import cdc, events, quality
from dbt.adapters.sqlflow.config import SqlflowConfig
from dbt.adapters.sqlflow.intervals import Interval, parse_timestamp
from dbt.adapters.sqlflow.observe import BatchClock
from dbt.adapters.sqlflow.partitions import (
    PartitionManager,
    partition_key,
    partition_range,
)
from dbt.adapters.sqlflow.plan import (
    BUILD,
    INCREMENTAL,
    LoadedState,
    Variant,
    build_plan,
    cdc_tables,
    census_targets,
    direct_strategy,
    empty_indexes,
    explicit_range,
    loaded_part,
    new_keys_strategy,
    plan_model_windows,
    static_strategy,
)
from dbt.adapters.sqlflow.quality import CheckOutcome
from dbt.adapters.sqlflow.recovery import (
    PROBE,
    Journal,
    Session,
    attempt,
    inject_fault,
    interrupted,
    stopped_note,
)
from dbt.adapters.sqlflow.retry import first_line, is_connection_lost, retrying
from dbt.adapters.sqlflow.run import (
    BatchResult,
    ModelRun,
    RunServices,
    Savepoint,
    SqlflowAdapterResponse,
    iso_or_none,
)
from dbt.adapters.sqlflow.sql import (
    UNBOUNDED_END,
    UNBOUNDED_START,
    WINDOW_END_MARK,
    WINDOW_START_MARK,
    Executor,
    as_naive,
    fill_template,
    key_join,
    normalize_time_type,
    quote_identifier,
    reads_window,
    substitute_window,
    time_literal,
    truncate_sql,
    utc_expr,
    utc_now,
    window_literals_in,
)
from dbt.adapters.sqlflow.state import LoadRow, StateStore
from dbt.adapters.sqlflow.strategies import (
    AUTO,
    MAX_SAMPLES,
    BatchFacts,
    CountRole,
    choose_strategy,
    count_duplicate_keys,
    get_strategy,
    is_keyed,
    needs_matched_keys,
    raise_key_problems,
    target_duplicates,
)

# AdapterLogger prefixes "sqlflow adapter: "; the ids let JSON logs join metrics.
logger = AdapterLogger("sqlflow")


@dataclass(frozen=True)
class BatchTemplates:
    """A run's SQL, rendered once by Jinja, with :data:`sql.TEMPLATE_TOKENS` where each
    batch has its own window literals, model SQL and predicates.

    Attributes:
        stage: CREATE of the staged batch from the model's SQL (None: not rendered, a
            build's templates for groups loaded at once).
        variants: Per variant key (``strategy:plain_insert``, ``direct`` or
            ``new_keys``) the steps, each ``{"sql": ..., "count": CountRole value}`` (or
            several values, comma separated: a query returning one row of counts, one
            column per role).
    """

    stage: str | None
    variants: Mapping[str, list[dict[str, str]]]

    @classmethod
    def from_jinja(cls, rendered: Mapping[str, Any]) -> BatchTemplates:
        """The templates as ``sqlflow_batch_templates`` returns them."""
        variants = {
            key: [
                {
                    "sql": str(s["sql"]),
                    "count": ",".join(
                        CountRole(role.strip()).value for role in str(s["count"]).split(",")
                    ),
                    # A step with ``when`` runs only if that query returns true.
                    **({"when": str(s["when"])} if s.get("when") else {}),
                }
                for s in steps
            ]
            for key, steps in rendered["variants"].items()
        }
        stage = rendered.get("stage")
        return cls(stage=None if stage is None else str(stage), variants=variants)

    def with_rest(self, rest: BatchTemplates) -> BatchTemplates:
        """These templates with the stage and variants of ``rest`` (rendered later)."""
        return BatchTemplates(
            stage=rest.stage if rest.stage is not None else self.stage,
            variants={**rest.variants, **self.variants},
        )


# -- planning a run ------------------------------------------------------------------------


def start_run(
    config: SqlflowConfig,
    services: RunServices,
    *,
    relation: str,
    incremental: bool,
    compiled_code: str,
    run_vars: Mapping[str, Any],
    invocation_id: str,
    event_time_range: tuple[Any, Any] = (None, None),
    empty_flag: bool = False,
    pinned_now: datetime | None = None,
) -> ModelRun:
    """Plan a model run: the watermark, the windows, the empty ones (two GROUP BYs).

    Raises:
        DbtConfigError: for a bad explicit backfill range.
        DbtRuntimeError: for a renamed model whose table holds another name's windows.
    """
    with _planning(services, config.model, invocation_id) as clock:
        if config.unknown_keys:
            logger.debug(
                f"{config.model} config keys sqlflow and dbt do not read (kept for packages):"
                f" {', '.join(config.unknown_keys)}"
            )
        explicit = explicit_range(config.model, config, run_vars, *event_time_range)
        mode = INCREMENTAL if incremental else BUILD
        if incremental and services.partitions is not None:
            _known_partitions(services.partitions, relation)
        watermark: datetime | None = None
        state = LoadedState()
        if config.event_time is not None and incremental:
            watermark = _newest(services.run, config, relation)
            state = _loaded_state(services.state, config.model, relation)
        windows, counted = _windows(
            config, services, mode, state, explicit, compiled_code, relation
        )
        idle = counted.empty
        plan = build_plan(
            config,
            mode,
            windows,
            idle,
            loaded_at_start=state.loaded if explicit is None else (),
            direct=_direct(config, services),
            new_keys=new_keys_strategy(config),
            empty_flag=empty_flag,
        )
        ledger = _cdc_ledger(config, services, relation, compiled_code, incremental)
        run = ModelRun(
            id=uuid.uuid4().hex,
            config=config,
            relation=relation,
            plan=plan,
            services=services,
            invocation_id=invocation_id,
            compiled_code=compiled_code,
            watermark_before=watermark,
            watermark_after=watermark,
            pinned_now=pinned_now,
            census=counted,
            cdc_ledger=ledger,
        )
    run.plan_seconds = clock.seconds["plan"]
    run.span = clock.span
    if run.span is not None:
        run.span.set_attribute("sqlflow.execution_id", run.id)
    plan = run.plan
    events.fire(
        "debug",
        f"{config.model} planned {len(plan.batches)} batch(es) ({plan.mode},"
        f" {len(plan.empty_windows)} empty window(s)"
        + (", empty windows counted by the first group" if counted.deferred else "")
        + f") {run.log_context()}",
        run.event_fields(event="plan", mode=plan.mode, empty_windows=len(plan.empty_windows)),
    )
    return run


@contextmanager
def _planning(services: RunServices, model: str, invocation_id: str) -> Iterator[BatchClock]:
    """The model execution's span (when tracing) and the run's ``plan`` phase around
    :func:`start_run`'s planning; the span ends with the error when planning raises."""
    tracing, span = services.tracing, None
    if tracing is not None:
        span = tracing.start(
            f"sqlflow.model {model}",
            None,
            {"dbt.invocation_id": invocation_id, "dbt.unique_id": model},
        )
    clock = BatchClock({}, tracing, span)
    try:
        with clock.phase("plan"):
            yield clock
    except BaseException as e:
        if tracing is not None and span is not None:
            tracing.fail(span, e)
            span.end()
        raise


class Describer(Protocol):
    """What :func:`model_source` needs of the connection."""

    def describe(self, sql: str) -> list[tuple[str, str]]:
        """The (name, type) of each column ``sql`` returns."""

    def execute(self, sql: str) -> list[tuple]:
        """Run SQL, returning its rows."""


def model_source(
    session: Describer,
    compiled_code: str,
    raw_cdc: Any,
    existing: Callable[[], list[tuple[str, str]]] | None,
) -> tuple[str, dict[str, str]]:
    """The SQL a run loads from and its columns: the model's, or for a cdc model reading
    Debezium envelopes (``cdc.debezium``) the events flattened (``cdc.debezium_feed_sql``).

    A JSON envelope's row takes the types of the existing target's columns (``existing``
    reads them; None on a first build), or on a first build those DuckDB infers from the
    whole feed.

    Raises:
        DbtRuntimeError: a JSON feed without rows on a first build (no types to infer).
    """
    columns = dict(session.describe(compiled_code))
    envelope = cdc.envelope_of(raw_cdc)
    if envelope is None:
        return compiled_code, columns
    structure = None
    if cdc.envelope_is_json(columns, envelope):
        skip = {cdc.VALID_FROM, cdc.VALID_TO}
        if existing is not None:
            structure = cdc.json_image_structure([c for c in existing() if c[0] not in skip])
        else:
            sql = substitute_window(compiled_code, UNBOUNDED_START, UNBOUNDED_END)
            found = session.execute(cdc.debezium_image_sql(sql, envelope))
            structure = found[0][0] if found else None
            if structure is None:
                raise DbtRuntimeError(
                    "sqlflow: the Debezium feed (JSON) has no row image yet, so the target's"
                    " columns are unknown. Run the model once the feed holds an event, or"
                    " select the envelope as STRUCTs. Nothing was written."
                )
    flat = cdc.debezium_feed_sql(compiled_code, columns, envelope, structure)
    return flat, dict(session.describe(flat))


def _cdc_feed_sql(config: SqlflowConfig, compiled_code: str) -> str:
    """The key and sequence of the model's change events, as the cdc strategy stages
    them (the ledger takes their types)."""
    assert config.cdc is not None
    shape = cdc.layout(config.cdc, config.unique_key, list(config.unique_key))
    sql = substitute_window(compiled_code, UNBOUNDED_START, UNBOUNDED_END)
    return f"select {shape.stage_select} from ({sql}\n) as sqlflow_model"


def _cdc_ledger(
    config: SqlflowConfig,
    services: RunServices,
    relation: str,
    compiled_code: str,
    incremental: bool,
) -> str | None:
    """The cdc ledger of the target (created for an incremental run when missing), or None.

    Raises:
        DbtRuntimeError: when an existing table has no ledger (it was not loaded by cdc):
            its rows' applied sequences are unknown.
    """
    if config.cdc is None:
        return None
    ledger = services.state.table(cdc.ledger_table_name(relation))
    if incremental:
        keys = [quote_identifier(k) for k in config.unique_key]
        created = services.state.create_cdc_ledger(
            ledger, keys, _cdc_feed_sql(config, compiled_code), replace=False
        )
        if created and int(services.run(f"select count(*) from {relation}")[0][0]):
            raise DbtRuntimeError(
                f"sqlflow_incremental model '{config.model}': {relation} has rows but no cdc"
                f" ledger ({ledger}), so the sequence applied to each key is unknown (the"
                " table was not loaded by incremental_strategy 'cdc', or its ledger was"
                " dropped). Rebuild it from the change feed: dbt run --full-refresh -s"
                f" {config.model.split('.')[-1]}. Nothing was written."
            )
    return ledger


def _windows(
    config: SqlflowConfig,
    services: RunServices,
    mode: str,
    state: LoadedState,
    explicit: tuple[datetime, datetime] | None,
    compiled_code: str,
    relation: str,
) -> tuple[list[Interval] | None, Census]:
    """The planned windows (None for a model without event_time) and their census."""
    if config.event_time is None:
        return None, Census()
    windows = plan_model_windows(
        config,
        mode,
        state,
        services.now,
        explicit,
        lambda: _data_start(services, config, compiled_code),
    )
    return windows, _empty_windows(config, services, windows, compiled_code, relation, mode)


def _known_partitions(pm: PartitionManager, relation: str) -> None:
    """Read the table's recorded partitions; a table with rows but none recorded (say,
    partition_by was just added to the model) has its partitions registered from its
    data (one GROUP BY, once), so they are not flagged missing until a full refresh."""
    pm.remember_keys(relation)
    if not pm.known_keys:
        pm.known_keys = {p.key for p in pm.detect_partitions(relation)}


def _newest(run: Executor, config: SqlflowConfig, relation: str) -> datetime | None:
    column = quote_identifier(config.event_time or "")
    return as_naive(run(f"select max({column}) from {relation}")[0][0])


def _loaded_state(state: StateStore, model: str, relation: str) -> LoadedState:
    loaded = tuple(state.loaded_intervals(model))
    others: tuple[str, ...] = ()
    if not loaded:
        others = tuple(m for m in state.models_with_intervals(relation) if m != model)
    first = state.first_window_start(model) if loaded else None
    return LoadedState(loaded=loaded, first_window_start=first, other_models=others)


def _data_start(
    services: RunServices, config: SqlflowConfig, compiled_code: str
) -> datetime | None:
    sql = substitute_window(compiled_code, UNBOUNDED_START, UNBOUNDED_END)
    column = quote_identifier(config.event_time or "")
    return as_naive(services.run(f"select min({column}) from ({sql}\n) as m")[0][0])


def _direct(config: SqlflowConfig, services: RunServices) -> str | None:
    pm = services.partitions
    on_event_time = None if pm is None else pm.spec.is_time and pm.spec.field == config.event_time
    batch_checks = any(c.scope == "batch" for c in services.checks)
    return direct_strategy(config, on_event_time, batch_checks)


UnitFigures = dict[datetime, tuple[int, datetime | None]]
"""Per unit start (naive UTC): rows, and the newest value of the time column (or None)."""


def unit_figures(
    run: Executor,
    relation_sql: str,
    column: str,
    data_type: str | None,
    hull: Interval,
    unit: str,
    *,
    newest: bool = False,
) -> UnitFigures:
    """Rows (and with ``newest`` the latest ``column`` value) per ``unit`` of ``column``
    within ``hull``, in one GROUP BY."""
    value = utc_expr(column, data_type)
    latest = f"max({column})" if newest else "null"
    found = run(
        f"select {truncate_sql(unit, value)} as unit, count(*), {latest} from {relation_sql}"
        f" where {column} >= {time_literal(hull.start, data_type)}"
        f" and {column} < {time_literal(hull.end, data_type)} group by 1"
    )
    return {as_naive(u) or hull.start: (int(n), as_naive(m)) for u, n, m in found if u is not None}


def census(
    run: Executor,
    relation_sql: str,
    column: str,
    data_type: str | None,
    windows: list[Interval],
    unit: str,
) -> dict[datetime, int]:
    """Rows per ``unit`` of ``column`` within the windows' hull, in one GROUP BY.

    Keys are unit starts (naive UTC). ``split`` aligns batches to unit boundaries, so
    each unit start maps to at most one batch.
    """
    if not windows:
        return {}
    hull = Interval(windows[0].start, windows[-1].end)
    found = unit_figures(run, relation_sql, column, data_type, hull, unit)
    return {u: n for u, (n, _) in found.items()}


@dataclass(frozen=True)
class Census:
    """Rows per window unit of a run's source and target, counted when it was planned
    (or, :attr:`deferred`, in its first group's transaction).

    Attributes:
        empty: Indexes of the windows with nothing to do.
        source: Source rows per unit start; None when not counted.
        target: Target rows per unit start; None when not counted.
    """

    empty: set[int] = field(default_factory=set)
    source: dict[datetime, int] | None = None
    target: dict[datetime, int] | None = None
    deferred: bool = False
    """Not counted yet: a build whose batches may load as one INSERT counts its source in
    the first group's transaction (:func:`_take_deferred_census`), with the group's check."""
    check: list[tuple] | None = None
    """The rows of the group check (:func:`_check_sql`) over every planned window, when
    the deferred census was that check: the first group's own, if it holds every batch
    and is loaded in the transaction that counted them."""


def _empty_windows(
    config: SqlflowConfig,
    services: RunServices,
    windows: list[Interval],
    compiled_code: str,
    relation: str,
    mode: str,
) -> Census:
    """The windows with nothing to do (no source rows and, for a strategy that replaces
    what the window held, no target rows either), and the counts that told.

    Two GROUP BYs for the whole plan instead of one staged batch per window: a backfill
    of 365 empty days costs two queries, not 365 transactions.
    """
    source, target = census_targets(config, mode, reads_window(compiled_code))
    if not windows or not source:
        return Census()
    if not target and _defers_census(config, services, mode):
        return Census(deferred=True)
    column = quote_identifier(config.event_time or "")
    unit = config.batch_size or "day"
    dtype = services.event_time_type
    hull_sql = substitute_window(compiled_code, windows[0].start, windows[-1].end)
    found = census(services.run, f"({hull_sql}\n) as m", column, dtype, windows, unit)
    held = census(services.run, relation, column, dtype, windows, unit) if target else None
    busy = set(found) | set(held or ())
    return Census(empty_indexes(windows, unit, busy), found, held)


def _defers_census(config: SqlflowConfig, services: RunServices, mode: str) -> bool:
    """Whether a run counts its source in its first group's transaction instead of at
    planning: a build of a keyed model whose batches may load as one INSERT (see
    :func:`_one_statement_end`). There one query is both the census and the group's
    check, and the check sees what the INSERT then reads (same transaction, after the
    pre-hooks)."""
    return (
        mode == BUILD
        and new_keys_strategy(config) is not None
        and _statements_may_group(config, services)
        and config.commit_every.batches is None  # a group may then hold every batch
    )


def _statements_may_group(config: SqlflowConfig, services: RunServices) -> bool:
    """Whether the model's batches may load a group at a time (:func:`_one_statement_end`),
    as far as its config tells: no quality check judges a batch, and ``commit_every`` is
    no time target (one is measured batch by batch)."""
    every = config.commit_every
    return not services.checks and (every.seconds is None or every.auto)


def _take_deferred_census(run: ModelRun) -> None:
    """Count the source of a deferred census (:attr:`Census.deferred`) in the open
    transaction, with the group check of every planned window, and drop the windows it
    finds empty from the plan's batches (they become its empty windows, as a census at
    planning would have made them)."""
    windows = [w for w in run.plan.batches if w is not None]
    if not windows:
        run.census = Census()
        return
    hull = Interval(windows[0].start, windows[-1].end)
    literals = window_literals(hull, run.services.event_time_type)
    model_sql = substitute_window(run.compiled_code, hull.start, hull.end)
    found = run.services.run(_check_sql(run, model_sql, literals))
    unit = run.config.batch_size or "day"
    source: dict[datetime, int] = {}
    for row in _per_unit(run, found):
        start = as_naive(row[0]) or hull.start
        source[start] = source.get(start, 0) + int(row[2])
    empty = empty_indexes(windows, unit, set(source))
    run.census = Census(empty, source, None, check=found)
    if empty:
        run.plan = replace(
            run.plan,
            batches=tuple(w for i, w in enumerate(windows) if i not in empty),
            empty_windows=tuple(w for i, w in enumerate(windows) if i in empty),
        )


# -- the batch loop ------------------------------------------------------------------------

CommitHook = Callable[[ModelRun, list[BatchResult], bool], None]
"""Called after a transaction commits, once per statement that loaded batches: the run,
the batches it loaded (one, or a group loaded at once) and whether to log quietly."""


def run_batches(
    run: ModelRun,
    session: Session,
    templates: BatchTemplates,
    stage: str,
    on_commit: CommitHook,
    side: Callable[[str], Any] | None = None,
    later: Callable[[], BatchTemplates] | None = None,
) -> None:
    """Load every planned batch in order, consecutive batches grouped into transactions
    (``commit_every``).

    Every group but the last is committed here; the last one's transaction stays open
    (the model's post-hooks run in it) until :func:`finish_run`. A group that fails with
    a transient error is rolled back and loaded again (``recovery.attempt``); one that
    fails for good raises, its transaction rolled back, and the groups before it stay
    committed and recorded.

    Args:
        side: Runs SQL on a second connection to the database (fault injection only).
        later: Renders the rest of the templates when ``templates`` holds only those of
            groups loaded at once (see :meth:`_Loop.batch_templates`).
    """
    batches = run.plan.batches
    # What dbt ran in the first batch's transaction before it (pre-hooks, the stage's
    # shape, schema changes): a retry of the first group replays it.
    loop = run.loop = _Loop(templates, stage, session.journal(), side, later=later)
    while batches:
        if interrupted():
            _stop(run, "SIGTERM")
        start = loop.group_start
        loop.group_point = run.savepoint()
        _attempt_logged(
            run,
            session,
            lambda first: _group_body(run, session, first),
            _what(run),
            loop.group_point,
        )
        if loop.group_start == start:
            return  # the last group's transaction stays open: finish_run commits it
        _committed(run, on_commit)


def _committed(run: ModelRun, on_commit: CommitHook) -> None:
    """Close the batches of the transaction that just committed, each reported to
    ``on_commit`` (quietly but for the run's first)."""
    first = run.loaded_batches == 0
    group = run.commit_group()
    # The empty windows the commit recorded are logged once, with its last batch.
    empty, run.empty_last_commit = run.empty_last_commit, 0
    loads = _by_statement(group)
    for done in loads:
        if done is loads[-1]:
            run.empty_last_commit = empty
        on_commit(run, done, not (first and done is loads[0]))
    if len(group) > 1:
        logger.debug(
            f"{run.config.model} committed {len(group)} batches in one transaction"
            f" (commit_every={run.config.commit_every.describe()}) {run.log_context()}"
        )


def _by_statement(group: list[BatchResult]) -> list[list[BatchResult]]:
    """A transaction's batches split by the statement that loaded them: one each, but a
    group loaded at once (``loaded_with`` batches in a row)."""
    found: list[list[BatchResult]] = []
    index = 0
    while index < len(group):
        size = max(1, group[index].loaded_with)
        found.append(group[index : index + size])
        index += size
    return found


@contextmanager
def batch_scope(run: ModelRun, index: int, window: Interval | None) -> Iterator[BatchClock]:
    """One batch's timing, span and start/error events around its loading.

    Its span ends when the next batch begins or, for the last batch of a transaction, when
    that commits (``ModelRun.commit_group``: the run's last after the model's post-hooks);
    when it raises, at once, with the error recorded.
    """
    clock = run.begin_batch(index, window)
    bounds = f" [{window.start}, {window.end})" if window else ""
    events.fire(
        "debug",
        f"{run.config.model} batch {index + 1} of {len(run.plan.batches)}{bounds}"
        f" {run.log_context('-')}",
        run.event_fields(
            event="batch_start",
            batch_index=index,
            window_start=iso_or_none(window.start if window else None),
            window_end=iso_or_none(window.end if window else None),
        ),
    )
    try:
        yield clock
    except BaseException as e:
        batch = run.in_flight
        fields = run.event_fields(batch, event="batch_error", error_type=type(e).__name__)
        fields.setdefault("batch_index", index)
        events.fire(
            "debug",
            f"{run.config.model} batch {index + 1} failed: {type(e).__name__} {run.log_context()}",
            fields,
        )
        clock.end(run.span_attributes(batch) if batch else {}, error=e)
        raise


@dataclass
class _Loop:
    """What the loop and a retry need: the templates, the stage, the journal of dbt's
    statements before the first batch, the side connection, where the open group
    starts."""

    templates: BatchTemplates
    stage: str
    prefix: Journal
    side: Callable[[str], Any] | None
    group_start: int = 0
    group_point: Savepoint | None = None
    later: Callable[[], BatchTemplates] | None = None
    """Renders the templates a batch loaded on its own needs, when ``templates`` holds
    only those of groups loaded at once (a build's): called once, when first needed."""

    @property
    def staged(self) -> bool:
        """Whether a batch may have been staged: the templates of a batch loaded on its
        own were rendered (their rendering creates the staging table's shape)."""
        return self.later is None and self.templates.stage is not None

    def batch_templates(self) -> BatchTemplates:
        """The templates of a batch loaded on its own (rendered now if not yet; a batch
        that goes straight in, ``direct``, needs none besides)."""
        if self.later is not None and "direct" not in self.templates.variants:
            self.templates = self.templates.with_rest(self.later())
            self.later = None
        return self.templates


def _group_body(run: ModelRun, session: Session, first: bool, to_end: bool = False) -> None:
    """Load the batches of one transaction from ``loop.group_start``, until the group is
    due to commit (it commits) or the last batch is loaded (its transaction stays open).

    ``to_end``: the group is the run's last, loaded again after its commit failed
    (:func:`finish_run`): it runs to the last batch whatever ``commit_every`` says, as
    it did the first time (a time target measured on a slower retry would commit part
    of it here and leave the rest unloaded). A group loaded in one statement is sized
    from the census's rows, so it ends where it ended the first time.
    """
    loop: _Loop = run.loop
    if not first and loop.group_start == 0:
        session.replay(loop.prefix)  # what dbt ran before the first batch, rolled back
        if run.census is not None and run.census.check is not None:
            run.census = replace(run.census, check=None)  # counted in the rolled-back one
    if run.census is not None and run.census.deferred:
        counting = time.perf_counter()
        _take_deferred_census(run)
        run.plan_seconds += time.perf_counter() - counting
    batches = run.plan.batches
    if not batches:
        return  # every window empty: recorded with the run's commit (finish_run)
    end = _one_statement_end(run, loop.group_start)
    if end is not None and _load_at_once(run, session, loop.group_start, end, first):
        if end < len(batches) - 1:
            with run.phase("commit"):
                commit_group(run, session)
            loop.group_start = end + 1
        return
    started = time.monotonic()
    rows = 0
    for index in range(loop.group_start, len(batches)):
        if interrupted():
            _stop(run, "SIGTERM")  # the group rolls back
        _batch_body(run, session, index, batches[index], first)
        done = run.close_batch()
        rows += done.rows_inserted + done.rows_updated + done.rows_deleted
        if index == len(batches) - 1:
            return
        grouped = index - loop.group_start + 1
        due = run.config.commit_every.due(grouped, rows, time.monotonic() - started)
        if not to_end and (due or _rereads_end(run, index)):
            # A group's COMMIT counts in its last batch's phases.
            with run.phase("commit"):
                commit_group(run, session)
            loop.group_start = index + 1
            return


def _rereads_end(run: ModelRun, index: int) -> bool:
    """Whether batch ``index`` is the last window read again (lookback) of a keyed model
    whose next batches can load at once (their keys all new): its group commits there,
    so they start a group of their own."""
    batches = run.plan.batches
    if "new_keys" not in run.loop.templates.variants or index + 1 >= len(batches):
        return False
    here, after = batches[index], batches[index + 1]
    if here is None or after is None or not run.plan.overlaps_loaded(here):
        return False
    return not run.plan.overlaps_loaded(after) and _one_statement_end(run, index + 1) is not None


def commit_group(run: ModelRun, session: Session) -> None:
    """COMMIT the open transaction of a group of batches; when the connection to the
    catalog is lost during the commit (a PostgreSQL catalog restarting), find out whether
    it went through before a retry loads the group again.

    The answer is in the state: the group's last batch's ``loads`` row commits with it.
    If it is there, the group is committed (logged) and this returns; if not, or if it
    cannot be known (the catalog still down after the retry schedule), the error is
    raised and the group is retried or fails as any other. So a lost acknowledgement
    never loads a group twice.

    Raises:
        RunStopped: when the process was interrupted (SIGTERM): the group is not
            committed but rolled back.
    """
    if interrupted():
        _stop(run, "SIGTERM")
    if run.services.claim_check is not None:
        run.services.claim_check()
    try:
        session.commit()
    except Exception as e:
        if not is_connection_lost(e) or not run.uncommitted:
            raise
        load_id = run.uncommitted[-1].load_id
        session.rollback()
        try:
            recorded = retrying(run.services.retry, is_connection_lost, lambda state: None)(
                _is_recorded, run, session, load_id
            )
        except Exception:
            raise e from None
        if not recorded:
            raise
        logger.warning(
            f"{run.config.model}: the commit of {_what(run)} lost its connection"
            f" ({first_line(e)}), but its load {load_id} is recorded: it committed"
            f" {run.log_context()}"
        )


def _is_recorded(run: ModelRun, session: Session, load_id: str) -> bool:
    """Whether a load's row is in ``loads`` (read in a transaction of its own)."""
    try:
        return run.services.state.load_model(load_id) is not None
    finally:
        session.rollback()


STATEMENT_ROWS = 5_000_000
"""The rows one statement of a group loaded at once may write under ``commit_every``
``auto`` (about a second of DuckDB's insert work)."""


def _one_statement_end(run: ModelRun, start: int) -> int | None:
    """The last batch of a group that can load as one statement from ``start``, or None
    when the group loads batch by batch.

    One statement (a DELETE and an INSERT of the group's whole range) leaves exactly
    what the group's batches leave one by one when they write straight from the model's
    query (append, insert_overwrite: plan.direct), the model does not read its window
    (its rows for the range are the union of its rows per window) and no quality check
    judges a batch. So does one INSERT of a keyed model's group whose keys are all new
    (plan.new_keys; checked on the group's rows before it writes). The group is sized
    from the planning census's source rows.
    """
    loop: _Loop = run.loop
    census: Census | None = run.census
    every = run.config.commit_every
    direct = "direct" in loop.templates.variants
    new_keys = "new_keys" in loop.templates.variants
    pm = run.services.partitions
    # No source census: the model reads its window (or its strategy judges no window
    # empty), so its rows for a range may differ from the union of its windows' rows.
    if not (direct or new_keys) or census is None or census.source is None:
        return None
    if not _statements_may_group(run.config, run.services):
        return None
    if direct and pm is not None and not pm.spec.is_time:
        return None
    batches = run.plan.batches
    if any(window is None for window in batches):
        return None
    windows = [w for w in batches if w is not None]
    source = _rows_by_window(census.source, windows)
    limit = every.batches or len(batches)
    cap = every.rows or STATEMENT_ROWS
    rows, end = 0, start
    for index in range(start, min(len(batches), start + limit)):
        rows += source.get(windows[index].start, 0)
        if rows > cap and index > start:
            break
        end = index
    if not direct and any(run.plan.overlaps_loaded(w) for w in windows[start : end + 1]):
        return None  # a window read again (lookback): its keys are the target's already
    return end if end > start else None


def _load_at_once(run: ModelRun, session: Session, start: int, end: int, first: bool) -> bool:
    """Load the batches ``start`` to ``end`` (one group) in one statement: written straight
    from the model's query, or (a keyed model) one INSERT when their keys are all new.
    False (nothing written) when the keys are not: the group loads batch by batch."""
    if "direct" in run.loop.templates.variants:
        _load_group_at_once(run, session, start, end, first)
        return True
    return _load_new_keys_at_once(run, session, start, end, first)


def _load_group_at_once(run: ModelRun, session: Session, start: int, end: int, first: bool) -> None:
    """The batches ``start`` to ``end`` (one group) written by one run of the direct
    steps over their whole range; each batch then gets its own figures and state, from
    two GROUP BYs of the range in the target (before and after)."""
    loop: _Loop = run.loop
    windows = [w for w in run.plan.batches[start : end + 1] if w is not None]
    hull = Interval(windows[0].start, windows[-1].end)
    # One clock and span for the group: its phases count in its first batch.
    with batch_scope(run, start, hull):
        _inject_group_faults(run, session, start, end, first)
        dtype = run.services.event_time_type
        literals = window_literals(hull, dtype)
        where = window_filter(run, literals)
        census_: Census = run.census
        held = census_.target
        static = static_strategy(run.config)
        replaces = static is not None and static.replaces_window
        with run.phase("plan"):
            before = (
                _per_window(run, session, windows)
                if held is None or any(_rows_by_window(held, windows).values())
                else {}
            )
        model_sql = substitute_window(run.compiled_code, hull.start, hull.end)
        logged = _Logged(session, run) if start == 0 and first else session
        with run.phase("dml"):
            run_steps(
                logged,
                loop.templates.variants["direct"],
                literals,
                None,
                model_sql=model_sql,
                overwrite_predicate=f"({where})",
            )
        with run.phase("state"):
            after = _per_window(run, session, windows)
        logger.debug(
            f"{run.config.model} batches {start + 1} to {end + 1} loaded at once"
            f" [{hull.start}, {hull.end}) {run.log_context()}"
        )
        outside = _newest_outside(run, session, where) if before else None
        touched: dict[str, str] = {}
        for offset, window in enumerate(windows):
            batch = run.start_batch(static.name if static else "append", window)
            if offset:
                batch.phases = {}  # the group's one statement counts in its first batch
            batch.loaded_with = len(windows)
            old_rows = before.get(window.start, (0, None))[0]
            new_rows, new_max = after.get(window.start, (0, None))
            if replaces:
                batch.rows_deleted, batch.rows_inserted = old_rows, new_rows
            else:
                batch.rows_inserted = new_rows - old_rows
            batch.batch_max = new_max
            if before:
                # What the target's newest row is once this batch, and not yet the later
                # ones of the group, replaced its window.
                later = [before.get(w.start, (0, None))[1] for w in windows[offset + 1 :]]
                done = [after.get(w.start, (0, None))[1] for w in windows[: offset + 1]]
                run.watermark_after = max(filter(None, (outside, *later, *done)), default=None)
            with run.phase("state"):
                _finish_at_once(run, batch, touched)
            run.close_batch()
        _finish_group(run, touched)


@dataclass(frozen=True)
class _NewKeys:
    """What a keyed group's check learned of its rows, per window start: rows and newest
    event time, and (partitions not the windows' own) the partition keys written."""

    figures: UnitFigures
    partitions: dict[datetime, list[str]]
    statistics: dict[str | None, tuple] | None = None
    """The statistics of the partitions the group writes, when they held no rows before
    (a build's): :meth:`PartitionManager.statistics_of` of the group's rows."""


def _load_new_keys_at_once(
    run: ModelRun, session: Session, start: int, end: int, first: bool
) -> bool:
    """The batches ``start`` to ``end`` of a keyed model (merge, delete+insert, auto) as
    one INSERT of their range, when their keys are all new; else False, nothing written.

    Batch by batch, batches whose keys are not null, not in two batches (nor twice in
    one) and not in the target are plain inserts: what one INSERT of the range writes.
    The check (:func:`_new_keys`) reads the group's rows and the target's keys, wider
    than a batch's merge would (the whole partition range of the group, without
    incremental_predicates), so a key it does not find no batch would match. Each batch
    then gets its own figures, partitions and state, as batch by batch.
    """
    loop: _Loop = run.loop
    windows = [w for w in run.plan.batches[start : end + 1] if w is not None]
    hull = Interval(windows[0].start, windows[-1].end)
    literals = window_literals(hull, run.services.event_time_type)
    model_sql = substitute_window(run.compiled_code, hull.start, hull.end)
    checking = time.perf_counter()
    found = _new_keys(run, model_sql, literals, windows)
    checked = time.perf_counter() - checking
    if found is None:
        logger.debug(
            f"{run.config.model} batches {start + 1} to {end + 1}: some keys are not new;"
            f" loaded batch by batch {run.log_context()}"
        )
        return False
    pm = run.services.partitions
    # One clock and span for the group: its phases count in its first batch.
    with batch_scope(run, start, hull) as clock:
        clock.seconds["plan"] = clock.seconds.get("plan", 0.0) + checked
        _inject_group_faults(run, session, start, end, first)
        logged = _Logged(session, run) if start == 0 and first else session
        with run.phase("dml"):
            run_steps(
                logged, loop.templates.variants["new_keys"], literals, None, model_sql=model_sql
            )
        logger.debug(
            f"{run.config.model} batches {start + 1} to {end + 1} loaded at once (all keys new)"
            f" [{hull.start}, {hull.end}) {run.log_context()}"
        )
        touched: dict[str, str] = {}
        for offset, window in enumerate(windows):
            batch = run.start_batch(run.plan.new_keys or "append", window)
            if offset:
                batch.phases = {}  # the group's one statement counts in its first batch
            batch.loaded_with = len(windows)
            rows, newest = found.figures.get(window.start, (0, None))
            batch.rows_inserted = batch.batch_rows = rows
            batch.batch_max = newest
            with run.phase("state"):
                keys = found.partitions.get(window.start, [])
                if pm is not None and window.start not in found.partitions:
                    # Partitions on event_time: the window's own, as batch by batch.
                    keys = touched_partitions(run, run.relation, run.relation)
                touched.update(dict.fromkeys(keys, batch.load_id))
                batch.partitions_touched, batch.keys = len(keys), keys
                _advance_watermark(run, batch, run.relation)
                _record_load(run, batch, run.relation, _is_last(run))
            run.close_batch()
        _finish_group(run, touched, found.statistics)
    return True


def _new_keys(
    run: ModelRun, model_sql: str, literals: tuple[str, str], windows: list[Interval]
) -> _NewKeys | None:
    """The group's figures when its keys are all new (not null, each in one row of the
    group, none in the target's rows of the group's partition range), else None.

    One GROUP BY of the group's rows by unit (and partition), the duplicate-key count
    (a bitmap for one integer key), and only when the target holds rows in the range, a
    semi join of the group's keys with them. In a build the GROUP BY also gives each
    partition's statistics (a grouping set by partition): exact when the target held
    nothing in the group's partitions, as a build's first group finds.
    """
    config, services = run.config, run.services
    execute = services.run
    pm = services.partitions
    keys = [quote_identifier(k) for k in config.unique_key]
    rows_sql = _rows_sql(run, model_sql, literals)
    own, counted = _own_partitions(run), _counts_partitions(run)
    nulls = _null_filter(config)
    census: Census | None = run.census
    if census is not None and census.check is not None and windows == list(run.plan.batches):
        found = census.check  # this transaction's census: the same query, every batch
    else:
        found = execute(_check_sql(run, model_sql, literals))
    if census is not None and census.check is not None:
        run.census = replace(census, check=None)  # one group's, once
    per_unit = _per_unit(run, found)
    if any(int(r[4]) for r in per_unit):
        return None  # null keys: the batch holding them refuses them
    rows = sum(int(r[2]) for r in per_unit)
    relation = f"{rows_sql} as sqlflow_batch"
    if rows and count_duplicate_keys(execute, relation, keys, nulls, rows):
        return None
    units = _unit_windows({as_naive(r[0]) or windows[0].start for r in per_unit}, windows)
    figures: UnitFigures = {}
    partitions: dict[datetime, set[str]] = {}
    for unit_start, part, count, newest, *_ in per_unit:
        start = units.get(as_naive(unit_start) or windows[0].start)
        if start is None:
            continue
        total, latest = figures.get(start, (0, None))
        figures[start] = (
            total + int(count),
            max(filter(None, (latest, as_naive(newest))), default=None),
        )
        if not own and pm is not None:
            held = partitions.setdefault(start, set())
            if pm.spec.is_time and part is not None:
                held.add(partition_key(part, pm.spec.granularity or "day"))
            elif not pm.spec.is_time:
                held.add(str(part))
    where = _group_range(run, windows, partitions, own)
    # A build's first group writes into the table the build just created empty.
    first_of_build = run.mode == BUILD and windows[0] == run.plan.batches[0]
    held_rows = _rows_in(run, where) if rows and not first_of_build else 0
    if held_rows and _any_key_held(run, rows_sql, where):
        return None
    statistics = None
    if counted and pm is not None and not held_rows:
        statistics = pm.statistics_of(r[1:2] + r[5:8] for r in found if r[8])
    return _NewKeys(
        figures,
        {start: sorted(held) for start, held in partitions.items()},
        statistics,
    )


def _rows_sql(run: ModelRun, model_sql: str, literals: tuple[str, str]) -> str:
    """The model's rows within the window literals, as a parenthesized query."""
    column = quote_identifier(run.config.event_time or "")
    return (
        f"(select * from ({model_sql}\n) as sqlflow_model"
        f" where {column} >= {literals[0]} and {column} < {literals[1]})"
    )


def _check_sql(run: ModelRun, model_sql: str, literals: tuple[str, str]) -> str:
    """The group check of a keyed model's rows within the literals (:func:`_new_keys`):
    per unit (and partition, when not the windows' own) the rows, newest event time and
    null keys; in a build also each partition's statistics (a grouping set by partition,
    its rows flagged by ``grouping(sqlflow_unit)``, the 9th column)."""
    config, services = run.config, run.services
    pm = services.partitions
    column = quote_identifier(config.event_time or "")
    unit = config.batch_size or "day"
    counted = _counts_partitions(run)
    bucket = "null" if pm is None or (_own_partitions(run) and not counted) else pm.bucket_expr()
    nulls = _null_filter(config)
    figures_sql = f"count(*), max({column}), count(case when {nulls} then 1 end)"
    by = (
        "group by grouping sets ((sqlflow_unit, sqlflow_bucket), (sqlflow_bucket))"
        if counted
        else "group by all"
    )
    return (
        f"select {truncate_sql(unit, utc_expr(column, services.event_time_type))}"
        f" as sqlflow_unit, {bucket} as sqlflow_bucket, {figures_sql}"
        + (f", {pm.statistics_sql()}, grouping(sqlflow_unit)" if counted and pm else "")
        + f" from {_rows_sql(run, model_sql, literals)} as sqlflow_batch {by}"
    )


def _per_unit(run: ModelRun, found: list[tuple]) -> list[tuple]:
    """The rows of :func:`_check_sql` per unit (not those of its grouping set by
    partition)."""
    counted = _counts_partitions(run)
    return [r for r in found if not counted or not r[8]]


def _own_partitions(run: ModelRun) -> bool:
    """Whether the model's partitions (if any) are its windows' own (on ``event_time``:
    recorded as batch by batch does), not read off the rows."""
    pm = run.services.partitions
    return pm is None or (pm.spec.is_time and pm.spec.field == run.config.event_time)


def _counts_partitions(run: ModelRun) -> bool:
    """Whether the group check also gives partition statistics (a build's)."""
    return run.services.partitions is not None and run.mode == BUILD


def _group_range(
    run: ModelRun, windows: list[Interval], partitions: dict[datetime, set[str]], own: bool
) -> str:
    """The target's rows a group's keys could be in: its partition range (the whole
    table without time partitions)."""
    pm = run.services.partitions
    if pm is not None and pm.spec.is_time:
        if own:
            hull = Interval(windows[0].start, windows[-1].end)
            return pm.span_predicate(pm.partition_keys(hull), "DBT_INTERNAL_DEST")
        every = sorted(set().union(*partitions.values())) if partitions else []
        if every:
            return pm.span_predicate(every, "DBT_INTERNAL_DEST")
    return "true"


def _rows_in(run: ModelRun, where: str) -> int:
    """The target's rows that meet ``where`` (over ``DBT_INTERNAL_DEST``)."""
    found = run.services.run(
        f"select count(*) from {run.relation} as DBT_INTERNAL_DEST where {where}"
    )
    return int(found[0][0])


def _any_key_held(run: ModelRun, rows_sql: str, where: str) -> bool:
    """Whether the target's rows that meet ``where`` hold a key of the group's rows."""
    on = key_join(run.config.unique_key, "DBT_INTERNAL_DEST", "DBT_INTERNAL_SOURCE")
    found = run.services.run(
        f"select exists (select 1 from {rows_sql} as DBT_INTERNAL_SOURCE where exists"
        f" (select 1 from {run.relation} as DBT_INTERNAL_DEST where {on} and {where}))"
    )
    return bool(found[0][0])


def _inject_group_faults(
    run: ModelRun, session: Session, start: int, end: int, first: bool
) -> None:
    """The faults planned for the batches of a group loaded at once (its first try only)."""
    side = run.loop.side
    if first and side is not None:
        for index in range(start, end + 1):
            inject_fault(run, session, index, side, run.services.state.table(PROBE))


def _finish_group(
    run: ModelRun, touched: dict[str, str], statistics: dict[str | None, tuple] | None = None
) -> None:
    """The state of a group loaded at once, after its batches' rows: its partitions, each
    with its batch's load (``touched``), in one GROUP BY unless the group's check counted
    them (``statistics``), then the held state writes."""
    pm = run.services.partitions
    with run.phase("state"):
        if touched and pm is not None:
            pm.refresh_statistics(run.relation, list(touched), load_id=touched, found=statistics)
        _flush(run.services)


def _per_window(run: ModelRun, session: Session, windows: list[Interval]) -> UnitFigures:
    """Rows and newest event time of the target in each window (by its start), in one
    GROUP BY of the windows' range by batch unit."""
    column = quote_identifier(run.config.event_time or "")
    hull = Interval(windows[0].start, windows[-1].end)
    unit = run.config.batch_size or "day"
    found = unit_figures(
        session.execute,
        run.relation,
        column,
        run.services.event_time_type,
        hull,
        unit,
        newest=True,
    )
    return _by_window(found, windows)


def _unit_windows(units: Collection[datetime], windows: list[Interval]) -> dict[datetime, datetime]:
    """The window start of each unit start that lies in one of the windows.

    Windows are whole units but for the first one's start and the last one's end (the
    previous run's and this run's "now"), so each unit lies in one window; of the units
    before the first window's start only the one holding it belongs to it.
    """
    starts = [w.start for w in windows]
    first_unit = max((u for u in units if u <= starts[0]), default=None)
    found: dict[datetime, datetime] = {}
    for unit_start in units:
        if unit_start >= windows[-1].end:
            continue
        index = bisect_right(starts, unit_start) - 1
        if index < 0 and unit_start != first_unit:
            continue
        found[unit_start] = starts[max(index, 0)]
    return found


def _by_window(per_unit: UnitFigures, windows: list[Interval]) -> UnitFigures:
    """Figures per unit start summed per window start (rows added, the newest kept)."""
    found: UnitFigures = {}
    for unit_start, start in _unit_windows(list(per_unit), windows).items():
        rows, newest = per_unit[unit_start]
        total, latest = found.get(start, (0, None))
        found[start] = (total + rows, max(filter(None, (latest, newest)), default=None))
    return found


def _rows_by_window(counts: dict[datetime, int], windows: list[Interval]) -> dict[datetime, int]:
    """Census counts (per unit start) summed per window start."""
    found = _by_window({u: (n, None) for u, n in counts.items()}, windows)
    return {start: rows for start, (rows, _) in found.items()}


def _newest_outside(run: ModelRun, session: Session, where: str) -> datetime | None:
    column = quote_identifier(run.config.event_time or "")
    found = session.execute(f"select max({column}) from {run.relation} where not ({where})")
    return as_naive(found[0][0])


def _finish_at_once(run: ModelRun, batch: BatchResult, touched: dict[str, str]) -> None:
    """A batch of a group loaded at once: its watermark, state rows and the empty windows
    before the next batch (what finish_batch does, without asking the target again); its
    partition goes to ``touched`` (key: load id), whose statistics the group refreshes
    once."""
    services = run.services
    pm = services.partitions
    window = batch.window
    assert window is not None
    keys: list[str] = []
    if pm is not None and pm.spec.is_time and batch.rows_inserted + batch.rows_deleted:
        keys = [partition_key(window.start, pm.spec.granularity or "day")]
        touched.update(dict.fromkeys(keys, batch.load_id))
    batch.partitions_touched, batch.keys = len(keys), keys
    if not batch.rows_deleted and batch.batch_max is not None:
        run.watermark_after = max(filter(None, (run.watermark_after, batch.batch_max)))
    batch.watermark_after = run.watermark_after
    _record_load(run, batch, run.relation, _is_last(run))


def _batch_body(
    run: ModelRun, session: Session, index: int, window: Interval | None, first: bool
) -> None:
    loop: _Loop = run.loop
    with batch_scope(run, index, window):
        if first and loop.side is not None:
            inject_fault(run, session, index, loop.side, run.services.state.table(PROBE))
        # The first batch's statements go to dbt's debug log (the others are the same
        # templates with other bounds; logging each would cost more than the SQL).
        logged = _Logged(session, run) if index == 0 and first else session
        load_batch(run, logged, loop.batch_templates(), loop.stage, window)


def _attempt_logged(
    run: ModelRun,
    session: Session,
    body: Callable[[bool], None],
    what: str,
    point: Savepoint | None = None,
) -> None:
    """``recovery.attempt``, and on a failure for good, what stayed committed."""
    try:
        attempt(run, session, body, what, point)
    except RunStopped:
        raise
    except KeyboardInterrupt:
        _stop(run, "interrupted")
    except DbtRuntimeError as e:
        if interrupted() or "INTERRUPT" in str(e):
            _stop(run, "SIGTERM" if interrupted() else "interrupted", e)
        raise


class RunStopped(DbtRuntimeError):
    """The run was stopped (SIGTERM, Ctrl-C); the message says what committed."""


def _stop(run: ModelRun, why: str, cause: BaseException | None = None) -> None:
    run.interrupted = why
    note = stopped_note(run, why)
    events.fire(
        "warning",
        f"{note} {run.log_context()}",
        run.event_fields(run.in_flight, event="stopped", why=why),
    )
    raise RunStopped(note) from cause


def _what(run: ModelRun) -> str:
    """The open group in a log line: from its first batch on."""
    index = run.loop.group_start if run.loop is not None else 0
    batches = run.plan.batches
    if not batches:
        return "the run's last commit"
    window = batches[index]
    where = f" [{window.start}, ...)" if window is not None else ""
    return f"the transaction from batch {index + 1} of {len(batches)}{where}"


class _Logged:
    """A session that logs each statement at debug level, as dbt logs its own."""

    def __init__(self, session: Session, run: ModelRun) -> None:
        self._session = session
        self._run = run

    def execute(self, sql: str) -> list[tuple]:
        logger.debug(f"On {self._run.config.model}: {sql.strip()}")
        return self._session.execute(sql)

    def commit(self) -> None:
        self._session.commit()

    def rollback(self) -> None:
        self._session.rollback()

    def journal(self) -> Journal:
        return self._session.journal()

    def replay(self, statements: Journal) -> None:
        self._session.replay(statements)


def window_literals(window: Interval, data_type: str | None) -> tuple[str, str]:
    """A window's bounds as literals of the event_time column's type."""
    return time_literal(window.start, data_type), time_literal(window.end, data_type)


def window_filter(run: ModelRun, literals: tuple[str, str]) -> str:
    """``event_time`` within a window ``[start, end)`` given as literals: the rows a batch
    replaces, or the rows of an unstaged batch in the target."""
    column = quote_identifier(run.config.event_time or "")
    return f"{column} >= {literals[0]} and {column} < {literals[1]}"


def load_batch(
    run: ModelRun,
    session: Session,
    templates: BatchTemplates,
    stage: str,
    window: Interval | None,
) -> None:
    """One batch in the open transaction: stage, inspect, strategy steps, checks, state."""
    literals = window_literals(window, run.services.event_time_type) if window else None
    model_sql = (
        substitute_window(run.compiled_code, window.start, window.end)
        if window
        else run.compiled_code
    )
    if "direct" in templates.variants:
        assert window is not None and literals is not None
        _load_direct(run, session, templates.variants["direct"], window, literals, model_sql)
        return
    assert templates.stage is not None
    with run.phase("stage"):
        session.execute(fill_template(templates.stage, literals, model_sql=model_sql))
    with run.phase("plan"):
        facts = inspect_batch(run, stage, target_exists=True, window=window)
    if not facts.skip_dml:
        steps = templates.variants.get(facts.variant_key)
        if steps is None:
            raise DbtRuntimeError(
                f"sqlflow: no batch template for strategy {facts.variant_key!r} of"
                f" '{run.config.model}' (rendered: {sorted(templates.variants)})."
                " This is a bug in dbt-sqlflow; please report it."
            )
        with run.phase("dml"):
            run_steps(
                session,
                steps,
                literals,
                run,
                target_predicate=facts.target_predicate or "true",
                overwrite_predicate=facts.overwrite_predicate or "false",
            )
        if get_strategy(facts.strategy).change_feed:
            _record_feed(run, stage)
    finish_batch(run, stage, run.relation)


def run_steps(
    session: Session,
    steps: Sequence[Mapping[str, str]],
    literals: tuple[str, str] | None,
    counted: ModelRun | None,
    **values: str,
) -> None:
    """Run a strategy's steps for one window (``values``: the templates' other values): a
    step with a ``when`` query only if it returns true; each step's row count (or, for a
    step counting several roles, each column of its one row) goes to the batch in flight
    of ``counted`` (None: the caller counts the rows itself)."""
    for step in steps:
        if "when" in step:
            holds = session.execute(fill_template(step["when"], literals, **values))
            if not (holds and holds[0][0]):
                continue
        rows = session.execute(fill_template(step["sql"], literals, **values))
        if counted is None:
            continue
        roles = step["count"].split(",")
        if len(roles) == 1:
            count_rows(counted, roles[0], rows)
            continue
        # One query counted several kinds: a row with a column per role.
        for role, value in zip(roles, rows[0] if rows else [None] * len(roles), strict=True):
            count_rows(counted, role, [(value or 0,)])


def _record_feed(run: ModelRun, stage: str) -> None:
    """The cdc batch's ledger writes (in its transaction), then its temporary tables go."""
    config, spec, ledger = run.config, run.config.cdc, run.cdc_ledger
    assert spec is not None and ledger is not None
    changes, events = cdc_tables(run.id)
    state = run.services.state
    state.record_cdc_batch(
        ledger,
        keys=[quote_identifier(k) for k in config.unique_key],
        stage=stage,
        changes=changes,
        events=events,
        stored_as=spec.stored_as,
        now=run.services.now,
        retention=spec.tombstone_retention,
        valid_from=quote_identifier(cdc.VALID_FROM),
    )
    run.services.run(f"drop table if exists {changes}")
    run.services.run(f"drop table if exists {events}")


def _load_direct(
    run: ModelRun,
    session: Session,
    steps: list[dict[str, str]],
    window: Interval,
    literals: tuple[str, str],
    model_sql: str,
) -> None:
    """One batch written from the model's query without staging."""
    where = window_filter(run, literals)
    static = static_strategy(run.config)
    run.start_batch(static.name if static else "append", window)
    with run.phase("dml"):
        run_steps(
            session, steps, literals, run, model_sql=model_sql, overwrite_predicate=f"({where})"
        )
    finish_batch(run, run.relation, run.relation, batch_filter=where)


def finish_run(run: ModelRun, session: Session, on_commit: CommitHook) -> None:
    """Commit the run's open transaction: its last group of batches, or (a run without
    batches) the empty windows, recorded here. A transient failure (of the commit, say)
    rolls it back and does it again: the group's batches, and what dbt ran around them
    (hooks)."""
    loop: _Loop | None = run.loop
    journal = session.journal()
    # dbt's statements in this transaction after the last batch (its post-hooks); when
    # the open group starts at the first batch, the journal also holds what came before.
    prefix = loop.prefix if loop is not None and loop.group_start == 0 else []
    suffix = journal[len(prefix) :] if loop is not None else journal

    def body(first: bool) -> None:
        if not first:
            if loop is not None:
                _group_body(run, session, first=False, to_end=True)
            session.replay(suffix)
        elif loop is not None and loop.side is not None:
            faults_at = len(run.plan.batches)
            inject_fault(run, session, faults_at, loop.side, run.services.state.table(PROBE))
        if not run.uncommitted and run.in_flight is None:
            record_empty_until(run, None, run.relation)
            _flush(run.services)
        with run.phase("commit"):
            commit_group(run, session)

    if loop is None and run.in_flight is not None:
        body(True)  # a build: its SQL is not in the journal, so it is not retried
    else:
        # A retry loads the open group again: rewind to where it began.
        point = loop.group_point if loop is not None else None
        _attempt_logged(run, session, body, f"{_what(run)} (commit)", point)
    if run.uncommitted or run.in_flight is not None:
        _committed(run, on_commit)
        record_phase_times(run, session)
        return
    run.commits += 1
    run.commit_empty(time.time())
    if run.empty_last_commit:
        run_log(
            run,
            f"{run.empty_last_commit} empty window(s) recorded as loaded",
            run.results[-1].load_id,
            event="empty_windows",
            empty_windows=run.empty_last_commit,
        )


def build_table(run: ModelRun, session: Session, build_sql: str, intermediate: str) -> None:
    """A build (first run or full refresh of a model without windows): the table created
    from the model's SQL as ``intermediate``, its rows counted and its keys checked."""
    run.begin_batch(0, None)
    run.start_batch("full_refresh", None)
    with run.phase("dml"):
        session.execute(build_sql)
    # The rows the table holds once its keys are checked (equal rows tied by dedupe_by
    # are collapsed then).
    with run.phase("plan"):
        facts = inspect_batch(run, intermediate, target_exists=False, window=None)
    run.add_count(CountRole.INSERTED, facts.rows)


def reset_state(run: ModelRun) -> None:
    """Forget the model's intervals and partitions (its table is being rebuilt), and
    empty its cdc ledger."""
    run.services.state.forget_model(run.config.model, run.relation)
    if run.cdc_ledger is not None:
        keys = [quote_identifier(k) for k in run.config.unique_key]
        feed = _cdc_feed_sql(run.config, run.compiled_code)
        run.services.state.create_cdc_ledger(run.cdc_ledger, keys, feed, replace=True)
    if run.services.partitions is not None:
        run.services.partitions.known_keys = set()


def record_phase_times(run: ModelRun, session: Session) -> None:
    """Write the ``state`` and ``commit`` seconds of the run's committed batches into their
    ``loads`` rows, in one UPDATE and its own transaction after the last commit (a load row
    is written before its batch's state phase ends and before its commit); then, in the
    same transaction, bound the model's history (:func:`compact_history`).

    Not on a DuckLake: there an UPDATE is a delete, and a delete from ``loads`` makes every
    other process's load that inserted into it meanwhile fail to commit (and redo its
    group); the two columns stay NULL there (the phases are in ``adapter_response``, the
    log and the metrics)."""
    timed = [r for r in run.results if r.phases]
    if not timed:
        return
    times = {r.load_id: (_phase(r, "state"), _phase(r, "commit")) for r in timed}
    since = datetime.fromtimestamp(timed[0].started, UTC).replace(tzinfo=None)

    def body(first: bool) -> None:
        if not run.services.lake:
            run.services.state.record_phase_times(times, since=since)
        compact_history(run)
        _flush(run.services)
        session.commit()

    _attempt_logged(run, session, body, "the phase times of its loads")


def compact_history(run: ModelRun) -> None:
    """Fold the model's loads beyond its newest ``load_history`` into a summary row, once
    more than a tenth above it (so a full history costs a compaction every tenth of it,
    and every other run one count of the model's loads)."""
    keep = run.services.load_history
    if keep <= 0:
        return
    folded = run.services.state.compact_loads(
        run.config.model, keep, slack=max(1, keep // 10), now=utc_now()
    )
    if folded:
        run_log(
            run,
            f"folded its {folded} oldest loads into sqlflow_meta.load_summaries"
            f" (keeps the newest {keep})",
            event="history_compacted",
            loads_folded=folded,
        )


def summary_line(run: ModelRun, message: str) -> str:
    """The run's summary: its batches, empty windows and transactions, then ``message``
    (the response's). Empty windows are loads too (a row each in ``loads``), not
    batches."""
    loaded = run.loaded_batches
    empty = f" (+{run.empty_done} empty window(s))" if run.empty_done else ""
    commits = f" in {run.commits} transaction(s)" if run.commits != loaded else ""
    return f"{run.config.model} {loaded} batch(es){empty}{commits}: {message}"


def close_run(run: ModelRun) -> SqlflowAdapterResponse:
    """The run's ``adapter_response``; the ``summary`` event (an info line when the run had
    several loads)."""
    response = run.response()
    last = run.results[-1] if run.results else None
    events.fire(
        "info" if len(run.results) > 1 else "debug",
        f"{summary_line(run, response._message)} {run.log_context(last.load_id if last else None)}",
        run.event_fields(
            event="summary",
            load_id=last.load_id if last else None,
            loads=len(run.results),
            loaded_batches=run.loaded_batches,
            empty_windows=run.empty_done,
            commits=run.commits,
            strategy=response.strategy,
            rows_inserted=response.rows_inserted,
            rows_updated=response.rows_updated,
            rows_deleted=response.rows_deleted,
            seconds=round(sum(r.seconds for r in run.results if r.phases), 6),
            phase_seconds=response.phase_seconds or {},
        ),
    )
    run.end_span(response)
    return response


def log_commit(run: ModelRun, loaded: list[BatchResult], quiet: bool) -> None:
    """Log the batches one statement loaded and committed: one batch, or a group loaded at
    once as one ``batch_end`` (its first batch's load id, every load id in ``load_ids``,
    the group's window and rows). At debug level when ``quiet``: one info line per batch
    would flood a 365-day backfill's output."""
    first, last = loaded[0], loaded[-1]
    if run.empty_last_commit:
        events.fire(
            "debug",
            f"{run.config.model} {run.empty_last_commit} empty window(s) recorded as loaded"
            f" {run.log_context(last.load_id)}",
            run.event_fields(last, event="empty_windows", empty_windows=run.empty_last_commit),
        )
    inserted = sum(b.rows_inserted for b in loaded)
    updated = sum(b.rows_updated for b in loaded)
    deleted = sum(b.rows_deleted for b in loaded)
    window = None
    if first.window is not None and last.window is not None:
        window = Interval(first.window.start, last.window.end)
    count = f" {len(loaded)} batches in one statement" if len(loaded) > 1 else ""
    bounds = f" [{window.start}, {window.end})" if window else ""
    message = (
        f"{first.strategy}{bounds}{count}: {inserted:,} inserted,"
        f" {updated:,} updated, {deleted:,} deleted"
    )
    fields = run.event_fields(first, event="batch_end", status=first.status)
    if len(loaded) > 1:
        # The group's one statement counts its phases in its first batch (the others have
        # none), and such a group has no quality check: its status is the first's.
        fields.update(
            load_ids=[b.load_id for b in loaded],
            batch_count=len(loaded),
            window_start=iso_or_none(window.start if window else None),
            window_end=iso_or_none(window.end if window else None),
            rows_inserted=inserted,
            rows_updated=updated,
            rows_deleted=deleted,
            seconds=round(max(b.seconds for b in loaded), 6),
        )
    events.fire(
        "debug" if quiet else "info",
        f"{run.config.model} {message} {run.log_context(first.load_id)}",
        fields,
    )


# -- inspecting a staged batch -------------------------------------------------------------


@dataclass(frozen=True)
class InspectedBatch:
    """What the loop learned of a staged batch and the strategy step it chose."""

    strategy: str
    plain_insert: bool
    rows: int
    target_predicate: str | None
    overwrite_predicate: str | None
    skip_dml: bool

    @property
    def variant_key(self) -> str:
        """The batch templates' key of the chosen variant."""
        return Variant(self.strategy, self.plain_insert).key


def inspect_batch(
    run: ModelRun, staged: str, *, target_exists: bool, window: Interval | None
) -> InspectedBatch:
    """Check a staged batch and choose its strategy.

    Refuses null or duplicated keys (unless ``dedupe_by`` made them unique) and keys
    whose rows tied for last by ``dedupe_by`` differ (rows equal in every column are
    kept once), measures how many of the batch's keys exist in the target, and decides
    ``auto``.

    Raises:
        DbtRuntimeError: naming the model, the key columns and up to five bad keys.
    """
    config, execute = run.config, run.services.run
    rows, null_rows, batch_max = execute(_batch_stats_sql(config, staged))[0]
    rows = int(rows)
    duplicates = 0
    if config.cdc is not None:
        duplicates = _check_feed(run, staged, rows)
        rows -= duplicates
    elif is_keyed(config) or config.dedupe_by:
        # A strategy that does not write by key leaves null keys alone, as without dedupe_by.
        rows -= _check_keys(run, staged, rows, int(null_rows) if is_keyed(config) else 0)
    current = run.in_flight or run.start_batch(config.strategy, window)
    current.rows_ignored += duplicates
    target_predicate, overwrite_predicate = _predicates(run, staged, window)
    matched: int | None = None
    if target_exists and needs_matched_keys(config) and rows:
        matched = _matched_keys(run, staged, target_predicate, window)
    choice = choose_strategy(
        config, BatchFacts(rows=rows, matched_keys=matched, target_exists=target_exists)
    )
    if run.mode == INCREMENTAL or config.windowed:
        current.strategy = choice.strategy
    current.matched = matched or 0
    current.batch_rows = rows
    current.batch_max = as_naive(batch_max)
    if config.strategy == AUTO and target_exists:
        run_log(
            run,
            f"strategy auto -> {choice.strategy} ({choice.reason})",
            event="strategy",
            strategy=choice.strategy,
        )
    # An empty batch changes nothing, except where absence is the change: the rows of a
    # window that insert_overwrite replaces, the deletions a snapshot records.
    chosen = get_strategy(choice.strategy)
    writes = chosen.writes_when_empty and (bool(overwrite_predicate) or not chosen.replaces_window)
    return InspectedBatch(
        strategy=choice.strategy,
        plain_insert=choice.plain_insert,
        rows=rows,
        target_predicate=target_predicate,
        overwrite_predicate=overwrite_predicate,
        skip_dml=rows == 0 and not writes,
    )


def _check_feed(run: ModelRun, staged: str, rows: int) -> int:
    """Refuse a batch of change events with null keys, null sequences, operation values
    the config does not name, or different events of one key at one sequence; keep one of
    each set of identical events. Returns the events removed (duplicates).

    Raises:
        DbtRuntimeError: naming the model, the problem, up to five keys and the fix.
    """
    config, execute = run.config, run.services.run
    spec = config.cdc
    assert spec is not None
    keys = [quote_identifier(k) for k in config.unique_key]
    key_list = ", ".join(keys)
    events = "sqlflow_op is distinct from 'truncate'"
    # count(case ...) rather than FILTER: DuckDB evaluates it faster (~20 % of the query).
    null_keys, null_seqs, unknown_ops, twice = execute(
        f"select count(case when {events} and ({_null_filter(config)}) then 1 end),"
        f" count(case when {cdc.sequence_null_sql(spec)} then 1 end),"
        f" count(case when {cdc.UNKNOWN_OP_SQL} then 1 end),"
        f" count(*) - count(distinct ({key_list}, sqlflow_seq, sqlflow_rank))"
        f" from {staged}"
    )[0]
    seq_samples: list[tuple[Any, ...]] = []
    op_samples: list[tuple[Any, int]] = []
    conflicts: list[tuple[Any, ...]] = []
    conflict_keys = 0
    if null_seqs:
        seq_samples = [
            tuple(r)
            for r in execute(
                f"select distinct {key_list} from {staged} where {cdc.sequence_null_sql(spec)}"
                f" order by all limit {MAX_SAMPLES}"
            )
        ]
    if unknown_ops:
        op_samples = [
            (r[0], int(r[1]))
            for r in execute(
                f"select {cdc.UNKNOWN_OP_VALUE_SQL}, count(*) from {staged}"
                f" where {cdc.UNKNOWN_OP_SQL}"
                f" group by 1 order by 2 desc, 1 limit {MAX_SAMPLES}"
            )
        ]
    if twice:
        found = execute(
            f"select count(*) over (), {key_list}, sqlflow_seq from {staged} as sqlflow_row"
            f" where {events} group by {key_list}, sqlflow_seq, sqlflow_rank"
            f" having count(distinct sqlflow_row) > 1 order by all limit {MAX_SAMPLES}"
        )
        conflict_keys = int(found[0][0]) if found else 0
        conflicts = [tuple(r[1:]) for r in found]
    message = cdc.feed_problems(
        config.model,
        config.unique_key,
        spec,
        null_keys=int(null_keys),
        null_sequences=seq_samples,
        null_sequence_rows=int(null_seqs),
        unknown_operations=op_samples,
        conflicts=conflicts,
        conflict_keys=conflict_keys,
    )
    if message:
        raise DbtRuntimeError(message)
    if not twice:
        return 0
    return _collapse_equal_rows(
        execute, staged, [*keys, "sqlflow_seq", "sqlflow_rank"], "false", rows
    )


def _null_filter(config: SqlflowConfig) -> str:
    keys = [quote_identifier(k) for k in config.unique_key]
    return " or ".join(f"{k} is null" for k in keys) or "false"


def _batch_stats_sql(config: SqlflowConfig, staged: str) -> str:
    newest = f"max({quote_identifier(config.event_time)})" if config.event_time else "null"
    nulls = _null_filter(config)
    return f"select count(*), count(*) filter (where {nulls}), {newest} from {staged}"


def _check_keys(run: ModelRun, staged: str, rows: int, null_rows: int) -> int:
    """Refuse a batch with null or duplicated keys; collapse the rows tied for last by
    dedupe_by that are equal in every column. Returns the rows removed.

    With dedupe_by the batch's SELECT keeps every row tied for last, so a key found
    twice here is a tie: collapsed when its rows are equal, refused when they differ.
    Without ties (the usual case) this costs the one duplicate count a batch without
    dedupe_by pays too; the tied keys are looked at only when some were found.
    """
    config, execute = run.config, run.services.run
    keys = [quote_identifier(k) for k in config.unique_key]
    null_filter = _null_filter(config)
    duplicates = count_duplicate_keys(execute, staged, keys, null_filter, rows)
    tied, removed = 0, 0
    tied_samples: list[tuple[Any, ...]] = []
    if duplicates and config.dedupe_by:
        tied, tied_samples = _tied_keys(execute, staged, keys, null_filter)
        if not (tied or null_rows):
            removed = _collapse_equal_rows(execute, staged, keys, null_filter, rows)
        duplicates = 0
    if not (null_rows or duplicates or tied):
        return removed
    samples: list[tuple[Any, ...]] = []
    if duplicates:
        key_list = ", ".join(keys)
        found = execute(
            f"select {key_list}, count(*) as n from {staged} where not ({null_filter})"
            f" group by all having count(*) > 1 order by n desc, {key_list} limit 5"
        )
        samples = [tuple(r) for r in found]
    raise_key_problems(
        config.model,
        config.unique_key,
        null_key_rows=null_rows,
        duplicate_keys=duplicates,
        samples=samples,
        tied_keys=tied,
        tied_samples=tied_samples,
        dedupe_by=config.dedupe_by,
        redactor=run.services.redactor,
    )
    return removed


def _tied_keys(
    execute: Executor, staged: str, keys: list[str], null_filter: str
) -> tuple[int, list[tuple[Any, ...]]]:
    """How many keys of ``staged`` hold different rows, and up to five of them with their
    row counts (the rows are compared whole, as a struct of the row)."""
    key_list = ", ".join(keys)
    found = execute(
        f"select count(*) over (), {key_list}, count(*) as n from {staged} as sqlflow_row"
        f" where not ({null_filter}) group by {key_list}"
        " having count(*) > 1 and count(distinct sqlflow_row) > 1"
        f" order by n desc, {key_list} limit {MAX_SAMPLES}"
    )
    return (int(found[0][0]) if found else 0), [tuple(r[1:]) for r in found]


def _collapse_equal_rows(
    execute: Executor, staged: str, keys: list[str], null_filter: str, rows: int
) -> int:
    """Keep one row of each key found more than once (its rows are all equal); returns the
    rows deleted."""
    key_list = ", ".join(keys)
    execute(
        f"delete from {staged} where rowid in (select rowid from {staged}"
        f" where not ({null_filter})"
        f" qualify row_number() over (partition by {key_list} order by rowid) > 1)"
    )
    # Counted by a read: a BufferedWrites executor holds the DELETE back until one (so it
    # runs before the strategy's steps) and returns no count for it.
    return rows - int(execute(f"select count(*) from {staged}")[0][0])


def _matched_keys(
    run: ModelRun, staged: str, target_predicate: str | None, window: Interval | None
) -> int:
    """How many of the batch's keys the MERGE would match in the target."""
    config = run.config
    on = key_join(config.unique_key, "DBT_INTERNAL_DEST", "DBT_INTERNAL_SOURCE")
    if target_predicate:
        on += f" and {target_predicate}"
    # The MERGE matches only under its incremental_predicates too (with the batch's
    # window bounds where they use sqlflow_window_start()/_end()).
    for predicate in config.incremental_predicates:
        if window is not None:
            predicate = window_literals_in(
                predicate, window_literals(window, run.services.event_time_type)
            )
        on += f" and ({predicate})"
    return int(
        run.services.run(
            f"select count(*) from {staged} as DBT_INTERNAL_SOURCE where exists"
            f" (select 1 from {run.relation} as DBT_INTERNAL_DEST where {on})"
        )[0][0]
    )


def _predicates(
    run: ModelRun, staged: str, window: Interval | None
) -> tuple[str | None, str | None]:
    """The batch's partition restrictions on the target.

    Returns ``(target_predicate, overwrite_predicate)``: the first restricts the
    target-side scans of merge and delete+insert to the batch's partition range (on the
    alias ``DBT_INTERNAL_DEST``); the second selects the rows insert_overwrite replaces:
    the window on event_time, or the partitions present in the batch.
    """
    config, services = run.config, run.services
    pm = services.partitions
    overwrite = None
    if window is not None and config.event_time is not None:
        overwrite = window_filter(run, window_literals(window, services.event_time_type))
    if pm is None or run.in_flight is None:
        return None, overwrite
    if window is not None and pm.spec.is_time and pm.spec.field == config.event_time:
        # The partitions the window lies in, whole: a key's row stays in its partition,
        # not in its window (month partitions hold a day window's keys of other days).
        return pm.span_predicate(pm.partition_keys(window), "DBT_INTERNAL_DEST"), overwrite
    keys = touched_partitions(run, staged, run.relation)
    run.in_flight.keys = keys
    if overwrite is None:
        overwrite = pm.keys_predicate(keys)
    if not pm.spec.is_time or not keys:
        return None, overwrite
    return pm.span_predicate(keys, "DBT_INTERNAL_DEST"), overwrite


# -- counting ------------------------------------------------------------------------------


def count_rows(run: ModelRun, role: str, result: list[tuple]) -> int:
    """Add a DML statement's DuckDB count (its one-row result) to the batch's figures.

    Raises:
        DbtRuntimeError: when a merge's keyed delete removed more rows than it matched
            keys (the target's key is not unique; the batch rolls back).
    """
    count = 0
    if result and len(result[0]) == 1 and isinstance(result[0][0], int):
        count = int(result[0][0])
    kind = CountRole(role)
    if kind is CountRole.NONE:
        return count
    matched = run.in_flight.matched if run.in_flight else 0
    if kind is CountRole.MERGED:
        # Each batch row without a match is inserted once; the rest of the MERGE's count
        # are updated target rows (more than the matched keys when the target holds a key
        # twice: MERGE updates every matching row).
        rows = run.in_flight.batch_rows if run.in_flight else None
        inserted = max(rows - matched, 0) if rows is not None else max(count - matched, 0)
        inserted = min(inserted, count)
        run.add_count(CountRole.UPDATED, count - inserted)
        run.add_count(CountRole.INSERTED, inserted)
    elif kind is CountRole.REPLACED:
        config = run.config
        problem = target_duplicates(config.model, config.unique_key, run.relation, matched, count)
        if problem:
            raise DbtRuntimeError(problem)
        run.add_count(CountRole.UPDATED, count)
    elif kind is CountRole.UPSERTED:
        run.add_count(CountRole.INSERTED, count - matched)
    else:
        run.add_count(kind, count)
    return count


# -- state and checks of a finished batch --------------------------------------------------


def touched_partitions(run: ModelRun, batch_relation: str, target: str) -> list[str]:
    """Register and return the partition keys the batch in flight writes."""
    services, batch = run.services, run.in_flight
    pm = services.partitions
    if pm is None or batch is None:
        return []
    if batch.keys is not None:
        return batch.keys
    gran = pm.spec.granularity or "day"
    if batch.window is not None and pm.spec.is_time and pm.spec.field == run.config.event_time:
        # refresh_statistics records every key of the window up to now (empty ones with
        # 0 rows): the days of the batch that lie in the future are not partitions yet,
        # unless rows already sit there.
        keys = pm.partition_keys(loaded_part(batch.window, services.now) or batch.window)
        later = [k for k in pm.partition_keys(batch.window) if k not in keys]
        if later:
            lo = partition_range(later[0], gran).start
            found = services.run(
                f"select distinct {pm.bucket_expr()} from {target}"
                f" where {pm.predicate(Interval(lo, batch.window.end))}"
            )
            present = {partition_key(b[0], gran) for b in found if b[0]}
            keys += [k for k in later if k in present]
        return keys
    buckets = services.run(f"select distinct {pm.bucket_expr()} from {batch_relation}")
    if pm.spec.is_time:
        return sorted(partition_key(b[0], gran) for b in buckets if b[0] is not None)
    return [str(b[0]) for b in buckets]


def finish_batch(
    run: ModelRun, batch_relation: str, target: str, batch_filter: str | None = None
) -> list[CheckOutcome]:
    """The state writes and quality checks of the batch in flight, before its commit.

    ``batch_filter`` selects the batch's rows in ``batch_relation`` when that is the
    target itself (a batch written without staging).

    Raises:
        DbtRuntimeError: when a check of severity ``error`` fails (the batch rolls back).
    """
    batch = run.in_flight
    assert batch is not None
    with run.phase("state"):
        _partition_state(run, batch, batch_relation, target, batch_filter)
    is_last = _is_last(run)
    with run.phase("checks"):
        outcomes = _run_checks(run, batch, batch_relation, target, batch_filter, is_last)
    with run.phase("state"):
        _record_load(run, batch, target, is_last)
        _flush(run.services)
    return outcomes


def _is_last(run: ModelRun) -> bool:
    """Whether the batch in flight is the run's last planned batch."""
    return run.batches_done + 1 >= len(run.plan.batches)


def _record_load(run: ModelRun, batch: BatchResult, target: str, is_last: bool) -> None:
    """The state rows of a loaded batch, and those of the empty windows up to the next
    batch (all that are left after the last)."""
    _record_batch(run, batch, target)
    if run.plan.empty_windows:
        end = None if is_last or batch.window is None else batch.window.end
        record_empty_until(run, end, target)


def _partition_state(
    run: ModelRun,
    batch: BatchResult,
    batch_relation: str,
    target: str,
    batch_filter: str | None,
) -> None:
    """The batch's partitions (statistics refreshed), newest event time and watermark."""
    services = run.services
    keys = touched_partitions(run, batch_relation, target)
    if services.partitions is not None and keys:
        infos = services.partitions.refresh_statistics(target, keys, load_id=batch.load_id)
        if batch.batch_max is None and batch_filter is not None:
            # Unstaged batch on time partitions of event_time: its newest event time is the
            # newest of the partitions it replaced.
            newest = [parse_timestamp(p.max_value) for p in infos if p.max_value]
            batch.batch_max = max(newest) if newest else None
    elif batch_filter is not None and run.config.event_time is not None:
        # Unstaged batch without partitions: ask the target's window (pruned by min/max).
        column = quote_identifier(run.config.event_time)
        found = services.run(f"select max({column}) from {target} where {batch_filter}")
        batch.batch_max = as_naive(found[0][0])
    batch.partitions_touched = len(keys)
    batch.keys = keys
    _advance_watermark(run, batch, target)


def _advance_watermark(run: ModelRun, batch: BatchResult, target: str) -> None:
    config = run.config
    if config.event_time is not None and (batch.rows_deleted or batch.rows_updated):
        # A delete or an update can remove the newest row: ask the table.
        run.watermark_after = _newest(run.services.run, config, target)
    elif config.event_time is not None and batch.batch_max is not None:
        run.watermark_after = max(filter(None, (run.watermark_after, batch.batch_max)))
    batch.watermark_after = run.watermark_after


def _run_checks(
    run: ModelRun,
    batch: BatchResult,
    batch_relation: str,
    target: str,
    batch_filter: str | None,
    is_last: bool,
) -> list[CheckOutcome]:
    """The batch's quality checks; raises when one of severity ``error`` fails."""
    checks = run.services.checks
    if not is_last:
        # Freshness judges what the whole run leaves behind: an early batch of a backfill
        # holds old data by design.
        checks = [c for c in checks if c.kind != "freshness"]
    if not checks:
        return []
    pm = run.services.partitions

    def partition_check() -> list[str]:
        if pm is None:
            return []
        report = pm.validate_consistency(target)
        return [f"{p.kind} {p.partition_key}: {p.detail}" for p in report.problems]

    outcomes = quality.run_quality_checks(
        run.services.run,
        checks,
        batch_relation=batch_relation,
        target_relation=target,
        event_time=run.config.event_time,
        now=run.services.now,
        batch_filter=batch_filter,
        partition_check=partition_check,
        redactor=run.services.redactor,
    )
    batch.checks = outcomes
    warned = quality.failed_warnings(outcomes)
    _check_events(run, batch, outcomes, warned)
    if quality.failed_errors(outcomes):
        message = quality.format_failure(run.config.model, outcomes)
        raise DbtRuntimeError(message + _rollback_note(run, batch))
    if warned:
        _warn_or_error(run, batch, warned)
        batch.status = "warn"
    run.services.state.record_checks(batch.load_id, run.config.model, outcomes)
    return outcomes


def _rollback_note(run: ModelRun, batch: BatchResult) -> str:
    done = [r for r in run.results if r.window is not None]
    if batch.window is None:
        return ""
    group = [r.window for r in run.uncommitted if r.window is not None]
    if group:
        rolled = (
            f"the batches [{group[0].start}, {batch.window.end}) of its transaction"
            f" ({len(group) + 1} batches, commit_every={run.config.commit_every.describe()})"
        )
    elif done:
        rolled = f"the batch [{batch.window.start}, {batch.window.end})"
    else:
        return ""
    kept = (
        f"the {len(done)} batch(es) before it were committed and stay loaded"
        if done
        else "no batch of this run was committed"
    )
    return f"\nThe rolled-back load was {rolled}; {kept}."


def _warn_or_error(run: ModelRun, batch: BatchResult, warned: list[CheckOutcome]) -> None:
    """Each failed ``warn`` check as a dbt warning (AdapterEventWarning); under
    ``--warn-error`` / ``--warn-error-options`` that dbt turns into an error, the batch
    fails and rolls back like one whose ``error`` check failed.

    Raises:
        DbtRuntimeError: the escalated checks, in the error checks' words.
    """
    from dataclasses import replace

    from dbt_common.events.functions import warn_or_error
    from dbt_common.exceptions import EventCompilationError

    model = run.config.model
    for outcome in warned:
        text = f"{quality.format_warning(model, outcome)} {run.log_context()}"
        event = events.adapter_event("warning", text, _check_fields(run, batch, outcome))
        try:
            warn_or_error(event)
        except EventCompilationError:
            escalated = [replace(o, severity="error") for o in warned]
            message = quality.format_failure(model, escalated)
            raise DbtRuntimeError(
                f"{message}\n(checks of severity 'warn', failing under dbt's --warn-error)"
                + _rollback_note(run, batch)
            ) from None


def _check_fields(run: ModelRun, batch: BatchResult, outcome: CheckOutcome) -> dict[str, Any]:
    return run.event_fields(
        batch,
        event="check",
        check=outcome.check_name,
        severity=outcome.severity,
        check_status=outcome.status,
        failing_rows=outcome.failing_rows,
    )


def _check_events(
    run: ModelRun, batch: BatchResult, outcomes: list[CheckOutcome], warned: list[CheckOutcome]
) -> None:
    """Debug events of a batch's checks: a ``check`` event per failed check of severity
    error (dbt's error output reports it too) and one ``checks`` event with every outcome
    (an event costs dbt ~0.1 ms: one per passing check and batch would add up in a long
    backfill). A failed ``warn`` check is a warning of its own (:func:`_warn_or_error`)."""
    for outcome in outcomes:
        if outcome.failed and outcome not in warned:
            events.fire(
                "debug",
                f"{run.config.model} check {outcome.check_name} ({outcome.severity}) failed:"
                f" {outcome.failing_rows} failing row(s) {run.log_context()}",
                _check_fields(run, batch, outcome),
            )
    passed = sum(1 for o in outcomes if not o.failed)
    events.fire(
        "debug",
        f"{run.config.model} {len(outcomes)} check(s), {passed} passed {run.log_context()}",
        run.event_fields(
            batch,
            event="checks",
            checks=[
                {
                    "check": o.check_name,
                    "severity": o.severity,
                    "check_status": o.status,
                    "failing_rows": o.failing_rows,
                }
                for o in outcomes
            ],
        ),
    )


def record_empty_until(run: ModelRun, end: datetime | None, target: str) -> None:
    """Record the empty windows before ``end`` (all that are left for None) in the open
    transaction: they commit with the batch in flight and roll back with it, so a failed
    batch never leaves later windows marked loaded."""
    start = run.empty_done + len(run.pending_empty)
    static = static_strategy(run.config)
    for window in run.plan.empty_windows[start:]:
        if end is not None and window.start >= end:
            break
        result = run.new_result(static.name if static else "merge", window)
        _record_batch(run, result, target)
        run.pending_empty.append(result)


def _record_batch(run: ModelRun, batch: BatchResult, relation: str) -> None:
    """The state rows of a finished batch: its loaded interval (if windowed), its load."""
    services = run.services
    if batch.window is not None:
        loaded = loaded_part(batch.window, services.now)
        if loaded is not None:
            services.state.add_interval(
                run.config.model,
                relation,
                loaded,
                batch.load_id,
                replace=run.plan.overlaps_loaded(loaded),
            )
    services.state.record_load(_load_row(run, batch))


def _flush(services: RunServices) -> None:
    """Send the state writes held back by a ``BufferedWrites`` executor, if any."""
    flush = getattr(services.run, "flush", None)
    if flush is not None:
        flush()


def _load_row(run: ModelRun, batch: BatchResult) -> LoadRow:
    """The ``loads`` row of a load. A timed batch takes the memory figures of the
    statements since the previous row (its plan, stage, DML, checks); the first row of a
    transaction takes the retries it was tried again after."""
    memory = run.services.memory
    peak, spilled = memory.take() if memory is not None and batch.phases else (None, None)
    retried, run.retrying = run.retrying, []
    return LoadRow(
        load_id=batch.load_id,
        invocation_id=run.invocation_id,
        model=run.config.model,
        relation=run.relation,
        strategy=batch.strategy,
        window_start=batch.window.start if batch.window else None,
        window_end=batch.window.end if batch.window else None,
        started_at=datetime.fromtimestamp(batch.started, UTC).replace(tzinfo=None),
        finished_at=utc_now(),
        status=batch.status,
        rows_inserted=batch.rows_inserted,
        rows_updated=batch.rows_updated,
        rows_deleted=batch.rows_deleted,
        partitions_touched=batch.partitions_touched,
        watermark_before=iso_or_none(batch.watermark_before),
        watermark_after=iso_or_none(batch.watermark_after),
        # state and commit are not over yet: record_phase_times writes them.
        **{f"{p}_seconds": _phase(batch, p) for p in ("plan", "stage", "dml", "checks")},
        peak_memory_bytes=peak,
        spilled_bytes=spilled,
        retries=len(retried),
        retry_reasons=",".join(retried) or None,
    )


def _phase(batch: BatchResult, name: str) -> float | None:
    """A phase's seconds: 0 for a phase the batch skipped, None for a load without
    timings (an empty window)."""
    return batch.phases.get(name, 0.0) if batch.phases else None


# -- logging -------------------------------------------------------------------------------


def run_log(run: ModelRun, message: str, load_id: str | None = None, **fields: Any) -> None:
    """An info event about the run: the text with the ids that join logs and metrics, and
    the run's fields (:meth:`ModelRun.event_fields`) plus ``fields``."""
    load_id = load_id or (run.in_flight.load_id if run.in_flight else None)
    events.fire(
        "info",
        f"{run.config.model} {message} {run.log_context(load_id)}",
        run.event_fields(load_id=load_id, **fields),
    )


def warn_window_time_zone(run: ModelRun) -> None:
    """Warn when the window macros meet a TIMESTAMPTZ event_time in a non-UTC session.

    The macros render TIMESTAMP literals in UTC; DuckDB compares them with a
    TIMESTAMPTZ column in the session's ``TimeZone``, so an upstream filter written with
    them would shift by the zone's offset and miss rows at the window's edges.
    """
    import re

    code = run.compiled_code
    marks = code.count(WINDOW_START_MARK) + code.count(WINDOW_END_MARK)
    if not marks or "TIME ZONE" not in normalize_time_type(run.services.event_time_type):
        return
    converted = re.findall(
        r"timezone\(\s*'utc'\s*,\s*timestamp\s*'[^']*'/\*sqlflow_window_(?:start|end)\*/",
        code,
        re.IGNORECASE,
    )
    if len(converted) == marks:
        return
    zone = str(run.services.run("select current_setting('TimeZone')")[0][0])
    if zone.upper() in ("UTC", "ETC/UTC", "GMT", "ETC/GMT", "Z"):
        return
    events.fire(
        "warning",
        f"{run.config.model}: reads its window with sqlflow_window_start()/"
        f"sqlflow_window_end() and has a TIMESTAMPTZ event_time, while DuckDB's TimeZone"
        f" is {zone}: compared with a TIMESTAMPTZ column, the window's TIMESTAMP literals"
        f" are read in {zone} and the window shifts (rows at its edges are missed). Set"
        " settings: {TimeZone: UTC} in the profile, or compare with"
        " timezone('UTC', {{ sqlflow_window_start() }})."
        f" {run.log_context()}",
        run.event_fields(event="warning", time_zone=zone),
    )
