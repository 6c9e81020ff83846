"""gradkit's configuration: set_config / get_config / config_context, the
GRADKIT_BACKEND and GRADKIT_NUM_THREADS environment variables, and that the
configured backend is the one that runs."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import gradkit
import gradkit.metrics as gm
from gradkit import _config


@pytest.fixture
def restore_config():
    before = gradkit.get_config()
    yield
    gradkit.set_config(backend=before["backend"], n_threads=before["n_threads"])
    assert gradkit.get_config() == before


def test_get_config_shape():
    config = gradkit.get_config()
    assert set(config) == {"backend", "n_threads"}
    assert config["backend"] in ("cpp", "numba")
    assert config["n_threads"] is None or config["n_threads"] >= 1
    # a copy: changing it changes nothing
    config["backend"] = "nonsense"
    assert gradkit.get_config()["backend"] in ("cpp", "numba")


def test_set_config(restore_config):
    gradkit.set_config(backend="numba")
    assert gradkit.get_config()["backend"] == "numba"
    gradkit.set_config(n_threads=3)
    assert gradkit.get_config() == {"backend": "numba", "n_threads": 3}
    gradkit.set_config(backend="cpp")  # n_threads left as it was
    assert gradkit.get_config() == {"backend": "cpp", "n_threads": 3}
    gradkit.set_config(n_threads=None)
    assert gradkit.get_config()["n_threads"] is None
    assert _config.n_threads() >= 1  # None: every core this process may use
    gradkit.set_config(n_threads=2)
    assert _config.n_threads() == 2


def test_set_config_is_seen_by_new_threads(restore_config):
    gradkit.set_config(backend="numba", n_threads=2)
    seen = {}
    thread = threading.Thread(target=lambda: seen.update(gradkit.get_config()))
    thread.start()
    thread.join()
    assert seen == {"backend": "numba", "n_threads": 2}


def test_config_context_restores(restore_config):
    gradkit.set_config(backend="cpp", n_threads=None)
    with gradkit.config_context(backend="numba", n_threads=1):
        assert gradkit.get_config() == {"backend": "numba", "n_threads": 1}
        with gradkit.config_context(n_threads=2):
            assert gradkit.get_config() == {"backend": "numba", "n_threads": 2}
        assert gradkit.get_config() == {"backend": "numba", "n_threads": 1}
    assert gradkit.get_config() == {"backend": "cpp", "n_threads": None}
    with pytest.raises(RuntimeError):
        with gradkit.config_context(backend="numba"):
            raise RuntimeError("boom")
    assert gradkit.get_config()["backend"] == "cpp"


def test_config_context_is_thread_local(restore_config):
    gradkit.set_config(backend="cpp")
    inside = threading.Event()
    release = threading.Event()
    seen = {}

    def worker():
        with gradkit.config_context(backend="numba"):
            inside.set()
            release.wait(10)
            seen["worker"] = gradkit.get_config()["backend"]

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(10)
    seen["main"] = gradkit.get_config()["backend"]
    release.set()
    thread.join()
    assert seen == {"main": "cpp", "worker": "numba"}


@pytest.mark.parametrize("backend", ["cuda", "CPP", "", 1, ["cpp"]])
def test_bad_backend_is_value_error(restore_config, backend):
    before = gradkit.get_config()
    with pytest.raises(ValueError, match="backend"):
        gradkit.set_config(backend=backend)
    with pytest.raises(ValueError, match="backend"):
        with gradkit.config_context(backend=backend):
            pass  # pragma: no cover
    assert gradkit.get_config() == before


@pytest.mark.parametrize("n_threads", [0, -1, 1.5, True, False, "2", 2.0])
def test_bad_n_threads_is_value_error(restore_config, n_threads):
    before = gradkit.get_config()
    with pytest.raises(ValueError, match="n_threads"):
        gradkit.set_config(n_threads=n_threads)
    with pytest.raises(ValueError, match="n_threads"):
        with gradkit.config_context(n_threads=n_threads):
            pass  # pragma: no cover
    assert gradkit.get_config() == before


# ---------------------------------------------------------------------------
# Environment variables, read at import: checked in a fresh interpreter
# ---------------------------------------------------------------------------

_PROBE = (
    "import json, gradkit, gradkit.metrics as gm;"
    "auc = gm.roc_auc_score([0, 1, 1], [0.1, 0.7, 0.4]);"
    "print(json.dumps([gradkit.get_config(), auc]))"
)


def _run_with_env(**env_vars):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADKIT_")}
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"backend": "cpp", "n_threads": None}),
        ({"GRADKIT_BACKEND": "numba"}, {"backend": "numba", "n_threads": None}),
        ({"GRADKIT_BACKEND": " NUMBA "}, {"backend": "numba", "n_threads": None}),
        ({"GRADKIT_BACKEND": ""}, {"backend": "cpp", "n_threads": None}),
        ({"GRADKIT_NUM_THREADS": "3"}, {"backend": "cpp", "n_threads": 3}),
        ({"GRADKIT_NUM_THREADS": ""}, {"backend": "cpp", "n_threads": None}),
        (
            {"GRADKIT_BACKEND": "cpp", "GRADKIT_NUM_THREADS": " 1 "},
            {"backend": "cpp", "n_threads": 1},
        ),
    ],
)
def test_environment_sets_defaults(env, expected):
    result = _run_with_env(**env)
    assert result.returncode == 0, result.stderr
    config, auc = json.loads(result.stdout)
    assert config == expected
    assert auc == 1.0


@pytest.mark.parametrize(
    "env",
    [
        {"GRADKIT_BACKEND": "cuda"},
        {"GRADKIT_BACKEND": "c++"},
        {"GRADKIT_NUM_THREADS": "zero"},
        {"GRADKIT_NUM_THREADS": "0"},
        {"GRADKIT_NUM_THREADS": "-2"},
        {"GRADKIT_NUM_THREADS": "1.5"},
    ],
)
def test_bad_environment_is_value_error(env):
    result = _run_with_env(**env)
    assert result.returncode != 0
    assert "ValueError" in result.stderr
    # the message says which setting was wrong
    wrong = "threads" if "GRADKIT_NUM_THREADS" in env else "backend"
    assert wrong in result.stderr.lower()
    assert "Segmentation fault" not in result.stderr


# ---------------------------------------------------------------------------
# The configured backend is the one that runs
# ---------------------------------------------------------------------------

_CALLS = [
    ("f1_score", ([0, 1, 1, 0, 2], [0, 1, 0, 0, 2]), {"average": "macro"}),
    ("confusion_matrix", ([0, 1, 1, 0], [0, 1, 0, 0]), {}),
    ("accuracy_score", ([0, 1, 1, 0], [0, 1, 0, 0]), {}),
    ("roc_auc_score", ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]), {}),
    ("roc_curve", ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]), {}),
    ("precision_recall_curve", ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]), {}),
    ("average_precision_score", ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]), {}),
    ("log_loss", ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]), {}),
    ("mean_squared_error", ([0.5, 1, 2], [1, 1, 1]), {}),
    ("mean_absolute_error", ([0.5, 1, 2], [1, 1, 1]), {}),
    ("r2_score", ([0.5, 1, 2], [1, 1, 1]), {}),
]


@pytest.mark.parametrize("backend_name", ["cpp", "numba"])
@pytest.mark.parametrize(("name", "args", "kwargs"), _CALLS)
def test_configured_backend_runs_the_kernels(
    kernel_calls, backend_name, name, args, kwargs
):
    with gradkit.config_context(backend=backend_name):
        getattr(gm, name)(*args, **kwargs)
    assert kernel_calls, f"{name} ran no kernel"
    assert {b for b, _ in kernel_calls} == {backend_name}


def test_kernels_module_follows_config():
    from gradkit import _core

    with gradkit.config_context(backend="cpp"):
        assert _config.kernels("metrics") is _core.metrics
    with gradkit.config_context(backend="numba"):
        module = _config.kernels("metrics")
        assert module is not _core.metrics
        assert module.__name__ == "gradkit._numba.metrics"
    # both modules have every kernel of the contract (gradkit/_core.pyi)
    for name in (
        "label_table",
        "binary_curve",
        "binary_auc",
        "binary_average_precision",
        "range_partition",
        "log_loss_sum",
        "regression_stats",
        "all_finite",
    ):
        assert callable(getattr(_core.metrics, name))
        with gradkit.config_context(backend="numba"):
            assert callable(getattr(_config.kernels("metrics"), name))


def test_numba_threads_follow_config():
    import numba

    with gradkit.config_context(backend="numba", n_threads=1):
        _config.kernels("metrics")
        assert numba.get_num_threads() == 1
        gm.roc_auc_score(np.arange(10) % 2, np.arange(10.0))
    if numba.config.NUMBA_NUM_THREADS >= 2:
        with gradkit.config_context(backend="numba", n_threads=2):
            _config.kernels("metrics")
            assert numba.get_num_threads() == 2


def test_numba_kernels_are_cached_on_disk(tmp_path):
    """A second process loads the compiled numba kernels instead of compiling."""
    script = (
        "import numpy as np\n"
        "from gradkit._numba import metrics as m\n"
        "m.all_finite(np.ones(10), 1)\n"
        "print(sum(m._all_finite_chunk.stats.cache_hits.values()))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    hits = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        hits.append(int(done.stdout.strip()))
    assert hits == [0, 1]
    assert list(tmp_path.rglob("*.nbi")), "no numba cache index was written"
