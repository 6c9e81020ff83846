"""gradkit.registry: the API, and each guarantee the registry makes:

- concurrent writers get distinct, gapless versions (8 processes x 25 registers);
- a writer killed mid-register leaves no visible half-version, and gc() cleans up;
- a damaged blob is refused with IntegrityError; crafted files are refused cleanly;
- a full disk, an unwritable directory or a newer format are clear errors that
  lose nothing.
The speed of listing and searching 10,000 versions is in bench/test_bench_registry.py.
"""

import errno
import json
import mmap
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

import gradkit
from gradkit import _serialize, cli
from gradkit.compress import CompressedModel, compress_model
from gradkit.linear_model import LogisticRegression, Ridge
from gradkit.registry import (
    IntegrityError,
    ModelNotFoundError,
    Registry,
    RegistryError,
    parse_ref,
)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(300, 8, random_state=0)
    return X, y


@pytest.fixture
def registry(tmp_path):
    with Registry(tmp_path / "registry") as reg:
        yield reg


def fitted(data, C=1.0):
    X, y = data
    # lbfgs: these redundant features make gradient descent need ~180 iterations.
    return LogisticRegression(C=C, solver="lbfgs").fit(X, y)


def test_versions_count_up_and_load_back(registry, data):
    X, y = data
    first = registry.register(
        "clf", fitted(data), metrics={"accuracy": 0.9}, tags={"team": "risk"},
        description="baseline", data=(X, y),
    )  # fmt: skip
    second = registry.register("clf", fitted(data, C=0.1), metrics={"accuracy": 0.8})
    assert (first.version, second.version) == (1, 2)
    assert first.params["C"] == 1.0 and second.params["C"] == 0.1
    assert first.description == "baseline" and first.tags == {"team": "risk"}
    prints = first.lineage["data"]["arrays"]
    assert prints[0]["shape"] == [300, 8] and prints[1]["dtype"] == y.dtype.str
    assert first.lineage["gradkit_version"] == gradkit.__version__
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    expected = head.stdout.strip() if head.returncode == 0 else None
    assert first.lineage["git_commit"] == expected
    for ref, C in [("clf", 0.1), ("clf:1", 1.0), ("clf:2", 0.1)]:
        model = registry.load(ref)
        assert isinstance(model, LogisticRegression) and model.C == C
        np.testing.assert_array_equal(model.predict(X), fitted(data, C).predict(X))
    assert registry.load("clf", version=1).C == 1.0
    assert [v.version for v in registry.versions("clf")] == [1, 2]


def test_aliases_tags_and_lookups(registry, data):
    for C in (1.0, 0.5, 0.1):
        registry.register("clf", fitted(data, C))
    registry.set_alias("clf", 2, "production")
    assert registry.load("clf@production").C == 0.5
    assert registry.get("clf", alias="production").version == 2
    registry.set_alias("clf", 3, "production")  # moving an alias
    assert registry.get("clf@production").version == 3
    assert registry.get("clf:3").aliases == ("production",)
    record = registry.set_tags("clf:1", stage="old", owner="me")
    assert record.tags == {"stage": "old", "owner": "me"}
    assert registry.delete_tag("clf:1", "owner").tags == {"stage": "old"}
    registry.delete_alias("clf", "production")
    assert registry.get("clf:3").aliases == ()
    models = registry.list_models()
    assert [(m["name"], m["versions"], m["latest"]) for m in models] == [("clf", 3, 3)]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda r: r.load("nope"), ModelNotFoundError, "no model named 'nope'"),
        (
            lambda r: r.load("clf:7"),
            ModelNotFoundError,
            r"no version 7 \(versions: 1\)",
        ),
        (lambda r: r.load("clf@prod"), ModelNotFoundError, "no alias 'prod'"),
        (lambda r: r.set_alias("clf", 5, "prod"), ModelNotFoundError, "no version 5"),
        (lambda r: r.delete_alias("clf", "prod"), ModelNotFoundError, "no alias"),
        (lambda r: r.load("clf:x"), ValueError, "a model reference is"),
        (lambda r: r.register("bad name", {}), ValueError, "name must be"),
        (
            lambda r: r.register("m", {"w": np.ones(2)}, metrics={"a": np.nan}),
            ValueError,
            "finite numbers",
        ),
        (
            lambda r: r.register("m", {"w": np.ones(2)}, tags={"a": 1}),
            ValueError,
            "tags must be",
        ),
        (lambda r: r.register("m", object()), TypeError, "gradkit stores its own"),
        (
            lambda r: r.register("m", {"w": np.ones(2)}, parent="clf:9"),
            ModelNotFoundError,
            "no version 9",
        ),
        (lambda r: r.search(metrics={"a": ("~", 1)}), ValueError, "metric filter 'a'"),
    ],
)
def test_bad_input_is_a_clear_error(registry, data, call, error, message):
    registry.register("clf", fitted(data))
    with pytest.raises(error, match=message):
        call(registry)
    assert [v.version for v in registry.versions("clf")] == [1]


def test_search_filters_and_orders(registry):
    for i in range(6):
        registry.register(
            "clf" if i % 2 else "reg", {"w": np.full(3, float(i))},
            metrics={"score": i / 10}, tags={"parity": "odd" if i % 2 else "even"},
        )  # fmt: skip
    refs = lambda records: [r.ref for r in records]  # noqa: E731
    assert refs(registry.search(name="cl*")) == ["clf:1", "clf:2", "clf:3"]
    assert refs(registry.search(tags={"parity": "even"})) == ["reg:1", "reg:2", "reg:3"]
    assert refs(registry.search(metrics={"score": (">=", 0.3)}, order_by="-score")) == [
        "clf:3", "reg:3", "clf:2"
    ]  # fmt: skip
    assert refs(registry.search(order_by="score", limit=2)) == ["reg:1", "clf:1"]


def test_diff_names_every_change(registry, data):
    registry.register("clf", fitted(data), metrics={"acc": 0.9}, tags={"a": "1"})
    registry.register("clf", fitted(data, C=0.01), metrics={"acc": 0.8})
    difference = registry.diff("clf:1", "clf:2")
    assert difference["params"] == {"C": (1.0, 0.01)}
    assert difference["metrics"] == {"acc": (0.9, 0.8)}
    assert difference["tags"] == {"a": ("1", None)}
    coef = difference["weights"]["coef_"]
    assert coef["shape"] == [1, 8] and coef["max_abs"] > 0 and coef["rel_l2"] > 0


def test_compressed_versions_keep_their_parent(registry, data):
    X, y = data
    trained = registry.register("clf", fitted(data), data=(X, y))
    small = compress_model(registry.load("clf:1"), "int8", X, y)
    record = registry.register("clf", small, parent=trained)
    assert record.lineage["parent"] == "clf:1" and record.kind == "compressed"
    assert record.params == {"recipe": "int8"}
    loaded = registry.load("clf:2")
    assert isinstance(loaded, CompressedModel)
    np.testing.assert_array_equal(loaded.predict(X), small.predict(X))


def test_sklearn_linear_models_are_stored_as_gradkit_ones(registry, data):
    X, y = data
    theirs = SklearnLogisticRegression().fit(X, y)
    registry.register("sk", theirs)
    ours = registry.load("sk")
    assert type(ours) is LogisticRegression and ours.solver == "lbfgs"
    np.testing.assert_array_equal(ours.predict_proba(X), theirs.predict_proba(X))


def test_delete_then_gc_frees_only_unused_blobs(registry, data):
    registry.register("clf", fitted(data))
    registry.register("copy", fitted(data))  # the same bytes: one shared blob
    registry.register("clf", fitted(data, C=0.1))
    registry.set_alias("clf", 2, "production")
    registry.delete_version("clf:2")
    assert registry.list_models()[0]["aliases"] == {}
    assert registry.gc()["blobs"] == 1
    registry.delete_version("clf:1")
    assert registry.gc()["blobs"] == 0  # "copy" still uses it
    assert registry.load("copy").C == 1.0


def test_export_and_import_one_version(registry, data, tmp_path):
    registry.register("clf", fitted(data), metrics={"acc": 0.9}, tags={"t": "x"})
    registry.export("clf:1", tmp_path / "clf.gkx")
    with Registry(tmp_path / "other") as other:
        other.register("clf", {"w": np.ones(2)})
        record = other.import_(tmp_path / "clf.gkx")
        assert record.version == 2 and record.metrics == {"acc": 0.9}
        assert record.tags == {"t": "x"} and record.lineage["imported_from"] == "clf:1"
        assert other.load("clf:2").C == 1.0
        (tmp_path / "junk").write_bytes(b"junk")
        with pytest.raises(RegistryError, match="not a gradkit export"):
            other.import_(tmp_path / "junk")


# --- guarantees ------------------------------------------------------------------

WRITER = r"""
import sys
import numpy as np
from gradkit.registry import Registry
registry = Registry(sys.argv[1])
for i in range(int(sys.argv[3])):
    registry.register("shared", {"w": np.array([float(sys.argv[2]), float(i)])})
"""


def test_concurrent_writers_get_distinct_versions(tmp_path):
    path = tmp_path / "registry"
    Registry(path).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(p), "25"])
        for p in range(8)
    ]
    assert all(w.wait(timeout=300) == 0 for w in writers)
    with Registry(path) as registry:
        records = registry.versions("shared")
        assert [r.version for r in records] == list(range(1, 201))
        stored = {tuple(registry.load(r.ref)["w"]) for r in records}
    assert stored == {(float(p), float(i)) for p in range(8) for i in range(25)}


# A writer that stops (and is killed) at one point of register: after the blob is
# written, while holding the write transaction ("commit"), or halfway through
# writing the blob ("blob").
STALLED_WRITER = r"""
import os, sys, time
import numpy as np
from gradkit.registry import Registry, _store
path, where = sys.argv[1], sys.argv[2]

def stall():
    open(os.path.join(path, "stalled"), "w").close()
    time.sleep(600)

if where == "commit":
    real_write = _store.Registry._write
    def stalled_write(self):
        context = real_write(self)
        context.__enter__()
        stall()
    _store.Registry._write = stalled_write
else:
    def stalled_write_atomic(target, data):
        with open(f"{target}.tmp-{os.getpid()}-0", "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
        stall()
    _store._serialize.write_atomic = stalled_write_atomic
Registry(path).register("clf", {"w": np.arange(1000.0)})
"""


@pytest.mark.parametrize("where", ["commit", "blob"])
def test_a_writer_killed_mid_register_leaves_nothing_half_done(tmp_path, where):
    path = tmp_path / "registry"
    with Registry(path) as registry:
        registry.register("clf", {"w": np.zeros(3)})
    writer = subprocess.Popen([sys.executable, "-c", STALLED_WRITER, str(path), where])
    try:
        deadline = time.monotonic() + 120
        while not (path / "stalled").exists():
            assert writer.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    with Registry(path) as registry:
        assert [r.version for r in registry.versions("clf")] == [1]
        assert registry.register("clf", {"w": np.ones(3)}).version == 2
        leftovers = [p for p in (path / "blobs").glob("*/*")]
        assert len(leftovers) == 3  # two versions and the dead writer's file
        assert registry.gc()["blobs"] == 1
        np.testing.assert_array_equal(registry.load("clf:2")["w"], np.ones(3))


def test_weights_load_memory_mapped_and_read_only(registry):
    rng = np.random.default_rng(0)
    weights = {"w": rng.standard_normal((300, 200)), "b": rng.standard_normal(200)}
    record = registry.register("net", weights)  # random floats: stored without xz
    loaded = registry.load(record.ref)
    for name, array in weights.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert not loaded[name].flags.writeable  # a stored model cannot be changed
        base = loaded[name]
        while getattr(base, "base", None) is not None:
            base = base.base
        while isinstance(base, memoryview):
            base = base.obj
        assert isinstance(base, mmap.mmap)  # a view of the file, not a copy


def test_a_flipped_byte_is_an_integrity_error(registry, data):
    record = registry.register("clf", fitted(data))
    blob = registry.path / "blobs" / record.blob[:2] / record.blob
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    blob.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="clf:1"):
        registry.load("clf")
    blob.unlink()
    with pytest.raises(IntegrityError, match="clf:1: its blob .* is missing"):
        registry.load("clf:1")


def _safetensors_with_header(header: dict, payload: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + payload


@pytest.mark.parametrize(
    "crafted",
    [
        # absurd sizes: a tensor of 2**40 elements backed by 8 bytes
        _safetensors_with_header(
            {"w": {"dtype": "F64", "shape": [2**40], "data_offsets": [0, 8]},
             "__metadata__": {"gradkit": json.dumps({"kind": "arrays", "arrays": {}})}},
            b"\0" * 8,
        ),
        # a header length beyond the file
        (2**62).to_bytes(8, "little") + b"{}",
        # metadata naming a Python callable as the estimator class
        _safetensors_with_header(
            {"__metadata__": {"gradkit": json.dumps(
                {"kind": "estimator", "estimator": {
                    "class": "builtins.eval", "params": {}, "attributes": {}}})}},
        ),
        # pickle bytes where a model should be
        __import__("pickle").dumps({"w": 1}),
        # JSON that is not an object
        _safetensors_with_header({"__metadata__": {"gradkit": "[1, 2]"}}),
    ],
    ids=["absurd-shape", "absurd-header", "callable-class", "pickle", "json-list"],
)  # fmt: skip
def test_crafted_files_are_refused(tmp_path, crafted):
    path = tmp_path / "crafted.gradkit"
    path.write_bytes(crafted)
    with pytest.raises((ValueError, TypeError)):
        gradkit.load(path)


def test_a_full_disk_loses_nothing(registry, data, monkeypatch):
    registry.register("clf", fitted(data))

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(RegistryError, match="the disk is full"):
        registry.register("clf", fitted(data, C=0.1))
    monkeypatch.undo()
    assert [r.version for r in registry.versions("clf")] == [1]
    assert not [p for p in (registry.path / "blobs").glob("*/*.tmp-*")]
    assert registry.register("clf", fitted(data, C=0.1)).version == 2


def test_an_unwritable_directory_is_a_clear_error(tmp_path, monkeypatch):
    # Simulated: the test suite may run as root, who can write anywhere.
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(type(tmp_path), "mkdir", refuse)
    with pytest.raises(RegistryError, match="cannot open the registry.*writable"):
        Registry(tmp_path / "registry")


def test_a_path_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(RegistryError, match="cannot open the registry"):
        Registry(tmp_path / "file")


def test_a_newer_format_is_refused_untouched(tmp_path):
    path = tmp_path / "registry"
    Registry(path).close()
    marker = path / "registry.json"
    marker.write_text(json.dumps({"format": "gradkit-registry", "version": 99}))
    with pytest.raises(RegistryError, match="format version 99, newer"):
        Registry(path)
    assert json.loads(marker.read_text())["version"] == 99


def test_default_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADKIT_REGISTRY", str(tmp_path / "env"))
    with Registry() as registry:
        assert registry.path == tmp_path / "env"
    monkeypatch.delenv("GRADKIT_REGISTRY")
    monkeypatch.chdir(tmp_path)
    with Registry() as registry:
        assert registry.path == tmp_path / "gradkit-registry"


def test_parse_ref():
    assert parse_ref("clf") == ("clf", None, None)
    assert parse_ref("clf:12") == ("clf", 12, None)
    assert parse_ref("clf@production") == ("clf", None, "production")


def test_many_versions_list_and_search(registry):
    """10,000 versions (rows written directly: registering that many takes
    minutes of fsyncs); the timing is bench/test_bench_registry.py's."""
    _store_rows(registry, 10_000)
    assert len(registry.versions("bulk")) == 10_000
    top = registry.search(metrics={"score": (">", 0.999)}, order_by="-score")
    assert [r.version for r in top] == list(range(10_000, 9_990, -1))


def _store_rows(registry, n):
    record = registry.register("bulk", {"w": np.zeros(2)}, metrics={"score": 0.0})
    rows = [
        ("bulk", v, record.blob, record.size, "arrays", time.time(), None, "{}",
         json.dumps({"score": v / n}), "{}", "{}")
        for v in range(2, n + 1)
    ]  # fmt: skip
    with registry._write() as db:
        db.executemany(
            "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )


# --- the command line ------------------------------------------------------------


def test_cli_models_commands(tmp_path, data, capsys):
    path = str(tmp_path / "registry")
    with Registry(path) as registry:
        registry.register("clf", fitted(data), metrics={"accuracy": 0.9})
        registry.register("clf", fitted(data, C=0.1), metrics={"accuracy": 0.8})

    def run(*args):
        code = cli.main(["models", "--registry", path, *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = run("list")
    assert code == 0 and "clf" in out and "versions" in out
    code, out, _ = run("--json", "versions", "clf")
    assert [r["version"] for r in json.loads(out)] == [1, 2]
    assert run("alias", "clf", "1", "production")[0] == 0
    code, out, _ = run("--json", "show", "clf@production")
    assert json.loads(out)["version"] == 1
    assert run("tag", "clf:2", "stage=candidate")[0] == 0
    code, out, _ = run("--json", "diff", "clf:1", "clf:2")
    assert json.loads(out)["metrics"] == {"accuracy": [0.9, 0.8]}
    assert run("export", "clf:2", str(tmp_path / "clf.gkx"))[0] == 0
    assert run("import", str(tmp_path / "clf.gkx"), "--name", "copy")[0] == 0
    assert run("delete", "clf:2")[0] == 0
    code, out, _ = run("gc")
    assert code == 0 and "removed 0 blob(s)" in out  # the import shares the blob
    code, _, err = run("show", "clf:2")
    assert code == 2 and "no version 2" in err
    code, _, err = run("show", "nope")
    assert code == 2 and "no model named 'nope'" in err
    with Registry(path) as registry:
        assert registry.get("copy").tags == {"stage": "candidate"}
    assert _serialize.class_path(Ridge()) == "gradkit.linear_model.Ridge"
