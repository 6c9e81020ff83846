"""`gradkit serve` under load: a LogisticRegression on 20 features over HTTP.

    python -m pytest bench/test_bench_serve.py --benchmark-only

A load test does not fit pytest-benchmark's repeat-a-call model, so each test runs
one case once (3 s of load after a short warm-up, from a second process: wrk when
installed, else gradkit's Python asyncio client) through benchmark.pedantic and
records the figures in benchmark.extra_info (requests/s, rows/s, p50/p99/max ms,
CPU use). Each test then asserts, like the other bench files, that the answers
are right (no failed request; the sampled responses hold exactly the model's own
predict() of the rows sent) and that the issue's target is met:

- 1-row JSON requests, 16 connections: >= 2,500 requests/s, p99 < 25 ms
  (mlflow models serve: 525 requests/s, p99 197 ms)
- 1000-row JSON requests, 4 connections: >= 300 requests/s (mlflow: 31)
- 100,000-row binary requests, float64 and float32: >= 10x the rows/s of the
  1000-row JSON requests

p99 is counted as wrk counts it (coordinated omission corrected), as the anchors
were; client and server share the machine's cores, so the figures are a lower
bound. `gradkit bench serve` runs the same cases for 10 s, plus --workers 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn", reason="needs the serve extra")

from gradkit._bench_serve import (  # noqa: E402
    BINARY_F32,
    BINARY_F64,
    MODEL_NAME,
    ONE_ROW,
    THOUSAND_ROWS,
    ServeCase,
    ServedModel,
    ServeRow,
    bench_registry,
    run_case,
    wrk_corrected,
)
from gradkit.registry import Registry  # noqa: E402

DURATION_S = 3.0
GROUP = "gradkit serve: LogisticRegression, 20 features, 1 worker"


@pytest.fixture(scope="module")
def served():
    """The bench model behind `gradkit serve NAME@production`, 1 worker."""
    with bench_registry() as registry_path:
        with Registry(registry_path) as registry:
            model = registry.load(f"{MODEL_NAME}@production")
        server = ServedModel(registry_path, workers=1, n_threads=None)
        try:
            yield server, model, Path(registry_path).parent
        finally:
            server.stop()


@pytest.fixture(scope="module")
def measured() -> dict[str, ServeRow]:
    """The rows measured so far in this module, by case name."""
    return {}


def _load(served, case: ServeCase) -> ServeRow:
    server, model, work = served
    directory = work / case.name.replace(" ", "_").replace(",", "")
    return run_case(case, server, model, directory, DURATION_S)


def _measure(benchmark, served, measured, case: ServeCase) -> ServeRow:
    benchmark.group = GROUP
    benchmark.name = f"{case.name}, {case.connections} connections"
    row = benchmark.pedantic(_load, args=(served, case), rounds=1, iterations=1)
    benchmark.extra_info.update(
        client=row.client,
        requests_per_s=round(row.requests_per_s, 1),
        rows_per_s=round(row.rows_per_s),
        p50_ms=row.p50_ms,
        p99_ms=row.p99_ms,
        p99_raw_ms=row.p99_raw_ms,
        max_ms=row.max_ms,
        errors=row.errors,
        checked=row.checked,
        server_cpu=row.server_cpu,
        client_cpu=row.client_cpu,
    )
    measured[case.name] = row
    # The answers first: a fast wrong server is not a fast server.
    assert row.errors == 0, row.problems
    assert row.checked > 0 and row.wrong == 0, row.problems
    assert row.requests > 0
    return row


def test_one_row_json(benchmark, served, measured):
    row = _measure(benchmark, served, measured, ONE_ROW)
    assert row.requests_per_s >= ONE_ROW.min_requests_per_s
    assert row.p99_ms is not None
    alone = "" if row.p99_raw_ms is None else f", {row.p99_raw_ms:.1f} ms alone"
    assert row.p99_ms < ONE_ROW.max_p99_ms, (
        f"p99 {row.p99_ms:.1f} ms counted as wrk does{alone}; max {row.max_ms:.1f} ms"
    )


def test_thousand_row_json(benchmark, served, measured):
    row = _measure(benchmark, served, measured, THOUSAND_ROWS)
    assert row.requests_per_s >= THOUSAND_ROWS.min_requests_per_s


@pytest.mark.parametrize("case", [BINARY_F64, BINARY_F32], ids=lambda c: c.encoding)
def test_binary(benchmark, served, measured, case):
    row = _measure(benchmark, served, measured, case)
    json_row = measured.get(THOUSAND_ROWS.name) or _load(served, THOUSAND_ROWS)
    measured.setdefault(THOUSAND_ROWS.name, json_row)
    ratio = row.rows_per_s / json_row.rows_per_s
    benchmark.extra_info["rows_per_s_over_json"] = round(ratio, 2)
    assert ratio >= case.min_rows_factor, (
        f"{row.rows_per_s:,.0f} rows/s is {ratio:.1f}x the JSON path's "
        f"{json_row.rows_per_s:,.0f}"
    )


def test_wrk_corrected_counts_a_stall_as_wrk_does():
    # 4 connections for 1 s, 1,000 requests: one every e = 4 ms per connection. A
    # 40 ms response also stands for the 36, 32, ..., 8 ms ones that its
    # connection would have sent in the meantime (wrk's stats_correct).
    latencies = np.full(1000, 1.0)
    latencies[0] = 40.0
    corrected = wrk_corrected(latencies, 1000.0, 4)
    extra = np.sort(corrected[1000:])
    np.testing.assert_allclose(extra, np.arange(8.0, 37.0, 4.0))
    # Latencies below 2e add nothing.
    np.testing.assert_array_equal(wrk_corrected(np.full(1000, 1.0), 1000.0, 4), 1.0)
