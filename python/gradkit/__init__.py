"""gradkit: fast, trustworthy tools for the life of a machine-learning model."""

try:
    from gradkit import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only when the build is broken
    raise ImportError(
        "gradkit's compiled core (gradkit._core) is missing or broken. Reinstall "
        "with `pip install .` from a checkout (needs a C++17 compiler and CMake), "
        f"or set up an editable build with `pip install -e .`. Cause: {exc}"
    ) from exc

from gradkit._config import config_context, get_config, set_config
from gradkit._serialize import load, save

__version__ = "0.1.0"
__all__ = ["config_context", "get_config", "load", "save", "set_config", "__version__"]
