"""Versioned model storage: a race-free, crash-safe, pickle-free model registry.

from gradkit.registry import Registry
reg = Registry()                       # $GRADKIT_REGISTRY or ./gradkit-registry
v = reg.register("churn", model, metrics={"accuracy": 0.93}, data=(X, y))
reg.set_alias("churn", v.version, "production")
model = reg.load("churn@production")   # also "churn", "churn:3"
"""

from gradkit.registry._store import (
    IntegrityError,
    ModelNotFoundError,
    ModelVersion,
    Registry,
    RegistryError,
    parse_ref,
)

__all__ = [
    "IntegrityError",
    "ModelNotFoundError",
    "ModelVersion",
    "Registry",
    "RegistryError",
    "parse_ref",
]
