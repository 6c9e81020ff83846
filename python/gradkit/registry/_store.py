"""The model registry: numbered versions of named models in a directory.

    gradkit-registry/
      registry.json         {"format": "gradkit-registry", "version": 1}
      index.sqlite          versions, aliases (SQLite in WAL mode)
      blobs/ab/abcdef...    model files (gradkit.save format), named by sha256

Why it is safe:
- Race-free: a version number is assigned inside one SQLite write transaction
  (BEGIN IMMEDIATE), so concurrent writers, threads or processes, serialise there.
- Crash-safe: the blob is written to a temporary file, fsynced and renamed into
  place before the transaction that makes the version visible; a crash leaves at
  most an unreferenced blob or temporary file, which gc() removes.
- Pickle-free: blobs are gradkit model files (safetensors + JSON); loading checks
  the blob's sha256 first, then rebuilds only classes gradkit knows.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import numbers
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradkit import _serialize

FORMAT = "gradkit-registry"
FORMAT_VERSION = 1
DEFAULT_PATH = "gradkit-registry"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_REF = re.compile(r"^(?P<name>[^:@]+)(?::(?P<version>\d+)|@(?P<alias>[^:@]+))?$")
#: How long a writer waits for another writer's transaction before giving up.
BUSY_TIMEOUT_S = 120.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    description TEXT,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL,
    tags TEXT NOT NULL,
    lineage TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE INDEX IF NOT EXISTS versions_by_blob ON versions (blob);
"""


class RegistryError(Exception):
    """A registry operation failed; the message says why and what to do."""


class ModelNotFoundError(RegistryError, LookupError):
    """No such model name, version or alias."""


class IntegrityError(RegistryError):
    """A stored blob does not match the hash recorded for it."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version and what was recorded with it."""

    name: str
    version: int
    aliases: tuple[str, ...]
    tags: dict[str, str]
    params: dict[str, Any]
    metrics: dict[str, float]
    created_at: float
    description: str | None
    lineage: dict[str, Any]
    kind: str
    blob: str
    size: int = field(repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "aliases": list(self.aliases),
            "tags": self.tags,
            "params": self.params,
            "metrics": self.metrics,
            "created_at": self.created_at,
            "description": self.description,
            "lineage": self.lineage,
            "kind": self.kind,
            "blob": self.blob,
            "size": self.size,
        }


# --- checks of what users pass ---------------------------------------------------


def _check_name(name: Any, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} must be 1-128 letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit; got {name!r}."
        )
    return name


def _check_metrics(metrics: Any) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict of name -> number, got {metrics!r}.")
    checked = {}
    for key, value in metrics.items():
        if (
            not isinstance(key, str)
            or isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
        ):
            raise ValueError(
                f"metrics must map names to finite numbers; got {key!r}: {value!r}."
            )
        checked[key] = float(value)
    return checked


def _check_tags(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise ValueError(f"tags must be a dict of str -> str, got {tags!r}.")
    return dict(tags)


def data_fingerprint(data: Any) -> dict[str, Any]:
    """sha256, shape and dtype of each array of data (X or (X, y))."""
    parts = data if isinstance(data, (tuple, list)) else (data,)
    prints = []
    for part in parts:
        array = np.ascontiguousarray(np.asarray(part))
        if array.dtype.kind not in "biufUS":
            raise ValueError(
                f"data must be numeric or string arrays to fingerprint, got dtype "
                f"{array.dtype}."
            )
        prints.append(
            {
                "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
                "shape": list(array.shape),
                "dtype": array.dtype.str,
            }
        )
    return {"arrays": prints}


def _git_commit() -> str | None:
    """The commit of the git checkout the process runs in, if any."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return (
        commit
        if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit)
        else None
    )


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """ "name", "name:3" or "name@alias" -> (name, version, alias)."""
    match = _REF.match(ref) if isinstance(ref, str) else None
    if match is None:
        raise ValueError(
            f"a model reference is 'name', 'name:VERSION' or 'name@ALIAS'; got {ref!r}."
        )
    version = match["version"]
    return match["name"], int(version) if version else None, match["alias"]


# --- the registry ----------------------------------------------------------------


class Registry:
    """A model registry in a directory: Registry() uses $GRADKIT_REGISTRY or
    ./gradkit-registry, Registry(path) that directory (created on first use)."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        chosen = path if path is not None else os.environ.get("GRADKIT_REGISTRY")
        self.path = Path(chosen or DEFAULT_PATH).absolute()
        self._blobs = self.path / "blobs"
        try:
            self._blobs.mkdir(parents=True, exist_ok=True)
            self._check_format()
            self._db = sqlite3.connect(
                self.path / "index.sqlite",
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE
                check_same_thread=False,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RegistryError(
                f"cannot open the registry at {self.path}: {exc}. Check that the "
                "directory is writable, or choose another with GRADKIT_REGISTRY."
            ) from exc

    def _check_format(self) -> None:
        marker = self.path / "registry.json"
        if not marker.exists():
            _serialize.write_atomic(
                marker,
                json.dumps({"format": FORMAT, "version": FORMAT_VERSION}).encode(),
            )
            return
        try:
            info = json.loads(marker.read_text())
            version = int(info["version"])
            assert info["format"] == FORMAT
        except Exception:
            raise RegistryError(
                f"{marker} is not a gradkit registry marker; is {self.path} a registry?"
            ) from None
        if version > FORMAT_VERSION:
            raise RegistryError(
                f"the registry at {self.path} has format version {version}, newer "
                f"than this gradkit reads ({FORMAT_VERSION}); upgrade gradkit. "
                "Nothing was changed."
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at its start so that writers queue."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    # --- blobs -------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        return self._blobs / digest[:2] / digest

    def _store_blob(self, data: bytes, digest: str) -> None:
        path = self._blob_path(digest)
        if path.exists() and path.stat().st_size == len(data):
            return  # content-addressed: the same bytes are already there
        path.parent.mkdir(exist_ok=True)
        try:
            _serialize.write_atomic(path, data)
        except OSError as exc:
            hint = (
                "the disk is full"
                if exc.errno == errno.ENOSPC
                else "the registry directory is not writable"
                if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM)
                else "the write failed"
            )
            raise RegistryError(
                f"could not store the model in {self.path}: {hint} ({exc}). Nothing "
                "was registered."
            ) from exc

    # --- writing -----------------------------------------------------------------

    def register(
        self,
        name: str,
        model: Any,
        *,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
        data: Any = None,
        parent: str | ModelVersion | None = None,
    ) -> ModelVersion:
        """Store model as the next version of name and return its record.

        params: JSON values (e.g. hyperparameters; default: the estimator's
        get_params()); metrics: name -> number; tags: str -> str; data: X or (X,
        y), recorded as a fingerprint; parent: the version this one derives from
        (e.g. the model a compressed one came from), as "name:3" or a ModelVersion.
        """
        _check_name(name)
        metrics = _check_metrics(metrics)
        tags = _check_tags(tags)
        if description is not None and not isinstance(description, str):
            raise ValueError(f"description must be a str, got {description!r}.")
        model = _serialize.convert_sklearn(model)
        blob = _serialize.to_bytes(model)  # a TypeError for what gradkit cannot store
        kind = _model_kind(model)
        if params is None:
            params = _default_params(model)
        params_json = json.dumps(_serialize._to_json(params, "params"))
        lineage: dict[str, Any] = {
            "gradkit_version": _gradkit_version(),
            "git_commit": _git_commit(),
        }
        if parent is not None:
            parent_ref = parent.ref if isinstance(parent, ModelVersion) else parent
            found = self.get(parent_ref)
            lineage["parent"] = found.ref
        if data is not None:
            lineage["data"] = data_fingerprint(data)
        digest = hashlib.sha256(blob).hexdigest()
        self._store_blob(blob, digest)
        with self._write() as db:
            # gc() may have removed the blob between its write and this transaction.
            if not self._blob_path(digest).exists():
                self._store_blob(blob, digest)
            (latest,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE name = ?", (name,)
            ).fetchone()
            version = latest + 1
            db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name, version, digest, len(blob), kind, time.time(), description,
                    params_json, json.dumps(metrics), json.dumps(tags),
                    json.dumps(lineage),
                ),
            )  # fmt: skip
        return self.get(f"{name}:{version}")

    def set_alias(self, name: str, version: int, alias: str) -> None:
        """Point name@alias at a version (moving it if it pointed elsewhere)."""
        _check_name(alias, "alias")
        with self._write() as db:
            self._require(db, name, version)
            db.execute(
                "INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)",
                (name, alias, version),
            )

    def delete_alias(self, name: str, alias: str) -> None:
        with self._write() as db:
            gone = db.execute(
                "DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias)
            ).rowcount
        if not gone:
            raise ModelNotFoundError(f"model {name!r} has no alias {alias!r}.")

    def set_tags(self, ref: str, **tags: str) -> ModelVersion:
        """Add or change tags of a version (a value of None... use delete_tag)."""
        record = self.get(ref)
        merged = record.tags | _check_tags(tags)
        with self._write() as db:
            db.execute(
                "UPDATE versions SET tags = ? WHERE name = ? AND version = ?",
                (json.dumps(merged), record.name, record.version),
            )
        return self.get(record.ref)

    def delete_tag(self, ref: str, key: str) -> ModelVersion:
        record = self.get(ref)
        if key not in record.tags:
            raise ModelNotFoundError(f"{record.ref} has no tag {key!r}.")
        remaining = {k: v for k, v in record.tags.items() if k != key}
        with self._write() as db:
            db.execute(
                "UPDATE versions SET tags = ? WHERE name = ? AND version = ?",
                (json.dumps(remaining), record.name, record.version),
            )
        return self.get(record.ref)

    def delete_version(self, ref: str) -> None:
        """Remove one version and the aliases pointing at it; its blob stays until
        gc() (another version may share it)."""
        record = self.get(ref)
        with self._write() as db:
            db.execute(
                "DELETE FROM versions WHERE name = ? AND version = ?",
                (record.name, record.version),
            )
            db.execute(
                "DELETE FROM aliases WHERE name = ? AND version = ?",
                (record.name, record.version),
            )

    def gc(self) -> dict[str, int]:
        """Remove blobs no version references and the temporary files of writers
        that died; returns {"blobs": removed, "bytes": freed}."""
        removed = freed = 0
        with self._write() as db:  # no register can commit while this runs
            used = {row[0] for row in db.execute("SELECT DISTINCT blob FROM versions")}
            for path in self._blobs.glob("*/*"):
                if path.name in used or (_is_temporary(path) and _writer_alive(path)):
                    continue
                size = path.stat().st_size
                path.unlink(missing_ok=True)
                removed, freed = removed + 1, freed + size
        return {"blobs": removed, "bytes": freed}

    # --- reading -----------------------------------------------------------------

    def _require(self, db: sqlite3.Connection, name: str, version: int) -> None:
        row = db.execute(
            "SELECT 1 FROM versions WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        if row is None:
            raise ModelNotFoundError(self._missing(name, version))

    def _missing(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> str:
        known = [r[0] for r in self._db.execute("SELECT DISTINCT name FROM versions")]
        if name not in known:
            hint = f" Models: {', '.join(sorted(known))}." if known else ""
            return f"no model named {name!r} in {self.path}.{hint}"
        if alias is not None:
            aliases = [
                r[0]
                for r in self._db.execute(
                    "SELECT alias FROM aliases WHERE name = ?", (name,)
                )
            ]
            listed = ", ".join(sorted(aliases)) or "none"
            return f"model {name!r} has no alias {alias!r} (aliases: {listed})."
        versions = [
            r[0]
            for r in self._db.execute(
                "SELECT version FROM versions WHERE name = ? ORDER BY version", (name,)
            )
        ]
        return (
            f"model {name!r} has no version {version} (versions: {_ranges(versions)})."
        )

    def _resolve(
        self, ref: str, version: int | None = None, alias: str | None = None
    ) -> tuple[str, int]:
        name, ref_version, ref_alias = parse_ref(ref)
        version = version if version is not None else ref_version
        alias = alias if alias is not None else ref_alias
        if version is not None and alias is not None:
            raise ValueError("give a version or an alias, not both.")
        if alias is not None:
            row = self._db.execute(
                "SELECT version FROM aliases WHERE name = ? AND alias = ?",
                (name, alias),
            ).fetchone()
            if row is None:
                raise ModelNotFoundError(self._missing(name, alias=alias))
            return name, int(row[0])
        if version is None:
            row = self._db.execute(
                "SELECT MAX(version) FROM versions WHERE name = ?", (name,)
            ).fetchone()
            if row[0] is None:
                raise ModelNotFoundError(self._missing(name))
            return name, int(row[0])
        self._require(self._db, name, version)
        return name, version

    def get(
        self, ref: str, version: int | None = None, alias: str | None = None
    ) -> ModelVersion:
        """The record of "name" (latest), "name:3" or "name@alias"."""
        name, number = self._resolve(ref, version, alias)
        rows = self._records("WHERE v.name = ? AND v.version = ?", (name, number))
        return rows[0]

    def load(
        self, ref: str, version: int | None = None, alias: str | None = None
    ) -> Any:
        """The model of a version, after checking its blob's sha256. Weights are
        memory-mapped, zero-copy, when the blob is not xz-coded (xz is used only
        where it makes the blob smaller, e.g. for quantized or pruned models)."""
        record = self.get(ref, version, alias)
        path = self._blob_path(record.blob)
        try:
            data = _serialize.map_file(path)
        except FileNotFoundError:
            raise IntegrityError(
                f"{record.ref}: its blob {record.blob[:12]}... is missing from "
                f"{self._blobs}."
            ) from None
        if hashlib.sha256(data).hexdigest() != record.blob:
            raise IntegrityError(
                f"{record.ref}: its blob {path} does not match its sha256; the file "
                "was changed or damaged. Restore it from a backup or an export."
            )
        # Arrays of an uncompressed blob are read-only views of the mapped file.
        return _serialize.from_bytes(data)

    def _records(
        self, where: str = "", args: tuple = (), order: str = ""
    ) -> list[ModelVersion]:
        aliases: dict[tuple[str, int], list[str]] = {}
        for name, alias, version in self._db.execute(
            "SELECT name, alias, version FROM aliases"
        ):
            aliases.setdefault((name, version), []).append(alias)
        # One JSON document for all the rows: one parse in C instead of four
        # json.loads per row, which is what keeps 10,000 versions well under 100 ms.
        query = (
            "SELECT json_group_array(json_array(v.name, v.version, json(v.tags), "
            "json(v.params), json(v.metrics), v.created_at, v.description, "
            "json(v.lineage), v.kind, v.blob, v.size)) FROM (SELECT * FROM versions v "
            f"{where} {order or 'ORDER BY v.name, v.version'}) v"
        )
        (document,) = self._db.execute(query, args).fetchone()
        return [
            ModelVersion(
                name, version, tuple(sorted(aliases.get((name, version), ()))), tags,
                params, metrics, created_at, description, lineage, kind, blob, size,
            )
            for (name, version, tags, params, metrics, created_at, description,
                 lineage, kind, blob, size) in json.loads(document)
        ]  # fmt: skip

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, in version order."""
        records = self._records("WHERE v.name = ?", (name,))
        if not records:
            raise ModelNotFoundError(self._missing(name))
        return records

    def list_models(self) -> list[dict[str, Any]]:
        """One summary per model: name, versions, latest, aliases, updated_at."""
        aliases: dict[str, dict[str, int]] = {}
        for name, alias, version in self._db.execute(
            "SELECT name, alias, version FROM aliases"
        ):
            aliases.setdefault(name, {})[alias] = version
        rows = self._db.execute(
            "SELECT name, COUNT(*), MAX(version), MAX(created_at) FROM versions "
            "GROUP BY name ORDER BY name"
        )
        return [
            {"name": n, "versions": c, "latest": latest, "updated_at": at,
             "aliases": aliases.get(n, {})}
            for n, c, latest, at in rows
        ]  # fmt: skip

    def search(
        self,
        name: str | None = None,
        tags: dict[str, str] | None = None,
        metrics: dict[str, tuple[str, float]] | None = None,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[ModelVersion]:
        """Versions matching every filter: name (a glob such as "clf*"), tags (all
        equal), metrics ({"accuracy": (">=", 0.9)}); order_by a metric name, or
        "version" / "created_at", with a leading "-" for descending."""
        clauses: list[str] = []
        args: list[Any] = []
        if name is not None:
            clauses.append("v.name GLOB ?")
            args.append(name)
        for key, value in _check_tags(tags).items():
            clauses.append("json_extract(v.tags, ?) = ?")
            args += [_json_path(key), value]
        for key, condition in (metrics or {}).items():
            op, bound = _condition(key, condition)
            clauses.append(f"json_extract(v.metrics, ?) {op} ?")
            args += [_json_path(key), bound]
        order = ""
        if order_by is not None:
            descending = order_by.startswith("-")
            key = order_by.lstrip("-")
            column = (
                f"v.{key}"
                if key in ("version", "created_at", "name")
                else "json_extract(v.metrics, ?)"
            )
            if column.endswith("?)"):
                args.append(_json_path(key))
            direction = "DESC" if descending else "ASC"
            order = f"ORDER BY {column} {direction}, v.name, v.version"
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        if limit is not None:
            order = (order or "ORDER BY v.name, v.version") + f" LIMIT {int(limit)}"
        return self._records(where, tuple(args), order)

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """What differs between two versions: params, metrics and tags as
        {key: (a, b)}, and per weight array its shape and max |a - b| and relative
        L2 distance (or "only in a" / "only in b")."""
        ra, rb = self.get(a), self.get(b)
        result: dict[str, Any] = {"a": ra.ref, "b": rb.ref}
        for part in ("params", "metrics", "tags"):
            da, db = getattr(ra, part), getattr(rb, part)
            result[part] = {
                k: (da.get(k), db.get(k))
                for k in sorted(set(da) | set(db))
                if da.get(k) != db.get(k)
            }
        wa, wb = _weights(self.load(ra.ref)), _weights(self.load(rb.ref))
        weights: dict[str, Any] = {}
        for key in sorted(set(wa) | set(wb)):
            if key not in wb or key not in wa:
                weights[key] = "only in a" if key in wa else "only in b"
                continue
            x, y = wa[key], wb[key]
            if x.shape != y.shape:
                weights[key] = {"shape": (list(x.shape), list(y.shape))}
                continue
            delta = x.astype(np.float64) - y.astype(np.float64)
            norm = float(np.linalg.norm(x.astype(np.float64)))
            weights[key] = {
                "shape": list(x.shape),
                "max_abs": float(np.abs(delta).max()) if delta.size else 0.0,
                "rel_l2": float(np.linalg.norm(delta)) / norm if norm else None,
            }
        result["weights"] = weights
        return result

    # --- one version as one file -------------------------------------------------

    def export(self, ref: str, path: str | os.PathLike) -> ModelVersion:
        """Write one version (model and record) to a single file."""
        record = self.get(ref)
        self.load(record.ref)  # checks the blob
        blob = self._blob_path(record.blob).read_bytes()
        import safetensors.numpy

        meta = {"format": "gradkit-export", "version": 1, "record": record.to_dict()}
        data = safetensors.numpy.save(
            {"model": np.frombuffer(blob, np.uint8)},
            metadata={"gradkit-export": json.dumps(meta)},
        )
        _serialize.write_atomic(Path(path), data)
        return record

    def import_(self, path: str | os.PathLike, name: str | None = None) -> ModelVersion:
        """Register the version in an exported file as the next version of its
        name (or of `name`), keeping its params, metrics, tags and lineage."""
        import safetensors.numpy

        raw = Path(path).read_bytes()
        try:
            tensors = safetensors.numpy.load(raw)
            header_size = int.from_bytes(raw[:8], "little")
            meta = json.loads(
                json.loads(raw[8 : 8 + header_size])["__metadata__"]["gradkit-export"]
            )
            record = meta["record"]
            blob = tensors["model"].tobytes()
        except Exception as exc:
            raise RegistryError(f"{path} is not a gradkit export: {exc}") from None
        if hashlib.sha256(blob).hexdigest() != record["blob"]:
            raise IntegrityError(f"{path}: the model does not match its sha256.")
        model = _serialize.from_bytes(blob)
        lineage = dict(record.get("lineage") or {})
        imported = self.register(
            name or record["name"], model,
            params=record.get("params"), metrics=record.get("metrics"),
            tags=record.get("tags"), description=record.get("description"),
        )  # fmt: skip
        lineage["imported_from"] = f"{record['name']}:{record['version']}"
        lineage = imported.lineage | {
            k: v
            for k, v in lineage.items()
            if k not in ("gradkit_version", "git_commit")
        }
        with self._write() as db:
            db.execute(
                "UPDATE versions SET lineage = ? WHERE name = ? AND version = ?",
                (json.dumps(lineage), imported.name, imported.version),
            )
        return self.get(imported.ref)


# --- helpers ---------------------------------------------------------------------


def _is_temporary(path: Path) -> bool:
    return ".tmp-" in path.name


def _writer_alive(path: Path) -> bool:
    try:
        pid = int(path.name.split(".tmp-")[1].split("-")[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _json_path(key: str) -> str:
    return "$." + json.dumps(key)


def _condition(key: str, condition: Any) -> tuple[str, float]:
    if isinstance(condition, numbers.Real) and not isinstance(condition, bool):
        return "=", float(condition)
    if (
        isinstance(condition, (tuple, list))
        and len(condition) == 2
        and condition[0] in ("<", "<=", ">", ">=", "=", "!=")
        and isinstance(condition[1], numbers.Real)
    ):
        return str(condition[0]), float(condition[1])
    raise ValueError(
        f"metric filter {key!r} must be a number or (op, number) with op one of <, "
        f"<=, >, >=, =, !=; got {condition!r}."
    )


def _ranges(versions: list[int]) -> str:
    if not versions:
        return "none"
    if len(versions) > 6:
        return f"{versions[0]}..{versions[-1]} ({len(versions)} in all)"
    return ", ".join(map(str, versions))


def _gradkit_version() -> str:
    from gradkit import __version__

    return __version__


def _model_kind(model: Any) -> str:
    from gradkit.compress import CompressedModel

    if isinstance(model, CompressedModel):
        return "compressed"
    if isinstance(model, dict):
        return "arrays"
    return type(model).__name__


def _default_params(model: Any) -> dict[str, Any]:
    from gradkit.compress import CompressedModel

    if isinstance(model, CompressedModel):
        return {"recipe": model.recipe}
    if isinstance(model, dict):
        return {}
    params = model.get_params(deep=False)
    return {
        k: v for k, v in params.items() if k != "random_state" or isinstance(v, int)
    }


def _weights(model: Any) -> dict[str, np.ndarray]:
    from gradkit.compress import CompressedModel

    if isinstance(model, CompressedModel):
        model = model.to_dense()
    if isinstance(model, dict):
        return {
            k: np.asarray(getattr(v, "to_dense", lambda v=v: v)())
            for k, v in model.items()
        }
    return {
        k: np.asarray(v)
        for k, v in vars(model).items()
        if k.endswith("_") and not k.startswith("_") and isinstance(v, np.ndarray)
        and v.dtype.kind == "f"
    }  # fmt: skip
