"""Shared fixtures: the kernel backend under test, the hypothesis profiles and the
dask cluster of the gradkit.dask tests."""

import logging
import os
import warnings

# sklearn's array-API estimator checks run only when scipy was imported with this
# set; without it they skip (8 cases of test_check_estimator).
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import gradkit  # noqa: E402

# When a property fails, hypothesis imports libcst to explain it, and libcst warns
# (DeprecationWarning from mypy_extensions) on import; with warnings as errors that
# warning would hide the real failure behind an INTERNALERROR. Import it now, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import libcst.metadata  # noqa: F401
    except ImportError:
        pass

# The backend fixture is function scoped but only selects a thread-local setting
# that stays the same across hypothesis examples, so the health check does not apply.
_SUPPRESSED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

# Small enough that the whole suite runs in a few minutes on 2 cores, and
# derandomized: every run draws the same examples, so the suite that passes here
# passes in CI (random draws there found sklearn's float-rounding corners twice,
# each time failing a landing for a case that says nothing about gradkit).
settings.register_profile(
    "default",
    deadline=None,
    max_examples=40,
    derandomize=True,
    suppress_health_check=_SUPPRESSED,
)
# Random and longer, to explore: HYPOTHESIS_PROFILE=ci pytest tests.
settings.register_profile(
    "ci", deadline=None, max_examples=300, suppress_health_check=_SUPPRESSED
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=["cpp", "numba"])
def backend(request):
    """Run the test with one kernel backend; every metric test is run with both."""
    with gradkit.config_context(backend=request.param):
        yield request.param


@pytest.fixture
def kernel_calls(monkeypatch):
    """Record every kernel call as (backend, kernel name).

    The public layer asks gradkit._config.kernels(area) for the kernel module at
    call time; the spy wraps that module so each kernel call is recorded together
    with the backend whose module served it.
    """
    from gradkit import _config, _core

    real_kernels = _config.kernels
    calls = []

    class Recorder:
        def __init__(self, module):
            self._module = module
            self._backend = "cpp" if module is _core.metrics else "numba"

        def __getattr__(self, name):
            func = getattr(self._module, name)
            if not callable(func):
                return func

            def wrapper(*args, **kwargs):
                calls.append((self._backend, name))
                return func(*args, **kwargs)

            return wrapper

    def spying_kernels(area):
        return Recorder(real_kernels(area))

    monkeypatch.setattr(_config, "kernels", spying_kernels)
    yield calls


@pytest.fixture(scope="module")
def client():
    """A distributed client of a LocalCluster of 2 worker processes x 1 thread,
    one per test module (a module that kills workers starts its own)."""
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        # None still binds the scheduler's HTTP routes to :8787, which collides
        # with any other cluster on the machine; :0 takes a free port.
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()
