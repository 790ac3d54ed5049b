"""sqlflow's log events: readable text for people, separate fields for machines.

Each event is one of dbt-adapters' adapter events (``AdapterEventDebug``/``Info``/
``Warning``, codes E001-E003) whose ``args`` (a protobuf ``ListValue``) carries one
object, ``{"sqlflow": {...fields}}``. dbt's text log shows the message as before; with
``--log-format json`` (or ``--log-format-file json``) each line has the fields at
``.data.args[0].sqlflow``:

``event``
    ``plan``, ``batch_start``, ``batch_end``, ``batch_error``, ``retry``, ``check``,
    ``summary`` (or ``strategy``, ``empty_windows``, ``history_compacted``, ``warning``).
``invocation_id``, ``unique_id``, ``execution_id``
    dbt's invocation id, the node's unique id, sqlflow's id of the model execution.
``load_id``, ``batch_index``, ``batches``, ``window_start``, ``window_end``, ``strategy``
    The batch (``load_id`` is the key of its row in ``sqlflow_meta.loads``).
``rows_inserted``, ``rows_updated``, ``rows_deleted``, ``seconds``, ``phase_seconds``
    Its figures.

Numbers come out as JSON numbers (protobuf's ``Value`` holds doubles: ``3.0`` for 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbt.adapters.events.types import AdapterEventDebug, AdapterEventInfo, AdapterEventWarning
from dbt_common.events.contextvars import get_node_info
from dbt_common.events.functions import fire_event

_EVENT_TYPES: dict[str, Any] = {
    "debug": AdapterEventDebug,
    "info": AdapterEventInfo,
    "warning": AdapterEventWarning,
}


def adapter_event(level: str, message: str, fields: Mapping[str, Any]) -> Any:
    """One sqlflow adapter event carrying ``fields`` (not fired: see :func:`fire`).

    Args:
        level: ``debug``, ``info`` or ``warning``.
        message: The text (shown as ``sqlflow adapter: <message>``).
        fields: JSON-able values (str, int, float, bool, None, lists and dicts of them).
    """
    return _EVENT_TYPES[level](
        name="sqlflow",
        # dbt formats base_msg with its args (str.format): doubled braces come out as the
        # text's own.
        base_msg=message.replace("{", "{{").replace("}", "}}"),
        args=[{"sqlflow": dict(fields)}],
        node_info=get_node_info(),
    )


def fire(level: str, message: str, fields: Mapping[str, Any]) -> None:
    """Fire one sqlflow adapter event with its fields (see :func:`adapter_event`)."""
    fire_event(adapter_event(level, message, fields))
