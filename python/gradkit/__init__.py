"""gradkit: fast, trustworthy tools for the life of a machine-learning model."""

try:
    from gradkit import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only when the build is broken
    raise ImportError(
        "gradkit's compiled core (gradkit._core) is missing or broken. Reinstall "
        "with `pip install .` from a checkout (needs a C++17 compiler and CMake), "
        f"or set up an editable build with `pip install -e .`. Cause: {exc}"
    ) from exc

from typing import TYPE_CHECKING, Any

from gradkit._config import config_context, get_config, set_config
from gradkit._serialize import load, save

if TYPE_CHECKING:
    from gradkit._patch import (
        patch_sklearn,
        patched_names,
        sklearn_patched,
        unpatch_sklearn,
    )

__version__ = "0.1.0"
__all__ = [
    "config_context",
    "get_config",
    "load",
    "patch_sklearn",
    "patched_names",
    "save",
    "set_config",
    "sklearn_patched",
    "unpatch_sklearn",
    "__version__",
]

# Imported on first use: the patch imports scikit-learn, which `import gradkit`
# does not need.
_PATCH_NAMES = {"patch_sklearn", "patched_names", "sklearn_patched", "unpatch_sklearn"}


def __getattr__(name: str) -> Any:
    if name in _PATCH_NAMES:
        from gradkit import _patch

        return getattr(_patch, name)
    raise AttributeError(f"module 'gradkit' has no attribute {name!r}")
