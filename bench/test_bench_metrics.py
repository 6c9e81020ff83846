"""gradkit.metrics on both backends next to sklearn.metrics and NumPy yardsticks.

    python -m pytest bench --benchmark-only
    GRADKIT_BENCH_N=1e6 python -m pytest bench --benchmark-only   # smaller, faster

Each metric is one benchmark group holding gradkit's cpp and numba backends, sklearn
on the same data and the metric's yardstick (one read pass over the labels, np.sort
of the scores, or the NumPy one-liner of the formula), so the table reads side by
side. Every benchmark asserts its result against sklearn's (exact for
confusion_matrix, rtol 1e-9 otherwise): a fast wrong answer fails.

The data, the cases and the yardsticks are the ones `gradkit bench metrics` uses
(gradkit._bench). sklearn takes seconds per call at n = 10**7, so it runs a fixed
number of rounds (GRADKIT_BENCH_SKLEARN_ROUNDS, default 3).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import gradkit
from gradkit._bench import (
    FULL_N,
    METRIC_CASES,
    MetricCase,
    make_metrics_data,
    metric_func,
    same_result,
)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    value = float(raw)  # accepts 1e6 as well as 1000000
    if not value.is_integer() or value < 2:
        raise ValueError(f"{name} must be a whole number >= 2, got {raw!r}.")
    return int(value)


N = _env_int("GRADKIT_BENCH_N", FULL_N)
SKLEARN_ROUNDS = _env_int("GRADKIT_BENCH_SKLEARN_ROUNDS", 3)

CASES = {case.name: case for case in METRIC_CASES}
# sklearn first, so that its benchmark also supplies the reference that gradkit's
# benchmarks are checked against instead of computing it a second time.
LIBRARIES = ("sklearn", "cpp", "numba")


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return make_metrics_data(N)


class SklearnResults:
    """sklearn's result of each metric on the module's data, computed at most once."""

    def __init__(self, data: dict[str, np.ndarray]) -> None:
        self._data = data
        self._results: dict[str, Any] = {}

    def record(self, case: MetricCase, result: Any) -> None:
        self._results.setdefault(case.name, result)

    def __getitem__(self, case: MetricCase) -> Any:
        if case.name not in self._results:
            args = [self._data[key] for key in case.args]
            self._results[case.name] = metric_func("sklearn", case.name)(*args)
        return self._results[case.name]


@pytest.fixture(scope="module")
def sklearn_results(data: dict[str, np.ndarray]) -> SklearnResults:
    return SklearnResults(data)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("name", list(CASES))
def test_metric(
    benchmark: Any,
    data: dict[str, np.ndarray],
    sklearn_results: SklearnResults,
    name: str,
    library: str,
) -> None:
    case = CASES[name]
    benchmark.group = f"{name} (n={N:,})"
    benchmark.extra_info["n"] = N
    args = [data[key] for key in case.args]
    if library == "sklearn":
        func = metric_func("sklearn", name)
        result = benchmark.pedantic(func, args=args, rounds=SKLEARN_ROUNDS)
        sklearn_results.record(case, result)
    else:
        func = metric_func("gradkit", name)
        with gradkit.config_context(backend=library):
            # The first call compiles the numba kernels (or loads them from cache);
            # that is not what is measured.
            func(*args)
            result = benchmark(func, *args)
    assert same_result(result, sklearn_results[case], exact=case.exact), (
        f"{library} {name}: {result!r} != sklearn's {sklearn_results[case]!r}"
    )


def _slug(text: str) -> str:
    return "_".join(text.replace(".", "_").replace("-", "_").split())


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, id=f"{name}-{_slug(CASES[name].yardstick.name)}")
        for name in CASES
    ],
)
def test_yardstick(
    benchmark: Any,
    data: dict[str, np.ndarray],
    sklearn_results: SklearnResults,
    name: str,
) -> None:
    case = CASES[name]
    yardstick = case.yardstick
    benchmark.group = f"{name} (n={N:,})"
    benchmark.extra_info["n"] = N
    benchmark.extra_info["yardstick"] = yardstick.name
    args = [data[key] for key in yardstick.args]
    result = benchmark(yardstick.func, *args)
    if yardstick.computes_metric:
        want = sklearn_results[case]
        assert same_result(result, want, exact=False), f"{result!r} != {want!r}"
    elif yardstick.name == "np.sort":
        (scores,) = args
        assert result.shape == scores.shape
        assert not np.any(result[1:] < result[:-1])
    else:  # read pass: sums of the labels, i.e. the count of ones of each
        assert tuple(int(s) for s in result) == tuple(
            int(np.count_nonzero(a)) for a in args
        )
