"""The `gradkit` command line.

    gradkit --version
    gradkit bench metrics|train|compress [--quick] [--threads N] [--n N]
    gradkit compress MODEL [-o OUT] [--recipe R] [--max-drop D --val VAL.npz]
    gradkit models list|versions|show|alias|unalias|tag|diff|delete|gc|export|import
    gradkit demo [--n N] [--registry DIR]
    gradkit serve MODEL... [--host H] [--port P] [--workers N]
    gradkit dockerfile NAME@ALIAS [-o DIR]

Each subcommand is one `_add_<command>` function that builds its subparser and sets
`handler`, a function of the parsed arguments that returns the exit code; a new
command (demo, serve, compress, ...) is one more such function in `_COMMANDS`, and a
new benchmark area one more entry in `_BENCH_AREAS`.

Exit codes: 0 success, 1 the command ran but found a problem (a benchmark result
that does not match its peer), 2 bad usage or an error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import gradkit

PROG = "gradkit"


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _sample_count(text: str) -> int:
    """A sample count such as 20000, 20_000 or 1e6."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a sample count, got {text!r}"
        ) from None
    if not value.is_integer() or value < 2:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of samples >= 2, got {text!r}"
        )
    return int(value)


# --- gradkit bench ---------------------------------------------------------------


def _bench_outcome(failed: list[str], what: str) -> int:
    """The exit code of a benchmark: 1, saying which, when some rows `what`."""
    if not failed:
        return 0
    print(f"{PROG}: {len(failed)} {what}: " + ", ".join(failed), file=sys.stderr)
    return 1


def _threads(args: argparse.Namespace) -> int | None | str:
    return args.threads if args.threads is not None else "keep"


def _bench_metrics(args: argparse.Namespace) -> int:
    from gradkit._bench import run_metrics_bench

    rows = run_metrics_bench(
        quick=args.quick,
        out=sys.stdout,
        progress=not args.no_progress,
        n=args.n,
        n_threads=_threads(args),
    )
    failed = [row["function"] for row in rows if not row["ok"]]
    return _bench_outcome(failed, "metric(s) did not match sklearn or failed")


def _bench_train(args: argparse.Namespace) -> int:
    from gradkit._bench_train import run_train_bench

    rows = run_train_bench(
        quick=args.quick,
        out=sys.stdout,
        progress=not args.no_progress,
        n=args.n,
        n_threads=_threads(args),
    )
    failed = [row.case for row in rows if not row.ok]
    return _bench_outcome(failed, "case(s) fell short of their peer or failed")


def _bench_compress(args: argparse.Namespace) -> int:
    from gradkit._bench_compress import run_compress_bench

    rows, _ = run_compress_bench(
        quick=args.quick,
        out=sys.stdout,
        progress=not args.no_progress,
        n=args.n,
        n_threads=_threads(args),
    )
    failed = [row.case for row in rows if not row.ok]
    return _bench_outcome(failed, "case(s) did not match their peer or failed")


def _bench_serve(args: argparse.Namespace) -> int:
    from gradkit._bench_serve import run_serve_bench

    rows = run_serve_bench(
        quick=args.quick,
        out=sys.stdout,
        progress=not args.no_progress,
        n_threads=args.threads,
    )
    failed = [f"{row.case} ({row.workers} worker(s))" for row in rows if not row.ok]
    return _bench_outcome(failed, "case(s) missed their target or failed")


def _bench_patch(args: argparse.Namespace) -> int:
    from gradkit._bench_patch import run_patch_bench

    rows = run_patch_bench(args.quick, sys.stdout, not args.no_progress, n=args.n)
    failed = [row["scorer"] for row in rows if not row["ok"]]
    return _bench_outcome(failed, "score(s) differ patched")


def _bench_dask(args: argparse.Namespace) -> int:
    from gradkit._bench_dask import run_dask_bench

    result = run_dask_bench(args.quick, sys.stdout, not args.no_progress, n=args.n)
    rows = result["metrics"] + result["logistic"]
    failed = [str(row["name"]) for row in rows if not row["ok"]]
    return _bench_outcome(failed, "result(s) inexact or not converged")


# One runner per benchmark area; the keys are the choices of `gradkit bench AREA`.
_BENCH_AREAS: dict[str, Callable[[argparse.Namespace], int]] = {
    "metrics": _bench_metrics,
    "train": _bench_train,
    "compress": _bench_compress,
    "patch": _bench_patch,
    "dask": _bench_dask,
    "serve": _bench_serve,
}


def _run_bench(args: argparse.Namespace) -> int:
    return _BENCH_AREAS[args.area](args)


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time gradkit against its peers (sklearn) and NumPy yardsticks",
        description=(
            "Time gradkit on both backends (cpp, numba) next to its peers on the "
            "same data, check every result against the peer's, and print a table."
        ),
    )
    parser.add_argument("area", choices=sorted(_BENCH_AREAS), help="what to benchmark")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            "smaller data and fewer repeats, about a minute (metrics: n = 10**6 "
            "instead of 10**7; train: 200,000 x 100 instead of 1,000,000 x 100; "
            "compress: a 2048 x 2048 matrix instead of 4096 x 4096)"
        ),
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="threads for gradkit's kernels (default: GRADKIT_NUM_THREADS or all)",
    )
    parser.add_argument(
        "--n",
        type=_sample_count,
        default=None,
        metavar="N",
        help=(
            "number of samples (compress: the matrix side), overriding the default "
            "of --quick or the full run"
        ),
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="do not print a progress line per function on stderr",
    )
    parser.set_defaults(handler=_run_bench)


# --- gradkit compress -------------------------------------------------------------


def _read_model(path: str) -> object:
    """A gradkit file, a plain safetensors state dict, or an .npz of arrays."""
    import numpy as np
    import safetensors.numpy

    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"PK":  # a zip archive: numpy's .npz
        import io

        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return dict(arrays)
    try:
        return gradkit._serialize.from_bytes(data)
    except ValueError as exc:
        if "without gradkit's metadata" not in str(exc):
            raise
    return safetensors.numpy.load(data)


def _compress(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from gradkit.compress import compress_model

    model = _read_model(args.model)
    X_val = y_val = None
    if args.val is not None:
        with np.load(args.val, allow_pickle=False) as data:
            missing = {"X", "y"} - set(data.files)
            if missing:
                raise ValueError(
                    f"{args.val} must hold arrays named X and y; missing "
                    + ", ".join(sorted(missing))
                )
            X_val, y_val = data["X"], data["y"]
    if args.max_drop is not None and isinstance(model, dict):
        raise ValueError(
            "--max-drop needs a model that predicts; a dict of arrays can be searched "
            "from Python with compress_model(..., metric=your_function)."
        )
    recipe = args.recipe if args.max_drop is not None else (args.recipe or ["int8"])[-1]
    compressed = compress_model(
        model, recipe, X_val, y_val, metric=args.metric, max_drop=args.max_drop
    )
    output = args.output or f"{args.model}.compressed.gradkit"
    written = gradkit.save(compressed, output)
    report = compressed.report
    assert report is not None
    if args.json:
        print(
            json.dumps(report.to_dict() | {"output": output, "bytes_written": written})
        )
    else:
        print(report)
        print(f"wrote {output} ({written:,} bytes, {report.ratio:.1f}x smaller)")
    return 0


def _add_compress(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compress",
        help="compress a model file (quantize, prune, share weights, low rank)",
        description=(
            "Compress a model: a file written by gradkit.save, a safetensors state "
            "dict or an .npz of arrays. Recipes: int8, uint8, int4, share:B, "
            "prune:S, prune:N:M, lowrank:E, or two joined by '+' (prune:0.9+share:4)."
        ),
    )
    parser.add_argument("model", help="the model file")
    parser.add_argument(
        "-o", "--output", help="where to write (default: MODEL.compressed.gradkit)"
    )
    parser.add_argument(
        "--recipe",
        action="append",
        help=(
            "the recipe (default int8); with --max-drop repeat it to list the "
            "candidates (default: gradkit.compress.DEFAULT_SEARCH)"
        ),
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        default=None,
        metavar="D",
        help="search for the smallest model whose metric drops by at most D",
    )
    parser.add_argument(
        "--val", metavar="FILE.npz", help="validation data: an .npz with arrays X, y"
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="scorer name (accuracy, f1, roc_auc, r2, ...; default: model.score)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_compress)


# --- gradkit models -----------------------------------------------------------------


def _when(timestamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def _print_versions(records: list, as_json: bool) -> None:
    import json

    from gradkit._table import text_table

    if as_json:
        print(json.dumps([r.to_dict() for r in records]))
        return
    rows = [
        [
            r.name, str(r.version), r.kind, ",".join(r.aliases), _when(r.created_at),
            _metrics_text(r.metrics), ",".join(f"{k}={v}" for k, v in r.tags.items()),
        ]
        for r in records
    ]  # fmt: skip
    titles = ["name", "version", "kind", "aliases", "created", "metrics", "tags"]
    print(text_table(titles, rows, right={1}))


def _models(args: argparse.Namespace) -> int:
    import json

    from gradkit._table import text_table
    from gradkit.registry import Registry

    registry = Registry(args.registry)
    action = args.action
    if action == "list":
        models = registry.list_models()
        if args.json:
            print(json.dumps(models))
        else:
            rows = [
                [m["name"], str(m["versions"]), str(m["latest"]),
                 ", ".join(f"{a}->{v}" for a, v in sorted(m["aliases"].items())),
                 _when(m["updated_at"])]
                for m in models
            ]  # fmt: skip
            titles = ["name", "versions", "latest", "aliases", "updated"]
            print(text_table(titles, rows, right={1, 2}))
    elif action == "versions":
        _print_versions(registry.versions(args.name), args.json)
    elif action == "show":
        record = registry.get(args.ref)
        if args.json:
            print(json.dumps(record.to_dict()))
        else:
            for key, value in record.to_dict().items():
                print(f"{key:>12}: {value}")
    elif action == "alias":
        registry.set_alias(args.name, args.version, args.alias)
        print(f"{args.name}@{args.alias} -> {args.name}:{args.version}")
    elif action == "unalias":
        registry.delete_alias(args.name, args.alias)
        print(f"removed {args.name}@{args.alias}")
    elif action == "tag":
        tags = dict(_key_value(text) for text in args.tags)
        _print_versions([registry.set_tags(args.ref, **tags)], args.json)
    elif action == "diff":
        difference = registry.diff(args.a, args.b)
        if args.json:
            print(json.dumps(difference))
        else:
            print(f"{difference['a']} -> {difference['b']}")
            for part in ("params", "metrics", "tags", "weights"):
                for key, change in difference[part].items():
                    print(f"  {part}.{key}: {change}")
    elif action == "delete":
        registry.delete_version(args.ref)
        print(f"deleted {args.ref} (run `gradkit models gc` to free its blob)")
    elif action == "gc":
        freed = registry.gc()
        text = f"removed {freed['blobs']} blob(s), {freed['bytes']:,} bytes"
        print(json.dumps(freed) if args.json else text)
    elif action == "export":
        record = registry.export(args.ref, args.path)
        print(f"exported {record.ref} to {args.path}")
    elif action == "import":
        record = registry.import_(args.path, args.name)
        print(f"imported {args.path} as {record.ref}")
    return 0


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _add_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list, show, alias, tag, diff, delete, export and import model versions",
        description=(
            "The model registry ($GRADKIT_REGISTRY or ./gradkit-registry, or "
            "--registry). Models are NAME, NAME:VERSION or NAME@ALIAS."
        ),
    )
    parser.add_argument("--registry", default=None, help="the registry directory")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", help="every model, its versions and aliases")
    actions.add_parser("versions", help="the versions of one model").add_argument(
        "name"
    )
    actions.add_parser("show", help="one version's record").add_argument("ref")
    alias = actions.add_parser("alias", help="point NAME@ALIAS at a version")
    alias.add_argument("name")
    alias.add_argument("version", type=_positive_int)
    alias.add_argument("alias")
    unalias = actions.add_parser("unalias", help="remove an alias")
    unalias.add_argument("name")
    unalias.add_argument("alias")
    tag = actions.add_parser("tag", help="set tags KEY=VALUE on a version")
    tag.add_argument("ref")
    tag.add_argument("tags", nargs="+", metavar="KEY=VALUE")
    diff = actions.add_parser("diff", help="params, metrics, tags and weights of two")
    diff.add_argument("a")
    diff.add_argument("b")
    actions.add_parser("delete", help="delete NAME:VERSION").add_argument("ref")
    actions.add_parser("gc", help="remove blobs no version uses")
    export = actions.add_parser("export", help="write one version to a file")
    export.add_argument("ref")
    export.add_argument("path")
    import_ = actions.add_parser("import", help="register an exported file")
    import_.add_argument("path")
    import_.add_argument("--name", default=None, help="register under this name")
    parser.set_defaults(handler=_models)


# --- gradkit demo -------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from gradkit._demo import run_demo

    return run_demo(
        out=sys.stdout, progress=not args.no_progress, n=args.n, registry=args.registry
    )


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole lifecycle: data, training, evaluation, tuning, compression, "
        "registry",
        description=(
            "Prepare data (scikit-learn's breast cancer set and a synthetic set), "
            "train with gradient descent, SGD and Adam, evaluate on held-out data "
            "and by 5-fold cross-validation, tune a hyperparameter, compress the "
            "best model, register both versions and point 'production' at the "
            "better one, with timings next to scikit-learn's."
        ),
    )
    parser.add_argument(
        "--n", type=_sample_count, default=1_000_000, metavar="N",
        help="rows of the synthetic data set (default 1,000,000)",
    )  # fmt: skip
    parser.add_argument("--registry", default=None, help="the registry directory")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress lines on stderr"
    )
    parser.set_defaults(handler=_demo)


# --- gradkit serve / dockerfile ----------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from gradkit.serve import run

    print(
        f"serving {', '.join(args.models)} on http://{args.host}:{args.port} "
        "(POST /predict, /v2/models/NAME/infer; GET /metrics); Ctrl-C stops",
        file=sys.stderr,
    )
    run(
        args.models, args.registry, args.host, args.port, args.workers,
        max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
        max_request_bytes=int(args.max_request_mb * 2**20),
    )  # fmt: skip
    return 0


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve registered models over HTTP (/predict and OIP v2)",
        description=(
            "Serve one or more registered models: NAME (its latest version), "
            "NAME:VERSION or NAME@ALIAS. A model served by alias or by name is "
            "reloaded when the alias moves. Needs pip install 'gradkit[serve]'."
        ),
    )
    parser.add_argument("models", nargs="+", metavar="MODEL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=_positive_int, default=1)
    parser.add_argument("--registry", default=None, help="the registry directory")
    parser.add_argument(
        "--max-batch-size", type=_positive_int, default=4096,
        help="rows per predict call at most (default 4096)",
    )  # fmt: skip
    parser.add_argument(
        "--max-wait-ms", type=float, default=0.0,
        help="how long a request may wait for others to batch with (default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--max-request-mb", type=float, default=4.0,
        help="larger request bodies get 413 (default 4)",
    )  # fmt: skip
    parser.set_defaults(handler=_serve)


def _dockerfile(args: argparse.Namespace) -> int:
    from gradkit.serve import dockerfile

    for path in dockerfile(args.model, args.output, args.registry, args.wheel):
        print(f"wrote {path}")
    return 0


def _add_dockerfile(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dockerfile",
        help="write a Docker build context that serves a registered version",
        description=(
            "Write a Dockerfile, requirements.txt and the exported model version "
            "(model.gkx) to a directory; `docker build` there gives an image "
            "serving it on port 8080. No Docker engine is needed to generate it."
        ),
    )
    parser.add_argument("model", help="NAME@ALIAS or NAME:VERSION")
    parser.add_argument("-o", "--output", default="gradkit-docker")
    parser.add_argument("--registry", default=None, help="the registry directory")
    parser.add_argument(
        "--wheel", default=None,
        help="a gradkit wheel to install in the image (default: from the index)",
    )  # fmt: skip
    parser.set_defaults(handler=_dockerfile)


# Every subcommand.
_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_demo,
    _add_bench,
    _add_compress,
    _add_models,
    _add_serve,
    _add_dockerfile,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="gradkit: fast, trustworthy tools for the life of an ML model.",
    )
    parser.add_argument(
        "--version", action="version", version=f"{PROG} {gradkit.__version__}"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add_command in _COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises SystemExit)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A command line user wants the reason, not a traceback.
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
