"""The serving benchmark behind `gradkit bench serve`, shared with
bench/test_bench_serve.py.

A gradkit LogisticRegression on 20 features, fitted on synthetic data, is
registered in a temporary registry and served by `gradkit serve NAME@production`
in a subprocess (1 worker, and again with 2 workers for comparison), started
with --max-request-mb 64 so that the 100,000-row binary requests fit. Load comes
from a second process on loopback, for 10 s per case (--quick: 3 s):

- 1-row JSON requests on 16 connections: target >= 2,500 requests/s, p99 < 25 ms
- 1000-row JSON requests on 4 connections: target >= 300 requests/s
- 100,000-row binary requests (float64, float32) on 4 connections: target >= 10x
  the rows/s of the 1000-row JSON case

The load generator is wrk (with a Lua script for the POST bodies) when it is
installed, else a Python asyncio client (`python -m gradkit._bench_serve client
SPEC`, with uvloop when importable): N keep-alive HTTP/1.1 connections on raw
asyncio streams, each sending its next request as soon as the previous response
has been read in full, for the duration. Requests completed during a warm-up are
not counted. Every response must be 200, and a sample of them (the 1st, 2nd, 4th,
8th, ... of each connection) must hold exactly the model's own predict() of the
rows sent; each connection sends different rows, so that micro-batching giving a
request another's rows would show. With wrk, the same check runs as a short
Python client pass before wrk's timed run.

Latency percentiles are counted as wrk counts them, with its correction for
coordinated omission (see wrk_corrected), because the anchors' p99 figures were
taken with wrk: a server that stalls for 60 ms every half second has a p99 of a
few ms over the responses alone, but of about 50 ms in wrk's count. The table's
max column shows such stalls either way.

On a 2-core machine client and server share the CPUs (so do the two workers of
the --workers 2 cases): the figures are a lower bound of what the server does with
the machine to itself. The table shows each side's CPU use (1.00 = one core busy)
so that a client-bound run can be told from a server-bound one.

The peers are quoted from ../shared/reference/anchors.md (wrk, 10 s, the same
machine): `mlflow models serve` 525 requests/s with p99 197 ms on 1-row requests
and 31 requests/s on 1000-row requests; bare Starlette + uvicorn + orjson + numpy
3,738 and 307 requests/s. MLflow is not a dependency; they are not re-measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from gradkit._table import text_table

FULL_DURATION_S, QUICK_DURATION_S = 10.0, 3.0
N_FEATURES = 20
MODEL_NAME = "bench_logistic"
SEED = 20261127
MAX_REQUEST_MB = 64
# Binary requests must carry at least this many times the JSON path's rows/s.
BINARY_FACTOR = 10.0
HOST = "127.0.0.1"
_SERVER_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ServeCase:
    """One load: rows per request, the body's encoding, connections, workers."""

    name: str
    rows: int
    encoding: str  # "json", "float64" or "float32" (binary tensor)
    connections: int
    workers: int = 1
    bodies: int = 16  # distinct request bodies, each with other rows
    min_requests_per_s: float | None = None
    max_p99_ms: float | None = None
    # rows/s >= this factor x the rows/s of the case named by relative_to
    min_rows_factor: float | None = None
    relative_to: str | None = None
    peer: str = "-"

    @property
    def binary(self) -> bool:
        return self.encoding != "json"

    def target_text(self) -> str:
        parts = []
        if self.min_requests_per_s is not None:
            parts.append(f">= {self.min_requests_per_s:,.0f}/s")
        if self.max_p99_ms is not None:
            parts.append(f"p99 < {self.max_p99_ms:g} ms")
        if self.min_rows_factor is not None:
            parts.append(f"rows/s >= {self.min_rows_factor:g}x JSON")
        return ", ".join(parts) or "(for comparison)"


ONE_ROW = ServeCase(
    "1-row JSON", 1, "json", 16, bodies=64, min_requests_per_s=2500, max_p99_ms=25,
    peer="mlflow 525/s, p99 197 ms",
)  # fmt: skip
THOUSAND_ROWS = ServeCase(
    "1000-row JSON", 1000, "json", 4, bodies=8, min_requests_per_s=300,
    peer="mlflow 31/s",
)  # fmt: skip
BINARY_F64 = ServeCase(
    "100,000-row binary float64", 100_000, "float64", 4, bodies=4,
    min_rows_factor=BINARY_FACTOR, relative_to=THOUSAND_ROWS.name,
    peer="mlflow JSON 31,000 rows/s",
)  # fmt: skip
BINARY_F32 = ServeCase(
    "100,000-row binary float32", 100_000, "float32", 4, bodies=4,
    min_rows_factor=BINARY_FACTOR, relative_to=THOUSAND_ROWS.name,
    peer="mlflow JSON 31,000 rows/s",
)  # fmt: skip
ONE_ROW_2W = ServeCase(
    "1-row JSON", 1, "json", 16, workers=2, bodies=64,
    peer="bare Starlette 3,738/s",
)  # fmt: skip
THOUSAND_ROWS_2W = ServeCase(
    "1000-row JSON", 1000, "json", 4, workers=2, bodies=8,
    peer="bare Starlette 307/s",
)  # fmt: skip
CASES: tuple[ServeCase, ...] = (
    ONE_ROW, THOUSAND_ROWS, BINARY_F64, BINARY_F32, ONE_ROW_2W, THOUSAND_ROWS_2W,
)  # fmt: skip


@dataclass
class ServeRow:
    case: str
    workers: int
    connections: int
    rows_per_request: int
    target: str
    peer: str
    client: str = "-"  # "python" or "wrk"
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None  # counted as wrk does (see wrk_corrected)
    p99_raw_ms: float | None = None  # of the responses alone (Python client only)
    max_ms: float | None = None
    errors: int = 0
    checked: int = 0  # responses whose predictions were compared
    wrong: int = 0  # ... and differed from the model's own predict()
    server_cpu: float | None = None  # cores busy on average, over the timed run
    client_cpu: float | None = None
    ok: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request


# --- the served model --------------------------------------------------------------


def bench_model(seed: int = SEED) -> Any:
    """A LogisticRegression on N_FEATURES standard-normal features."""
    from gradkit.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((20_000, N_FEATURES))
    w = rng.standard_normal(N_FEATURES) / np.sqrt(N_FEATURES)
    y = (X @ w + 0.3 * rng.standard_normal(len(X)) > 0).astype(np.int64)
    return LogisticRegression(solver="lbfgs", max_iter=200).fit(X, y)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """pid and every process below it (uvicorn's workers), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def _cpu_seconds(pids: list[int]) -> float | None:
    """user + system CPU time of the processes, from /proc (None off Linux)."""
    total = 0.0
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError):
        return None
    return total


class ServedModel:
    """`gradkit serve NAME@production` in a subprocess, on a free port."""

    def __init__(self, registry: str, workers: int, n_threads: int | None) -> None:
        self.port = _free_port()
        self.workers = workers
        self.log_path = Path(registry).parent / f"server-{workers}w.log"
        command = [
            sys.executable, "-m", "gradkit", "serve", f"{MODEL_NAME}@production",
            "--registry", registry, "--port", str(self.port),
            "--workers", str(workers), "--max-request-mb", str(MAX_REQUEST_MB),
        ]  # fmt: skip
        env = dict(os.environ)
        if n_threads is not None:
            env["GRADKIT_NUM_THREADS"] = str(n_threads)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with code {self.process.returncode}: "
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(
                    f"{self.url}/v2/health/ready", timeout=1
                ) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(
                f"the server did not answer within {_SERVER_START_TIMEOUT_S:.0f} s: "
                + self.log_tail()
            )
        if self.workers > 1:  # every worker must have loaded the model
            deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
            while time.monotonic() < deadline:
                if len(self.pids()) > self.workers:
                    break
                time.sleep(0.1)
            time.sleep(1.0)

    def pids(self) -> list[int]:
        # uvicorn's multiprocessing start leaves a resource tracker too; it is idle.
        return _descendants(self.process.pid)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def bench_registry(directory: str | None = None) -> Iterator[str]:
    """A temporary registry with the bench model registered as NAME@production."""
    from gradkit.registry import Registry

    with tempfile.TemporaryDirectory(prefix="gradkit-bench-serve-") as tmp:
        path = str(Path(directory or tmp) / "registry")
        with Registry(path) as registry:
            record = registry.register(MODEL_NAME, bench_model())
            registry.set_alias(MODEL_NAME, record.version, "production")
        yield path


# --- the request bodies ---------------------------------------------------------------


def write_bodies(case: ServeCase, model: Any, directory: Path) -> dict[str, Any]:
    """Write the case's request bodies and the model's predictions for each; the
    part of the client's spec that describes the requests."""
    rng = np.random.default_rng([SEED, case.rows, case.bodies])
    bodies, expected = [], []
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(case.bodies):
        X = rng.standard_normal((case.rows, N_FEATURES))
        if case.binary:
            X = X.astype(case.encoding)
            data = X.tobytes()
        else:
            import orjson

            data = orjson.dumps({"x": X}, option=orjson.OPT_SERIALIZE_NUMPY)
        body_path = directory / f"body{i}.bin"
        body_path.write_bytes(data)
        want_path = directory / f"expected{i}.npy"
        # What the server computes: the rows as float64.
        np.save(want_path, model.predict(X.astype(np.float64)))
        bodies.append(str(body_path))
        expected.append(str(want_path))
    headers = {"Content-Type": "application/json"}
    if case.binary:
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Tensor-Shape": f"{case.rows},{N_FEATURES}",
            "X-Tensor-Dtype": case.encoding,
        }
    return {
        "path": "/predict",
        "headers": headers,
        "bodies": bodies,
        "expected": expected,
    }


# --- the Python load generator (runs in its own process) ---------------------------


def _request_head(host: str, port: int, path: str, headers: dict, size: int) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    lines += [f"Content-Length: {size}", "Connection: keep-alive", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _header(head: bytes, name: bytes) -> bytes | None:
    """The value of one header in a response head (name in lower case)."""
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


class _Load:
    """The state of one client run: what to send, what came back."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.host, self.port = spec["host"], int(spec["port"])
        self.connections = int(spec["connections"])
        self.warmup_s = float(spec["warmup_s"])
        self.duration_s = float(spec["duration_s"])
        self.server_pids = [int(p) for p in spec.get("server_pids", [])]
        bodies = [Path(p).read_bytes() for p in spec["bodies"]]
        self.expected = [np.load(p) for p in spec["expected"]]
        self.heads = [
            _request_head(self.host, self.port, spec["path"], spec["headers"], len(b))
            for b in bodies
        ]
        # One buffer per request: one write, one send, for the small ones.
        self.requests = [
            head + body if len(body) < 2**20 else None
            for head, body in zip(self.heads, bodies, strict=True)
        ]
        self.bodies = bodies
        self.latencies: list[float] = []
        self.errors = 0
        self.checked = 0
        self.wrong = 0
        self.first_problem: str | None = None
        self.cpu: dict[str, float | None] = {}

    def problem(self, text: str) -> None:
        if self.first_problem is None:
            self.first_problem = text

    def check(self, index: int, head: bytes, body: bytes) -> None:
        """Compare a response's predictions with the model's predict()."""
        import orjson

        want = self.expected[index]
        try:
            dtype = _header(head, b"x-tensor-dtype")
            if dtype is not None:
                got = np.frombuffer(body, np.dtype(dtype.decode()))
            else:
                got = np.asarray(orjson.loads(body)["y_pred"])
            same = got.shape == want.shape and bool(np.array_equal(got, want))
        except Exception as exc:
            same = False
            self.problem(f"unreadable response: {type(exc).__name__}: {exc}")
        self.checked += 1
        if not same:
            self.wrong += 1
            self.problem(f"predictions of body {index} differ from predict()")

    async def connection(self, number: int, start: float, end: float) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        count = 0
        latencies = self.latencies
        n_bodies = len(self.heads)
        while time.perf_counter() < end:
            index = (number + count) % n_bodies
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                assert reader is not None
                sent = time.perf_counter()
                request = self.requests[index]
                if request is not None:
                    writer.write(request)
                else:
                    writer.writelines([self.heads[index], self.bodies[index]])
                    await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = _header(head, b"content-length")
                if length is None:
                    raise ConnectionError("a response without Content-Length")
                body = await reader.readexactly(int(length))
                done = time.perf_counter()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ConnectionError) as exc:  # fmt: skip
                self.errors += 1
                self.problem(f"connection {number}: {type(exc).__name__}: {exc}")
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)
                continue
            count += 1
            if start <= done <= end:
                latencies.append(done - sent)
            if head[9:12] != b"200":
                self.errors += 1
                self.problem(
                    f"HTTP {head[9:12].decode()}: {body[:200].decode(errors='replace')}"
                )
                if head.lower().find(b"connection: close") >= 0 and writer is not None:
                    writer.close()
                    reader = writer = None
            elif count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th, ... response
                self.check(index, head, body)
        if writer is not None:
            writer.close()

    async def sample_cpu(self, start: float, end: float) -> None:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        pids = [p for pid in self.server_pids for p in _descendants(pid)]
        client0, server0 = time.process_time(), _cpu_seconds(pids)
        wall0 = time.perf_counter()
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        wall = time.perf_counter() - wall0
        client1, server1 = time.process_time(), _cpu_seconds(pids)
        self.cpu["client"] = (client1 - client0) / wall
        if server0 is not None and server1 is not None:
            self.cpu["server"] = (server1 - server0) / wall

    async def run(self) -> dict[str, Any]:
        start = time.perf_counter() + self.warmup_s
        end = start + self.duration_s
        await asyncio.gather(
            self.sample_cpu(start, end),
            *(self.connection(i, start, end) for i in range(self.connections)),
        )
        raw = np.asarray(self.latencies) * 1e3
        corrected = wrk_corrected(raw, self.duration_s * 1e3, self.connections)
        return {
            "client": "python",
            "requests": len(raw),
            "seconds": self.duration_s,
            "p50_ms": _percentile(corrected, 50),
            "p99_ms": _percentile(corrected, 99),
            "p99_raw_ms": _percentile(raw, 99),
            "max_ms": float(raw.max()) if len(raw) else None,
            "errors": self.errors,
            "checked": self.checked,
            "wrong": self.wrong,
            "problem": self.first_problem,
            "client_cpu": self.cpu.get("client"),
            "server_cpu": self.cpu.get("server"),
        }


def _percentile(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def wrk_corrected(latencies: np.ndarray, window: float, connections: int) -> np.ndarray:
    """The latencies as wrk reports them: with its correction for coordinated
    omission (stats_correct in wrk.c). With `connections` closed-loop clients a
    request that took L blocked its connection, so the requests it would have sent
    every expected interval e = window / (requests per connection) are counted as
    well, with the latencies L - e, L - 2e, ... down to 2e. A stall of the server
    then weighs as it would for clients that do not wait; the anchors' p99 figures
    were taken with wrk, so ours must be counted the same way to compare."""
    if len(latencies) < connections:
        return latencies
    expected = window / (len(latencies) / connections)
    extra = [
        np.arange(latency - expected, expected, -expected)
        for latency in latencies[latencies > 2 * expected]
    ]
    return np.concatenate([latencies, *extra]) if extra else latencies


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the Python load generator in this process (uvloop when importable)."""
    load = _Load(spec)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(load.run())
    return uvloop.run(load.run())


def _client_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "client":
        print("usage: python -m gradkit._bench_serve client SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text())
    print(json.dumps(run_client(spec)))
    return 0


# --- wrk ---------------------------------------------------------------------------

_WRK_SCRIPT = """\
local paths = {paths}
local headers = {headers}
local requests = {{}}
for name, value in pairs(headers) do wrk.headers[name] = value end
for i, path in ipairs(paths) do
  local f = assert(io.open(path, "rb"))
  requests[i] = wrk.format("POST", "{path}", nil, f:read("*a"))
  f:close()
end
local n = 0
request = function()
  n = n + 1
  return requests[(n % #requests) + 1]
end
done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'GRADKIT_WRK {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "errors": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal here


def run_wrk(
    wrk: str, spec: dict[str, Any], server: ServedModel, directory: Path
) -> dict[str, Any]:
    """Time the case with wrk (1 thread); its Lua script cycles the bodies."""
    paths = "{" + ", ".join(_lua_string(p) for p in spec["bodies"]) + "}"
    headers = (
        "{"
        + ", ".join(
            f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in spec["headers"].items()
        )
        + "}"
    )
    script = directory / "load.lua"
    script.write_text(
        _WRK_SCRIPT.format(paths=paths, headers=headers, path=spec["path"])
    )
    pids = server.pids()
    cpu0, wall0 = _cpu_seconds(pids), time.perf_counter()
    command = [
        wrk, "-t1", f"-c{spec['connections']}",
        f"-d{max(1, round(spec['duration_s']))}s", "--timeout", "10s",
        "-s", str(script), f"{server.url}{spec['path']}",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - wall0
    cpu1 = _cpu_seconds(pids)
    for line in completed.stdout.splitlines():
        if line.startswith("GRADKIT_WRK "):
            figures = json.loads(line[len("GRADKIT_WRK ") :])
            break
    else:
        raise RuntimeError(
            f"wrk failed (exit {completed.returncode}): "
            f"{(completed.stderr or completed.stdout)[-1000:]}"
        )
    return {
        "client": "wrk",
        "requests": figures["requests"],
        "seconds": figures["duration_us"] / 1e6,
        "p50_ms": figures["p50_us"] / 1e3,
        "p99_ms": figures["p99_us"] / 1e3,
        "max_ms": figures["max_us"] / 1e3,
        "errors": figures["errors"],
        "server_cpu": (cpu1 - cpu0) / wall if cpu0 is not None and cpu1 else None,
        "client_cpu": None,
    }


# --- the benchmark -------------------------------------------------------------------


def run_case(
    case: ServeCase,
    server: ServedModel,
    model: Any,
    directory: Path,
    duration_s: float,
    *,
    client: str = "auto",
) -> ServeRow:
    """Load the server with one case and return its figures, checked.

    client: "python", "wrk", or "auto" (wrk when installed). With wrk, a short
    Python pass (1 s) first checks the responses under the same concurrency.
    """
    row = ServeRow(
        case.name, case.workers, case.connections, case.rows, case.target_text(),
        case.peer,
    )  # fmt: skip
    spec = write_bodies(case, model, directory)
    spec |= {
        "host": HOST,
        "port": server.port,
        "connections": case.connections,
        "server_pids": [server.process.pid],
        "warmup_s": min(1.0, max(0.3, duration_s / 10)),
        "duration_s": duration_s,
    }
    wrk = shutil.which("wrk") if client in ("auto", "wrk") else None
    if client == "wrk" and wrk is None:
        raise RuntimeError("wrk is not installed; use client='python' or 'auto'.")
    if wrk is not None:
        check = _python_client(spec | {"duration_s": 1.0}, directory)
        result = run_wrk(wrk, spec, server, directory)
        result |= {k: check[k] for k in ("checked", "wrong", "problem")}
        result["errors"] += check["errors"]
    else:
        result = _python_client(spec, directory)
    row.client = result["client"]
    row.requests, row.seconds = result["requests"], result["seconds"]
    row.p50_ms, row.p99_ms = result["p50_ms"], result["p99_ms"]
    row.p99_raw_ms, row.max_ms = result.get("p99_raw_ms"), result.get("max_ms")
    row.errors, row.checked, row.wrong = (
        result["errors"], result["checked"], result["wrong"],
    )  # fmt: skip
    row.server_cpu, row.client_cpu = result["server_cpu"], result["client_cpu"]
    if result.get("problem"):
        row.problems.append(result["problem"])
    if row.errors:
        row.problems.insert(0, f"{row.errors} request(s) failed")
    if row.wrong:
        row.problems.insert(
            0, f"{row.wrong} of {row.checked} checked responses had wrong predictions"
        )
    elif row.checked == 0:
        row.problems.append("no response was checked against predict()")
    if row.requests == 0:
        row.problems.append("no request completed")
    row.ok = not row.problems
    return row


def _python_client(spec: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Run the Python load generator as a separate process and read its figures."""
    spec_path = directory / "spec.json"
    spec_path.write_text(json.dumps(spec))
    timeout = spec["warmup_s"] + spec["duration_s"] + 120
    completed = subprocess.run(
        [sys.executable, "-m", "gradkit._bench_serve", "client", str(spec_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"the load client failed (exit {completed.returncode}): "
            f"{completed.stderr[-1500:]}"
        )
    return dict(json.loads(completed.stdout.splitlines()[-1]))


def apply_targets(rows: list[ServeRow], cases: tuple[ServeCase, ...]) -> None:
    """Mark each row not ok whose case's target was missed (and say by how much)."""
    by_name = {(r.case, r.workers): r for r in rows}
    for case in cases:
        row = by_name.get((case.name, case.workers))
        if row is None or row.requests == 0:
            continue
        if (
            case.min_requests_per_s is not None
            and row.requests_per_s < case.min_requests_per_s
        ):
            row.problems.append(
                f"{row.requests_per_s:,.0f} requests/s < target "
                f"{case.min_requests_per_s:,.0f}"
            )
        if (
            case.max_p99_ms is not None
            and row.p99_ms is not None
            and row.p99_ms >= case.max_p99_ms
        ):
            raw = "" if row.p99_raw_ms is None else (
                f" (of the responses alone: p99 {row.p99_raw_ms:.1f} ms, "
                f"max {_fmt(row.max_ms)} ms)"
            )  # fmt: skip
            row.problems.append(
                f"p99 {row.p99_ms:.1f} ms >= target {case.max_p99_ms:g} ms{raw}"
            )
        if case.min_rows_factor is not None:
            base = by_name.get((case.relative_to or "", case.workers))
            if base is None or base.requests == 0:
                row.problems.append(f"no {case.relative_to} figure to compare with")
            elif row.rows_per_s < case.min_rows_factor * base.rows_per_s:
                row.problems.append(
                    f"{row.rows_per_s:,.0f} rows/s is "
                    f"{row.rows_per_s / base.rows_per_s:.1f}x the JSON path's "
                    f"{base.rows_per_s:,.0f}; target {case.min_rows_factor:g}x"
                )
        row.ok = not row.problems


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_serve_table(rows: list[ServeRow]) -> str:
    titles = [
        "case", "workers", "connections", "requests/s", "rows/s", "p50 ms", "p99 ms",
        "max ms", "errors", "target", "peer (anchors)", "server cpu", "client cpu",
        "ok",
    ]  # fmt: skip
    cells = [
        [
            r.case, str(r.workers), str(r.connections), _fmt(r.requests_per_s, 0),
            _fmt(r.rows_per_s, 0), _fmt(r.p50_ms, 2), _fmt(r.p99_ms, 2),
            _fmt(r.max_ms, 1), str(r.errors), r.target, r.peer,
            _fmt(r.server_cpu, 2), _fmt(r.client_cpu, 2), "ok" if r.ok else "MISSED",
        ]
        for r in rows
    ]  # fmt: skip
    return text_table(titles, cells, right={1, 2, 3, 4, 5, 6, 7, 8, 11, 12})


def run_serve_bench(
    quick: bool,
    out: TextIO | None = sys.stdout,
    progress: bool = True,
    *,
    duration_s: float | None = None,
    client: str = "auto",
    n_threads: int | None = None,
    cases: tuple[ServeCase, ...] = CASES,
) -> list[ServeRow]:
    """Serve the bench model, load it with each case, print the table.

    duration_s overrides the timed seconds per case (10, --quick 3); client is
    "auto" (wrk when installed, else Python), "wrk" or "python"; n_threads sets
    GRADKIT_NUM_THREADS for the server. Returns one ServeRow per case; a row's ok
    is False when its target was missed or a response was wrong.
    """
    import gradkit
    from gradkit.registry import Registry

    seconds = duration_s or (QUICK_DURATION_S if quick else FULL_DURATION_S)
    rows: list[ServeRow] = []

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    with bench_registry() as registry_path:
        with Registry(registry_path) as registry:
            model = registry.load(f"{MODEL_NAME}@production")
        work = Path(registry_path).parent
        for workers in sorted({case.workers for case in cases}):
            group = [case for case in cases if case.workers == workers]
            say(f"starting gradkit serve with {workers} worker(s) ...")
            try:
                server = ServedModel(registry_path, workers, n_threads)
            except Exception as exc:
                for case in group:
                    rows.append(_failed_row(case, exc))
                continue
            try:
                for case in group:
                    say(f"  {case.name}, {case.connections} connections, {seconds:g} s")
                    try:
                        row = run_case(
                            case, server, model, work / "bodies", seconds,
                            client=client,
                        )  # fmt: skip
                    except Exception as exc:  # one broken case must not hide the rest
                        row = _failed_row(case, exc)
                    rows.append(row)
                    say(
                        f"    {row.requests_per_s:,.0f} requests/s, "
                        f"{row.rows_per_s:,.0f} rows/s, p99 {_fmt(row.p99_ms, 2)} ms, "
                        f"{row.errors} error(s)"
                    )
                    shutil.rmtree(work / "bodies", ignore_errors=True)
            finally:
                server.stop()
    apply_targets(rows, cases)
    if out is not None:
        used = {r.client for r in rows if r.client != "-"}
        print(
            f"gradkit {gradkit.__version__} serving benchmark: LogisticRegression on "
            f"{N_FEATURES} features, gradkit serve on {HOST}, load from "
            f"{'/'.join(sorted(used)) or 'no'} client(s), {seconds:g} s per case, "
            f"{os.cpu_count()} CPU(s) shared by client and server; p50/p99 counted "
            "as wrk does (coordinated omission corrected)",
            file=out,
        )
        print(format_serve_table(rows), file=out)
        for row in rows:
            for problem in row.problems:
                print(f"!!! {row.case} ({row.workers}w): {problem}", file=out)
        out.flush()
    return rows


def _failed_row(case: ServeCase, exc: BaseException) -> ServeRow:
    row = ServeRow(
        case.name, case.workers, case.connections, case.rows, case.target_text(),
        case.peer, ok=False, problems=[f"{type(exc).__name__}: {exc}"],
    )  # fmt: skip
    return row


if __name__ == "__main__":
    sys.exit(_client_main(sys.argv[1:]))
