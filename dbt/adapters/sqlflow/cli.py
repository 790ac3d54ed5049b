"""The ``dbt-sqlflow`` command line: a thin shell over library functions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from dbt.adapters.sqlflow.__version__ import version

DEFAULT_RUN_RESULTS = "target/run_results.json"
DEFAULT_MANIFEST = "target/manifest.json"


class CliError(click.ClickException):
    """A one-line error (``Error: <file or URL>: <cause>``), exit code 2, no traceback."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version, "--version", prog_name="dbt-sqlflow")
def cli() -> None:
    """dbt-sqlflow: partitions, interval state and metrics for dbt on DuckDB."""


@cli.group()
def metrics() -> None:
    """Export a dbt run's metrics (Prometheus, OpenMetrics, JSON, CloudWatch EMF,
    Pushgateway)."""


_run_results_option = click.option(
    "--run-results",
    default=DEFAULT_RUN_RESULTS,
    show_default=True,
    help="dbt's run_results.json.",
)
_manifest_option = click.option(
    "--manifest",
    default=DEFAULT_MANIFEST,
    show_default=True,
    help="dbt's manifest.json (optional: skipped when absent).",
)


@metrics.command("export")
@_run_results_option
@_manifest_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["prometheus", "openmetrics", "json", "cloudwatch-emf"]),
    default="prometheus",
    show_default=True,
    help="Output format (cloudwatch-emf: CloudWatch Embedded Metric Format, JSON lines).",
)
@click.option(
    "--namespace",
    default="dbt-sqlflow",
    show_default=True,
    help="CloudWatch namespace of --format cloudwatch-emf.",
)
@click.option("--output", default=None, help="Write to this file (atomically) instead of stdout.")
@click.option(
    "--textfile",
    default=None,
    help="Also write DIR/dbt_sqlflow.prom atomically (node_exporter's textfile collector).",
)
def export_command(
    run_results: str,
    manifest: str,
    fmt: str,
    namespace: str,
    output: str | None,
    textfile: str | None,
) -> None:
    """Print (or write) the metrics of the run in RUN_RESULTS."""
    from dbt.adapters.sqlflow.metrics.artifacts import ArtifactError
    from dbt.adapters.sqlflow.metrics.export import ExportError, export_artifacts

    try:
        text = export_artifacts(
            run_results, manifest, fmt=fmt, output=output, textfile=textfile, namespace=namespace
        )
    except (ArtifactError, ExportError) as e:
        raise CliError(str(e)) from e
    if output is None and textfile is None:
        click.echo(text, nl=False)


@metrics.command("push")
@click.option("--gateway", required=True, help="Pushgateway URL, e.g. http://127.0.0.1:9091.")
@click.option("--job", default="dbt", show_default=True, help="Pushgateway job name.")
@click.option(
    "--timeout", default=10.0, show_default=True, type=float, help="Push timeout in seconds."
)
@_run_results_option
@_manifest_option
def push_command(gateway: str, job: str, timeout: float, run_results: str, manifest: str) -> None:
    """Push the metrics of the run in RUN_RESULTS to a Prometheus Pushgateway."""
    from dbt.adapters.sqlflow.metrics.artifacts import ArtifactError
    from dbt.adapters.sqlflow.metrics.export import ExportError, push_artifacts

    try:
        push_artifacts(gateway, job, run_results, manifest, timeout=timeout)
    except (ArtifactError, ExportError) as e:
        raise CliError(str(e)) from e


def _state_options(command: Any) -> Any:
    """The options of the commands that read sqlflow's state: where the project, the
    profiles and the target are."""
    for option in reversed(
        [
            click.option(
                "--project-dir",
                default=None,
                envvar="DBT_PROJECT_DIR",
                help="The dbt project (default: as dbt, the nearest folder up with"
                " dbt_project.yml).",
            ),
            click.option(
                "--profiles-dir",
                default=None,
                envvar="DBT_PROFILES_DIR",
                help="Folder of profiles.yml (default: as dbt, the current folder or ~/.dbt).",
            ),
            click.option(
                "--target", "-t", default=None, envvar="DBT_TARGET", help="Profile target."
            ),
        ]
    ):
        command = option(command)
    return command


@cli.command("partitions")
@click.argument("model")
@_state_options
@click.option(
    "--last", type=click.IntRange(min=1), default=None, help="Show only the last N partitions."
)
@click.option("--non-empty", is_flag=True, help="Leave out partitions with no rows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def partitions_command(
    model: str,
    project_dir: str | None,
    profiles_dir: str | None,
    target: str | None,
    last: int | None,
    non_empty: bool,
    as_json: bool,
) -> None:
    """Print MODEL's partitions (key, range, rows, last load) from sqlflow's state.

    MODEL is a model name or unique_id; its relation comes from target/manifest.json, the
    DuckDB file and state schema from the profile. The database is opened read-only.
    """
    from dbt.adapters.sqlflow.cli_partitions import format_json, format_table, load_report
    from dbt.adapters.sqlflow.cli_state import StateCommandError

    try:
        report = load_report(model, project_dir, profiles_dir, target)
    except StateCommandError as e:
        raise CliError(str(e)) from e
    render = format_json if as_json else format_table
    click.echo(render(report, last=last, non_empty=non_empty), nl=False)


def _parse_now(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    from dbt.adapters.sqlflow.intervals import parse_timestamp

    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as e:
        raise click.BadParameter(
            f"{value!r} is not an ISO date or timestamp. Fix: pass e.g. --now 2025-03-01 or"
            " --now 2025-03-01T12:00:00 (UTC, or with an offset)"
        ) from e


@cli.command("intervals")
@click.argument("model")
@_state_options
@click.option(
    "--now",
    default=None,
    callback=_parse_now,
    help="Look for gaps up to this time (ISO, UTC unless it has an offset; default: now),"
    " e.g. the sqlflow_now a run pinned.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def intervals_command(
    model: str,
    project_dir: str | None,
    profiles_dir: str | None,
    target: str | None,
    now: datetime | None,
    as_json: bool,
) -> None:
    """Print the loaded ranges and the gaps of MODEL, a model with event_time.

    Ranges are merged, half-open [start, end), each with its last load; gaps are what is not
    loaded from the first loaded window (or begin) to now. MODEL is a model name or
    unique_id, found in target/manifest.json; the DuckDB file and state schema come from
    the profile. The database is opened read-only.
    """
    from dbt.adapters.sqlflow.cli_intervals import format_json, format_table, load_report
    from dbt.adapters.sqlflow.cli_state import StateCommandError

    try:
        report = load_report(model, project_dir, profiles_dir, target, now=now)
    except StateCommandError as e:
        raise CliError(str(e)) from e
    click.echo((format_json if as_json else format_table)(report), nl=False)


@cli.command("tune")
@click.argument("models", nargs=-1)
@_state_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--ab",
    is_flag=True,
    help="Measure: run MODEL's latest load on copies of the database with today's settings"
    " and with the recommended ones, alternating, and compare.",
)
@click.option("--runs", type=click.IntRange(min=2), default=3, show_default=True)
@click.option(
    "--apply",
    "apply_gain",
    is_flag=True,
    help="With --ab: write the recommended model settings into the model's YAML when they"
    " were faster beyond the runs' spread.",
)
def tune_command(
    models: tuple[str, ...],
    project_dir: str | None,
    profiles_dir: str | None,
    target: str | None,
    as_json: bool,
    ab: bool,
    runs: int,
    apply_gain: bool,
) -> None:
    """Recommend settings for MODELS from their load history.

    Each recommendation comes with its evidence (the figures of the model's recent
    batches) and the gain to expect. MODELS are names or unique_ids (default: every
    windowed sqlflow_incremental model of target/manifest.json); the DuckDB file is
    opened read-only. With --ab (one MODEL), both settings are measured on copies: the
    medians of node time and peak memory, and whether the gain exceeds the runs' spread;
    --apply then writes the model settings into its YAML only if the gain is real.
    """
    from dbt.adapters.sqlflow.cli_state import StateCommandError
    from dbt.adapters.sqlflow.cli_tune import (
        ab_test,
        apply_ab,
        format_ab,
        format_json,
        format_table,
        load_advice,
    )

    try:
        if ab:
            if len(models) != 1:
                raise CliError("--ab measures one model. Fix: name exactly one MODEL")
            report = ab_test(models[0], project_dir, profiles_dir, target, runs)
            click.echo(format_ab(report), nl=False)
            if apply_gain:
                click.echo(apply_ab(report, project_dir, profiles_dir), nl=False)
            return
        if apply_gain:
            raise CliError("--apply applies what --ab measured. Fix: add --ab")
        advice = load_advice(models, project_dir, profiles_dir, target)
    except StateCommandError as e:
        raise CliError(str(e)) from e
    click.echo((format_json if as_json else format_table)(advice), nl=False)


def _run_operation(
    operation: str,
    args: dict[str, Any],
    project_dir: str | None,
    profiles_dir: str | None,
    target: str | None,
) -> None:
    """Run a dbt run-operation in this process (dbt attaches the profile's lake and
    prints the operation's log); exit 1 when it fails, as dbt does."""
    import json

    from dbt.cli.main import dbtRunner

    argv = ["run-operation", operation, "--args", json.dumps(args)]
    for flag, value in (
        ("--project-dir", project_dir),
        ("--profiles-dir", profiles_dir),
        ("--target", target),
    ):
        if value:
            argv += [flag, value]
    result = dbtRunner().invoke(argv)
    if not result.success:
        raise SystemExit(1)


@cli.command("restore")
@click.argument("model")
@click.option(
    "--before-load", default=None, help="Undo this load (a load_id of MODEL) and every later one."
)
@click.option(
    "--at",
    default=None,
    callback=_parse_now,
    help="Put MODEL back as it was at this time (ISO, UTC unless it has an offset).",
)
@_state_options
def restore_command(
    model: str,
    before_load: str | None,
    at: datetime | None,
    project_dir: str | None,
    profiles_dir: str | None,
    target: str | None,
) -> None:
    """Undo committed loads of MODEL on a DuckLake.

    Its table, and sqlflow's intervals, partitions and loads for it, are put back as they
    were before load --before-load (or at time --at), from the lake's snapshots, and
    committed as a new snapshot (history is kept). The next `dbt run` loads the undone
    windows again. Runs `dbt run-operation sqlflow_restore` with the project's profile.
    """
    if (before_load is None) == (at is None):
        raise click.UsageError("pass exactly one of --before-load LOAD_ID and --at TIMESTAMP")
    args: dict[str, Any] = {"model": model}
    if before_load is not None:
        args["before_load"] = before_load
    else:
        assert at is not None
        args["at"] = at.isoformat()
    _run_operation("sqlflow_restore", args, project_dir, profiles_dir, target)


@cli.command("lake-maintenance")
@click.option(
    "--older-than",
    default=None,
    help="Expire snapshots older than this (default 7 days); restore reaches no further back.",
)
@click.option(
    "--delete-files-older-than",
    default=None,
    help="Delete files scheduled for deletion longer ago than this (default 1 hour).",
)
@click.option("--database", default=None, help="The lake's alias (default: the target database).")
@_state_options
def lake_maintenance_command(
    older_than: str | None,
    delete_files_older_than: str | None,
    database: str | None,
    project_dir: str | None,
    profiles_dir: str | None,
    target: str | None,
) -> None:
    """Compact a DuckLake's small files, expire old snapshots, delete unread files.

    Runs DuckLake's ducklake_flush_inlined_data, ducklake_merge_adjacent_files,
    ducklake_expire_snapshots and ducklake_cleanup_old_files (`dbt run-operation
    sqlflow_lake_maintenance` with the project's profile) and prints the lake's files
    before and after. Ages are like "7 days", "12 hours", "30 minutes".
    """
    args = {
        key: value
        for key, value in (
            ("older_than", older_than),
            ("delete_files_older_than", delete_files_older_than),
            ("database", database),
        )
        if value is not None
    }
    _run_operation("sqlflow_lake_maintenance", args, project_dir, profiles_dir, target)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
