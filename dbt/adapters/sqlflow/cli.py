"""The ``dbt-sqlflow`` command line: a thin shell over library functions."""

from __future__ import annotations

import click

from dbt.adapters.sqlflow.__version__ import version


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version, "--version", prog_name="dbt-sqlflow")
def cli() -> None:
    """dbt-sqlflow: partitions, interval state and metrics for dbt on DuckDB."""


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
