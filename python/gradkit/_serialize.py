"""gradkit's model files: the arrays in safetensors, everything else in JSON.

No pickle anywhere, so loading a file never runs code: a model is rebuilt only as
one of the classes gradkit knows (its estimators, a CompressedModel, a dict of
arrays), from JSON values and numeric arrays.

A file is a safetensors file whose `__metadata__` holds one entry, "gradkit": the
JSON description of the model (its kind, class, parameters, attributes, and how
the tensors make up each array). For a compressed model, when xz (the standard
library's lzma) makes the bytes smaller, the file is the xz stream of those bytes
instead; a reader tells them apart by xz's magic number. Other models stay plain,
so their arrays load memory-mapped.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import math
import mmap
import numbers
import os
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "gradkit"
FORMAT_VERSION = 1
_XZ_MAGIC = b"\xfd7zXZ\x00"
#: The largest model a file may expand to: an xz stream of a few KB could otherwise
#: claim gigabytes (a decompression bomb) before anything is checked.
MAX_MODEL_BYTES = 16 * 2**30
# xz's default preset, but its literal coder without context bits (lc=0, lp=0,
# pb=0): quantized weights and bitmasks carry no byte-to-byte context, so an
# order-0 model learns their distribution faster (3-5% smaller files). Still a
# standard xz stream that any xz reads.
_XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6, "lc": 0, "lp": 0, "pb": 0}]


def estimator_classes() -> dict[str, type]:
    """The estimator classes a file may name, by their public path."""
    from gradkit import linear_model

    return {
        f"gradkit.linear_model.{name}": getattr(linear_model, name)
        for name in linear_model.__all__
        if name != "CustomLoss"
    }


def convert_sklearn(model: Any) -> Any:
    """A fitted scikit-learn linear model as the gradkit estimator of the same name
    (gradkit's subclass it and predict alike from coef_ and intercept_); anything
    else unchanged."""
    if not type(model).__module__.startswith("sklearn.linear_model"):
        return model
    classes = estimator_classes()
    target = classes.get(f"gradkit.linear_model.{type(model).__name__}")
    if target is None:
        return model
    converted = target(**model.get_params(deep=False))
    for name, value in vars(model).items():
        if name.endswith("_") and not name.startswith("_"):
            setattr(converted, name, value)
    return converted


def class_path(estimator: Any) -> str:
    """The public path of a known estimator's class, else a TypeError."""
    for path, cls in estimator_classes().items():
        if type(estimator) is cls:
            return path
    raise TypeError(
        f"gradkit stores its own estimators (and scikit-learn's linear models of the "
        f"same names), CompressedModel and dicts of arrays; "
        f"got {type(estimator).__module__}.{type(estimator).__qualname__}. "
        "Store its weight arrays as a dict instead."
    )


# --- JSON values -----------------------------------------------------------------


def _to_json(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_to_json(v, where) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _to_json(v, f"{where}[{k!r}]") for k, v in value.items()}
        # e.g. class_weight={0: 1.0, 1: 3.0}: JSON keys are strings, keep the pairs.
        return {
            "__items__": [
                [_to_json(k, where), _to_json(v, where)] for k, v in value.items()
            ]
        }
    raise TypeError(
        f"{where} = {value!r} cannot be stored without pickle (it is a "
        f"{type(value).__name__}); gradkit files hold numbers, strings, lists and "
        "arrays only."
    )


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__items__"}:
            return {_hashable(k): _from_json(v) for k, v in value["__items__"]}
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# --- estimators ------------------------------------------------------------------


def _encode_estimator(
    estimator: Any, tensors: dict[str, np.ndarray], skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    from sklearn.utils.validation import check_is_fitted

    path = class_path(estimator)
    check_is_fitted(estimator)
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "random_state" and not (
            value is None or isinstance(value, numbers.Integral)
        ):
            value = None  # a generator's state is not kept; predictions do not use it
        params[name] = _to_json(value, f"{type(estimator).__name__}.{name}")
    attributes: dict[str, Any] = {}
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_") or name in skip:
            continue
        where = f"{type(estimator).__name__}.{name}"
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            tensors[f"estimator/{name}"] = np.ascontiguousarray(value)
            attributes[name] = {"tensor": f"estimator/{name}"}
        elif isinstance(value, np.ndarray) and all(
            isinstance(v, str) for v in value.flat
        ):
            attributes[name] = {"strings": value.tolist(), "dtype": value.dtype.str}
        else:
            attributes[name] = {"value": _to_json(value, where)}
    return {"class": path, "params": params, "attributes": attributes}


def _decode_estimator(meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> Any:
    classes = estimator_classes()
    path = meta.get("class")
    if path not in classes:
        raise ValueError(
            f"the file names estimator class {path!r}, which gradkit does not load; "
            f"known classes: {', '.join(sorted(classes))}."
        )
    estimator = classes[path](**_from_json(meta["params"]))
    for name, stored in meta["attributes"].items():
        if "tensor" in stored:
            value: Any = tensors[stored["tensor"]]
        elif "strings" in stored:
            dtype = np.dtype(stored["dtype"])
            value = np.array(
                stored["strings"], dtype=dtype if dtype.kind == "U" else object
            )
        else:
            value = _from_json(stored["value"])
        setattr(estimator, name, value)
    return estimator


# --- arrays, dense or compressed -------------------------------------------------


def _part_types() -> dict[str, Any]:
    from gradkit.compress._arrays import (
        LowRankArray,
        PrunedArray,
        QuantizedArray,
        SharedArray,
    )

    return {
        "quantized": QuantizedArray,
        "pruned": PrunedArray,
        "shared": SharedArray,
        "low_rank": LowRankArray,
    }


def encode_array(part: Any, prefix: str, tensors: dict[str, np.ndarray]) -> dict:
    """Put a dense or compressed array into tensors under prefix; return its JSON."""
    if hasattr(part, "_tensors"):
        pieces, meta = part._tensors()
        meta = dict(meta)
        meta["parts"] = {
            key: encode_array(piece, f"{prefix}/{key}", tensors)
            for key, piece in pieces.items()
        }
        return meta
    tensors[prefix] = np.ascontiguousarray(part)
    return {"type": "dense", "tensor": prefix}


def decode_array(meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> Any:
    if meta["type"] == "dense":
        return tensors[meta["tensor"]]
    types = _part_types()
    if meta["type"] not in types:
        raise ValueError(f"unknown array type {meta['type']!r} in a gradkit file.")
    pieces = {key: decode_array(sub, tensors) for key, sub in meta["parts"].items()}
    return types[meta["type"]]._from_tensors(pieces, meta)


def check_arrays(model: dict) -> dict[str, Any]:
    """A dict of name -> numeric array (torch tensors become numpy arrays) or
    compressed array (kept as it is)."""
    arrays = {}
    for name, value in model.items():
        if not isinstance(name, str):
            raise TypeError(f"array names must be str, got {name!r}.")
        if hasattr(value, "_tensors"):
            arrays[name] = value
            continue
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"model[{name!r}] has dtype {array.dtype}; a dict model holds numeric "
                "arrays only."
            )
        arrays[name] = array
    return arrays


# --- models ----------------------------------------------------------------------


def encode(model: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(tensors, JSON description) of a model gradkit knows how to store."""
    from gradkit.compress._model import CompressedModel

    tensors: dict[str, np.ndarray] = {}
    model = convert_sklearn(model)
    if isinstance(model, CompressedModel):
        return tensors, model._encode(tensors)
    if isinstance(model, dict):
        arrays = {
            name: encode_array(a, f"arrays/{name}", tensors)
            for name, a in check_arrays(model).items()
        }
        return tensors, {"kind": "arrays", "arrays": arrays}
    return tensors, {
        "kind": "estimator",
        "estimator": _encode_estimator(model, tensors),
    }


def decode(meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> Any:
    from gradkit.compress._model import CompressedModel

    kind = meta.get("kind")
    if kind == "arrays":
        return {name: decode_array(m, tensors) for name, m in meta["arrays"].items()}
    if kind == "estimator":
        return _decode_estimator(meta["estimator"], tensors)
    if kind == "compressed":
        return CompressedModel._decode(meta, tensors)
    raise ValueError(f"unknown model kind {kind!r} in a gradkit file.")


def to_bytes(model: Any) -> bytes:
    """The model as gradkit file bytes.

    A compressed model is xz-coded when that is smaller: its point is size. Any
    other model stays plain safetensors, whose arrays load memory-mapped without a
    copy; xz would save little on float weights (~10%) and cost that.
    """
    import safetensors.numpy

    from gradkit import __version__

    tensors, meta = encode(model)
    header = {"format": FORMAT, "version": FORMAT_VERSION, "gradkit": __version__}
    raw = safetensors.numpy.save(tensors, metadata={FORMAT: json.dumps(header | meta)})
    if meta["kind"] != "compressed":
        return raw
    packed = lzma.compress(raw, filters=_XZ_FILTERS)
    return packed if len(packed) < len(raw) else raw


#: safetensors' dtype names.
_DTYPES = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16,
    "I16": np.int16, "F16": np.float16, "U32": np.uint32, "I32": np.int32,
    "F32": np.float32, "U64": np.uint64, "I64": np.int64, "F64": np.float64,
}  # fmt: skip


def read_tensors(buffer: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, metadata) of a safetensors buffer, the arrays read-only views of it.

    safetensors' numpy API copies every tensor out of the file; gradkit maps model
    files and reads their arrays in place (zero-copy), so it checks the format
    itself, as the specification requires: a header that fits the buffer, known
    dtypes, and each tensor's byte range inside the data and of exactly
    prod(shape) * itemsize bytes.
    """
    view = memoryview(buffer).cast("B")
    if len(view) < 8:
        raise ValueError("not a gradkit file: too short for a safetensors header.")
    (size,) = struct.unpack("<Q", view[:8])
    if size > len(view) - 8:
        raise ValueError(
            f"not a gradkit file: its header claims {size:,} bytes, more than the "
            f"file's {len(view):,}."
        )
    try:
        header = json.loads(bytes(view[8 : 8 + size]))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a gradkit file: its header is not JSON.") from None
    if not isinstance(header, dict):
        raise ValueError("not a gradkit file: its header is not a JSON object.")
    data = view[8 + size :]
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]])
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
            count = math.prod(shape)
            valid = (
                min(shape, default=0) >= 0
                and 0 <= begin <= end <= len(data)
                and end - begin == count * dtype.itemsize
            )
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(
                f"not a gradkit file: tensor {name!r} is malformed or its "
                f"{info.get('shape') if isinstance(info, dict) else info!r} does not "
                "match the bytes it claims."
            )
        tensors[name] = np.frombuffer(data, dtype, count, begin).reshape(shape)
    if not isinstance(metadata, dict):
        raise ValueError("not a gradkit file: its __metadata__ is not an object.")
    return tensors, metadata


def from_bytes(data: Any) -> Any:
    """The model in a gradkit file's bytes (or any buffer, e.g. an mmap: the arrays
    of an uncompressed file then stay views of it)."""
    if bytes(memoryview(data)[: len(_XZ_MAGIC)]) == _XZ_MAGIC:
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            data = decompressor.decompress(data, max_length=MAX_MODEL_BYTES + 1)
        except lzma.LZMAError as exc:
            raise ValueError(
                f"not a gradkit file: a damaged xz stream ({exc})."
            ) from None
        if len(data) > MAX_MODEL_BYTES or not decompressor.eof:
            raise ValueError(
                f"not a gradkit file: it expands to more than MAX_MODEL_BYTES "
                f"({MAX_MODEL_BYTES:,}) bytes, or its xz stream is cut short."
            )
    tensors, metadata = read_tensors(data)
    if FORMAT not in metadata:
        raise ValueError(
            "not a gradkit file: a safetensors file without gradkit's metadata; load "
            "a plain state dict with safetensors.numpy.load_file instead."
        )
    try:
        meta = json.loads(metadata[FORMAT])
        newer = meta.get("version", 0) > FORMAT_VERSION
    except (ValueError, AttributeError, TypeError):
        raise ValueError(
            "not a gradkit file: its metadata is not a JSON object."
        ) from None
    if newer:
        raise ValueError(
            f"this file was written by a newer gradkit (format version "
            f"{meta['version']}); upgrade gradkit to read it."
        )
    try:
        return decode(meta, tensors)
    except (KeyError, TypeError, AttributeError) as exc:
        # Well-formed JSON that does not describe a model gradkit wrote.
        raise ValueError(
            f"not a gradkit file: malformed metadata ({type(exc).__name__}: {exc})."
        ) from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write data to path so that readers see the old file or the whole new one,
    and a crash leaves one of them. The temporary file beside it is named
    <name>.tmp-<pid>-<ns>: the registry's gc reads the writer's pid there."""
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        with contextlib.suppress(OSError):  # make the rename durable too
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def save(model: Any, path: str | os.PathLike) -> int:
    """Write a model to path (atomically: a crash leaves the old file or the new
    one, never half of one); returns the number of bytes written."""
    data = to_bytes(model)
    write_atomic(Path(path), data)
    return len(data)


def map_file(path: str | os.PathLike) -> Any:
    """The file's bytes, memory-mapped read-only (bytes for an empty file)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def load(path: str | os.PathLike) -> Any:
    """Read a model written by gradkit.save; the arrays of an uncompressed file are
    read-only views of the mapped file, not copies."""
    return from_bytes(map_file(path))
