"""The `gradkit` command line: arguments, exit codes and the bench table."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gradkit
from gradkit._bench import METRIC_CASES
from gradkit.cli import main


def test_bench_metrics_quick_prints_every_function(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["bench", "metrics", "--quick", "--n", "20000", "--threads", "2"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "n = 20,000" in out
    for case in METRIC_CASES:
        assert case.name in out
        assert case.name in err  # one progress line per function
    for column in ("cpp ms", "numba ms", "sklearn ms", "sklearn/cpp", "cpp/yard"):
        assert column in out
    assert "MISMATCH" not in out
    assert "ERROR" not in out


def test_bench_train_prints_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    # Every case checks its result against its peer's; the seeds are fixed.
    code = main(["bench", "train", "--n", "20000", "--threads", "2"])
    out, err = capsys.readouterr()
    cases = ("SGDClassifier(hinge)", "SGDRegressor", "one pass", "LogisticRegression")
    for case in (*cases, "Adam step"):
        assert case in out
    for column in ("cpp ms", "numba ms", "peer ms", "peer/cpp", "quality"):
        assert column in out
    assert "FAILED" not in out, out
    assert code == 0, out + err


def test_bench_unknown_area_exits_2_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "nope"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err
    assert "metrics" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bench"],
        ["bench", "metrics", "--threads", "0"],
        ["bench", "metrics", "--n", "x"],
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gradkit {gradkit.__version__}"


def test_python_dash_m_gradkit() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gradkit", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"gradkit {gradkit.__version__}"
