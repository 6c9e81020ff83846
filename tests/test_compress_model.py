"""compress_model, CompressedModel and gradkit's model files (gradkit.save / load).

The models: a small ReLU MLP state dict trained by scikit-learn on the digits
dataset (scored by a numpy forward pass) and gradkit estimators; max_drop must
hold on held-out data, and every stored model must load back predicting the same.
"""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import gradkit
from gradkit import cli
from gradkit._bench_compress import mlp_accuracy
from gradkit.compress import (
    DEFAULT_SEARCH,
    CompressedModel,
    PrunedArray,
    QuantizedArray,
    Recipe,
    compress_model,
    global_prune,
    prune,
    quantize,
)
from gradkit.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)


@pytest.fixture(scope="module")
def mlp():
    """(state dict, X_test, y_test) of a 64-64-10 ReLU MLP on digits."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    with pytest.warns(ConvergenceWarning):
        net = MLPClassifier((64,), max_iter=40, random_state=0).fit(X_train, y_train)
    state = {}
    for i, (coef, bias) in enumerate(zip(net.coefs_, net.intercepts_, strict=True)):
        state[f"layer{i}.weight"] = np.ascontiguousarray(coef.T, np.float32)
        state[f"layer{i}.bias"] = bias.astype(np.float32)
    return state, X_test, y_test


@pytest.fixture(scope="module")
def logistic():
    X, y = make_classification(
        n_samples=3000, n_features=400, n_informative=20, n_classes=4, random_state=0
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    # lbfgs: gradient descent needs ~3,000 iterations on this 4-class problem.
    model = LogisticRegression(solver="lbfgs", max_iter=1000).fit(X_train, y_train)
    return model, X_test, y_test


def accuracy(weights, X, y):
    return mlp_accuracy(weights, X, y)


@pytest.mark.parametrize("max_drop", [0.0, 0.01, 0.05])
def test_mlp_search_keeps_the_drop_within_the_bound(backend, mlp, max_drop):
    state, X, y = mlp
    compressed = compress_model(state, None, X, y, metric=accuracy, max_drop=max_drop)
    report = compressed.report
    before = accuracy(state, X, y)
    after = accuracy(compressed.to_dense(), X, y)
    assert report.metric_before == before and report.metric_after == after
    assert before - after <= max_drop
    assert report.ratio > 3
    # Every recipe is in the report, smallest file first; the chosen one is the
    # first within the bound, and all the smaller ones were too lossy.
    assert sorted(row["recipe"] for row in report.rows) == sorted(DEFAULT_SEARCH)
    sizes = [row["bytes"] for row in report.rows]
    assert sizes == sorted(sizes)
    statuses = [row["status"] for row in report.rows]
    chosen = statuses.index("chosen")
    assert set(statuses[:chosen]) <= {"drop too large"}
    assert set(statuses[chosen + 1 :]) <= {"not needed"}
    assert report.bytes_after == len(gradkit._serialize.to_bytes(compressed))
    # Biases stay exact; weight matrices are compressed.
    np.testing.assert_array_equal(
        compressed.arrays["layer0.bias"], state["layer0.bias"]
    )
    assert not isinstance(compressed.arrays["layer0.weight"], np.ndarray)


def test_logistic_search_keeps_the_drop_within_the_bound(backend, logistic):
    model, X, y = logistic
    compressed = compress_model(model, None, X, y, max_drop=0.005)
    assert model.score(X, y) - compressed.score(X, y) <= 0.005
    assert compressed.report.metric_before == model.score(X, y)
    np.testing.assert_array_equal(compressed.classes_, model.classes_)
    proba = compressed.predict_proba(X)
    assert proba.shape == (len(X), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert compressed.report.ratio > 4  # float64 weights
    # A scorer name works as the metric.
    by_auc = compress_model(model, "int8", X, y, metric="roc_auc_ovr")
    assert by_auc.report.metric_before == pytest.approx(
        gradkit.metrics.get_scorer("roc_auc_ovr")(model, X, y)
    )


def test_no_recipe_within_the_bound_returns_the_best_with_a_warning(backend, mlp):
    state, X, y = mlp
    with pytest.warns(UserWarning, match="no recipe kept the metric drop"):
        compressed = compress_model(
            state, ["prune:0.95+share:1", "prune:0.9+share:1"], X, y,
            metric=accuracy, max_drop=0.0,
        )  # fmt: skip
    drops = {row["recipe"]: row["drop"] for row in compressed.report.rows}
    assert compressed.recipe == min(drops, key=drops.get)
    assert [r["status"] for r in compressed.report.rows].count("chosen") == 1


@pytest.mark.parametrize(
    "recipe", ["int8", "uint8", "int4", "share:4", "prune:0.5", "prune:0.7+int8",
               "prune:2:4+int4", "prune:0.9+share:4", "lowrank:0.95",
               "lowrank:0.99+int8"],
)  # fmt: skip
def test_every_recipe_round_trips_through_a_file(backend, mlp, recipe, tmp_path):
    state, X, y = mlp
    compressed = compress_model(state, recipe, X, y, metric=accuracy)
    if recipe != "lowrank:0.95":  # which the small MLP's layers do not have
        assert compressed.report.bytes_after < compressed.report.bytes_before
    path = tmp_path / "model.gradkit"
    written = gradkit.save(compressed, path)
    assert written == path.stat().st_size == compressed.report.bytes_after
    loaded = gradkit.load(path)
    assert isinstance(loaded, CompressedModel) and loaded.recipe == recipe
    for name, array in compressed.to_dense().items():
        np.testing.assert_array_equal(loaded.to_dense()[name], array)
        assert loaded.to_dense()[name].dtype == state[name].dtype
    assert loaded.report is None  # how it was chosen is not part of the model


def test_recipes_compose(backend, mlp):
    state = mlp[0]
    compressed = compress_model(state, "prune:0.8+int8").arrays
    matrices = {name: w for name, w in state.items() if w.ndim == 2}
    direct = global_prune(matrices, 0.8)  # one threshold across the layers
    assert sum(p.size - p.n_kept for p in direct.values()) == round(
        0.8 * sum(w.size for w in matrices.values())
    )
    for name in matrices:
        pruned = compressed[name]
        assert isinstance(pruned, PrunedArray)
        assert isinstance(pruned.values, QuantizedArray)
        np.testing.assert_array_equal(pruned.kept_mask(), direct[name].kept_mask())
        np.testing.assert_array_equal(
            pruned.values.data, quantize(direct[name].values).data
        )
    nm = compress_model(state, "prune:2:4").arrays["layer0.weight"]
    np.testing.assert_array_equal(
        nm.kept_mask(), prune(state["layer0.weight"], None, "n:m").kept_mask()
    )


@pytest.mark.parametrize(
    "estimator, make",
    [
        (SGDClassifier(random_state=0), "clf"),
        (SGDClassifier(loss="log_loss", class_weight={0: 1.0, 1: 2.0}, random_state=0),
         "clf"),
        (LogisticRegression(), "clf"),
        (SGDRegressor(random_state=0), "reg"),
        (Ridge(), "reg"),
        (LinearRegression(), "reg"),
    ],
)  # fmt: skip
def test_estimators_save_and_load_without_pickle(backend, estimator, make, tmp_path):
    if make == "clf":
        X, y = make_classification(200, 6, random_state=0)
        if estimator.class_weight is None:
            y = np.array(["no", "yes"])[y]  # string classes live in the JSON
    else:
        X, y = make_regression(200, 6, random_state=0)
    estimator.fit(X, y)
    path = tmp_path / "model.gradkit"
    gradkit.save(estimator, path)
    assert b"pickle" not in path.read_bytes()
    loaded = gradkit.load(path)
    assert type(loaded) is type(estimator)
    assert loaded.get_params() == estimator.get_params()
    np.testing.assert_array_equal(loaded.predict(X), estimator.predict(X))
    compressed = compress_model(estimator, "int8", X, y)
    assert compressed.score(X, y) == pytest.approx(estimator.score(X, y), abs=0.05)
    gradkit.save(compressed, path)
    np.testing.assert_array_equal(gradkit.load(path).predict(X), compressed.predict(X))


def test_a_file_names_only_known_classes(tmp_path):
    X, y = make_classification(100, 4, random_state=0)
    data = gradkit._serialize.to_bytes(LogisticRegression().fit(X, y))
    raw = __import__("lzma").decompress(data) if data[:1] == b"\xfd" else data
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["gradkit"])
    meta["estimator"]["class"] = "os.system"
    header["__metadata__"]["gradkit"] = json.dumps(meta)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    forged = len(text).to_bytes(8, "little") + text + raw[8 + size :]
    with pytest.raises(ValueError, match="'os.system', which gradkit does not load"):
        gradkit._serialize.from_bytes(forged)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not a gradkit file"),
        (b"\xfd7zXZ\x00garbage", "damaged xz stream"),
        ((10**12).to_bytes(8, "little") + b"{}", "not a gradkit file"),
    ],
)
def test_damaged_files_are_refused(data, message):
    with pytest.raises(ValueError, match=message):
        gradkit._serialize.from_bytes(data)


def test_unstorable_models_are_refused(logistic, tmp_path):
    from sklearn.tree import DecisionTreeClassifier

    with pytest.raises(TypeError, match="gradkit stores its own estimators"):
        gradkit.save(DecisionTreeClassifier(), tmp_path / "x")
    with pytest.raises(TypeError, match="numeric arrays only"):
        gradkit.save({"w": np.array(["a"])}, tmp_path / "x")
    from gradkit.linear_model import CustomLoss

    custom = SGDClassifier(
        loss=CustomLoss(lambda y, p: (y - p) ** 2, lambda y, p: 2 * (p - y)),
        max_iter=2, tol=None,
    )  # fmt: skip
    X, y = make_classification(50, 4, random_state=0)
    custom.fit(X, y)
    with pytest.raises(TypeError, match="cannot be stored without pickle"):
        gradkit.save(custom, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, X, y: compress_model(m, "int2"), ValueError, "unknown step 'int2'"),
        (
            lambda m, X, y: compress_model(m, "int8+share:4"),
            ValueError,
            "codes the values twice",
        ),
        (
            lambda m, X, y: compress_model(m, "prune:0.5+lowrank:0.9"),
            ValueError,
            "two structural",
        ),
        (lambda m, X, y: compress_model(m, "prune:1.5"), ValueError, "0 <= S < 1"),
        (lambda m, X, y: compress_model(m, "share:9"), ValueError, "1 <= B <= 8"),
        (
            lambda m, X, y: compress_model(m, ["int8", "int4"]),
            ValueError,
            "only with max_drop",
        ),
        (
            lambda m, X, y: compress_model(m, None, max_drop=0.1),
            ValueError,
            "pass X_val and y_val",
        ),
        (
            lambda m, X, y: compress_model(m, None, X, y, max_drop=-1),
            ValueError,
            "max_drop must be",
        ),
        (
            lambda m, X, y: compress_model(m, "int8", X, y, metric=3),
            ValueError,
            "metric must be",
        ),
        (
            lambda m, X, y: compress_model({"w": np.ones((2, 2))}, None, max_drop=0.1),
            ValueError,
            "needs metric",
        ),
        (
            lambda m, X, y: compress_model(LogisticRegression(), "int8"),
            Exception,
            "not fitted",
        ),
        (lambda m, X, y: compress_model({}, "int8"), ValueError, "empty dict"),
        (
            lambda m, X, y: compress_model(compress_model(m, "int8"), "int8"),
            TypeError,
            "already compressed",
        ),
    ],
)
def test_compress_model_bad_input(logistic, call, error, message):
    model, X, y = logistic
    with pytest.raises(error, match=message):
        call(model, X, y)


def test_dict_model_has_no_predict(mlp):
    compressed = compress_model(mlp[0], "int8")
    with pytest.raises(TypeError, match="has no predict"):
        compressed.predict(mlp[1])
    assert Recipe.parse("prune:0.9+share:4").structure == ("prune", 0.9)


# --- the command line ------------------------------------------------------------


def test_cli_compresses_a_model_file(logistic, tmp_path, capsys):
    model, X, y = logistic
    source = tmp_path / "clf.gradkit"
    gradkit.save(model, source)
    np.savez(tmp_path / "val.npz", X=X, y=y)
    out = tmp_path / "small.gradkit"
    code = cli.main(
        [
            "compress", str(source), "-o", str(out), "--max-drop", "0.01",
            "--val", str(tmp_path / "val.npz"), "--json",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    loaded = gradkit.load(out)
    assert model.score(X, y) - loaded.score(X, y) <= 0.01
    assert report["bytes_written"] == out.stat().st_size
    assert len(report["rows"]) == len(DEFAULT_SEARCH)


def test_cli_compresses_a_state_dict(mlp, tmp_path, capsys):
    import safetensors.numpy

    state = mlp[0]
    safetensors.numpy.save_file(state, tmp_path / "net.safetensors")
    np.savez(tmp_path / "net.npz", **state)
    for name in ("net.safetensors", "net.npz"):
        code = cli.main(["compress", str(tmp_path / name), "--recipe", "int4"])
        assert code == 0
        text = capsys.readouterr().out
        assert "int4" in text and "smaller" in text
        loaded = gradkit.load(tmp_path / f"{name}.compressed.gradkit")
        assert set(loaded.to_dense()) == set(state)
    code = cli.main(["compress", str(tmp_path / "net.npz"), "--max-drop", "0.1"])
    assert code == 2
    assert "a dict of arrays can be searched" in capsys.readouterr().err
    code = cli.main(["compress", str(tmp_path / "missing.gradkit")])
    assert code == 2
