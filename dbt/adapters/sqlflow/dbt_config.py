"""What sqlflow reads of dbt itself: the config keys dbt declares and its global flags."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any


@functools.cache
def dbt_config_keys(adapter_configs: type) -> frozenset[str]:
    """The config keys dbt and the adapter declare: the fields of dbt's ``ModelConfig`` (which
    holds ``NodeConfig``'s) and of ``adapter_configs`` (dbt-duckdb's ``indexes``), with their
    aliases (``pre-hook``), as they appear in ``model.config``."""
    from dbt.artifacts.resources import ModelConfig

    keys: set[str] = set()
    for config_class in (ModelConfig, adapter_configs):
        for f in dataclasses.fields(config_class):
            keys.update(k for k in (f.name, f.metadata.get("alias")) if k and k != "_extra")
    return frozenset(keys)


def event_time_range() -> tuple[Any, Any]:
    """dbt's ``--event-time-start`` / ``--event-time-end`` of this invocation (or None)."""
    from dbt.flags import get_flags

    flags = get_flags()
    return getattr(flags, "EVENT_TIME_START", None), getattr(flags, "EVENT_TIME_END", None)
