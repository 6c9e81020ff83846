"""The serving application: registered models over HTTP, as a Starlette ASGI app.

Endpoints (every error is {"error": "..."} with 400, 404 or 413, never a traceback):
- POST /predict                 {"x": [[...]], "model"?: name, "proba"?: bool}
                                -> {"y_pred": [...], "proba"?: [[...]]}; or a binary
                                tensor (application/octet-stream with X-Tensor-Shape
                                and X-Tensor-Dtype headers) -> the same, binary
- Open Inference Protocol v2:   GET /v2, /v2/health/live, /v2/health/ready,
                                GET /v2/models/{m}[/versions/{v}][/ready],
                                POST /v2/models/{m}[/versions/{v}]/infer (JSON, or the
                                binary tensor extension for inputs)
- GET /metrics                  Prometheus text: requests, errors, latency, batch sizes

Requests for the same model that arrive together are merged into one predict call
(micro-batching) and each gets exactly its own rows back. A model served by alias
(or by name: its latest version) is reloaded when the alias moves; requests keep
being answered by the old version until the new one is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from threadpoolctl import threadpool_limits

import gradkit
from gradkit.registry import Registry, parse_ref
from gradkit.serve._batching import MicroBatcher
from gradkit.serve._metrics import ServerMetrics

log = logging.getLogger("gradkit.serve")

#: Requests whose body is larger are refused with 413 (binary tensors included).
DEFAULT_MAX_REQUEST_BYTES = 4 * 2**20
#: How often the server checks whether a served alias moved, in seconds.
DEFAULT_RELOAD_INTERVAL_S = 1.0
#: OIP datatype of each numpy dtype kind/size, and back.
_OIP_DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_BINARY_DTYPES = {"float32": np.float32, "float64": np.float64}


class HTTPError(Exception):
    """A request the server refuses: its status and the reason, for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _freeze_heap() -> None:
    """Move everything alive now (modules, sklearn, the models) out of the garbage
    collector's reach. Otherwise each full collection walks those ~130k objects,
    50-70 ms during which every request waits: p99 went from ~50 ms to ~1.5 ms."""
    gc.collect()
    gc.freeze()


def _oip_datatype(dtype: np.dtype) -> str:
    if dtype.kind in "US":
        return "BYTES"
    for name, numpy_type in _OIP_DATATYPES.items():
        if np.dtype(numpy_type) == dtype:
            return name
    return "BYTES"


@dataclass
class ServedModel:
    """One model being served: what was asked for, and what is loaded now."""

    ref: str  # as given: "name", "name:3" or "name@alias"
    name: str
    pinned: bool  # a fixed version: never reloaded
    version: int = 0
    model: Any = None
    n_features: int = 0
    has_proba: bool = False
    batcher: MicroBatcher = field(init=False)

    def input_meta(self) -> dict[str, Any]:
        return {"name": "input-0", "datatype": "FP64", "shape": [-1, self.n_features]}

    def output_meta(self) -> list[dict[str, Any]]:
        classes = getattr(self.model, "classes_", None)
        datatype = (
            _oip_datatype(np.asarray(classes).dtype) if classes is not None else "FP64"
        )
        outputs = [{"name": "predict", "datatype": datatype, "shape": [-1]}]
        if self.has_proba:
            outputs.append(
                {
                    "name": "predict_proba",
                    "datatype": "FP64",
                    "shape": [-1, len(classes) if classes is not None else -1],
                }
            )
        return outputs


def _prepare(model: Any) -> tuple[Any, int, bool]:
    """(a predictor, its feature count, whether it has predict_proba)."""
    from gradkit.compress import CompressedModel

    if isinstance(model, CompressedModel):
        model = model.to_dense()  # decompressed once, at load
    if isinstance(model, dict) or not hasattr(model, "predict"):
        raise TypeError(
            "this version is a dict of arrays, which has no predict(); serve an "
            "estimator or a compressed estimator."
        )
    has_proba = hasattr(model, "predict_proba")
    if has_proba:
        try:
            model.predict_proba(np.zeros((1, model.n_features_in_)))
        except Exception:  # e.g. SGDClassifier(loss="hinge")
            has_proba = False
    return model, int(model.n_features_in_), has_proba


class ModelServer:
    """The state behind the app: the registry, the served models, the metrics."""

    def __init__(
        self,
        refs: list[str],
        registry: str | None = None,
        max_batch_size: int = 4096,
        max_wait_ms: float = 0.0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
    ) -> None:
        if not refs:
            raise ValueError(
                "serve at least one model: NAME, NAME:VERSION or NAME@ALIAS."
            )
        self.registry = Registry(registry)
        self.max_request_bytes = int(max_request_bytes)
        self.reload_interval_s = float(reload_interval_s)
        self.metrics = ServerMetrics()
        self.models: dict[str, ServedModel] = {}
        for ref in refs:
            name, version, alias = parse_ref(ref)
            if name in self.models:
                raise ValueError(f"model {name!r} is listed twice; serve it once.")
            served = ServedModel(ref, name, pinned=version is not None)
            self._load(served)
            served.batcher = MicroBatcher(
                functools.partial(getattr, served, "model"),  # the model of now
                max_batch_size,
                max_wait_ms / 1e3,
                on_batch=self.metrics.observe_batch,
            )
            self.models[name] = served

    def _load(self, served: ServedModel, record: Any = None) -> None:
        record = record or self.registry.get(served.ref)
        model, n_features, has_proba = _prepare(self.registry.load(record.ref))
        # Swapped in one assignment each; a batch already running keeps its model.
        served.model, served.n_features, served.has_proba = model, n_features, has_proba
        served.version = record.version
        log.info("serving %s as %s", served.ref, record.ref)
        _freeze_heap()

    async def watch_aliases(self) -> None:
        """Reload a model when the alias (or latest version) it is served by moves."""
        while True:
            await asyncio.sleep(self.reload_interval_s)
            for served in self.models.values():
                if served.pinned:
                    continue
                try:
                    record = self.registry.get(served.ref)
                    if record.version != served.version:
                        await asyncio.to_thread(self._load, served, record)
                except Exception:  # keep serving the old version; say why
                    log.exception("could not reload %s", served.ref)

    def model(self, name: str | None, version: str | None = None) -> ServedModel:
        if name is None:
            if len(self.models) > 1:
                raise HTTPError(
                    400,
                    f"several models are served ({', '.join(self.models)}); say which "
                    'with "model" in the request.',
                )
            return next(iter(self.models.values()))
        served = self.models.get(name)
        if served is None:
            raise HTTPError(
                404,
                f"model {name!r} is not served here; served: {', '.join(self.models)}.",
            )
        if version is not None and version != str(served.version):
            raise HTTPError(
                404,
                f"version {version} of {name!r} is not served; this server serves "
                f"version {served.version}.",
            )
        return served

    async def body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > self.max_request_bytes
        ):
            raise HTTPError(413, self._too_large())
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_request_bytes:
                raise HTTPError(413, self._too_large())
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> str:
        return (
            f"the request body is larger than the limit of {self.max_request_bytes:,} "
            "bytes; send fewer rows per request or raise --max-request-mb."
        )


# --- request parsing -------------------------------------------------------------


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"the body is not valid JSON: {exc}") from None


def _rows(value: Any, served: ServedModel, what: str) -> np.ndarray:
    """A 2-D float64 array of rows with the model's feature count, finite."""
    try:
        X = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise HTTPError(
            400, f"{what} must be a list of rows of numbers (all rows the same length)."
        ) from None
    if X.ndim == 1 and X.size == served.n_features:
        X = X.reshape(1, -1)
    if X.ndim != 2 or X.shape[1] != served.n_features or X.shape[0] == 0:
        raise HTTPError(
            400,
            f"{what} has shape {list(X.shape)}; model {served.name!r} takes rows of "
            f"{served.n_features} features: shape [n, {served.n_features}], n >= 1.",
        )
    if not np.isfinite(X).all():
        raise HTTPError(
            400, f"{what} contains NaN or infinity, which the model refuses."
        )
    return X


def _binary_rows(
    body: bytes, shape_text: str | None, dtype_text: str | None, served: ServedModel
) -> np.ndarray:
    if shape_text is None or dtype_text is None:
        raise HTTPError(
            400,
            "a binary tensor needs the X-Tensor-Shape (e.g. 1000,20) and "
            "X-Tensor-Dtype (float32 or float64) headers.",
        )
    dtype = _BINARY_DTYPES.get(dtype_text.strip().lower())
    try:
        shape = [int(part) for part in shape_text.split(",")]
    except ValueError:
        shape = []
    if dtype is None or len(shape) != 2 or min(shape) < 0:
        raise HTTPError(
            400,
            f"X-Tensor-Shape {shape_text!r} / X-Tensor-Dtype {dtype_text!r}: "
            "expected two integers (rows,features) and float32 or float64.",
        )
    expected = shape[0] * shape[1] * np.dtype(dtype).itemsize
    if len(body) != expected:
        raise HTTPError(
            400,
            f"the body has {len(body):,} bytes; a {shape} {dtype_text} tensor has "
            f"{expected:,}.",
        )
    return _rows(np.frombuffer(body, dtype).reshape(shape), served, "the tensor")


def _oip_input(request_json: Any, binary: bytes, served: ServedModel) -> np.ndarray:
    if not isinstance(request_json, dict) or not isinstance(
        request_json.get("inputs"), list
    ):
        raise HTTPError(
            400,
            'an inference request is {"inputs": [{"name", "shape", '
            '"datatype", "data"}]}.',
        )
    inputs = request_json["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise HTTPError(400, f"model {served.name!r} takes exactly one input tensor.")
    tensor = inputs[0]
    datatype = tensor.get("datatype")
    if datatype not in _OIP_DATATYPES or datatype == "BOOL":
        raise HTTPError(
            400,
            f"input datatype {datatype!r} is not numeric; use FP64, FP32 or an "
            "integer type.",
        )
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and d >= 0 for d in shape
    ):
        raise HTTPError(400, "input shape must be a list of non-negative integers.")
    size = int(np.prod(shape)) if shape else 1
    parameters = tensor.get("parameters") or {}
    if "binary_data_size" in parameters:
        dtype = np.dtype(_OIP_DATATYPES[datatype])
        if (
            len(binary) != parameters["binary_data_size"]
            or len(binary) != size * dtype.itemsize
        ):
            raise HTTPError(
                400,
                "binary_data_size does not match the tensor's shape and "
                "datatype or the bytes sent.",
            )
        flat = np.frombuffer(binary, dtype)
    else:
        if "data" not in tensor:
            raise HTTPError(400, "input tensor has no data.")
        try:
            flat = np.asarray(tensor["data"], dtype=np.float64).reshape(-1)
        except (ValueError, TypeError):
            raise HTTPError(400, f"input data is not {datatype} numbers.") from None
    if flat.size != size:
        raise HTTPError(
            400, f"input shape {shape} holds {size} values; data has {flat.size}."
        )
    return _rows(flat.reshape(shape), served, "the input tensor")


# --- the application -------------------------------------------------------------


def _respond(payload: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


def _as_list(values: np.ndarray) -> Any:
    return values if values.dtype.kind in "biuf" else values.tolist()


def create_app(
    models: str | list[str],
    registry: str | None = None,
    *,
    max_batch_size: int = 4096,
    max_wait_ms: float = 0.0,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
) -> Starlette:
    """The ASGI app serving registered models ("name", "name:3", "name@alias").

    max_wait_ms: how long a request may wait for others to share its batch (0:
    only those already arrived). max_batch_size: rows per predict call at most.
    """
    refs = [models] if isinstance(models, str) else list(models)
    server = ModelServer(
        refs,
        registry,
        max_batch_size,
        max_wait_ms,
        max_request_bytes,
        reload_interval_s,
    )
    metrics = server.metrics

    def endpoint(label: str, handler: Any) -> Any:
        async def run(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await handler(request)
            except HTTPError as exc:
                response = _respond({"error": exc.message}, exc.status)
            except Exception:  # a bug, not the client's: no traceback in the response
                log.exception("internal error on %s", request.url.path)
                response = _respond({"error": "internal server error"}, 500)
            metrics.observe_request(
                label, response.status_code, time.perf_counter() - start
            )
            return response

        return run

    async def predict(request: Request) -> Response:
        body = await server.body(request)
        if request.headers.get("content-type", "").startswith(
            "application/octet-stream"
        ):
            served = server.model(request.query_params.get("model"))
            X = _binary_rows(
                body,
                request.headers.get("x-tensor-shape"),
                request.headers.get("x-tensor-dtype"),
                served,
            )
            y_pred, _ = await served.batcher.submit(X, False)
            y_pred = np.ascontiguousarray(y_pred)
            if y_pred.dtype.kind in "biuf":
                return Response(
                    y_pred.tobytes(),
                    media_type="application/octet-stream",
                    headers={
                        "X-Tensor-Shape": str(len(y_pred)),
                        "X-Tensor-Dtype": str(y_pred.dtype),
                    },
                )
            return _respond({"y_pred": _as_list(y_pred)})
        payload = _json(body)
        if not isinstance(payload, dict) or "x" not in payload:
            raise HTTPError(400, 'the body must be {"x": [[...], ...]}.')
        served = server.model(payload.get("model"))
        want_proba = bool(payload.get("proba", False))
        if want_proba and not served.has_proba:
            raise HTTPError(400, f"model {served.name!r} has no predict_proba.")
        X = _rows(payload["x"], served, '"x"')
        y_pred, proba = await served.batcher.submit(X, want_proba)
        result = {"y_pred": _as_list(y_pred)}
        if want_proba:
            result["proba"] = proba
        return _respond(result)

    async def infer(request: Request) -> Response:
        served = server.model(
            request.path_params["name"], request.path_params.get("version")
        )
        body = await server.body(request)
        header_size = request.headers.get("inference-header-content-length")
        binary = b""
        if header_size is not None:
            if not header_size.isdigit() or int(header_size) > len(body):
                raise HTTPError(
                    400, "Inference-Header-Content-Length exceeds the body."
                )
            body, binary = body[: int(header_size)], body[int(header_size) :]
        request_json = _json(body)
        X = _oip_input(request_json, binary, served)
        wanted = [
            str(o.get("name"))
            for o in request_json.get("outputs") or []
            if isinstance(o, dict)
        ]
        unknown = set(wanted) - {"predict", "predict_proba"}
        if unknown or ("predict_proba" in wanted and not served.has_proba):
            names = [o["name"] for o in served.output_meta()]
            raise HTTPError(
                400,
                f"unknown outputs {sorted(set(wanted) - set(names))}; "
                f"this model has {names}.",
            )
        want_proba = "predict_proba" in wanted
        y_pred, proba = await served.batcher.submit(X, want_proba)
        outputs = []
        if not wanted or "predict" in wanted:
            outputs.append(
                {
                    "name": "predict",
                    "shape": [len(y_pred)],
                    "datatype": _oip_datatype(y_pred.dtype),
                    "data": _as_list(y_pred),
                }
            )
        if want_proba:
            outputs.append(
                {
                    "name": "predict_proba",
                    "shape": list(proba.shape),
                    "datatype": "FP64",
                    "data": proba.reshape(-1),
                }
            )
        response = {
            "model_name": served.name,
            "model_version": str(served.version),
            "outputs": outputs,
        }
        if isinstance(request_json.get("id"), str):
            response["id"] = request_json["id"]
        return _respond(response)

    async def model_metadata(request: Request) -> Response:
        served = server.model(
            request.path_params["name"], request.path_params.get("version")
        )
        return _respond(
            {
                "name": served.name,
                "versions": [str(served.version)],
                "platform": "gradkit",
                "inputs": [served.input_meta()],
                "outputs": served.output_meta(),
            }
        )

    async def model_ready(request: Request) -> Response:
        served = server.model(
            request.path_params["name"], request.path_params.get("version")
        )
        return _respond({"name": served.name, "ready": True})

    async def live(request: Request) -> Response:
        return _respond({"live": True})

    async def server_metadata(request: Request) -> Response:
        return _respond(
            {
                "name": "gradkit",
                "version": gradkit.__version__,
                "extensions": ["binary_tensor_data"],
            }
        )

    async def prometheus(request: Request) -> Response:
        versions = {s.name: s.version for s in server.models.values()}
        return Response(
            metrics.render(versions), media_type="text/plain; version=0.0.4"
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        return _respond(
            {"error": f"no endpoint {request.method} {request.url.path}"}, 404
        )

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _respond(
            {"error": f"{request.method} is not allowed on {request.url.path}"}, 405
        )

    model_paths = ["/v2/models/{name}", "/v2/models/{name}/versions/{version}"]
    routes = [
        Route("/predict", endpoint("predict", predict), methods=["POST"]),
        Route("/v2", endpoint("server_metadata", server_metadata), methods=["GET"]),
        Route("/v2/health/live", endpoint("live", live), methods=["GET"]),
        Route("/v2/health/ready", endpoint("ready", live), methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    for path in model_paths:
        routes += [
            Route(path, endpoint("model_metadata", model_metadata), methods=["GET"]),
            Route(
                f"{path}/ready", endpoint("model_ready", model_ready), methods=["GET"]
            ),
            Route(f"{path}/infer", endpoint("infer", infer), methods=["POST"]),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        # One BLAS thread: a request's predict is a small product, and a second
        # BLAS thread only fights the event loop (and the clients) for the cores.
        blas = threadpool_limits(1)
        _freeze_heap()
        task = asyncio.create_task(server.watch_aliases())
        try:
            yield
        finally:
            task.cancel()
            blas.restore_original_limits()

    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_allowed},
        lifespan=lifespan,
    )
    app.state.server = server
    return app
