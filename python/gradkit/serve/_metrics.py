"""Prometheus text exposition of the server's counters and histograms.

A few counters and two histograms, written out by hand: prometheus_client's
process-wide registry would tangle several apps in one process (as the tests run
them), and the text format is this small.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, cumulative = [], 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {cumulative}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        suffix = f"{{{labels}}}" if labels else ""
        out += [
            f"{name}_sum{suffix} {self.total:.6f}",
            f"{name}_count{suffix} {self.n}",
        ]
        return out


class ServerMetrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch_rows = Histogram(BATCH_BUCKETS_ROWS)
        self.batch_requests = Histogram(BATCH_BUCKETS_ROWS)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, status)] += 1
        if endpoint not in self.latency:
            self.latency[endpoint] = Histogram(LATENCY_BUCKETS_S)
        self.latency[endpoint].observe(seconds)

    def observe_batch(self, rows: int, requests: int) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)

    def render(self, versions: dict[str, int]) -> str:
        lines = [
            "# HELP gradkit_requests_total HTTP requests by endpoint and status.",
            "# TYPE gradkit_requests_total counter",
        ]
        for (endpoint, status), count in sorted(self.requests.items()):
            labels = f'endpoint="{endpoint}",code="{status}"'
            lines.append(f"gradkit_requests_total{{{labels}}} {count}")
        lines += [
            "# HELP gradkit_request_errors_total Requests answered with 4xx or 5xx.",
            "# TYPE gradkit_request_errors_total counter",
            "gradkit_request_errors_total "
            f"{sum(c for (_, s), c in self.requests.items() if s >= 400)}",
            "# HELP gradkit_request_duration_seconds Time to answer a request.",
            "# TYPE gradkit_request_duration_seconds histogram",
        ]
        for endpoint, histogram in sorted(self.latency.items()):
            lines += histogram.lines(
                "gradkit_request_duration_seconds", f'endpoint="{endpoint}"'
            )
        lines += [
            "# HELP gradkit_batch_rows Rows per predict call (micro-batching).",
            "# TYPE gradkit_batch_rows histogram",
            *self.batch_rows.lines("gradkit_batch_rows"),
            "# HELP gradkit_batch_requests Requests merged into one predict call.",
            "# TYPE gradkit_batch_requests histogram",
            *self.batch_requests.lines("gradkit_batch_requests"),
            "# HELP gradkit_model_version The registry version being served.",
            "# TYPE gradkit_model_version gauge",
        ]
        for name, version in sorted(versions.items()):
            lines.append(f'gradkit_model_version{{model="{name}"}} {version}')
        return "\n".join(lines) + "\n"
