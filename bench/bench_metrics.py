"""Benchmark of sqlflow's metrics: recording cost per load and export time of a big run.

Targets (issue 6): recording one load < 1 ms (aim < 0.05 ms); exporting the
run_results.json of 5,000 models < 1 s. Run: ``.venv/bin/python bench/bench_metrics.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dbt.adapters.sqlflow.metrics import LoadRecorder
from dbt.adapters.sqlflow.metrics.export import export_artifacts


def bench_record(n: int) -> tuple[float, float]:
    """Median and p99 seconds of one ``record`` call, over ``n`` calls."""
    collector = LoadRecorder()
    wm = datetime(2026, 1, 1, tzinfo=UTC)
    checks = [("not_null_id", "error", "pass", 0), ("amount_positive", "warn", "fail", 3)]
    timings = []
    clock = time.perf_counter
    for i in range(n):
        start = clock()
        collector.record(
            "model.shop.orders",
            strategy="merge",
            status="success",
            duration_seconds=0.5,
            rows_inserted=i,
            rows_updated=2,
            rows_deleted=1,
            partitions_touched=1,
            watermark_before=wm,
            watermark_after=wm,
            quality_checks=checks,
            load_id=str(i),
            invocation_id="inv",
        )
        timings.append(clock() - start)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99)]


PHASES = ("plan", "stage", "dml", "checks", "state", "commit")
PHASE_TIMES = (0.004, 0.2, 0.9, 0.03, 0.002, 0.001)


def synthetic_run_results(models: int) -> dict[str, Any]:
    """A run_results.json of ``models`` sqlflow models (every 50th one failed)."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    results = []
    for i in range(models):
        failed = i % 50 == 0
        response: dict[str, Any] = {}
        if not failed:
            response = {
                "_message": "OK",
                "rows_affected": 30,
                "rows_inserted": 10,
                "rows_updated": 10,
                "rows_deleted": 10,
                "strategy": ("merge", "append", "insert_overwrite")[i % 3],
                "partitions_touched": 2,
                "batches": 1,
                "watermark_before": (now - timedelta(hours=2)).isoformat(),
                "watermark_after": (now - timedelta(hours=1)).isoformat(),
                "load_ids": [f"load-{i}"],
                # One batch's phase timings, as sqlflow writes them (issue 17): the
                # sqlflow_batch_phase_seconds histogram's samples.
                "phase_seconds": dict(zip(PHASES, PHASE_TIMES, strict=True)),
                "batch_phase_seconds": {p: [t] for p, t in zip(PHASES, PHASE_TIMES, strict=True)},
                "quality_checks": [
                    {
                        "check": "not_null_id",
                        "severity": "error",
                        "status": "pass",
                        "failing_rows": 0,
                    }
                ],
            }
        results.append(
            {
                "unique_id": f"model.bench.m{i:05d}",
                "status": "error" if failed else "success",
                "execution_time": 0.1 + i % 7,
                "message": "quality check failed: not_null_id" if failed else "OK",
                "adapter_response": response,
            }
        )
    return {
        "metadata": {
            "dbt_version": "1.11.16",
            "generated_at": now.isoformat(),
            "invocation_id": "bench",
        },
        "elapsed_time": 600.0,
        "args": {"which": "run"},
        "results": results,
    }


def bench_export(models: int, repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` seconds to export the run in each format (read + build + render)."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run_results.json"
        path.write_text(json.dumps(synthetic_run_results(models)))
        for fmt in ("prometheus", "openmetrics", "json", "cloudwatch-emf"):
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                export_artifacts(path, None, fmt=fmt)
                best = min(best, time.perf_counter() - start)
            out[fmt] = best
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            export_artifacts(path, None, textfile=tmp)
            best = min(best, time.perf_counter() - start)
        out["textfile"] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    median, p99 = bench_record(args.records)
    print(
        f"record(): median {median * 1e3:.4f} ms, p99 {p99 * 1e3:.4f} ms per load "
        f"over {args.records:,} loads (target < 1 ms, aim < 0.05 ms): "
        f"{'OK' if median < 0.05e-3 else 'ABOVE AIM' if median < 1e-3 else 'FAIL'}"
    )
    for fmt, seconds in bench_export(args.models, args.repeat).items():
        print(
            f"export {fmt:<14} of {args.models:,} models: {seconds:.3f} s (target < 1 s): "
            f"{'OK' if seconds < 1 else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
