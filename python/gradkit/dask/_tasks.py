"""What every gradkit task on a dask worker shares."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

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
