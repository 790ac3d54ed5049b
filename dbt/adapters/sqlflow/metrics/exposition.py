"""The text formats (Prometheus 0.0.4, OpenMetrics 1.0, JSON) of the run's families.

Written straight from :func:`~.collector.families`, without prometheus_client families:
the text is the text prometheus_client's ``generate_latest`` writes for
:class:`~.collector.RunCollector`'s families (and the JSON that of their samples), byte
for byte (``tests/unit/test_metrics.py`` compares them). Going through prometheus_client
cost ~3 µs per sample to render and ~2.5 µs to build the ``Sample`` and its label dict,
plus the garbage collector's passes over them: 1.5-1.9 s for a 5,000-model run, whose
``sqlflow_batch_phase_seconds`` histogram has 240,000 samples. Here a histogram bucket
is one f-string over labels escaped once per series (~0.5 µs).

Only what sqlflow's families use is written: no timestamps, exemplars, units or
``_created`` samples; metric and label names are legacy-valid
(``[a-zA-Z_:][a-zA-Z0-9_:]*``), so none is escaped or quoted.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client.utils import floatToGoString

from dbt.adapters.sqlflow.metrics.collector import Family, Histogram


def prometheus_text(families: Iterable[Family | Histogram]) -> str:
    """The families in the Prometheus text format 0.0.4 (``generate_latest``'s)."""
    out: list[str] = []
    for family in families:
        name = family.sample_name if isinstance(family, Family) else family.name
        doc = family.doc.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n")
        _sample_lines(family, out)
    return "".join(out)


def openmetrics_text(families: Iterable[Family | Histogram]) -> str:
    """The families in OpenMetrics 1.0 text (``openmetrics.exposition.generate_latest``'s)."""
    out: list[str] = []
    for family in families:
        out.append(f"# HELP {family.name} {_escape(family.doc)}\n")
        out.append(f"# TYPE {family.name} {family.type}\n")
        _sample_lines(family, out)
    out.append("# EOF\n")
    return "".join(out)


def json_text(families: Iterable[Family | Histogram]) -> str:
    """The families as JSON: ``{"metrics": [{name, type, help, samples}]}``.

    Each sample is ``{"name", "labels", "value"}``; names carry their suffix (``_total``,
    ``_bucket``) as in the Prometheus text format, labels are in the family's order
    (``le`` last). One family per line: ``json``'s C encoder (an ``indent`` would make it
    use the pure-Python one, 5x slower).
    """
    lines = [
        _json_family(family) if isinstance(family, Family) else _json_histogram(family)
        for family in families
    ]
    return '{"metrics": [\n' + ",\n".join(lines) + "\n]}\n"


class _Memo(dict[Any, str]):
    """``memo[key]`` is ``text(key)``, computed once per key: label values and bucket counts
    repeat (a model in each of its phases, a count in most series). Keys of one type only
    (``1 == 1.0`` in a dict)."""

    def __init__(self, text: Callable[[Any], str]) -> None:
        super().__init__()
        self.text = text

    def __missing__(self, key: Any) -> str:
        text = self[key] = self.text(key)
        return text


def _escape(value: str) -> str:
    """A label value (or OpenMetrics help text) with backslash, newline and quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _sorted_labels(labels: Sequence[str]) -> list[int]:
    """Positions of the label values in name order: the text formats sort labels by name."""
    return sorted(range(len(labels)), key=labels.__getitem__)


def _sample_lines(family: Family | Histogram, out: list[str]) -> None:
    """Append the family's sample lines (the same in both text formats)."""
    if isinstance(family, Histogram):
        _histogram_lines(family, out)
        return
    name = family.sample_name
    order = _sorted_labels(family.labels)
    keys = [(f'{family.labels[i]}="', i) for i in order]
    for values, value in family.samples:
        if keys:
            labels = ",".join([f'{key}{_escape(values[i])}"' for key, i in keys])
            out.append(f"{name}{{{labels}}} {floatToGoString(value)}\n")
        else:
            out.append(f"{name} {floatToGoString(value)}\n")


def _histogram_lines(family: Histogram, out: list[str]) -> None:
    order = _sorted_labels(family.labels)
    le_at = bisect_left([family.labels[i] for i in order], "le")
    bucket, count, total = (f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
    les = [f'le="{bound}"' for bound in family.bounds]
    escaped, counts_text = _Memo(_escape), _Memo(floatToGoString)
    for values, counts, sum_ in family.series:
        pairs = [f'{family.labels[i]}="{escaped[values[i]]}"' for i in order]
        before = "".join(pair + "," for pair in pairs[:le_at])
        after = "".join("," + pair for pair in pairs[le_at:])
        out.extend(
            [
                f"{bucket}{{{before}{le}{after}}} {counts_text[seen]}\n"
                for le, seen in zip(les, counts, strict=True)
            ]
        )
        labels = "{" + ",".join(pairs) + "}" if pairs else ""
        out.append(
            f"{count}{labels} {counts_text[counts[-1]]}\n{total}{labels} {floatToGoString(sum_)}\n"
        )


def _json_family(family: Family) -> str:
    name = family.sample_name
    samples = [
        {"name": name, "labels": dict(zip(family.labels, values, strict=True)), "value": value}
        for values, value in family.samples
    ]
    return json.dumps(
        {"name": family.name, "type": family.type, "help": family.doc, "samples": samples}
    )


def _json_number(value: float) -> str:
    """``json.dumps(value)``, without its call for a finite float."""
    return repr(value) if type(value) is float and math.isfinite(value) else json.dumps(value)


def _json_histogram(family: Histogram) -> str:
    # json.dumps of {"name", "type", "help", "samples"} with each sample written as the
    # text json.dumps writes for it (its default separators ", " and ": ").
    head = json.dumps({"name": family.name, "type": family.type, "help": family.doc})
    bucket, count, total = (
        json.dumps(f"{family.name}{suffix}") for suffix in ("_bucket", "_count", "_sum")
    )
    keys = [json.dumps(label) for label in family.labels]
    les = [f'"le": {json.dumps(bound)}' for bound in family.bounds]
    quoted, counts_text = _Memo(json.dumps), _Memo(_json_number)
    samples: list[str] = []
    for values, counts, sum_ in family.series:
        labels = ", ".join(
            [f"{key}: {quoted[value]}" for key, value in zip(keys, values, strict=True)]
        )
        before = labels + ", " if labels else ""
        samples.extend(
            [
                f'{{"name": {bucket}, "labels": {{{before}{le}}}, "value": {counts_text[seen]}}}'
                for le, seen in zip(les, counts, strict=True)
            ]
        )
        samples.append(
            f'{{"name": {count}, "labels": {{{labels}}}, "value": {counts_text[counts[-1]]}}}'
        )
        samples.append(
            f'{{"name": {total}, "labels": {{{labels}}}, "value": {_json_number(sum_)}}}'
        )
    return f'{head[:-1]}, "samples": [{", ".join(samples)}]}}'
