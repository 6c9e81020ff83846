"""What the numba kernel modules share: the decorators and the chunking of a loop.

The twin of cpp/include/gradkit/parallel.hpp: [0, n) is cut into t contiguous
chunks, chunk c = [c*n//t, (c+1)*n//t), t = min(n_threads, n // MIN_CHUNK) (at
least 1), so the C++ and numba kernels split, and so round, the same way.
"""

from __future__ import annotations

from numba import njit
from numba.core import types
from numba.extending import overload

#: Below this many rows per thread, a parallel launch costs more than it saves.
MIN_CHUNK = 1 << 16

# error_model="numpy": x / 0 is IEEE inf or NaN, as in C++ and torch, rather than a
# ZeroDivisionError check on every division, which also stops loops vectorising.
kernel = njit(cache=True, nogil=True, error_model="numpy")
parallel_kernel = njit(cache=True, nogil=True, error_model="numpy", parallel=True)


def n_chunks(n: int, n_threads: int) -> int:
    return max(1, min(int(n_threads), n // MIN_CHUNK))


@njit(inline="always")
def chunk_bounds(c, t, n):
    return c * n // t, (c + 1) * n // t


def optional_slice(a, start, stop):  # pragma: no cover - the overload runs in numba
    return None if a is None else a[start:stop]


@overload(optional_slice)
def _optional_slice_overload(a, start, stop):
    # Typed per call site, so that None stays None (not an Optional) in a prange.
    if isinstance(a, types.NoneType):
        return lambda a, start, stop: None
    return lambda a, start, stop: a[start:stop]
