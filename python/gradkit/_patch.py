"""Run scikit-learn code on gradkit's kernels: patch_sklearn and friends.

patch_sklearn() swaps, inside the running process, what gradkit implements into
scikit-learn's namespaces; unpatch_sklearn() puts every original object back
(the same objects, by identity). What is replaced, by name:

- metrics ("f1_score", "roc_auc_score", ...): the attribute of sklearn.metrics
  becomes a wrapper that calls gradkit's function and, should gradkit raise
  TypeError, ValueError or NotImplementedError, calls scikit-learn's original
  with the same arguments (so an error that escapes is scikit-learn's own).
- scorers ("roc_auc", "f1", "neg_log_loss", "r2", ...): the entries of
  sklearn.metrics._scorer._SCORERS, which every `scoring="..."` string goes
  through (get_scorer, check_scoring, cross_val_score, GridSearchCV, ...). The new
  scorers have sklearn's response method, sign and keyword arguments and call
  the wrappers above.
- estimators ("SGDClassifier", "SGDRegressor"): the attribute of
  sklearn.linear_model becomes gradkit's class, a subclass of scikit-learn's
  (isinstance, clone and get_params behave as before). Unsupported options are
  routed to scikit-learn's own training loop by the classes themselves. With
  shuffle=False the fitted model equals scikit-learn's to rounding; with
  shuffle=True (the default) gradkit draws its own permutation, so the model is
  statistically, not bitwise, the same (see gradkit.linear_model._sgd).
  LogisticRegression, LinearRegression and Ridge are patched only when named:
  gradkit's versions default to solver="gd", an iterative solver whose result
  agrees with scikit-learn's lbfgs / exact solvers to the solver tolerance, not
  to rounding, so they would change what unmodified code computes.

Names bound before the patch (`from sklearn.metrics import f1_score` at the top
of a module imported earlier) are rebound too: every module in sys.modules whose
global is one of the replaced objects gets the replacement, and gets the
original back on unpatch. Not covered, because they cannot be found or changed
safely: scikit-learn's and gradkit's own modules (scikit-learn keeps calling its
own functions internally, e.g. classification_report), references held in
closures, default arguments, containers, functools.partial objects, scorers
made by make_scorer before the patch, and estimator instances created before it.

The patch is process-wide and not thread-safe: apply and remove it while no
other thread runs scikit-learn code. Set the "gradkit.patch" logger to DEBUG to
see, call by call, which metric calls gradkit computed and which fell back.
"""

from __future__ import annotations

import copy
import functools
import logging
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sklearn.linear_model
import sklearn.metrics
import sklearn.metrics._scorer

import gradkit.linear_model as _gk_linear
import gradkit.metrics as _gk_metrics
from gradkit.metrics import _scorer as _gk_scorer

logger = logging.getLogger("gradkit.patch")

#: What gradkit's wrappers catch before handing the call to scikit-learn.
_FALLBACK_ERRORS = (TypeError, ValueError, NotImplementedError)

_METRIC_NAMES = tuple(
    sorted(
        name
        for name in _gk_metrics.__all__
        if name not in {"get_scorer", "get_scorer_names"}
        and hasattr(sklearn.metrics, name)
    )
)
_SCORER_NAMES = tuple(
    sorted(set(_gk_scorer._SCORERS) & set(sklearn.metrics._scorer._SCORERS))
)
_DEFAULT_ESTIMATORS = ("SGDClassifier", "SGDRegressor")
_OPT_IN_ESTIMATORS = ("LinearRegression", "LogisticRegression", "Ridge")

# The originals, taken once at import: patching never changes what these hold.
_ORIGINAL_METRICS: dict[str, Callable[..., Any]] = {
    name: getattr(sklearn.metrics, name) for name in _METRIC_NAMES
}
_ORIGINAL_SCORERS: dict[str, Any] = {
    name: sklearn.metrics._scorer._SCORERS[name] for name in _SCORER_NAMES
}
_ORIGINAL_ESTIMATORS: dict[str, type] = {
    name: getattr(sklearn.linear_model, name)
    for name in _DEFAULT_ESTIMATORS + _OPT_IN_ESTIMATORS
}


def _make_fallback(
    name: str, fast: Callable[..., Any], original: Callable[..., Any]
) -> Callable[..., Any]:
    @functools.wraps(fast)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if sklearn.get_config()["array_api_dispatch"]:
            # Results must then come back in the inputs' namespace and device
            # (torch, cupy, ...), which gradkit's numpy kernels do not give.
            logger.debug("%s: left to scikit-learn (array_api_dispatch)", name)
            return original(*args, **kwargs)
        try:
            result = fast(*args, **kwargs)
        except _FALLBACK_ERRORS as exc:
            logger.debug(
                "%s: fell back to scikit-learn (gradkit raised %s: %s)",
                name,
                type(exc).__name__,
                exc,
            )
            return original(*args, **kwargs)
        logger.debug("%s: accelerated by gradkit", name)
        return result

    # Found by pickle as gradkit._patch.<name>, so scorers and fitted searches
    # holding a wrapper pickle by reference, patched or not.
    wrapper.__module__ = __name__
    wrapper.__qualname__ = name
    wrapper.__doc__ = (
        f"gradkit's {name}, falling back to sklearn.metrics.{name} for what "
        f"gradkit does not support.\n\n{fast.__doc__ or ''}"
    )
    return wrapper


#: The metric wrappers that patch_sklearn installs, one per metric name.
accelerated = types.SimpleNamespace(
    **{
        name: _make_fallback(name, getattr(_gk_metrics, name), original)
        for name, original in _ORIGINAL_METRICS.items()
    }
)


# Module globals too, where pickle looks them up (by __module__ and __qualname__).
globals().update(vars(accelerated))


def _patched_scorer(name: str) -> Any:
    scorer = copy.deepcopy(_gk_scorer._SCORERS[name])
    scorer._score_func = getattr(accelerated, scorer._score_func.__name__)
    return scorer


_REPLACEMENTS: dict[str, tuple[Any, Any, Any]] = {}
"""name -> (where, original, replacement); `where` a module or a dict."""
for _name in _METRIC_NAMES:
    _REPLACEMENTS[_name] = (
        sklearn.metrics,
        _ORIGINAL_METRICS[_name],
        getattr(accelerated, _name),
    )
for _name in _SCORER_NAMES:
    _REPLACEMENTS[_name] = (
        sklearn.metrics._scorer._SCORERS,
        _ORIGINAL_SCORERS[_name],
        _patched_scorer(_name),
    )
for _name in _DEFAULT_ESTIMATORS + _OPT_IN_ESTIMATORS:
    _REPLACEMENTS[_name] = (
        sklearn.linear_model,
        _ORIGINAL_ESTIMATORS[_name],
        getattr(_gk_linear, _name),
    )
del _name

#: What patch_sklearn() replaces when no names are given.
DEFAULT_NAMES = tuple(n for n in _REPLACEMENTS if n not in _OPT_IN_ESTIMATORS)


@dataclass
class _Rebinding:
    """One module global that held an original and now holds its replacement."""

    module: types.ModuleType
    attr: str
    original: Any
    replacement: Any


# name -> the module globals rebound for it, for what is patched now.
_active: dict[str, list[_Rebinding]] = {}


def _get(where: Any, key: str) -> Any:
    return where[key] if isinstance(where, dict) else getattr(where, key)


def _set(where: Any, key: str, value: Any) -> None:
    if isinstance(where, dict):
        where[key] = value
    else:
        setattr(where, key, value)


def _skip_module(modname: str) -> bool:
    # scikit-learn calls its own functions internally and gradkit keeps the
    # originals on purpose (its fallbacks and base classes); neither is touched.
    return modname.split(".", 1)[0] in {"sklearn", "gradkit"}


def _rebind_imported(names: list[str]) -> dict[str, list[_Rebinding]]:
    by_id = {id(_REPLACEMENTS[n][1]): n for n in names}
    found: dict[str, list[_Rebinding]] = {n: [] for n in names}
    for modname, module in list(sys.modules.items()):
        if module is None or _skip_module(modname):
            continue
        namespace = getattr(module, "__dict__", None)
        if type(namespace) is not dict:
            continue
        for attr, value in list(namespace.items()):
            name = by_id.get(id(value))
            if name is None or value is not _REPLACEMENTS[name][1]:
                continue
            replacement = _REPLACEMENTS[name][2]
            namespace[attr] = replacement
            found[name].append(_Rebinding(module, attr, value, replacement))
    return found


def _check_names(names: Iterable[str] | None) -> list[str]:
    if names is None:
        return list(DEFAULT_NAMES)
    if isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in _REPLACEMENTS]
    if unknown:
        raise ValueError(
            f"patch_sklearn cannot patch {unknown}: names must be among "
            f"{sorted(_REPLACEMENTS)}."
        )
    return names


def patchable_names() -> list[str]:
    """Every name patch_sklearn accepts: metrics, scoring names and estimators."""
    return sorted(_REPLACEMENTS)


def patched_names() -> list[str]:
    """The names patched now, sorted."""
    return sorted(_active)


def patch_sklearn(
    names: Iterable[str] | None = None, *, rebind_imported: bool = True
) -> list[str]:
    """Replace scikit-learn's metrics, scorers and SGD estimators with gradkit's.

    Parameters
    ----------
    names : iterable of str, optional
        What to patch: metric functions ("f1_score"), scoring names ("roc_auc")
        and estimators ("SGDClassifier"); see patchable_names(). None patches
        everything but LogisticRegression, LinearRegression and Ridge, whose
        default solver differs from scikit-learn's (name them to patch them).
        Names already patched are left as they are.
    rebind_imported : bool, default=True
        Also rebind module globals bound to the originals before the patch
        (`from sklearn.metrics import f1_score`), except in scikit-learn's and
        gradkit's own modules.

    Returns
    -------
    list of str
        The names this call patched (not those patched before it).
    """
    todo = [n for n in _check_names(names) if n not in _active]
    for name in todo:
        where, _original, replacement = _REPLACEMENTS[name]
        _set(where, name, replacement)
    rebound = _rebind_imported(todo) if rebind_imported else {}
    for name in todo:
        _active[name] = rebound.get(name, [])
    if todo:
        logger.debug("patched %s", todo)
    return todo


def unpatch_sklearn(names: Iterable[str] | None = None) -> None:
    """Put back scikit-learn's originals (the same objects) for `names`, or all.

    A place the user rebound to something else after the patch keeps that value.
    """
    todo = list(_active) if names is None else _check_names(names)
    for name in todo:
        rebindings = _active.pop(name, None)
        if rebindings is None:
            continue
        where, original, replacement = _REPLACEMENTS[name]
        if _get(where, name) is replacement:
            _set(where, name, original)
        for r in rebindings:
            if r.module.__dict__.get(r.attr) is r.replacement:
                r.module.__dict__[r.attr] = r.original
    if todo:
        logger.debug("unpatched %s", todo)


@contextmanager
def sklearn_patched(
    names: Iterable[str] | None = None, *, rebind_imported: bool = True
) -> Iterator[list[str]]:
    """patch_sklearn on entry, and on exit unpatch_sklearn of what it patched.

    Yields the names it patched; names patched before entry stay patched.
    """
    done = patch_sklearn(names, rebind_imported=rebind_imported)
    try:
        yield done
    finally:
        unpatch_sklearn(done)
