"""Shared fixtures: the kernel backend under test and the hypothesis profiles."""

import os

import pytest
from hypothesis import HealthCheck, settings

import gradkit

# The backend fixture is function scoped but only selects a thread-local setting
# that stays the same across hypothesis examples, so the health check does not apply.
_SUPPRESSED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

# Small enough that the whole suite runs in a few minutes on 2 cores.
settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=_SUPPRESSED
)
# Longer runs for CI or a nightly job: HYPOTHESIS_PROFILE=ci pytest tests.
settings.register_profile(
    "ci", deadline=None, max_examples=300, suppress_health_check=_SUPPRESSED
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=["cpp", "numba"])
def backend(request):
    """Run the test with one kernel backend; every metric test is run with both."""
    with gradkit.config_context(backend=request.param):
        yield request.param
