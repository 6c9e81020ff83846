"""Compressed arrays: quantized, pruned, weight-shared and low-rank.

Each form keeps only what it needs to rebuild the array (so `.nbytes` really drops)
and has the same small protocol: `.shape`, `.dtype` (of the original array),
`.nbytes`, `.to_dense()`, and `_tensors()` / `_from_tensors()` for gradkit's
pickle-free file format (gradkit._serialize). The number crunching runs in the
`compress` kernels (C++ or numba, gradkit._core.pyi); this module only chooses the
layout and checks the arguments.

Rounding conventions (dequantize(quantize(w)) is within scale / 2 of w inside the
calibrated range, always):
- per tensor: torch.quantize_per_tensor's, q = rne(fma(x, 1/scale, zero_point));
- per channel and per group: torch.quantize_per_channel's,
  q = rne(float32(x * float32(1/scale)) + zero_point), the zero point added
  before rounding.
With min-max calibration, scale and zero_point are those of torch's MinMax
observers, so int8 symmetric and uint8 affine per tensor / per channel equal torch's
int_repr, scale and zero_point exactly. Arrays are quantized in float32 (float64
weights are rounded to float32 first, as torch would).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradkit import _config
from gradkit._validation import check_fraction, weight_array

#: (qmin, qmax) of each quantized dtype; int4 is stored two per byte.
QUANT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7)}
SCHEMES = ("symmetric", "affine")
GRANULARITIES = ("tensor", "channel", "group")
CALIBRATIONS = ("minmax", "percentile", "mse")
#: The mse calibration clips each row's min-max range by a ratio: first these
#: (geometric, 2% to 100%: one outlier may call for hard clipping), then
#: MSE_FINE_STEPS evenly between the neighbours of the row's best; the row keeps
#: the ratio whose quantize-dequantize round trip has the least squared error.
MSE_COARSE = np.geomspace(0.02, 1.0, 20)
MSE_FINE_STEPS = 10
#: Bits of a shared-weight codebook: 2 to 256 centroids.
SHARE_BITS = range(1, 9)
STRUCTURES = (None, "row", "column", "n:m")


def _kernels() -> Any:
    return _config.kernels("compress")


def _choice(value: Any, options: tuple, name: str) -> Any:
    if not any(value is o or (isinstance(value, str) and value == o) for o in options):
        listed = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}.")
    return value


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def _normalize_axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise ValueError(f"axis must be an int, got {axis!r}.")
    axis, dims = int(axis), max(ndim, 1)
    if not -dims <= axis < dims:
        raise ValueError(f"axis={axis} is out of range for an array of {ndim} dims.")
    return axis % dims


def _channels_first(x: np.ndarray, axis: int) -> np.ndarray:
    """x as (channels, elements per channel), the channel axis first (a copy only
    when axis is not already first)."""
    if x.ndim == 0:
        return x.reshape(1, 1)
    moved = np.ascontiguousarray(np.moveaxis(x, axis, 0))
    return moved.reshape(moved.shape[0], -1)


def _channels_restored(rows: np.ndarray, shape: tuple, axis: int) -> np.ndarray:
    """The inverse of _channels_first: rows back in the array's own layout."""
    if len(shape) == 0:
        return rows.reshape(())
    moved_shape = (shape[axis],) + shape[:axis] + shape[axis + 1 :]
    return np.ascontiguousarray(np.moveaxis(rows.reshape(moved_shape), 0, axis))


def _channel_major(shape: tuple, granularity: str) -> bool:
    """Whether the rows are laid out per channel (else the array is one row: per
    tensor, or groups of a vector, which has no channel axis to keep apart)."""
    return granularity == "channel" or (granularity == "group" and len(shape) > 1)


def _to_rows(x: np.ndarray, granularity: str, axis: int, group_size: int) -> np.ndarray:
    """x as the kernels' rows: one per tensor, channel or group."""
    if not _channel_major(x.shape, granularity):
        rows = x.reshape(1, -1)
    else:
        rows = _channels_first(x, axis)
    return rows.reshape(-1, group_size) if granularity == "group" else rows


def _from_rows(
    rows: np.ndarray, shape: tuple, granularity: str, axis: int
) -> np.ndarray:
    if not _channel_major(shape, granularity):
        return rows.reshape(shape)
    return _channels_restored(rows, shape, axis)


def _pack_int4(q: np.ndarray) -> np.ndarray:
    """Two int4 values per byte, the even element in the low nibble (torch's
    quint4x2 order); an odd count leaves the last high nibble 0."""
    flat = q.reshape(-1).view(np.uint8) & 0x0F
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return flat[0::2] | (flat[1::2] << 4)


def _unpack_int4(packed: np.ndarray, size: int) -> np.ndarray:
    signed = packed.view(np.int8)
    low = (signed << 4) >> 4  # arithmetic shifts sign-extend the nibble
    high = signed >> 4
    return np.stack([low, high], axis=1).reshape(-1)[:size]


def _pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes < 2**bits, `bits` bits each, least significant first."""
    planes = np.unpackbits(codes.reshape(-1, 1), axis=1, bitorder="little")
    return np.packbits(planes[:, :bits].reshape(-1), bitorder="little")


def _unpack_bits(packed: np.ndarray, bits: int, size: int) -> np.ndarray:
    planes = np.unpackbits(packed, count=size * bits, bitorder="little")
    return np.packbits(planes.reshape(size, bits), axis=1, bitorder="little")[:, 0]


def _dense(part: Any) -> np.ndarray:
    return part.to_dense() if hasattr(part, "to_dense") else part


def _nbytes(part: Any) -> int:
    return int(part.nbytes)


# --- quantization ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class QuantizedArray:
    """An array quantized to int8, uint8 or int4 with a scale and a zero point per
    tensor, channel or group; see `quantize`.

    data: int8 / uint8 in the array's shape (what torch's int_repr() returns), or
    for int4 a flat uint8 array of two values per byte (low nibble first).
    scale (float32) and zero_point (int8, or uint8 for uint8 data): shape () per
    tensor, (channels,) per channel, (channels, groups per channel) per group.
    """

    data: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    shape: tuple
    dtype: np.dtype
    qdtype: str
    scheme: str
    granularity: str
    axis: int
    group_size: int

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.scale.nbytes + self.zero_point.nbytes

    def int_repr(self) -> np.ndarray:
        """The integer values in the array's shape (int4 unpacked to int8)."""
        if self.qdtype != "int4":
            return self.data
        size = int(np.prod(self.shape, dtype=np.int64))
        return _unpack_int4(self.data, size).reshape(self.shape)

    def dequantize(self) -> np.ndarray:
        """float32 array: (q - zero_point) * scale, one rounding per element."""
        rows = _to_rows(self.int_repr(), self.granularity, self.axis, self.group_size)
        out = np.empty(rows.shape, np.float32)
        _kernels().dequantize_rows(
            rows,
            self.scale.reshape(-1),
            self.zero_point.reshape(-1).astype(np.int32),
            out,
            _config.n_threads(),
        )
        return _from_rows(out, self.shape, self.granularity, self.axis)

    def to_dense(self) -> np.ndarray:
        """The dequantized array in the original dtype."""
        return self.dequantize().astype(self.dtype, copy=False)

    def _tensors(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        meta = {
            "type": "quantized",
            "shape": list(self.shape),
            "dtype": self.dtype.str,
            "qdtype": self.qdtype,
            "scheme": self.scheme,
            "granularity": self.granularity,
            "axis": self.axis,
            "group_size": self.group_size,
        }
        tensors = {
            "data": self.data,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }
        return tensors, meta

    @classmethod
    def _from_tensors(
        cls, tensors: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> QuantizedArray:
        return cls(
            data=tensors["data"],
            scale=tensors["scale"],
            zero_point=tensors["zero_point"],
            shape=tuple(meta["shape"]),
            dtype=np.dtype(meta["dtype"]),
            qdtype=meta["qdtype"],
            scheme=meta["scheme"],
            granularity=meta["granularity"],
            axis=int(meta["axis"]),
            group_size=int(meta["group_size"]),
        )


def quantize_range(qdtype: str, reduce_range: bool) -> tuple[int, int]:
    qmin, qmax = QUANT_RANGES[qdtype]
    # torch's observers: reduce_range halves the range (qint8 [-64, 63]).
    return (qmin // 2, qmax // 2) if reduce_range else (qmin, qmax)


def quantize(
    w: Any,
    dtype: str = "int8",
    scheme: str = "symmetric",
    granularity: str = "tensor",
    axis: int = 0,
    group_size: int = 128,
    calibration: str = "minmax",
    reduce_range: bool = False,
    percentile: float = 99.99,
) -> QuantizedArray:
    """Quantize an array to int8, uint8 or int4.

    scheme: "symmetric" (zero point 0, or 128 for uint8, range +-max|w|) or "affine"
    (the range [min, max] mapped onto the integers, zero always exact).
    granularity: one scale per "tensor", per "channel" along `axis`, or per "group"
    of `group_size` consecutive elements within each channel (group_size must divide
    the number of elements per channel).
    calibration: how the range is chosen: "minmax" (torch's MinMax observers),
    "percentile" (the `percentile`-th and (100 - percentile)-th percentiles, which
    clips outliers) or "mse" (per row, the clipping of the min-max range that
    minimises the squared round-trip error, searched over MSE_COARSE then
    MSE_FINE_STEPS finer ratios: 30 quantize passes).
    reduce_range: halve the integer range, as torch's observers do (for int8
    kernels that would overflow 16-bit accumulators).
    """
    x = weight_array(w, "w")
    _choice(dtype, tuple(QUANT_RANGES), "dtype")
    _choice(scheme, SCHEMES, "scheme")
    _choice(granularity, GRANULARITIES, "granularity")
    _choice(calibration, CALIBRATIONS, "calibration")
    if not isinstance(reduce_range, (bool, np.bool_)):
        raise ValueError(f"reduce_range must be True or False, got {reduce_range!r}.")
    axis = _normalize_axis(axis, x.ndim)
    group_size = _positive_int(group_size, "group_size")
    if calibration == "percentile" and not (
        isinstance(percentile, numbers.Real) and 50 < percentile <= 100
    ):
        raise ValueError(f"percentile must be in (50, 100], got {percentile!r}.")
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    qmin, qmax = quantize_range(dtype, bool(reduce_range))

    channels = x.shape[axis] if _channel_major(x.shape, granularity) else 1
    per_channel = x.size // channels
    if granularity == "group" and per_channel % group_size:
        where = f"of each channel along axis {axis}" if channels > 1 else "of w"
        raise ValueError(
            f"group_size={group_size} does not divide the {per_channel} elements "
            f"{where}; choose a divisor of {per_channel}, or granularity='channel'."
        )
    rows = _to_rows(x32, granularity, axis, group_size)
    param_shape: tuple = {
        "tensor": (),
        "channel": (channels,),
        "group": (channels, per_channel // group_size)
        if _channel_major(x.shape, granularity)
        else (per_channel // group_size,),
    }[granularity]

    kernels, n_threads = _kernels(), _config.n_threads()
    symmetric = scheme == "symmetric"
    fma_rounding = granularity == "tensor"
    out = np.empty(rows.shape, np.int8 if qmin < 0 else np.uint8)

    def run(lo: np.ndarray | None, hi: np.ndarray | None) -> tuple:
        return kernels.quantize_rows(
            rows, lo, hi, qmin, qmax, symmetric, fma_rounding, out, n_threads
        )

    if calibration == "minmax":
        # Per channel and group the kernel takes each row's range in the same pass.
        scale, zero_point = (
            run(*kernels.row_minmax(rows, n_threads))
            if (granularity == "tensor")
            else run(None, None)
        )
    elif calibration == "percentile":
        lo = np.percentile(rows, 100.0 - percentile, axis=1).astype(np.float32)
        hi = np.percentile(rows, percentile, axis=1).astype(np.float32)
        scale, zero_point = run(lo, hi)
    else:
        scale, zero_point = _mse_calibrated(rows, out, run, kernels, n_threads)

    data = _from_rows(out, x.shape, granularity, axis)
    if dtype == "int4":
        data = _pack_int4(data)
    return QuantizedArray(
        data=data,
        scale=scale.reshape(param_shape),
        zero_point=zero_point.astype(out.dtype).reshape(param_shape),
        shape=x.shape,
        dtype=x.dtype,
        qdtype=dtype,
        scheme=scheme,
        granularity=granularity,
        axis=axis,
        group_size=group_size,
    )


def _mse_calibrated(
    rows: np.ndarray, out: np.ndarray, run: Any, kernels: Any, n_threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """Quantize with, per row, the clipped min-max range of least squared error;
    `out` ends up holding that choice."""
    lo, hi = kernels.row_minmax(rows, n_threads)
    restored = np.empty(rows.shape, np.float32)

    def errors(ratios: np.ndarray) -> np.ndarray:
        scale, zero_point = run(lo * ratios, hi * ratios)
        kernels.dequantize_rows(out, scale, zero_point, restored, n_threads)
        diff = (restored - rows).astype(np.float64)
        return np.einsum("ij,ij->i", diff, diff)

    coarse = MSE_COARSE.astype(np.float32)
    ones = np.ones(rows.shape[0], np.float32)
    best = np.stack([errors(ratio * ones) for ratio in coarse]).argmin(axis=0)
    low = coarse[np.maximum(best - 1, 0)]
    high = coarse[np.minimum(best + 1, coarse.size - 1)]
    candidates = [low + (high - low) * np.float32(t)
                  for t in np.linspace(0, 1, MSE_FINE_STEPS)]  # fmt: skip
    chosen = np.stack(candidates)[
        np.stack([errors(ratios) for ratios in candidates]).argmin(axis=0),
        np.arange(rows.shape[0]),
    ]
    return run(lo * chosen, hi * chosen)


# --- pruning ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PrunedArray:
    """A pruned array stored sparse: the kept values in index order, located by a
    bitmask (one bit per element) or by CSR row pointers and column indices over
    the array seen as (shape[0], rest), whichever takes fewer bytes.

    values may itself be compressed (a QuantizedArray or SharedArray of the kept
    values), as in Deep Compression's prune, then share, then entropy-code.
    """

    shape: tuple
    dtype: np.dtype
    values: Any
    n_kept: int
    mask: np.ndarray | None = None
    indptr: np.ndarray | None = None
    indices: np.ndarray | None = None
    storage: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "storage", "bitmask" if self.mask is not None else "csr"
        )

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def sparsity(self) -> float:
        """The fraction of elements pruned."""
        return 1.0 - self.n_kept / self.size

    @property
    def nbytes(self) -> int:
        index = [self.mask] if self.mask is not None else [self.indptr, self.indices]
        return _nbytes(self.values) + sum(_nbytes(a) for a in index)

    def kept_mask(self) -> np.ndarray:
        """bool array in the array's shape, True where an element was kept."""
        if self.mask is not None:
            bits = np.unpackbits(self.mask, count=self.size, bitorder="little")
            return bits.astype(bool).reshape(self.shape)
        rows, cols = _as_rows(self.shape)
        kept = np.zeros((rows, cols), bool)
        kept[_csr_rows(self.indptr), self.indices] = True  # type: ignore[arg-type]
        return kept.reshape(self.shape)

    def with_values(self, values: Any) -> PrunedArray:
        """The same sparsity pattern holding other (e.g. quantized) values."""
        return PrunedArray(
            self.shape,
            self.dtype,
            values,
            self.n_kept,
            self.mask,
            self.indptr,
            self.indices,
        )

    def to_dense(self) -> np.ndarray:
        values = np.ascontiguousarray(_dense(self.values).reshape(-1))
        if values.dtype not in (np.float32, np.float64):
            values = values.astype(np.float32)
        if self.mask is not None:
            out = np.empty(self.size, values.dtype)
            _kernels().unpack_mask(self.mask, values, out, _config.n_threads())
        else:
            rows, cols = _as_rows(self.shape)
            out = np.zeros((rows, cols), values.dtype)
            out[_csr_rows(self.indptr), self.indices] = values  # type: ignore[arg-type]
        return out.reshape(self.shape).astype(self.dtype, copy=False)

    def _tensors(self) -> tuple[dict[str, Any], dict[str, Any]]:
        meta = {
            "type": "pruned",
            "shape": list(self.shape),
            "dtype": self.dtype.str,
            "n_kept": self.n_kept,
        }
        tensors: dict[str, Any] = {"values": self.values}
        if self.mask is not None:
            tensors["mask"] = self.mask
        else:
            tensors["indptr"], tensors["indices"] = self.indptr, self.indices
        return tensors, meta

    @classmethod
    def _from_tensors(
        cls, tensors: dict[str, Any], meta: dict[str, Any]
    ) -> PrunedArray:
        return cls(
            shape=tuple(meta["shape"]),
            dtype=np.dtype(meta["dtype"]),
            values=tensors["values"],
            n_kept=int(meta["n_kept"]),
            mask=tensors.get("mask"),
            indptr=tensors.get("indptr"),
            indices=tensors.get("indices"),
        )


def _as_rows(shape: tuple) -> tuple[int, int]:
    """(rows, columns) of the CSR view: (shape[0], rest), a 1-D array is one row."""
    if len(shape) < 2:
        return 1, int(np.prod(shape, dtype=np.int64))
    return int(shape[0]), int(np.prod(shape[1:], dtype=np.int64))


def _csr_rows(indptr: Any) -> np.ndarray:
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def _sparse_storage(
    x: np.ndarray, mask: np.ndarray, values: np.ndarray, n_kept: int
) -> PrunedArray:
    """The smaller of the bitmask and the CSR layout of a pruned array."""
    rows, cols = _as_rows(x.shape)
    index_dtype = np.uint16 if cols <= 2**16 else np.int32 if cols < 2**31 else np.int64
    csr_bytes = n_kept * np.dtype(index_dtype).itemsize + (rows + 1) * 8
    if csr_bytes >= mask.nbytes:
        return PrunedArray(x.shape, x.dtype, values, n_kept, mask=mask)
    kept = np.unpackbits(mask, count=x.size, bitorder="little").reshape(rows, cols)
    row_ids, col_ids = np.nonzero(kept)
    indptr = np.zeros(rows + 1, np.int64)
    np.cumsum(np.bincount(row_ids, minlength=rows), out=indptr[1:])
    return PrunedArray(
        x.shape,
        x.dtype,
        values,
        n_kept,
        indptr=indptr,
        indices=col_ids.astype(index_dtype),
    )


def _prune_count(sparsity: float, units: int) -> int:
    # torch.nn.utils.prune: round(amount * n), Python's round (half to even).
    return int(round(sparsity * units))


def _from_kept(x: np.ndarray, kept: np.ndarray) -> PrunedArray:
    flat = x.reshape(-1)
    kept_flat = kept.reshape(-1)
    mask = np.packbits(kept_flat, bitorder="little")
    return _sparse_storage(x, mask, flat[kept_flat], int(np.count_nonzero(kept_flat)))


def prune(
    w: Any,
    sparsity: float | None,
    structure: str | None = None,
    n: int = 2,
    m: int = 4,
) -> PrunedArray:
    """Magnitude pruning: zero the smallest weights, stored sparse.

    structure None: the round(sparsity * w.size) smallest |w| (torch's
    l1_unstructured count; among equal magnitudes the first in index order go).
    "row" / "column": whole rows / columns of a 2-D w with the smallest L2 norms,
    round(sparsity * rows) of them (torch's ln_structured with n=2).
    "n:m": in every m consecutive weights along the last axis keep the n largest
    |w| (2:4 is the pattern sparse tensor cores run); sparsity is then 1 - n/m and
    may be given as None.
    """
    x = weight_array(w, "w")
    _choice(structure, STRUCTURES, "structure")
    if structure == "n:m":
        n, m = _positive_int(n, "n"), _positive_int(m, "m")
        if n > m:
            raise ValueError(
                f"n:m pruning keeps n of every m weights; got n={n} > m={m}."
            )
        if sparsity is not None and not np.isclose(sparsity, 1 - n / m):
            raise ValueError(
                f"sparsity={sparsity!r} contradicts {n}:{m} pruning, whose sparsity "
                f"is 1 - n/m = {1 - n / m:g}; pass sparsity=None."
            )
        last = x.shape[-1] if x.ndim else 1
        if last % m:
            raise ValueError(
                f"{n}:{m} pruning needs the last axis ({last}) to be a multiple of "
                f"m={m}."
            )
        groups = np.abs(x).reshape(-1, m)
        # Stable: among equal magnitudes the first in the group is kept.
        largest = np.argsort(-groups, axis=1, kind="stable")[:, :n]
        kept = np.zeros(groups.shape, bool)
        np.put_along_axis(kept, largest, True, axis=1)
        return _from_kept(x, kept)
    if sparsity is None:
        raise ValueError("sparsity must be a number in [0, 1), got None.")
    sparsity = check_fraction(sparsity, "sparsity")
    if structure in ("row", "column"):
        if x.ndim != 2:
            raise ValueError(
                f"structure={structure!r} prunes rows or columns of a 2-D array; w "
                f"has shape {x.shape} (reshape it to 2-D first)."
            )
        along = 1 if structure == "row" else 0
        norms = np.linalg.norm(x.astype(np.float64), axis=along)
        k = _prune_count(sparsity, norms.size)
        unit_kept = np.ones(norms.size, bool)
        unit_kept[np.argsort(norms, kind="stable")[:k]] = False
        kept = np.broadcast_to(
            unit_kept[:, None] if structure == "row" else unit_kept[None, :], x.shape
        )
        return _from_kept(x, kept)
    flat = x.reshape(-1)
    k = _prune_count(sparsity, flat.size)
    kernels, n_threads = _kernels(), _config.n_threads()
    threshold, ties = kernels.magnitude_threshold(flat, k, n_threads) if k else (0.0, 0)
    # k == 0 keeps everything: nothing is below 0 and no tie is pruned.
    mask, values, _ = kernels.prune_mask(flat, threshold, ties, n_threads)
    return _sparse_storage(x, mask, values, flat.size - k)


def global_prune(weights: dict[str, Any], sparsity: float) -> dict[str, PrunedArray]:
    """Magnitude pruning across several arrays at once: the round(sparsity * total)
    smallest |w| of all of them, so layers with small weights lose more. Returns
    one PrunedArray per name, in the dict's order (ties go in that order too)."""
    if not isinstance(weights, dict) or not weights:
        raise ValueError("weights must be a non-empty dict of name -> array.")
    sparsity = check_fraction(sparsity, "sparsity")
    arrays = {
        name: weight_array(w, f"weights[{name!r}]") for name, w in weights.items()
    }
    flats = [a.reshape(-1) for a in arrays.values()]
    common = np.result_type(*flats)
    everything = np.concatenate([f.astype(common, copy=False) for f in flats])
    k = _prune_count(sparsity, everything.size)
    kernels, n_threads = _kernels(), _config.n_threads()
    threshold, ties = (
        kernels.magnitude_threshold(everything, k, n_threads) if k else (0.0, 0)
    )
    del everything
    pruned = {}
    for (name, x), flat in zip(arrays.items(), flats, strict=True):
        mask, values, ties = kernels.prune_mask(flat, threshold, ties, n_threads)
        pruned[name] = _sparse_storage(x, mask, values, int(values.size))
    return pruned


# --- weight sharing --------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SharedArray:
    """Weight sharing: each element is an index into a codebook of 2**bits values,
    the indices packed `bits` bits each (least significant first)."""

    codebook: np.ndarray
    codes: np.ndarray
    bits: int
    shape: tuple
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return self.codebook.nbytes + self.codes.nbytes

    def labels(self) -> np.ndarray:
        """The codebook index of every element, uint8 in the array's shape."""
        size = int(np.prod(self.shape, dtype=np.int64))
        return _unpack_bits(self.codes, self.bits, size).reshape(self.shape)

    def to_dense(self) -> np.ndarray:
        return self.codebook[self.labels()].astype(self.dtype, copy=False)

    def _tensors(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        meta = {
            "type": "shared",
            "shape": list(self.shape),
            "dtype": self.dtype.str,
            "bits": self.bits,
        }
        return {"codebook": self.codebook, "codes": self.codes}, meta

    @classmethod
    def _from_tensors(
        cls, tensors: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> SharedArray:
        return cls(
            tensors["codebook"],
            tensors["codes"],
            int(meta["bits"]),
            tuple(meta["shape"]),
            np.dtype(meta["dtype"]),
        )


#: Lloyd iterations of share_weights stop here if the clusters still move.
KMEANS_MAX_ITER = 300


def share_weights(w: Any, bits: int) -> SharedArray:
    """k-means weight sharing (Deep Compression): 2**bits shared values, the
    centroids initialised evenly between min and max (the paper's linear
    initialisation, which keeps the rare large weights) and refined by Lloyd's
    algorithm until no element changes cluster.

    In one dimension the clusters are intervals of the sorted values, so after one
    sort each iteration costs O(2**bits * log n), not O(n).
    """
    x = weight_array(w, "w")
    if (
        isinstance(bits, (bool, np.bool_))
        or not isinstance(bits, numbers.Integral)
        or bits not in SHARE_BITS
    ):
        raise ValueError(f"bits must be an int from 1 to 8, got {bits!r}.")
    bits = int(bits)
    flat = x.reshape(-1)
    ordered = np.sort(flat)
    prefix = np.concatenate([[0.0], np.cumsum(ordered, dtype=np.float64)])
    centroids = np.linspace(float(ordered[0]), float(ordered[-1]), 2**bits)
    ends = None
    for _ in range(KMEANS_MAX_ITER):
        # Element v joins the nearest centroid; v on a midpoint joins the lower one.
        midpoints = (centroids[:-1] + centroids[1:]) / 2
        new_ends = np.searchsorted(ordered, midpoints, side="right")
        if ends is not None and np.array_equal(new_ends, ends):
            break
        ends = new_ends
        bounds = np.concatenate([[0], ends, [flat.size]])
        counts = np.diff(bounds)
        sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
        filled = counts > 0
        # An empty cluster keeps its centroid (it may fill again later).
        centroids = np.sort(np.where(filled, sums / np.maximum(counts, 1), centroids))
    midpoints = (centroids[:-1] + centroids[1:]) / 2
    labels = np.searchsorted(midpoints, flat, side="left").astype(np.uint8)
    return SharedArray(
        codebook=centroids.astype(x.dtype),
        codes=_pack_bits(labels, bits),
        bits=bits,
        shape=x.shape,
        dtype=x.dtype,
    )


# --- low rank --------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LowRankArray:
    """w ~ left @ right, left (rows, rank), right (rank, columns), from a truncated
    SVD; an array of more than two dims is seen as (shape[0], rest). The factors
    may themselves be compressed (e.g. quantized)."""

    left: Any
    right: Any
    shape: tuple
    dtype: np.dtype

    @property
    def rank(self) -> int:
        return int(self.left.shape[1])

    @property
    def nbytes(self) -> int:
        return _nbytes(self.left) + _nbytes(self.right)

    def to_dense(self) -> np.ndarray:
        product = _dense(self.left) @ _dense(self.right)
        return product.reshape(self.shape).astype(self.dtype, copy=False)

    def _tensors(self) -> tuple[dict[str, Any], dict[str, Any]]:
        meta = {"type": "low_rank", "shape": list(self.shape), "dtype": self.dtype.str}
        return {"left": self.left, "right": self.right}, meta

    @classmethod
    def _from_tensors(
        cls, tensors: dict[str, Any], meta: dict[str, Any]
    ) -> LowRankArray:
        return cls(
            tensors["left"],
            tensors["right"],
            tuple(meta["shape"]),
            np.dtype(meta["dtype"]),
        )


def low_rank(w: Any, rank: int | None = None, energy: float = 0.99) -> LowRankArray:
    """Truncated SVD: the smallest rank whose singular values keep `energy` of
    sum(s**2) (the squared Frobenius norm), or exactly `rank` when given."""
    x = weight_array(w, "w")
    if x.ndim < 2:
        raise ValueError(
            f"low_rank needs an array of 2 or more dims; w has shape {x.shape}."
        )
    matrix = x.reshape(x.shape[0], -1)
    full = min(matrix.shape)
    if rank is not None:
        rank = _positive_int(rank, "rank")
        if rank > full:
            raise ValueError(
                f"rank={rank} exceeds min(rows, columns) = {full} of w's "
                f"{matrix.shape[0]} x {matrix.shape[1]} matrix."
            )
    else:
        energy = check_fraction(energy, "energy", allow_one=True)
        if energy == 0.0:
            raise ValueError("energy must be in (0, 1], got 0.")
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    if rank is None:
        kept = np.cumsum(s.astype(np.float64) ** 2)
        if kept[-1] == 0.0:
            rank = 1  # an all-zero matrix: rank 1 of zeros
        else:
            needed = energy * kept[-1]
            rank = min(full, int(np.searchsorted(kept, needed * (1 - 1e-12))) + 1)
    left = np.ascontiguousarray(u[:, :rank] * s[:rank])
    right = np.ascontiguousarray(vt[:rank])
    return LowRankArray(left, right, x.shape, x.dtype)
