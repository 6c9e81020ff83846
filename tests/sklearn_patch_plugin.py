"""A pytest plugin that turns gradkit.patch_sklearn() on for a whole test session;
tests/test_patch_sklearn_suite.py runs scikit-learn's own tests with it."""

import gradkit


def pytest_configure(config):
    gradkit.patch_sklearn()
