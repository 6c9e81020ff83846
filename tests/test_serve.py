"""gradkit serve: the real server in a subprocess on a free loopback port, talked to
over HTTP: every endpoint, the OIP request and response shapes, results equal to
calling the model directly, micro-batching under concurrent clients (each gets its
own rows), hot reload while requests flow, and every kind of bad input (400, 404,
413 with {"error": ...}, and the server keeps serving).
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gradkit import cli
from gradkit.linear_model import LogisticRegression, Ridge
from gradkit.registry import Registry

N_FEATURES = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_classifier(seed, flip=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2000, N_FEATURES))
    y = np.where((X[:, 0] > 0) ^ flip, "yes", "no")
    return LogisticRegression().fit(X, y)


class Server:
    def __init__(self, registry, *models, options=()):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gradkit", "serve", *models, "--registry",
             str(registry), "--port", str(self.port), *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.request("GET", "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                _, err = self.process.communicate()
                raise RuntimeError(f"server did not start: {err}")
            time.sleep(0.1)

    def request(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            return (
                response.status,
                data,
                {k.lower(): v for k, v in response.getheaders()},
            )
        finally:
            connection.close()

    def json(self, method, path, body=None, headers=None):
        status, data, _ = self.request(method, path, body, headers)
        return status, json.loads(data)

    def stop(self):
        self.process.terminate()
        try:
            self.process.communicate(timeout=10)  # also closes the pipe
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "registry"
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 5))
    with Registry(path) as reg:
        reg.register("clf", fit_classifier(0))
        reg.set_alias("clf", 1, "production")
        reg.register("reg", Ridge().fit(X, X @ np.arange(5.0)))
        reg.register("weights", {"w": np.ones((2, 2))})
    return path


@pytest.fixture(scope="module")
def server(registry):
    running = Server(
        registry, "clf@production", "reg",
        options=["--max-wait-ms", "5", "--max-request-mb", "1"],
    )  # fmt: skip
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(registry):
    with Registry(registry) as reg:
        return reg.load("clf@production")


def rows(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, N_FEATURES))


def test_predict_equals_the_model(server, model):
    X = rows(7)
    status, body = server.json("POST", "/predict", {"x": X.tolist(), "model": "clf"})
    assert status == 200
    assert body["y_pred"] == model.predict(X).tolist()
    status, body = server.json(
        "POST", "/predict", {"x": X.tolist(), "model": "clf", "proba": True}
    )
    np.testing.assert_allclose(body["proba"], model.predict_proba(X), rtol=1e-15)
    # One row may be sent as a flat list.
    status, body = server.json("POST", "/predict", {"x": X[0].tolist(), "model": "clf"})
    assert status == 200 and body["y_pred"] == model.predict(X[:1]).tolist()


def test_binary_tensors_skip_json(server, registry):
    with Registry(registry) as reg:
        ridge = reg.load("reg")
    X = rows(300)[:, :5].astype(np.float32)
    status, data, headers = server.request(
        "POST", "/predict?model=reg", X.tobytes(),
        {"Content-Type": "application/octet-stream", "X-Tensor-Shape": "300,5",
         "X-Tensor-Dtype": "float32"},
    )  # fmt: skip
    assert status == 200 and headers["x-tensor-dtype"] == "float64"
    got = np.frombuffer(data, np.float64)
    np.testing.assert_allclose(got, ridge.predict(X.astype(np.float64)), rtol=1e-12)


def test_oip_metadata_and_health(server, model):
    assert server.json("GET", "/v2/health/live") == (200, {"live": True})
    status, meta = server.json("GET", "/v2")
    assert status == 200 and meta["name"] == "gradkit" and meta["version"]
    for path in ("/v2/models/clf", "/v2/models/clf/versions/1"):
        status, meta = server.json("GET", path)
        assert status == 200
        assert meta["name"] == "clf" and meta["versions"] == ["1"]
        assert meta["inputs"] == [
            {"name": "input-0", "datatype": "FP64", "shape": [-1, N_FEATURES]}
        ]
        assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
        assert meta["outputs"][0]["datatype"] == "BYTES"  # string classes
        assert server.json("GET", f"{path}/ready")[0] == 200


@pytest.mark.parametrize(
    "path", ["/v2/models/clf/infer", "/v2/models/clf/versions/1/infer"]
)
def test_oip_infer(server, model, path):
    X = rows(3, seed=2)
    request = {
        "id": "abc",
        "inputs": [{"name": "input-0", "shape": [3, N_FEATURES], "datatype": "FP64",
                    "data": X.reshape(-1).tolist()}],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }  # fmt: skip
    status, body = server.json("POST", path, request)
    assert status == 200
    assert body["model_name"] == "clf" and body["model_version"] == "1"
    assert body["id"] == "abc"
    predict, proba = body["outputs"]
    assert predict == {"name": "predict", "shape": [3], "datatype": "BYTES",
                       "data": model.predict(X).tolist()}  # fmt: skip
    assert proba["shape"] == [3, 2] and proba["datatype"] == "FP64"
    np.testing.assert_allclose(
        np.reshape(proba["data"], (3, 2)), model.predict_proba(X), rtol=1e-15
    )
    # Nested data and no "outputs": the first output only.
    request = {"inputs": [{"name": "input-0", "shape": [3, N_FEATURES],
                           "datatype": "FP32", "data": X.tolist()}]}  # fmt: skip
    status, body = server.json("POST", path, request)
    assert [o["name"] for o in body["outputs"]] == ["predict"]


def test_oip_binary_data_extension(server, model):
    X = rows(50, seed=3)
    header = json.dumps({
        "inputs": [{"name": "input-0", "shape": [50, N_FEATURES], "datatype": "FP64",
                    "parameters": {"binary_data_size": X.nbytes}}]
    }).encode()  # fmt: skip
    status, data, _ = server.request(
        "POST", "/v2/models/clf/infer", header + X.tobytes(),
        {"Inference-Header-Content-Length": str(len(header)),
         "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert status == 200
    assert json.loads(data)["outputs"][0]["data"] == model.predict(X).tolist()


def test_concurrent_clients_each_get_their_own_rows(server, model):
    def one_client(seed):
        X = rows(1 + seed % 5, seed=100 + seed)
        status, body = server.json(
            "POST", "/predict", {"x": X.tolist(), "model": "clf"}
        )
        return status, body["y_pred"], model.predict(X).tolist()

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one_client, range(400)))
    assert all(status == 200 for status, _, _ in results)
    assert all(got == want for _, got, want in results)
    _, text, _ = server.request("GET", "/metrics")
    metrics = text.decode()
    merged = [
        line for line in metrics.splitlines()
        if line.startswith('gradkit_batch_requests_bucket{le="1"}')
    ]  # fmt: skip
    batches = [
        line for line in metrics.splitlines()
        if line.startswith("gradkit_batch_requests_count")
    ]  # fmt: skip
    # Fewer one-request batches than batches: some requests shared a predict call.
    assert int(merged[0].split()[-1]) < int(batches[0].split()[-1])
    assert 'gradkit_requests_total{endpoint="predict",code="200"}' in metrics
    assert "gradkit_request_duration_seconds_bucket" in metrics
    assert 'gradkit_model_version{model="clf"} 1' in metrics


def oip(shape, datatype, data, **extra):
    """An OIP inference request with one input tensor."""
    tensor = {"name": "input-0", "shape": shape, "datatype": datatype, "data": data}
    return {"inputs": [tensor], **extra}


INFER = "/v2/models/clf/infer"


def _too_long():
    return {"x": rows(8000).tolist(), "model": "clf"}  # about 3 MB over a 1 MB limit


@pytest.mark.parametrize(
    "method, path, body, headers, status, message",
    [
        ("POST", "/predict", "{not json", {}, 400, "not valid JSON"),
        ("POST", "/predict", {"y": 1}, {}, 400, 'must be {"x"'),
        ("POST", "/predict", {"x": [[1, 2]], "model": "clf"}, {}, 400, "20 features"),
        ("POST", "/predict", {"x": [[1, 2], [3]], "model": "clf"}, {}, 400, "length"),
        ("POST", "/predict", {"x": [["a"] * 20], "model": "clf"}, {}, 400, "numbers"),
        ("POST", "/predict", {"x": [[1] * 20]}, {}, 400, "several models are served"),
        ("POST", "/predict", {"x": [[1] * 20], "model": "nope"}, {}, 404,
         "'nope' is not served"),
        ("POST", "/predict", {"x": [[1] * 5], "model": "reg", "proba": True}, {}, 400,
         "no predict_proba"),
        ("POST", "/predict?model=clf", np.full((1, 20), np.nan).tobytes(),
         {"Content-Type": "application/octet-stream", "X-Tensor-Shape": "1,20",
          "X-Tensor-Dtype": "float64"}, 400, "NaN"),
        ("POST", "/predict?model=clf", b"1234",
         {"Content-Type": "application/octet-stream", "X-Tensor-Shape": "1,20",
          "X-Tensor-Dtype": "float64"}, 400, "a \\[1, 20\\] float64 tensor"),
        ("POST", "/predict?model=clf", b"",
         {"Content-Type": "application/octet-stream"}, 400, "X-Tensor-Shape"),
        ("POST", "/predict", _too_long(), {}, 413, "larger than the limit"),
        ("POST", "/v2/models/nope/infer", {"inputs": []}, {}, 404, "not served"),
        ("GET", "/v2/models/clf/versions/9", None, {}, 404, "version 9 of 'clf'"),
        ("POST", INFER, oip([1, 20], "BYTES", ["a"] * 20), {}, 400, "not numeric"),
        ("POST", INFER, oip([2, 20], "FP64", [1.0] * 20), {}, 400, "holds 40 values"),
        ("POST", INFER, oip([1, 20], "FP64", [1.0] * 20, outputs=[{"name": "x"}]), {},
         400, "unknown outputs"),
        ("POST", INFER, {"no": "inputs"}, {}, 400, "inference request"),
        ("GET", "/nowhere", None, {}, 404, "no endpoint"),
        ("GET", "/predict", None, {}, 405, "not allowed"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_the_server_keeps_serving(
    server, method, path, body, headers, status, message
):
    got, data, _ = server.request(method, path, body, headers)
    payload = json.loads(data)
    assert got == status and set(payload) == {"error"}
    assert "Traceback" not in payload["error"]
    assert __import__("re").search(message, payload["error"]), payload["error"]
    ok, _ = server.json("POST", "/predict", {"x": rows(1).tolist(), "model": "clf"})
    assert ok == 200


def test_hot_reload_when_the_alias_moves(tmp_path):
    path = tmp_path / "registry"
    with Registry(path) as reg:
        reg.register("clf", fit_classifier(0))
        reg.set_alias("clf", 1, "production")
        flipped = fit_classifier(0, flip=True)
        reg.register("clf", flipped)
    running = Server(path, "clf@production")
    statuses = []
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            statuses.append(
                running.json("POST", "/predict", {"x": rows(2).tolist()})[0]
            )

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        with Registry(path) as reg:
            reg.set_alias("clf", 2, "production")
        deadline = time.monotonic() + 10
        while running.json("GET", "/v2/models/clf")[1]["versions"] != ["2"]:
            assert time.monotonic() < deadline, "the server did not reload"
            time.sleep(0.1)
        status, body = running.json("POST", "/predict", {"x": rows(5).tolist()})
        assert body["y_pred"] == flipped.predict(rows(5)).tolist()
    finally:
        stop.set()
        for t in threads:
            t.join()
        running.stop()
    assert statuses and set(statuses) == {200}


def test_serving_a_dict_of_arrays_fails_at_start(registry, capsys):
    code = cli.main(["serve", "weights", "--registry", str(registry), "--port", "1"])
    assert code == 2
    assert "dict of arrays, which has no predict()" in capsys.readouterr().err
    code = cli.main(["serve", "nope", "--registry", str(registry)])
    assert code == 2 and "no model named 'nope'" in capsys.readouterr().err


def test_dockerfile(registry, tmp_path, capsys):
    out = tmp_path / "image"
    assert cli.main(["dockerfile", "clf@production", "--registry", str(registry),
                     "-o", str(out)]) == 0  # fmt: skip
    dockerfile = (out / "Dockerfile").read_text()
    assert 'CMD ["gradkit", "serve", "clf@production"' in dockerfile
    assert "gradkit models import model.gkx --name clf" in dockerfile
    assert (out / "requirements.txt").read_text().startswith("gradkit[serve]==")
    with Registry(tmp_path / "check") as reg:  # the exported version imports
        assert reg.import_(out / "model.gkx").name == "clf"
    assert os.path.getsize(out / "model.gkx") > 0
