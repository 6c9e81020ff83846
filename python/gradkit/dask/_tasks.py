"""What gradkit.dask's functions and their tasks on the workers share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import dask.array as da
import numpy as np

from gradkit._config import config_context

_F = TypeVar("_F", bound=Callable[..., Any])


def one_thread_per_task(func: _F) -> _F:
    """func with gradkit's kernels on one thread. A dask worker already runs one
    task per worker thread (its nthreads), as it sets OMP_NUM_THREADS=1 for the
    libraries it knows: kernels that start more threads of their own on the same
    cores only make the tasks wait for each other."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with config_context(n_threads=1):
            return func(*args, **kwargs)

    return run  # type: ignore[return-value]


def with_known_chunks(x: da.Array) -> da.Array:
    """x when its chunk sizes are known; else a new array over the same graph
    with them measured (one pass over the data). compute_chunk_sizes() itself
    changes the array in place, and the caller's array keeps its own chunks."""
    if not any(np.isnan(size) for sizes in x.chunks for size in sizes):
        return x
    return da.Array(x.dask, x.name, x.chunks, meta=x._meta).compute_chunk_sizes()
