"""`gradkit demo`: the life of a model, end to end, on data that needs no network.

1. Prepare: scikit-learn's copy of the breast cancer data (569 x 30, binary),
   split into train / validation / test and standardized with the training rows'
   mean and scale; and a synthetic logistic problem of n rows (default 10**6) to
   show speed.
2. Train on the synthetic set with gradient descent, SGD and Adam, each timed next
   to its scikit-learn counterpart on the same rows.
3. Evaluate each on the held-out rows (accuracy, F1, ROC AUC with
   gradkit.metrics, timed next to sklearn.metrics), and on the breast cancer data
   with 5-fold cross-validation.
4. Tune one hyperparameter (the regularization) of the method that
   cross-validated best, by 5-fold grid search.
5. Compress the tuned model: the smallest recipe whose validation ROC AUC drops by
   at most MAX_DROP.
6. Register the trained and the compressed model with their test metrics and
   lineage, and point the "production" alias at the better of the two.
7. Print a summary with every step's time.

Each run adds two versions of MODEL_NAME to the registry. A result that looks
wrong (gradkit's metrics differ from sklearn's, a gradkit fit clearly less
accurate than its peer, a registered model that does not predict like the one in
memory) is printed with "!!!" and makes the exit code 1.
"""

from __future__ import annotations

import functools
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from gradkit._bench import Repeats, _fmt_ms, _fmt_ratio, best_time_ms

MODEL_NAME = "demo-breast-cancer"
SEED = 20261127
N_FEATURES = 30
DEFAULT_N = 1_000_000
#: The smallest synthetic set the demo accepts: its 20% test split must still
#: hold both classes many times over.
MIN_N = 1_000
CV_FOLDS = 5
#: compress_model keeps the smallest recipe whose validation ROC AUC drops by at
#: most this much.
MAX_DROP = 0.01
#: Adam on the synthetic set: a fixed number of epochs in mini-batches of this size
#: for both libraries, so that both do the same work.
ADAM_EPOCHS = 5
ADAM_BATCH = 200
METRICS = ("accuracy", "f1", "roc_auc")
STEPS = 7
#: Cross-validation and tuning on the small data: best of 3 runs, or fewer once
#: the runs so far took a second.
SMALL_REPEATS = Repeats(3, 1.0)


# --- the methods ------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One way to train: gradkit's estimator and scikit-learn's counterpart, on the
    small data (their defaults) and on the synthetic set, and the hyperparameter to
    tune with its grid (the same name in both libraries)."""

    name: str
    gradkit_text: str
    sklearn_text: str
    gradkit: Callable[[], Any]
    sklearn: Callable[[], Any]
    gradkit_big: Callable[[], Any]
    sklearn_big: Callable[[], Any]
    param: str
    grid: tuple[float, ...]


def _methods() -> tuple[Method, ...]:
    import sklearn.linear_model as sk
    from sklearn.neural_network import MLPClassifier

    from gradkit import linear_model as gk

    def gk_adam(**extra: Any) -> Any:
        return gk.SGDClassifier(
            loss="log_loss", optimizer="adam", random_state=0, **extra
        )

    def sk_adam(**extra: Any) -> Any:
        # No hidden layer: logistic regression trained by scikit-learn's Adam.
        return MLPClassifier(
            hidden_layer_sizes=(), solver="adam", learning_rate_init=0.01,
            random_state=0, **extra,
        )  # fmt: skip

    fixed_epochs = dict(batch_size=ADAM_BATCH, max_iter=ADAM_EPOCHS)
    return (
        Method(
            "gradient descent",
            "LogisticRegression(solver='gd')",
            "LogisticRegression(solver='lbfgs')",
            gk.LogisticRegression,
            sk.LogisticRegression,
            gk.LogisticRegression,
            sk.LogisticRegression,
            "C",
            (0.01, 0.1, 1.0, 10.0, 100.0),
        ),
        Method(
            "SGD",
            "SGDClassifier(loss='log_loss')",
            "SGDClassifier(loss='log_loss')",
            lambda: gk.SGDClassifier(loss="log_loss", random_state=0),
            lambda: sk.SGDClassifier(loss="log_loss", random_state=0),
            lambda: gk.SGDClassifier(loss="log_loss", random_state=0),
            lambda: sk.SGDClassifier(loss="log_loss", random_state=0),
            "alpha",
            (1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
        ),
        Method(
            "Adam",
            "SGDClassifier(loss='log_loss', optimizer='adam')",
            "MLPClassifier(hidden_layer_sizes=(), solver='adam')",
            gk_adam,
            sk_adam,
            lambda: gk_adam(tol=None, **fixed_epochs),
            lambda: sk_adam(**fixed_epochs),
            "alpha",
            (1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
        ),
    )


# --- data -------------------------------------------------------------------------


@dataclass
class Split:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None


def prepare_breast_cancer(seed: int = SEED) -> Split:
    """scikit-learn's breast cancer data, stratified into 64% train, 16% validation
    and 20% test, standardized with the training rows' mean and scale (kept in
    .mean and .scale: a model trained here expects (X - mean) / scale)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True)
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=seed
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=0.2, stratify=y_rest, random_state=seed
    )
    mean = X_train.mean(axis=0)
    scale = X_train.std(axis=0)
    scale[scale == 0] = 1.0

    def standardize(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((a - mean) / scale)

    return Split(
        standardize(X_train), y_train, standardize(X_test), y_test,
        standardize(X_val), y_val, mean, scale,
    )  # fmt: skip


def make_synthetic(n: int, d: int = N_FEATURES, seed: int = SEED) -> Split:
    """n rows of standard-normal features (already on one scale) and labels drawn
    from a logistic model, P(y = 1) = sigmoid(X @ w + 0.3) with ||w|| = 3; the last
    n // 5 rows are the test set."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    w *= 3.0 / np.linalg.norm(w)
    logit = X @ w + 0.3
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    cut = n - n // 5
    return Split(X[:cut], y[:cut], X[cut:], y[cut:])


# --- what the run records ---------------------------------------------------------


@dataclass
class FitRow:
    method: Method
    gradkit_s: float
    sklearn_s: float
    metrics: dict[str, float]
    sklearn_metrics: dict[str, float]
    iterations: str
    model: Any = field(repr=False, default=None)


@dataclass
class CVRow:
    method: Method
    gradkit_s: float
    sklearn_s: float
    means: dict[str, float]
    stds: dict[str, float]


@dataclass
class Run:
    steps: list[tuple[str, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gradkit_s: float = 0.0  # gradkit's share of the timed comparisons
    sklearn_s: float = 0.0  # scikit-learn's share of the same comparisons


class _Progress:
    """One line per piece of work on stderr, with the time since the start."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()

    def __call__(self, step: int, text: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            print(
                f"gradkit demo [{step}/{STEPS}] {elapsed:6.1f}s  {text}",
                file=sys.stderr,
                flush=True,
            )


def _timed(func: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Seconds that func(*args) took, and its result."""
    start = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - start, result


def _best_of(func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """The best of up to SMALL_REPEATS.count calls of func(*args, **kwargs) in
    seconds: on a few hundred rows one call's time is mostly noise."""
    ms, result = best_time_ms(functools.partial(func, **kwargs), args, SMALL_REPEATS)
    return ms / 1e3, result


def _scores(model: Any, X: np.ndarray) -> np.ndarray:
    """The ranking score of the positive class, for ROC AUC."""
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X))
    return np.asarray(model.predict_proba(X))[:, 1]


def _evaluate(
    module: Any, model: Any, X: np.ndarray, y: np.ndarray
) -> dict[str, float]:
    """Accuracy, F1 and ROC AUC of model on (X, y), computed by module
    (gradkit.metrics or sklearn.metrics)."""
    predicted = model.predict(X)
    return {
        "accuracy": float(module.accuracy_score(y, predicted)),
        "f1": float(module.f1_score(y, predicted)),
        "roc_auc": float(module.roc_auc_score(y, _scores(model, X))),
    }


# --- the steps --------------------------------------------------------------------


def _train_big(
    methods: tuple[Method, ...], data: Split, run: Run, progress: _Progress
) -> list[FitRow]:
    import gradkit.metrics as gm

    rows = []
    warm = slice(0, min(2_000, len(data.y_train)))
    for method in methods:
        # One small fit each first, so neither side is billed for first-call costs.
        method.gradkit_big().fit(data.X_train[warm], data.y_train[warm])
        method.sklearn_big().fit(data.X_train[warm], data.y_train[warm])
        ours_s, ours = _timed(method.gradkit_big().fit, data.X_train, data.y_train)
        progress(2, f"{method.name}: gradkit {ours_s:.2f} s")
        peer_s, peer = _timed(method.sklearn_big().fit, data.X_train, data.y_train)
        progress(2, f"{method.name}: scikit-learn {peer_s:.2f} s")
        run.gradkit_s += ours_s
        run.sklearn_s += peer_s
        metrics = _evaluate(gm, ours, data.X_test, data.y_test)
        peer_metrics = _evaluate(gm, peer, data.X_test, data.y_test)
        rows.append(
            FitRow(
                method, ours_s, peer_s, metrics, peer_metrics,
                f"{int(np.max(ours.n_iter_))} / {int(np.max(peer.n_iter_))}", ours,
            )
        )  # fmt: skip
        # A fit may differ from its peer's by chance; flag only a gap well beyond
        # the sampling error of the test accuracy.
        want = peer_metrics["accuracy"]
        slack = max(0.005, 3 * math.sqrt(want * (1 - want) / len(data.y_test)))
        if metrics["accuracy"] < want - slack:
            run.problems.append(
                f"{method.name}: gradkit's test accuracy {metrics['accuracy']:.4f} "
                f"is below scikit-learn's {want:.4f}"
            )
    return rows


@dataclass
class MetricsTiming:
    n: int
    gradkit_ms: float
    sklearn_ms: float


def _time_metrics(model: Any, data: Split, run: Run) -> MetricsTiming:
    """gradkit.metrics next to sklearn.metrics on one model's test predictions."""
    import sklearn.metrics as skm  # type: ignore[import-untyped]

    import gradkit.metrics as gm

    y = data.y_test
    predicted = model.predict(data.X_test)
    scores = _scores(model, data.X_test)

    def compute(module: Any) -> tuple[float, float, float]:
        return (
            module.accuracy_score(y, predicted),
            module.f1_score(y, predicted),
            module.roc_auc_score(y, scores),
        )

    repeats = Repeats(5, 1.0)
    compute(gm)
    ours_ms, ours = best_time_ms(compute, [gm], repeats)
    peer_ms, peer = best_time_ms(compute, [skm], repeats)
    for name, a, b in zip(METRICS, ours, peer, strict=True):
        if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            run.problems.append(
                f"gradkit.metrics {name} = {a!r}, sklearn.metrics says {b!r}"
            )
    return MetricsTiming(len(y), ours_ms, peer_ms)


def _folds() -> Any:
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(CV_FOLDS, shuffle=True, random_state=SEED)


def _scorers(library: str) -> dict[str, Any]:
    """accuracy, f1 and roc_auc scorers of gradkit.metrics or sklearn.metrics."""
    import sklearn.metrics as skm

    import gradkit.metrics as gm

    module: Any = gm if library == "gradkit" else skm
    return {name: module.get_scorer(name) for name in METRICS}


def _cross_validate(
    methods: tuple[Method, ...], data: Split, run: Run, progress: _Progress
) -> list[CVRow]:
    from sklearn.model_selection import cross_validate

    rows = []
    for method in methods:
        ours_s, ours = _best_of(
            cross_validate, method.gradkit(), data.X_train, data.y_train,
            cv=_folds(), scoring=_scorers("gradkit"), error_score="raise",
        )  # fmt: skip
        peer_s, _ = _best_of(
            cross_validate, method.sklearn(), data.X_train, data.y_train,
            cv=_folds(), scoring=_scorers("sklearn"), error_score="raise",
        )  # fmt: skip
        run.gradkit_s += ours_s
        run.sklearn_s += peer_s
        means = {k: float(np.mean(ours[f"test_{k}"])) for k in METRICS}
        stds = {k: float(np.std(ours[f"test_{k}"])) for k in METRICS}
        rows.append(CVRow(method, ours_s, peer_s, means, stds))
        progress(
            4,
            f"{method.name}: ROC AUC {means['roc_auc']:.4f}, gradkit {ours_s:.2f} s, "
            f"scikit-learn {peer_s:.2f} s",
        )
    return rows


@dataclass
class Tuning:
    method: Method
    values: tuple[float, ...]
    cv_scores: list[float]
    sklearn_cv_scores: list[float]
    best_value: float
    best_score: float
    model: Any
    gradkit_s: float
    sklearn_s: float
    sklearn_best_value: float


def _tune(method: Method, data: Split, run: Run) -> Tuning:
    from sklearn.model_selection import GridSearchCV

    def search(estimator: Any, library: str) -> Any:
        return GridSearchCV(
            estimator, {method.param: list(method.grid)}, cv=_folds(),
            scoring=_scorers(library)["roc_auc"], error_score="raise",
        ).fit(data.X_train, data.y_train)  # fmt: skip

    ours_s, ours = _best_of(search, method.gradkit(), "gradkit")
    peer_s, peer = _best_of(search, method.sklearn(), "sklearn")
    run.gradkit_s += ours_s
    run.sklearn_s += peer_s
    return Tuning(
        method, method.grid,
        [float(s) for s in ours.cv_results_["mean_test_score"]],
        [float(s) for s in peer.cv_results_["mean_test_score"]],
        ours.best_params_[method.param], float(ours.best_score_),
        ours.best_estimator_, ours_s, peer_s, peer.best_params_[method.param],
    )  # fmt: skip


def _compress(model: Any, data: Split, run: Run) -> Any:
    """The smallest recipe of DEFAULT_SEARCH within MAX_DROP of validation ROC AUC;
    when none is, compress_model's warning is kept as a note of the run."""
    from gradkit.compress import compress_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        compressed = compress_model(
            model, None, data.X_val, data.y_val, metric="roc_auc", max_drop=MAX_DROP
        )
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            run.notes.append(f"compress_model: {warning.message}")
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return compressed


def _json_params(model: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in model.get_params(deep=False).items()
        if v is None or isinstance(v, (bool, int, float, str))
    }


@dataclass
class Registered:
    trained: Any  # ModelVersion
    compressed: Any
    production: Any
    path: str
    count: int


def _register(
    registry: Any,
    tuning: Tuning,
    compressed: Any,
    metrics: dict[str, float],
    compressed_metrics: dict[str, float],
    data: Split,
    run: Run,
) -> Registered:
    assert data.mean is not None and data.scale is not None
    method = tuning.method
    scaling = {
        "input": "standardized: (X - scaler_mean) / scaler_scale",
        "scaler_mean": data.mean.tolist(),
        "scaler_scale": data.scale.tolist(),
    }
    tags = {"dataset": "breast_cancer", "method": method.name, "source": "gradkit demo"}
    setting = f"{method.param}={tuning.best_value:g}"
    trained = registry.register(
        MODEL_NAME,
        tuning.model,
        params=_json_params(tuning.model) | scaling,
        metrics=metrics | {"cv_roc_auc": tuning.best_score},
        tags=tags | {"stage": "trained"},
        description=(
            f"{method.gradkit_text} with {setting} (tuned by {CV_FOLDS}-fold CV) on "
            "scikit-learn's breast cancer data; metrics on the held-out test rows"
        ),
        data=(data.X_train, data.y_train),
    )
    report = compressed.report
    compressed_version = registry.register(
        MODEL_NAME,
        compressed,
        params={"recipe": compressed.recipe} | scaling,
        metrics=compressed_metrics | {"compression_ratio": report.ratio},
        tags=tags | {"stage": "compressed", "recipe": compressed.recipe},
        description=(
            f"{MODEL_NAME}:{trained.version} compressed with {compressed.recipe!r}, "
            f"the smallest recipe within a validation ROC AUC drop of {MAX_DROP:g}"
        ),
        data=(data.X_train, data.y_train),
        parent=trained,
    )
    # The better test metrics win, ROC AUC first; a tie goes to the smaller model.
    key = ("roc_auc", "accuracy", "f1")
    better = (
        compressed_version
        if tuple(compressed_metrics[k] for k in key) >= tuple(metrics[k] for k in key)
        else trained
    )
    registry.set_alias(MODEL_NAME, better.version, "production")
    production = registry.get(f"{MODEL_NAME}@production")
    # What a user gets back from the registry must predict like what was trained.
    expected = (compressed if better is compressed_version else tuning.model).predict(
        data.X_test
    )
    loaded = registry.load(f"{MODEL_NAME}@production").predict(data.X_test)
    if not np.array_equal(loaded, expected):
        run.problems.append(
            f"{production.ref} loaded from the registry predicts differently from the "
            "model registered"
        )
    return Registered(
        registry.get(trained.ref),
        registry.get(compressed_version.ref),
        production,
        str(registry.path),
        len(registry.versions(MODEL_NAME)),
    )


# --- the summary ------------------------------------------------------------------


def _s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 1 else f"{seconds:.2f}"


def _ratio(peer: float, ours: float) -> str:
    return _fmt_ratio(peer / ours if ours > 0 else None, "x")


def _metric_cells(metrics: dict[str, float]) -> list[str]:
    return [f"{metrics[k]:.4f}" for k in METRICS]


def _summary(
    *,
    threads: int,
    big: Split,
    small: Split,
    fits: list[FitRow],
    timing: MetricsTiming,
    cv_rows: list[CVRow],
    tuning: Tuning,
    compressed: Any,
    trained_metrics: dict[str, float],
    compressed_metrics: dict[str, float],
    registered: Registered,
    run: Run,
    total_s: float,
) -> str:
    import gradkit
    from gradkit._table import text_table

    n_big = len(big.y_train) + len(big.y_test)
    assert small.y_val is not None
    lines = [
        f"gradkit {gradkit.__version__} demo: one model's life, end to end "
        f"({threads} thread(s))",
        "",
        "1. Data (no network)",
        _indent(
            text_table(
                ["data set", "rows x features", "train / validation / test"],
                [
                    [
                        "breast cancer, shipped with scikit-learn",
                        "569 x 30",
                        f"{len(small.y_train)} / {len(small.y_val)} / "
                        f"{len(small.y_test)}, standardized",
                    ],
                    [
                        "synthetic, P(y=1) = sigmoid(X w + b)",
                        f"{n_big:,} x {big.X_train.shape[1]}",
                        f"{len(big.y_train):,} / - / {len(big.y_test):,}",
                    ],
                ],
            )
        ),
        "",
        f"2. Training on the synthetic set; metrics on its {len(big.y_test):,} test "
        "rows",
    ]
    titles = ["method", "gradkit s", "sklearn s", "speedup", "iters",
              "accuracy", "F1", "ROC AUC", "sklearn AUC"]  # fmt: skip
    cells = [
        [row.method.name, _s(row.gradkit_s), _s(row.sklearn_s),
         _ratio(row.sklearn_s, row.gradkit_s), row.iterations,
         *_metric_cells(row.metrics), f"{row.sklearn_metrics['roc_auc']:.4f}"]
        for row in fits
    ]  # fmt: skip
    lines.append(_indent(text_table(titles, cells, right=set(range(1, 9)))))
    for row in fits:
        lines += [
            f"   {row.method.name:<17} gradkit {row.method.gradkit_text}",
            f"   {'':<17} sklearn {row.method.sklearn_text}",
        ]
    lines += [
        "   (iters: gradkit's / scikit-learn's iterations; one of SGD or Adam is an "
        f"epoch. Adam: {ADAM_EPOCHS}",
        f"   epochs in batches of {ADAM_BATCH} for both, so that both do the same "
        "work)",
        f"   accuracy + F1 + ROC AUC of {timing.n:,} predictions: gradkit.metrics "
        f"{_fmt_ms(timing.gradkit_ms)} ms,",
        f"   sklearn.metrics {_fmt_ms(timing.sklearn_ms)} ms "
        f"({_ratio(timing.sklearn_ms, timing.gradkit_ms)}); the same values",
        "",
        f"3. {CV_FOLDS}-fold cross-validation on the breast cancer training rows "
        "(mean +- std)",
    ]
    titles = ["method", "accuracy", "F1", "ROC AUC", "gradkit s", "sklearn s",
              "speedup"]  # fmt: skip
    cells = [
        [row.method.name,
         *(f"{row.means[k]:.3f} +- {row.stds[k]:.3f}" for k in METRICS),
         _s(row.gradkit_s), _s(row.sklearn_s), _ratio(row.sklearn_s, row.gradkit_s)]
        for row in cv_rows
    ]  # fmt: skip
    lines.append(_indent(text_table(titles, cells, right=set(range(1, 7)))))
    lines.append(
        "   (the same estimators as above with their default settings; gradkit "
        "scorers, times best of 3)"
    )
    method = tuning.method
    lines += [
        "",
        f"4. Tuning {method.param} of {method.name} (the best cross-validated ROC "
        f"AUC): {CV_FOLDS}-fold grid search",
    ]
    titles = [method.param, "gradkit CV ROC AUC", "sklearn CV ROC AUC"]
    cells = [
        [f"{value:g}",
         f"{ours:.4f}" + (" *" if value == tuning.best_value else "  "),
         f"{peer:.4f}" + (" *" if value == tuning.sklearn_best_value else "  ")]
        for value, ours, peer in zip(
            tuning.values, tuning.cv_scores, tuning.sklearn_cv_scores, strict=True
        )
    ]  # fmt: skip
    lines.append(_indent(text_table(titles, cells, right={0, 1, 2})))
    lines.append(
        f"   * the best. GridSearchCV: gradkit {_s(tuning.gradkit_s)} s, sklearn "
        f"{_s(tuning.sklearn_s)} s ({_ratio(tuning.sklearn_s, tuning.gradkit_s)})"
    )
    report = compressed.report
    lines += [
        "",
        f"5. Compression: the smallest file whose validation ROC AUC drops by at most "
        f"{MAX_DROP:g}",
        _indent(str(report)),
        f"   chosen: {compressed.recipe}, {report.bytes_before:,} -> "
        f"{report.bytes_after:,} bytes ({report.ratio:.1f}x smaller)",
    ]
    if report.ratio < 2:
        lines.append(
            f"   (a model of {np.size(tuning.model.coef_)} weights is mostly file "
            "header; the ratio grows with the model)"
        )
    lines += ["", f"6. Registry {registered.path}: {MODEL_NAME}"]
    titles = ["version", "stage", "parent", "bytes", "accuracy", "F1", "ROC AUC",
              "aliases"]  # fmt: skip
    cells = [
        [str(record.version), record.tags.get("stage", ""),
         record.lineage.get("parent", "-"), f"{record.size:,}",
         *_metric_cells(metrics), ",".join(record.aliases) or "-"]
        for record, metrics in (
            (registered.trained, trained_metrics),
            (registered.compressed, compressed_metrics),
        )
    ]  # fmt: skip
    lines.append(_indent(text_table(titles, cells, right={0, 3, 4, 5, 6})))
    production = registered.production
    reference = f"{MODEL_NAME}@production"
    lines += [
        f"   metrics on the {len(small.y_test)} test rows; production -> "
        f"{production.ref} ({production.tags.get('stage')}),",
        "   the better test metrics (ROC AUC first; a tie goes to the smaller model)",
        f"   {MODEL_NAME} has {registered.count} version(s) now; each run adds two."
        " Use it:",
        "     from gradkit.registry import Registry",
        f"     registry = Registry({registered.path!r})",
        f"     model = registry.load({reference!r})",
        f"     params = registry.get({reference!r}).params",
        "     model.predict((X - params['scaler_mean']) / params['scaler_scale'])",
        f"   or list them: gradkit models --registry {registered.path} versions "
        f"{MODEL_NAME}",
        "",
        "7. Time",
    ]
    cells = [[name, _s(seconds)] for name, seconds in run.steps]
    cells.append(["total", _s(total_s)])
    lines.append(_indent(text_table(["step", "s"], cells, right={1})))
    lines.append(
        f"   in the comparisons above gradkit took {_s(run.gradkit_s)} s, "
        f"scikit-learn {_s(run.sklearn_s)} s "
        f"({_ratio(run.sklearn_s, run.gradkit_s)})"
    )
    return "\n".join(lines)


def _indent(text: str, prefix: str = "   ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


# --- the demo ---------------------------------------------------------------------


def run_demo(
    out: TextIO | None = sys.stdout,
    progress: bool = True,
    n: int = DEFAULT_N,
    registry: Any = None,
    n_threads: int | None | str = "keep",
) -> int:
    """Run the demo and print its summary to `out` (None prints nothing); one
    progress line per piece of work on stderr. n: rows of the synthetic set;
    registry: a gradkit.registry.Registry, a directory, or None for
    $GRADKIT_REGISTRY or ./gradkit-registry; n_threads: gradkit's thread count
    ("keep" leaves the configuration alone). Returns the exit code: 0, or 1 when a
    result looked wrong (each problem printed with "!!!")."""
    from sklearn.exceptions import ConvergenceWarning

    import gradkit
    import gradkit.metrics as gm
    from gradkit.registry import Registry

    if isinstance(n, bool) or not isinstance(n, int) or n < MIN_N:
        raise ValueError(
            f"n must be a whole number of samples >= {MIN_N:,}, got {n!r}."
        )
    opened = not isinstance(registry, Registry)
    store = Registry(registry) if opened else registry
    say = _Progress(progress)
    run = Run()
    methods = _methods()
    start = time.perf_counter()
    try:
        with gradkit.config_context(n_threads=n_threads), warnings.catch_warnings():
            # The fixed-epoch Adam fits stop before converging on purpose, and the
            # small-data fits of the grid may too; any other warning shows.
            warnings.simplefilter("ignore", ConvergenceWarning)
            threads = gradkit._config.n_threads()

            say(1, f"preparing breast cancer and {n:,} x {N_FEATURES} synthetic rows")
            step_s, (small, big) = _timed(
                lambda: (prepare_breast_cancer(), make_synthetic(n))
            )
            run.steps.append(("1. prepare data", step_s))

            say(2, f"training on {len(big.y_train):,} rows")
            step_s, fits = _timed(lambda: _train_big(methods, big, run, say))
            run.steps.append(("2. train (gradkit and scikit-learn)", step_s))

            say(3, "timing gradkit.metrics against sklearn.metrics")
            best_fit = max(fits, key=lambda row: row.metrics["roc_auc"])
            step_s, timing = _timed(lambda: _time_metrics(best_fit.model, big, run))
            run.steps.append(("3. time the held-out metrics", step_s))

            say(4, f"{CV_FOLDS}-fold cross-validation on breast cancer")
            step_s, cv_rows = _timed(lambda: _cross_validate(methods, small, run, say))
            run.steps.append(("4. cross-validate (gradkit and scikit-learn)", step_s))

            winner = max(cv_rows, key=lambda row: row.means["roc_auc"]).method
            say(5, f"tuning {winner.param} of {winner.name}")
            step_s, tuning = _timed(lambda: _tune(winner, small, run))
            run.steps.append(("5. tune (gradkit and scikit-learn)", step_s))
            trained_metrics = _evaluate(gm, tuning.model, small.X_test, small.y_test)

            say(6, "compressing the tuned model")
            step_s, compressed = _timed(_compress, tuning.model, small, run)
            run.steps.append(("6. compress", step_s))
            compressed_metrics = _evaluate(gm, compressed, small.X_test, small.y_test)

            say(7, f"registering in {store.path}")
            step_s, registered = _timed(
                lambda: _register(
                    store, tuning, compressed, trained_metrics, compressed_metrics,
                    small, run,
                )
            )  # fmt: skip
            run.steps.append(("7. register, alias, load back", step_s))
    finally:
        if opened:
            store.close()
    total_s = time.perf_counter() - start
    say(STEPS, f"done in {total_s:.1f} s")
    if out is not None:
        print(
            _summary(
                threads=threads, big=big, small=small, fits=fits, timing=timing,
                cv_rows=cv_rows, tuning=tuning, compressed=compressed,
                trained_metrics=trained_metrics,
                compressed_metrics=compressed_metrics, registered=registered,
                run=run, total_s=total_s,
            ),
            file=out,
        )  # fmt: skip
        for note in run.notes:
            print(f"note: {note}", file=out)
        for problem in run.problems:
            print(f"!!! {problem}", file=out)
    return 1 if run.problems else 0
