"""Which kernel backend runs, and on how many threads.

The defaults come from the environment (GRADKIT_BACKEND, GRADKIT_NUM_THREADS) when
gradkit is imported; set_config and config_context change them for this process
(config_context only inside its `with` block, and only for the current thread).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

BACKENDS = ("cpp", "numba")


def _check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {BACKENDS}, got {backend!r}; "
            "set it with gradkit.set_config(backend=...) or GRADKIT_BACKEND."
        )
    return str(backend)


def _check_n_threads(n_threads: object) -> int | None:
    """None means every core this process may use."""
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(
            f"n_threads must be a positive int or None (all cores), got {n_threads!r}."
        )
    return n_threads


def _from_environment() -> dict[str, Any]:
    backend = os.environ.get("GRADKIT_BACKEND", "cpp").strip().lower() or "cpp"
    raw_threads = os.environ.get("GRADKIT_NUM_THREADS", "").strip()
    try:
        n_threads = int(raw_threads) if raw_threads else None
    except ValueError:
        raise ValueError(
            f"GRADKIT_NUM_THREADS must be a positive integer, got {raw_threads!r}."
        ) from None
    return {
        "backend": _check_backend(backend),
        "n_threads": _check_n_threads(n_threads),
    }


_global_config = _from_environment()
_local = threading.local()


def _current() -> dict[str, Any]:
    if not hasattr(_local, "config"):
        _local.config = dict(_global_config)
    return _local.config


def get_config() -> dict[str, Any]:
    """The current settings: {'backend': 'cpp' | 'numba', 'n_threads': int | None}."""
    return dict(_current())


def set_config(
    backend: str | None = None, n_threads: int | None | str = "keep"
) -> None:
    """Change the settings for this process (and the calling thread's context).

    n_threads=None uses every available core; leave it out to keep the current one.
    """
    changes: dict[str, Any] = {}
    if backend is not None:
        changes["backend"] = _check_backend(backend)
    if n_threads != "keep":
        changes["n_threads"] = _check_n_threads(n_threads)
    _global_config.update(changes)
    _current().update(changes)


@contextlib.contextmanager
def config_context(
    *, backend: str | None = None, n_threads: int | None | str = "keep"
) -> Iterator[None]:
    """Temporarily change the settings for the calling thread."""
    old = get_config()
    new = dict(old)
    if backend is not None:
        new["backend"] = _check_backend(backend)
    if n_threads != "keep":
        new["n_threads"] = _check_n_threads(n_threads)
    _local.config = new
    try:
        yield
    finally:
        _local.config = old


def n_threads() -> int:
    """The thread count the kernels get now."""
    configured = _current()["n_threads"]
    if configured is not None:
        return int(configured)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def kernels(area: str) -> ModuleType:
    """The kernel module of one area (e.g. "metrics") for the configured backend."""
    if _current()["backend"] == "cpp":
        from gradkit import _core

        return getattr(_core, area)
    # numba's OpenMP workers spin after each parallel call by default, stealing the
    # cores from whatever runs next (the C++ kernels included). Let them sleep,
    # unless the user chose a policy; this must be set before their pool starts.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    module = importlib.import_module(f"gradkit._numba.{area}")
    import numba

    # numba's pool is process wide; size it to what the config asks for.
    wanted = min(n_threads(), numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)
    return module
