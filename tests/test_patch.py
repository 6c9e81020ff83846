"""gradkit.patch_sklearn: scikit-learn code runs on gradkit, unpatch restores it all."""

import importlib
import logging
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sklearn.linear_model
import sklearn.metrics
import sklearn.metrics._scorer
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score

import gradkit
import gradkit.linear_model
from gradkit import _patch

# gradkit's metrics agree with sklearn's to the last few ulps, not bit for bit
# (different summation order), and SGD on dense unshuffled data to rounding that
# 20 epochs amplify to ~1e-11 in the coefficients; scores get atol 1e-9.
ATOL = 1e-9


@pytest.fixture(autouse=True)
def _no_patch_left():
    """Every test starts and ends unpatched, even when it fails half way."""
    assert gradkit.patched_names() == []
    yield
    gradkit.unpatch_sklearn()


def _snapshot():
    """Every object patch_sklearn may replace, by name."""
    return {
        name: _patch._get(where, name)
        for name, (where, _, _) in _patch._REPLACEMENTS.items()
    }


@pytest.fixture(scope="module")
def binary_data():
    return make_classification(
        n_samples=200, n_features=8, n_informative=4, random_state=0
    )


def test_exports_and_lazy_import():
    code = (
        "import sys, gradkit; assert 'sklearn' not in sys.modules; "
        "assert callable(gradkit.patch_sklearn); assert 'sklearn' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert {"patch_sklearn", "unpatch_sklearn", "sklearn_patched"} <= set(
        gradkit.__all__
    )
    with pytest.raises(AttributeError):
        gradkit.no_such_thing  # noqa: B018


def test_unpatch_restores_identity_of_everything():
    before = _snapshot()
    done = gradkit.patch_sklearn(_patch.patchable_names())
    assert sorted(done) == gradkit.patched_names() == _patch.patchable_names()
    after = _snapshot()
    assert all(after[name] is not before[name] for name in before)
    assert sklearn.metrics.f1_score is _patch.accelerated.f1_score
    assert sklearn.linear_model.SGDClassifier is gradkit.linear_model.SGDClassifier
    gradkit.unpatch_sklearn()
    assert gradkit.patched_names() == []
    restored = _snapshot()
    assert all(restored[name] is before[name] for name in before)


def test_default_names_and_subsets():
    done = gradkit.patch_sklearn()
    assert "LogisticRegression" not in done  # its default solver differs
    assert {"roc_auc", "f1", "accuracy", "neg_log_loss", "r2"} <= set(done)
    assert {"f1_score", "SGDClassifier", "SGDRegressor"} <= set(done)
    gradkit.unpatch_sklearn()

    original = sklearn.metrics.f1_score
    assert gradkit.patch_sklearn(["roc_auc_score", "roc_auc"]) == [
        "roc_auc_score",
        "roc_auc",
    ]
    assert sklearn.metrics.f1_score is original
    assert gradkit.patch_sklearn("roc_auc") == []  # already patched
    with pytest.raises(ValueError, match="cannot patch"):
        gradkit.patch_sklearn(["no_such_metric"])


def test_context_manager_nests():
    original = sklearn.metrics.roc_auc_score
    with gradkit.sklearn_patched(["roc_auc_score"]):
        with gradkit.sklearn_patched() as inner:
            assert "roc_auc_score" not in inner
        assert gradkit.patched_names() == ["roc_auc_score"]
        assert sklearn.metrics.roc_auc_score is not original
    assert sklearn.metrics.roc_auc_score is original


def test_patched_metric_equals_unpatched():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = rng.random(500)
    expected = sklearn.metrics.roc_auc_score(y, score)
    expected_f1 = sklearn.metrics.f1_score(y, score > 0.5)
    with gradkit.sklearn_patched():
        got = sklearn.metrics.roc_auc_score(y, score)
        got_f1 = sklearn.metrics.f1_score(y, score > 0.5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert got_f1 == expected_f1


def test_wrappers_and_scorers_pickle_by_reference():
    with gradkit.sklearn_patched():
        f1 = sklearn.metrics.f1_score
        assert pickle.loads(pickle.dumps(f1)) is f1
        scorer = sklearn.metrics.get_scorer("roc_auc")
    assert "roc_auc_score" in repr(scorer)
    restored = pickle.loads(pickle.dumps(scorer))
    assert restored._score_func is _patch.accelerated.roc_auc_score


def _sgd():
    # shuffle=False: gradkit shuffles with numpy's Generator, not sklearn's
    # xorshift, so only unshuffled fits are the same model (to rounding).
    return sklearn.linear_model.SGDClassifier(
        loss="log_loss",
        alpha=1e-3,
        max_iter=20,
        tol=None,
        shuffle=False,
        random_state=0,
    )


def test_cross_val_score_equal(binary_data):
    X, y = binary_data
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    expected = cross_val_score(_sgd(), X, y, cv=cv, scoring="roc_auc")
    with gradkit.sklearn_patched():
        est = _sgd()
        assert type(est) is gradkit.linear_model.SGDClassifier
        assert isinstance(est, _patch._ORIGINAL_ESTIMATORS["SGDClassifier"])
        assert type(clone(est)) is type(est)
        assert clone(est).get_params() == est.get_params()
        got = cross_val_score(est, X, y, cv=cv, scoring="roc_auc")
    # gradkit's SGD equals sklearn's to rounding on dense data; the AUC is then
    # equal unless rounding reorders two scores, which 200 samples do not.
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_grid_search_equal(binary_data):
    X, y = binary_data
    # alpha=1e-4 left out: on this unscaled data its huge early steps amplify
    # rounding until gradkit's and sklearn's coefficients part (see the report).
    grid = {"alpha": [1e-3, 1e-2, 1e-1], "penalty": ["l2", "l1"]}

    def search():
        cv = StratifiedKFold(3, shuffle=True, random_state=1)
        return GridSearchCV(_sgd(), grid, scoring="roc_auc", cv=cv).fit(X, y)

    expected = search()
    with gradkit.sklearn_patched():
        got = search()
        assert type(got.best_estimator_) is gradkit.linear_model.SGDClassifier
        assert got.scorer_._score_func is _patch.accelerated.roc_auc_score
    assert got.best_params_ == expected.best_params_
    for key in expected.cv_results_:
        if "test_score" in key and not key.startswith("rank"):
            np.testing.assert_allclose(
                got.cv_results_[key], expected.cv_results_[key], rtol=0, atol=ATOL
            )
    np.testing.assert_array_equal(
        got.cv_results_["rank_test_score"], expected.cv_results_["rank_test_score"]
    )


def test_scoring_strings_use_gradkit_scorers(binary_data, caplog):
    X, y = binary_data
    est = _sgd().fit(X, y)
    with gradkit.sklearn_patched():
        for name in ("roc_auc", "f1", "accuracy", "neg_log_loss"):
            scorer = sklearn.metrics.get_scorer(name)
            original = _patch._ORIGINAL_SCORERS[name]
            assert scorer._response_method == original._response_method
            assert scorer._sign == original._sign
            assert scorer._kwargs == original._kwargs
            with caplog.at_level(logging.DEBUG, logger="gradkit.patch"):
                caplog.clear()
                got = scorer(est, X, y)
            assert "accelerated by gradkit" in caplog.text
            np.testing.assert_allclose(got, original(est, X, y), rtol=0, atol=ATOL)


def test_fallback_runs_sklearn_and_logs(caplog):
    calls = []

    def unsupported(*args, **kwargs):
        raise NotImplementedError("gradkit cannot do this option")

    def original(y_true, y_pred, *, option=None):
        calls.append(option)
        return 0.5

    wrapper = _patch._make_fallback("demo_score", unsupported, original)
    with caplog.at_level(logging.DEBUG, logger="gradkit.patch"):
        assert wrapper([0, 1], [0, 1], option="exotic") == 0.5
    assert calls == ["exotic"]
    assert "demo_score: fell back to scikit-learn" in caplog.text
    assert "NotImplementedError" in caplog.text


def test_fallback_error_is_sklearns_own(caplog):
    # Input neither supports: the exception that escapes comes from sklearn.
    y = np.array([b"a", b"b", b"a"])
    with pytest.raises(TypeError) as unpatched:
        sklearn.metrics.confusion_matrix(y, y)
    with gradkit.sklearn_patched(["confusion_matrix"]):
        with caplog.at_level(logging.DEBUG, logger="gradkit.patch"):
            with pytest.raises(TypeError) as patched:
                sklearn.metrics.confusion_matrix(y, y)
    assert str(patched.value) == str(unpatched.value)
    assert "sklearn" in patched.traceback[-1].path.as_posix()
    assert "confusion_matrix: fell back to scikit-learn" in caplog.text


def test_debug_log_is_off_by_default(caplog):
    with gradkit.sklearn_patched(["accuracy_score"]):
        with caplog.at_level(logging.WARNING):
            sklearn.metrics.accuracy_score([0, 1], [0, 1])
    assert "gradkit.patch" not in caplog.text


def test_names_imported_before_the_patch(tmp_path, monkeypatch):
    (tmp_path / "user_module_for_patch.py").write_text(
        "from sklearn.metrics import f1_score\n"
        "from sklearn.metrics import roc_auc_score as auc\n"
        "from sklearn.linear_model import SGDClassifier\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("user_module_for_patch")
    try:
        original = module.f1_score
        original_auc = module.auc
        with gradkit.sklearn_patched():
            assert module.f1_score is _patch.accelerated.f1_score
            assert module.auc is _patch.accelerated.roc_auc_score
            assert module.SGDClassifier is gradkit.linear_model.SGDClassifier
        assert module.f1_score is original
        assert module.auc is original_auc
        assert module.SGDClassifier is _patch._ORIGINAL_ESTIMATORS["SGDClassifier"]

        with gradkit.sklearn_patched(rebind_imported=False):
            assert module.f1_score is original

        # A name the user rebinds while patched keeps the user's value.
        gradkit.patch_sklearn(["f1_score"])
        module.f1_score = len
        gradkit.unpatch_sklearn()
        assert module.f1_score is len
    finally:
        sys.modules.pop("user_module_for_patch", None)


def test_gradkit_itself_keeps_working_while_patched(binary_data):
    X, y = binary_data
    with gradkit.sklearn_patched(_patch.patchable_names()):
        est = gradkit.linear_model.SGDClassifier(random_state=0).fit(X, y)
        assert issubclass(
            gradkit.linear_model.SGDClassifier,
            _patch._ORIGINAL_ESTIMATORS["SGDClassifier"],
        )
        assert gradkit.metrics.get_scorer("roc_auc")(est, X, y) > 0.5


def test_command_line_runs_script_patched(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import sklearn.metrics
            from gradkit import _patch
            print(sklearn.metrics.f1_score is _patch.accelerated.f1_score)
            print(sys.argv)
            print(__name__)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "gradkit.patch", str(script), "arg1", "--flag"],
        check=True,
        capture_output=True,
        text=True,
    )
    lines = out.stdout.splitlines()
    assert lines == ["True", str([str(script), "arg1", "--flag"]), "__main__"]

    out = subprocess.run(
        [sys.executable, "-m", "gradkit.patch", "--names", "roc_auc", str(script)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.splitlines()[0] == "False"

    out = subprocess.run(
        [sys.executable, "-m", "gradkit.patch", "--debug", str(script)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "gradkit.patch: patched" in out.stderr

    out = subprocess.run(
        [sys.executable, "-m", "gradkit.patch"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "usage" in out.stderr


def test_array_api_dispatch_is_left_to_sklearn():
    # sklearn then returns results in the inputs' namespace (here torch), which
    # gradkit's numpy kernels do not: the patched metric hands such calls over.
    import torch

    y_true, y_pred = torch.tensor([0, 1, 1, 0, 1]), torch.tensor([0, 1, 0, 0, 1])
    with sklearn.config_context(array_api_dispatch=True):
        expected = sklearn.metrics.confusion_matrix(y_true, y_pred)
        with gradkit.sklearn_patched(["confusion_matrix"]):
            got = sklearn.metrics.confusion_matrix(y_true, y_pred)
    assert isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)
    assert torch.equal(got, expected)
    # Without dispatch the same call is gradkit's, and returns numpy.
    with gradkit.sklearn_patched(["confusion_matrix"]):
        plain = sklearn.metrics.confusion_matrix(y_true.numpy(), y_pred.numpy())
    np.testing.assert_array_equal(plain, expected.numpy())
