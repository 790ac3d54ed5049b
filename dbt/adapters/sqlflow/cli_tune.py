"""``dbt-sqlflow tune [MODEL ...]``: recommendations from sqlflow's load history.

The models (every windowed sqlflow_incremental model of the manifest when none is named)
are found as :mod:`~dbt.adapters.sqlflow.cli_intervals` finds them, their recent batches
read from ``loads`` in the DuckDB file opened read-only, and :func:`tune.recommend` says
what to change, with its evidence and expected gain.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dbt.adapters.sqlflow.cli_intervals import WINDOWED, find_windowed_model
from dbt.adapters.sqlflow.cli_state import (
    StateCommandError,
    manifest_nodes,
    manifest_path,
    model_node,
    open_lake,
    open_state,
    project_dirs,
    resolve_state_location,
    text_table,
)
from dbt.adapters.sqlflow.sql import quote_identifier, sql_string, time_literal, utc_expr
from dbt.adapters.sqlflow.tune import (
    MIN_LOADS,
    Reach,
    Recommendation,
    Resources,
    ZoneMap,
    batches_from_loads,
    filter_columns,
    recommend,
    recommend_memory,
    recommend_predicates,
    recommend_sort_order,
    window_unit,
)


@dataclass(frozen=True)
class ModelAdvice:
    """One model's recommendations (none when it is well tuned or too new to tell)."""

    model: str
    batches: int
    recommendations: list[Recommendation]


def windowed_models(manifest: Path) -> list[str]:
    """The unique_ids of every windowed sqlflow_incremental model in a manifest."""
    nodes = manifest_nodes(manifest)
    return sorted(
        uid
        for uid, node in nodes.items()
        if node.get("resource_type") == "model" and WINDOWED.matches(node.get("config") or {})
    )


def load_advice(
    models: Sequence[str],
    project_dir: str | Path | None = None,
    profiles_dir: str | Path | None = None,
    target: str | None = None,
) -> list[ModelAdvice]:
    """Everything ``dbt-sqlflow tune`` shows.

    Raises:
        StateCommandError: With a one-line message naming what is wrong and the fix.
    """
    project, profiles = project_dirs(project_dir, profiles_dir)
    manifest = manifest_path(project)
    names = list(models) or windowed_models(manifest)
    location = resolve_state_location(project, profiles, target)
    found = [find_windowed_model(manifest, name) for name in names]
    if not found:
        return []
    settings = _profile_settings(project, profiles, target)
    advice = []
    with open_state(location, found[0].name, "loads") as store:
        resources = duckdb_resources(store.executor, settings)
        for model in found:
            loads = store.loads(model.unique_id)
            batches = batches_from_loads(loads)
            zones = zone_maps(store.executor, model.relation, filter_columns(model.config))
            reaches = time_reaches(store.executor, model.relation, model.config, loads)
            advice.append(
                ModelAdvice(
                    model.unique_id,
                    len(batches),
                    advise(model.unique_id, model.config, batches, resources, zones, reaches),
                )
            )
    return advice


def time_reaches(
    run: Any, relation: str, config: Mapping[str, Any], loads: Sequence[Any]
) -> list[Reach]:
    """For a keyed windowed model without incremental_predicates: how far before their
    windows the rows of its latest load lie on each time column of its table (not
    event_time, not the time partition column), with the column's zone map. One query
    over the latest load's windows, read-only."""
    import duckdb

    event_time = config.get("event_time")
    if not event_time or not config.get("unique_key") or config.get("incremental_predicates"):
        return []
    windowed = _windowed(loads)
    if not windowed:
        return []
    start, end = _latest_range(windowed)
    partition = config.get("partition_by")
    skip = {str(event_time).lower()}
    if isinstance(partition, Mapping) and partition.get("granularity"):
        skip.add(str(partition.get("field")).lower())
    try:
        described = run(f"describe select * from {relation}")
    except duckdb.Error:
        return []
    kinds = {str(row[0]): str(row[1]).upper() for row in described}
    times = [
        c
        for c, kind in kinds.items()
        if c.lower() not in skip and (kind.startswith("TIMESTAMP") or kind == "DATE")
    ]
    dtype = next((k for c, k in kinds.items() if c.lower() == str(event_time).lower()), None)
    if not times or dtype is None:
        return []
    unit = window_unit(config)
    column = quote_identifier(str(event_time))
    window = f"epoch(date_trunc('{unit}', {utc_expr(column, dtype)}))"
    lags = ", ".join(f"max({window} - epoch({quote_identifier(c)}))" for c in times)
    found = run(
        f"select count(*), {lags} from {relation} where {column} >= {time_literal(start, dtype)}"
        f" and {column} < {time_literal(end, dtype)}"
    )[0]
    zones = zone_maps(run, relation, times)
    return [
        Reach(c, int(found[0]), float(found[i + 1] or 0.0), start, zones[c])
        for i, c in enumerate(times)
        if c in zones
    ]


def advise(
    model: str,
    config: Any,
    batches: Sequence[Any],
    resources: Resources,
    zones: dict[str, ZoneMap],
    reaches: Sequence[Reach] = (),
) -> list[Recommendation]:
    """Every rule's recommendations for one model, one per key (the first rule's wins)."""
    found: dict[str, Recommendation] = {}
    for rec in [
        *recommend(model, config, batches),
        *recommend_memory(model, config, batches, resources),
        *recommend_sort_order(model, config, zones),
        *recommend_predicates(model, config, reaches),
    ]:
        found.setdefault(rec.key, rec)
    return list(found.values())


def _profile_settings(project: Path, profiles: Path, target: str | None) -> dict[str, Any]:
    """The DuckDB ``settings`` of the profile's target (empty when none)."""
    from dbt.adapters.sqlflow.cli_state import load_profile

    profile, _ = load_profile(project, profiles, target)
    return dict(getattr(profile.credentials, "settings", None) or {})


def duckdb_resources(run: Any, settings: dict[str, Any]) -> Resources:
    """The ``memory_limit`` and ``threads`` a model runs with (the profile's settings,
    else DuckDB's defaults, as DuckDB reads them) and the machine's memory."""
    import os

    from dbt.adapters.sqlflow.recovery import size_bytes

    for key in ("memory_limit", "threads"):
        if settings.get(key) is not None:
            run(f"set {key} = '{str(settings[key]).replace(chr(39), '')}'")
    limit, threads = run("select current_setting('memory_limit'), current_setting('threads')")[0]
    try:
        machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        machine = None
    return Resources(size_bytes(str(limit)), int(threads), machine)


def zone_maps(run: Any, relation: str, columns: Sequence[str]) -> dict[str, ZoneMap]:
    """The per-row-group ``(min, max)`` of ``columns`` in ``relation``, from DuckDB's
    ``pragma_storage_info`` (a table not built yet has none)."""
    import duckdb

    if not columns:
        return {}
    names = ", ".join(sql_string(c) for c in columns)
    try:
        rows = run(
            f"select column_name, row_group_id, stats from pragma_storage_info("
            f"{sql_string(relation)}) where column_name in ({names})"
            " and segment_type <> 'VALIDITY' order by row_group_id"
        )
    except duckdb.Error:
        return {}
    groups: dict[str, dict[int, tuple[Any, Any]]] = {}
    for column, group, stats in rows:
        lo, hi = (stats or {}).get("min"), (stats or {}).get("max")
        seen = groups.setdefault(column, {}).get(group)
        if seen is not None and lo is not None and hi is not None:
            lo, hi = min(seen[0], lo), max(seen[1], hi)
        groups[column][group] = (lo, hi)
    return {c: ZoneMap(c, [g[k] for k in sorted(g)]) for c, g in groups.items()}


def format_table(advice: Sequence[ModelAdvice]) -> str:
    """The recommendations as a table, and a line per model with none."""
    rows = [
        [r.model, r.key, r.current, r.recommended, r.evidence, r.expected_gain]
        for a in advice
        for r in a.recommendations
    ]
    headers = ["model", "key", "now", "recommended", "evidence", "expected gain"]
    out = "".join(f"{line}\n" for line in text_table(headers, rows)) if rows else ""
    for a in advice:
        if a.recommendations:
            continue
        why = (
            f"only {a.batches} batches recorded (needs {MIN_LOADS})"
            if a.batches < MIN_LOADS
            else f"its last {a.batches} batches are neither tiny nor huge, nor short of"
            " memory, and its table is in the order its loads filter on"
        )
        out += f"{a.model}: nothing to recommend ({why})\n"
    return out


def format_json(advice: Sequence[ModelAdvice]) -> str:
    """The recommendations as JSON: one object per model."""
    return json.dumps([asdict(a) for a in advice], indent=2) + "\n"


# -- A/B: today's settings against the recommended ones, on copies ---------------------------


@dataclass(frozen=True)
class Arm:
    """One side of an A/B: its settings and each run's node seconds and peak memory."""

    name: str
    settings: dict[str, str]
    node_seconds: list[float]
    peak_rss_mb: list[float]

    @property
    def median_seconds(self) -> float:
        """The median node time."""
        return statistics.median(self.node_seconds)

    @property
    def spread(self) -> float:
        """Slowest minus fastest run."""
        return max(self.node_seconds) - min(self.node_seconds)


@dataclass(frozen=True)
class ABReport:
    """``tune MODEL --ab``: what was run, on which range, and each arm's figures."""

    model: str
    window_start: str
    window_end: str
    arms: list[Arm]
    advice: list[Recommendation] = field(default_factory=list)
    #: The latest load built the table (the model has no older load): each run rebuilds
    #: it (``--full-refresh``), as that load did, instead of loading the range again.
    rebuild: bool = False
    #: The runs were on a copy of a DuckLake (the model's tables), not of a DuckDB file.
    lake: bool = False

    @property
    def real_gain(self) -> bool:
        """Whether the arms differ by more than either arm's spread (noise)."""
        current, recommended = self.arms
        gap = current.median_seconds - recommended.median_seconds
        return abs(gap) > max(current.spread, recommended.spread)

    def verdict(self) -> str:
        """One line: which arm was faster, by how much, and whether that is beyond noise."""
        current, recommended = self.arms
        gain = 1 - recommended.median_seconds / current.median_seconds
        if not self.real_gain:
            return (
                f"no real difference: {gain:+.0%} node time, within the runs' spread"
                f" ({max(current.spread, recommended.spread):.2f} s)"
            )
        faster = "recommended" if gain > 0 else "current"
        return f"{faster} settings faster: node time {gain:+.0%} (beyond the runs' spread)"


def ab_test(
    model: str,
    project_dir: str | Path | None = None,
    profiles_dir: str | Path | None = None,
    target: str | None = None,
    runs: int = 3,
) -> ABReport:
    """Run the model's latest load (its range of windows) on copies of the DuckDB file,
    ``runs`` times with today's settings and ``runs`` times with the recommended ones,
    alternating; the production file and project are only read.

    Raises:
        StateCommandError: With a one-line message naming what is wrong and the fix.
    """
    import tempfile

    project, profiles = project_dirs(project_dir, profiles_dir)
    manifest = manifest_path(project)
    found = find_windowed_model(manifest, model)
    node = model_node(manifest, model, WINDOWED)
    location = resolve_state_location(project, profiles, target)
    loads, advice = _measurable_advice(
        location, found, _profile_settings(project, profiles, target)
    )
    if not advice:
        raise StateCommandError(
            f"model '{found.unique_id}': nothing to test, tune recommends no change. Fix:"
            f" run `dbt-sqlflow tune {found.name}` to see why"
        )
    start, end = _latest_range(loads)
    rebuild = _latest_was_build(loads)
    settings = {r.key: r.recommended for r in advice}
    with tempfile.TemporaryDirectory(prefix="sqlflow-tune-") as tmp:
        work = Path(tmp)
        copy: _Copy
        if location.lake is not None:
            copy = _lake_copy(location, manifest, node, work)
        else:
            assert location.path is not None
            copy = _file_copy(location.path, work)
        arms = {
            "current": _arm_project(work / "current", project, profiles, target, node, [], copy),
            "recommended": _arm_project(
                work / "recommended", project, profiles, target, node, advice, copy
            ),
        }
        figures: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in arms}
        for run in range(runs):
            order = list(arms) if run % 2 == 0 else list(reversed(arms))
            for arm in order:
                copy.reset()
                seconds, rss = _timed_run(arms[arm], found, start, end, rebuild)
                figures[arm][0].append(seconds)
                figures[arm][1].append(rss)
    return ABReport(
        found.unique_id,
        start.isoformat(),
        end.isoformat(),
        [
            Arm("current", {}, *figures["current"]),
            Arm("recommended", settings, *figures["recommended"]),
        ],
        advice,
        rebuild,
        location.lake is not None,
    )


@dataclass(frozen=True)
class _Copy:
    """The A/B's copy of the database: a pristine one under ``work/pristine`` that each run
    gets afresh under ``work/data`` (:meth:`reset`), where the arms' profiles point.

    Attributes:
        work: The A/B's folder.
        file: The DuckDB file's name (a file's copy); None for a lake's.
        lake_alias: The lake's alias (a lake's copy); None for a file's.
    """

    work: Path
    file: str | None = None
    lake_alias: str | None = None

    @property
    def data(self) -> Path:
        """The folder every run's copy is in (the same path each time)."""
        return self.work / "data"

    @property
    def lake_catalog(self) -> Path:
        """The copied lake's catalog (a DuckDB file)."""
        return self.data / "catalog.ducklake"

    @property
    def lake_data_path(self) -> Path:
        """The copied lake's data files."""
        return self.data / "files"

    def reset(self) -> None:
        """Put the pristine copy in ``data``, replacing what the last run left."""
        import shutil

        shutil.rmtree(self.data, ignore_errors=True)
        shutil.copytree(self.work / "pristine", self.data)


def _file_copy(database: Path, work: Path) -> _Copy:
    """Copy the DuckDB file (and its WAL) to ``work/pristine``; its name is kept (dbt-duckdb
    names the database after it)."""
    import shutil

    (work / "pristine").mkdir()
    name = database.name
    shutil.copy2(database, work / "pristine" / name)
    wal = database.with_name(name + ".wal")
    if wal.exists():
        shutil.copy2(wal, work / "pristine" / (name + ".wal"))
    return _Copy(work, file=name)


def _lake_copy(location: Any, manifest: Path, node: dict[str, Any], work: Path) -> _Copy:
    """A new DuckLake under ``work`` (a DuckDB-file catalog and a local data folder) holding
    copies of what the model reads and writes in the production lake: the tables of its
    sources and parents in the lake, its own table and sqlflow's state tables, read at the
    lake's current snapshot through a read-only attach. The arms attach it under the
    lake's alias, so the model's SQL and its state's relation names are unchanged.

    Raises:
        StateCommandError: The lake cannot be attached or a table cannot be copied.
    """
    import shutil

    import duckdb

    lake = location.lake
    copy = _Copy(work, lake_alias=lake.alias)
    copy.lake_data_path.mkdir(parents=True)
    con = open_lake(lake, location.target)
    try:
        con.execute(
            f"attach {sql_string('ducklake:' + str(copy.lake_catalog))} as sqlflow_ab"
            f" (data_path {sql_string(str(copy.lake_data_path) + '/')})"
        )
        for schema, table in _lake_tables(con, lake.alias, location.state_schema, manifest, node):
            source = ".".join(quote_identifier(p) for p in (lake.alias, schema, table))
            con.execute(f"create schema if not exists sqlflow_ab.{quote_identifier(schema)}")
            con.execute(
                f"create table sqlflow_ab.{quote_identifier(schema)}.{quote_identifier(table)}"
                f" as from {source}"
            )
        con.execute("detach sqlflow_ab")
    except duckdb.Error as e:
        raise StateCommandError(
            f"{location.source}: cannot copy the model's tables for the A/B: {e}"
        ) from e
    finally:
        con.close()
    shutil.copytree(copy.data, work / "pristine")
    return copy


def _lake_tables(
    con: Any, alias: str, state_schema: str, manifest: Path, node: dict[str, Any]
) -> list[tuple[str, str]]:
    """``(schema, table)`` of the lake's tables an A/B of the model needs that exist: its
    own, its sources' and parents' in the lake, and sqlflow's state tables (their views
    are made again by the first run)."""
    document = json.loads(manifest.read_text())
    names = [str(node["relation_name"])]
    for parent in (node.get("depends_on") or {}).get("nodes") or []:
        found = (document.get("sources") or {}).get(parent) or (document.get("nodes") or {}).get(
            parent
        )
        if found and found.get("relation_name"):
            names.append(str(found["relation_name"]))
    wanted = []
    for name in names:
        parts = _relation_parts(name)
        if len(parts) == 3 and parts[0] == alias:
            wanted.append((parts[1], parts[2]))
    present = {
        (str(schema), str(table)): str(kind)
        for schema, table, kind in con.execute(
            "select table_schema, table_name, table_type from information_schema.tables"
            " where table_catalog = ?",
            [alias],
        ).fetchall()
    }
    state = [k for k, kind in present.items() if k[0] == state_schema and kind == "BASE TABLE"]
    return list(dict.fromkeys([*(k for k in wanted if k in present), *sorted(state)]))


def _relation_parts(relation: str) -> list[str]:
    """The parts of a relation name as dbt renders it (``"db"."schema"."table"``)."""
    import re

    return [
        quoted.replace('""', '"') if quoted or not bare else bare
        for quoted, bare in re.findall(r'"((?:[^"]|"")*)"|([^".]+)', relation)
    ]


def _measurable_advice(
    location: Any, found: Any, settings: dict[str, Any]
) -> tuple[list[Any], list[Recommendation]]:
    """The model's loads and the recommendations an A/B can measure (a table's rewrite is
    not a setting of a run)."""
    with open_state(location, found.name, "loads") as store:
        loads = store.loads(found.unique_id)
        resources = duckdb_resources(store.executor, settings)
        zones = zone_maps(store.executor, found.relation, filter_columns(found.config))
    batches = batches_from_loads(loads)
    advice = advise(found.unique_id, found.config, batches, resources, zones)
    # A table rewrite or a config() edit with Jinja is not an A/B's arm.
    return loads, [r for r in advice if r.scope not in ("table", "sql")]


def _windowed(loads: Sequence[Any]) -> list[Any]:
    """The loads of windows (not a build without windows)."""
    return [x for x in loads if x.window_start is not None and x.window_end is not None]


def _latest_was_build(loads: Sequence[Any]) -> bool:
    """Whether the model's latest invocation built its table: every windowed load of the
    model is that invocation's (its first run). After a --full-refresh the older loads
    stay in the history: that build is loaded again, not rebuilt."""
    windowed = _windowed(loads)
    if not windowed:
        return False
    latest = max(windowed, key=lambda x: x.started_at).invocation_id
    return all(x.invocation_id == latest for x in windowed)


def _latest_range(loads: Sequence[Any]) -> tuple[datetime, datetime]:
    """The windows of the model's latest invocation, as one range."""
    windowed = _windowed(loads)
    if not windowed:
        raise StateCommandError("no windowed load recorded. Fix: run the model first")
    latest = max(windowed, key=lambda x: x.started_at).invocation_id
    mine = [x for x in windowed if x.invocation_id == latest]
    return min(x.window_start for x in mine), max(x.window_end for x in mine)


def _arm_project(
    home: Path,
    project: Path,
    profiles: Path,
    target: str | None,
    node: dict[str, Any],
    advice: Sequence[Recommendation],
    copy: _Copy,
) -> Path:
    """A copy of the project whose model also sets the recommended model settings (a
    later config() call wins), and a profiles.yml whose target is the work copy of the
    database (a lake's: attached under its alias), with the recommended DuckDB settings
    over the profile's."""
    import shutil

    import yaml  # type: ignore[import-untyped]

    from dbt.adapters.sqlflow.cli_state import load_profile

    shutil.copytree(
        project,
        home,
        ignore=shutil.ignore_patterns("target", "logs", "*.duckdb", "*.duckdb.wal", ".venv*"),
    )
    settings = {r.key: r.recommended for r in advice if r.scope == "model"}
    if settings:
        model_file = home / str(node["original_file_path"])
        args = ", ".join(f"{k}={_literal(v)}" for k, v in settings.items())
        model_file.write_text(model_file.read_text() + f"\n{{{{ config({args}) }}}}\n")
    profile, name = load_profile(project, profiles, target)
    credentials = profile.to_profile_info(serialize_credentials=True)["credentials"]
    if copy.lake_alias is not None:
        output = {**credentials, "type": "sqlflow", "path": ":memory:"}
        output["attach"] = [
            _copied_lake(a, copy) if a.get("alias") == copy.lake_alias else a
            for a in credentials.get("attach") or []
        ]
    else:
        output = {**credentials, "type": "sqlflow", "path": str(copy.data / str(copy.file))}
    output["threads"] = profile.threads
    duckdb_settings = {r.key: r.recommended for r in advice if r.scope == "profile"}
    if duckdb_settings:
        output["settings"] = {**(output.get("settings") or {}), **duckdb_settings}
    document = {name: {"target": profile.target_name, "outputs": {profile.target_name: output}}}
    (home / "profiles.yml").write_text(yaml.safe_dump(document))
    return home


def _copied_lake(attachment: dict[str, Any], copy: _Copy) -> dict[str, Any]:
    """The profile's attach entry of the lake, pointed at the A/B's copy of it."""
    options = {
        k: v
        for k, v in (attachment.get("options") or {}).items()
        if k not in ("data_path", "metadata_schema", "metadata_catalog")
    }
    options["data_path"] = f"{copy.lake_data_path}/"
    found = {k: v for k, v in attachment.items() if v is not None}
    return {**found, "path": f"ducklake:{copy.lake_catalog}", "options": options}


def _literal(value: str) -> str:
    return value if value.isdigit() else repr(value)


def _timed_run(
    home: Path,
    model: Any,
    start: datetime,
    end: datetime,
    rebuild: bool = False,
) -> tuple[float, float]:
    """One dbt run of the model's range on the arm's profile (a fresh copy of the
    database: :meth:`_Copy.reset`; ``rebuild``: with ``--full-refresh``): node seconds,
    peak RSS in MB."""
    import os
    import subprocess
    import sys

    run_vars = json.dumps({"sqlflow_start": start.isoformat(), "sqlflow_end": end.isoformat()})
    argv = [
        str(Path(sys.executable).parent / "dbt"),
        "run",
        "-s",
        model.name,
        "--vars",
        run_vars,
        "--project-dir",
        str(home),
        "--profiles-dir",
        str(home),
        *(["--full-refresh"] if rebuild else []),
    ]
    env = {**os.environ, "SQLFLOW_NOW": end.isoformat()}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = proc.stdout.read() if proc.stdout is not None else b""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        tail = output.decode(errors="replace").strip().splitlines()[-3:]
        raise StateCommandError(f"the A/B run of {model.name} failed: {' | '.join(tail)}")
    results = json.loads((home / "target" / "run_results.json").read_text())["results"]
    seconds = next(r["execution_time"] for r in results if r["unique_id"] == model.unique_id)
    return float(seconds), usage.ru_maxrss / 1024


def format_ab(report: ABReport) -> str:
    """The A/B as a table and a verdict."""
    rows = [
        [
            arm.name,
            ", ".join(f"{k}={v}" for k, v in arm.settings.items()) or "(as configured)",
            str(len(arm.node_seconds)),
            f"{arm.median_seconds:.3f}",
            f"{arm.spread:.3f}",
            f"{statistics.median(arm.peak_rss_mb):.0f}",
        ]
        for arm in report.arms
    ]
    headers = ["arm", "settings", "runs", "median node s", "spread s", "median peak RSS MB"]
    lines = [
        f"{report.model}: its latest load [{report.window_start}, {report.window_end})"
        + (" (it built the table: rebuilt, --full-refresh)" if report.rebuild else "")
        + f" on a copy of the {'lake' if report.lake else 'database'}",
        *text_table(headers, rows, right=[2, 3, 4, 5]),
        report.verdict(),
    ]
    return "".join(f"{line}\n" for line in lines)


# -- --apply: the winning settings written into the model's YAML ----------------------------


def apply_ab(
    report: ABReport,
    project_dir: str | Path | None = None,
    profiles_dir: str | Path | None = None,
) -> str:
    """Write the recommended model settings into the model's properties YAML when the A/B
    found them faster beyond the runs' spread; otherwise write nothing. Returns what was
    done (or why not), one line each.

    The file is the model's properties file (``patch_path``), else ``<model>.yml`` next to
    the model's SQL; the rest of the file is kept line for line
    (:func:`tune.set_model_config`). DuckDB settings are only named: they belong to the
    profile, which every model shares.

    Raises:
        StateCommandError: The file cannot be edited safely, or the model's SQL sets one of
            the keys in its ``config()`` call (which wins over YAML).
    """
    from dbt.adapters.sqlflow.tune import ConfigEditError, set_model_config

    current, recommended = report.arms
    if not report.real_gain or recommended.median_seconds >= current.median_seconds:
        return f"not applied: {report.verdict()}\n"
    project, _ = project_dirs(project_dir, profiles_dir)
    node = model_node(manifest_path(project), report.model, WINDOWED)
    settings = {r.key: r.recommended for r in report.advice if r.scope == "model"}
    out = ""
    if settings:
        _refuse_sql_config(node, settings)
        path = _properties_path(project, node)
        before = path.read_text() if path.exists() else None
        try:
            after = set_model_config(before, str(node["name"]), settings)
        except ConfigEditError as e:
            raise StateCommandError(f"{path}: {e}") from e
        path.write_text(after)
        pairs = ", ".join(f"{k}: {v}" for k, v in settings.items())
        out += f"applied to {path}: {pairs} (config of {node['name']})\n"
    for rec in (r for r in report.advice if r.scope == "profile"):
        out += (
            f"not written: {rec.key}: {rec.recommended} belongs in the profile's settings"
            " (every model shares them); set it there\n"
        )
    return out


def _refuse_sql_config(node: dict[str, Any], settings: dict[str, str]) -> None:
    """Raise when the model's SQL sets one of the keys in config() (it wins over YAML)."""
    import re

    code = str(node.get("raw_code") or "")
    calls = re.findall(r"config\s*\((.*?)\)\s*}}", code, re.S)
    clash = [k for k in settings if any(re.search(rf"\b{k}\s*=", c) for c in calls)]
    if clash:
        raise StateCommandError(
            f"model '{node['unique_id']}': its SQL ({node.get('original_file_path')}) sets"
            f" {', '.join(clash)} in config(), which wins over the YAML. Fix: change"
            f" {', '.join(f'{k}={settings[k]!r}' for k in clash)} there"
        )


def _properties_path(project: Path, node: dict[str, Any]) -> Path:
    """The model's properties file: its ``patch_path``, else ``<name>.yml`` beside it."""
    patch = node.get("patch_path")
    if patch:
        return project / str(patch).split("://", 1)[-1]
    return (project / str(node["original_file_path"])).with_name(f"{node['name']}.yml")
