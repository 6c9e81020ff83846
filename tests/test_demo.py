"""`gradkit demo` (gradkit._demo.run_demo) end to end on a small synthetic set: what
it prints, what it leaves in the registry, and that it reports what looks wrong."""

import io

import numpy as np
import pytest

from gradkit._demo import MIN_N, MODEL_NAME, prepare_breast_cancer, run_demo
from gradkit.metrics import accuracy_score
from gradkit.registry import Registry

N = 20_000
HEADINGS = (
    "1. Data", "2. Training", "3. 5-fold cross-validation", "4. Tuning",
    "5. Compression", "6. Registry", "7. Time",
)  # fmt: skip


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs into one fresh registry: the first by path with progress lines,
    the second with a Registry object and no progress."""
    path = tmp_path_factory.mktemp("registry")
    capture = pytest.MonkeyPatch()
    outputs, errors, codes = [], [], []
    opened = Registry(path)
    try:
        for progress, registry in ((True, str(path)), (False, opened)):
            err = io.StringIO()
            capture.setattr("sys.stderr", err)
            out = io.StringIO()
            codes.append(run_demo(out=out, progress=progress, n=N, registry=registry))
            outputs.append(out.getvalue())
            errors.append(err.getvalue())
        # run_demo leaves a registry it was given open.
        assert opened.get(MODEL_NAME).version == 4
    finally:
        capture.undo()
        opened.close()
    return {"path": path, "outputs": outputs, "errors": errors, "codes": codes}


def test_runs_succeed_and_print_the_summary(two_runs):
    assert two_runs["codes"] == [0, 0]
    for output in two_runs["outputs"]:
        assert "!!!" not in output
        for heading in HEADINGS:
            assert heading in output
        for method in ("gradient descent", "SGD", "Adam"):
            assert method in output
        assert f"{N:,} x 30" in output
        assert f"{MODEL_NAME}@production" in output


def test_progress_goes_to_stderr_only_when_asked(two_runs):
    with_progress, without = two_runs["errors"]
    assert "gradkit demo [1/7]" in with_progress
    assert "gradkit demo [7/7]" in with_progress
    assert without == ""
    assert "gradkit demo [" not in two_runs["outputs"][0]


def test_each_run_adds_a_trained_and_a_compressed_version(two_runs):
    with Registry(two_runs["path"]) as registry:
        records = registry.versions(MODEL_NAME)
    assert [r.version for r in records] == [1, 2, 3, 4]
    assert [r.tags["stage"] for r in records] == ["trained", "compressed"] * 2
    for trained, compressed in (records[0:2], records[2:4]):
        assert compressed.kind == "compressed"
        assert compressed.lineage["parent"] == trained.ref
        assert "parent" not in trained.lineage
        assert trained.lineage["data"] == compressed.lineage["data"]
        for metric in ("accuracy", "f1", "roc_auc"):
            assert 0.5 < trained.metrics[metric] <= 1.0
            assert 0.5 < compressed.metrics[metric] <= 1.0
        assert compressed.size < trained.size
    # The data are the same every run, so both runs trained the same model.
    assert records[0].metrics == records[2].metrics


def test_production_is_the_better_version_of_the_last_run(two_runs):
    with Registry(two_runs["path"]) as registry:
        production = registry.get(f"{MODEL_NAME}@production")
        trained, compressed = registry.versions(MODEL_NAME)[2:4]
        model = registry.load(f"{MODEL_NAME}@production")
    assert production.version in (3, 4)
    assert production.aliases == ("production",)
    key = ("roc_auc", "accuracy", "f1")
    best = max(tuple(r.metrics[k] for k in key) for r in (trained, compressed))
    assert tuple(production.metrics[k] for k in key) == best
    # A tie goes to the smaller, compressed model.
    if tuple(compressed.metrics[k] for k in key) == best:
        assert production.version == compressed.version

    # Loaded back, it predicts the test rows as well as its record says, from
    # inputs standardized with the scaling recorded in its params.
    data = prepare_breast_cancer()
    assert np.allclose(production.params["scaler_mean"], data.mean)
    assert np.allclose(production.params["scaler_scale"], data.scale)
    predicted = model.predict(data.X_test)
    assert accuracy_score(data.y_test, predicted) == production.metrics["accuracy"]


def test_a_wrong_result_is_reported_with_exit_code_1(tmp_path, monkeypatch):
    # A registry that hands back a model predicting one class for everything.
    real_load = Registry.load

    def broken_load(self, *args, **kwargs):
        model = real_load(self, *args, **kwargs)
        model.predict = lambda X: np.zeros(len(X), dtype=np.int64)
        return model

    monkeypatch.setattr(Registry, "load", broken_load)
    out = io.StringIO()
    code = run_demo(out=out, progress=False, n=MIN_N, registry=tmp_path)
    assert code == 1
    assert "!!! " in out.getvalue()
    assert "predicts differently" in out.getvalue()


@pytest.mark.parametrize("n", [0, MIN_N - 1, 2.5, True, "1000"])
def test_bad_sample_counts_are_refused_before_anything_is_written(tmp_path, n):
    with pytest.raises(ValueError, match="n must be"):
        run_demo(out=None, progress=False, n=n, registry=tmp_path / "registry")
    assert not (tmp_path / "registry").exists()
