"""mvit-bench's options for model files (``mvit-bench FILE ...``), phones over adb (``--adb``) and
phone results files (``--device-results``), and the command that runs them.

``mvit.benchmarks.cli`` adds these options to its parser and hands over to ``main_other`` when FILE
arguments, ``--adb`` or ``--device-results`` ask for something other than the matrix alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ..export.backends import format_of, get_backend
from ..export.console import captured
from ..model.checkpoint import atomic_write
from ..model.contract import INTERPOLATIONS
from .adb import AdbConfig, parse_binary_args, run
from .device_results import DeviceResultsError, empty_report, merge, read_device_results
from .files import FileEntry, FileOptions, FilesConfig, bench_files, precision_of, read_labels
from .matrix import BenchError, Progress
from .report import write_reports

MODEL_SUFFIXES = (".tflite", ".onnx", ".pte", ".mlpackage", ".aimodel")


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().replace("x", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or HxW") from None
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or HxW with positive sizes")
    return (parts[0], parts[-1])


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The FILE, --adb and --device-results options of mvit-bench."""
    p.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="model files to benchmark as they are (.tflite, .onnx, .pte, .mlpackage, .aimodel, with or without "
        "mvit metadata) instead of exporting the matrix",
    )
    g = p.add_argument_group("model files without mvit metadata (FILE ...)")
    g.add_argument("--labels", type=Path, help="class labels, one per line, in the model's output order")
    g.add_argument("--size", type=_size, metavar="N|HxW", help="input size (default: the file's input shape)")
    g.add_argument("--mean", type=float, nargs=3, metavar="M", help="per-channel mean after /255 (default 0 0 0)")
    g.add_argument("--std", type=float, nargs=3, metavar="S", help="per-channel std after /255 (default 1 1 1)")
    g.add_argument("--bgr", action="store_true", help="the model takes BGR channel order")
    g.add_argument("--resize-short", type=int, metavar="PX", help="resize the short side to PX before the centre crop")
    g.add_argument(
        "--crop", type=float, metavar="FRACTION", help="centre-crop fraction (0-1], instead of --resize-short"
    )
    g.add_argument("--interpolation", choices=INTERPOLATIONS, default="bilinear")
    g.add_argument(
        "--reference",
        type=Path,
        metavar="FILE_OR_CKPT",
        help="compare with this model (checkpoint .safetensors or a model file): agreement, KL, cosine",
    )
    a = p.add_argument_group("phones")
    a.add_argument(
        "--adb",
        nargs="?",
        const="",
        metavar="SERIAL",
        help="run the FILEs on a connected Android phone (LiteRT benchmark_model for .tflite, "
        "ExecuTorch executor_runner for .pte)",
    )
    a.add_argument(
        "--adb-benchmark-binary",
        action="append",
        default=[],
        metavar="[tflite=|executorch=]PATH",
        help="the benchmark binary built for the phone (repeatable)",
    )
    a.add_argument("--adb-path", default="adb", help="the adb executable (default: adb on PATH)")
    a.add_argument("--adb-threads", type=int, default=4, help="CPU threads on the phone (default 4)")
    a.add_argument("--adb-runs", type=int, default=50, help="timed runs on the phone (default 50)")
    a.add_argument("--adb-warmup", type=int, default=10, help="warm-up runs on the phone (default 10)")
    a.add_argument("--adb-gpu", action="store_true", help="also run .tflite files on LiteRT's GPU delegate")
    a.add_argument(
        "--device-results",
        nargs="+",
        action="extend",
        default=[],
        type=Path,
        metavar="FILE.json",
        help="phone rows (mvit.device_results/1, from the demo apps or --adb) to merge into the reports",
    )


def split_adb_serial(args) -> None:
    """``--adb model.tflite``: argparse takes the file for the optional SERIAL; give it back."""
    if args.adb and (Path(args.adb).suffix in MODEL_SUFFIXES or Path(args.adb).exists()):
        args.files = [Path(args.adb)] + list(args.files)
        args.adb = ""


def wants_other_mode(args) -> bool:
    """True when the command asks for files, a phone or device results rather than the matrix alone."""
    split_adb_serial(args)
    return bool(args.files) or args.adb is not None or (bool(args.device_results) and not _matrix_asked(args))


def _matrix_asked(args) -> bool:
    return bool(args.weights or args.models)


def check_args(args) -> str | None:
    """The first problem with the FILE/--adb/--device-results options (one line), or None."""
    from_options = [
        n
        for n, v in (
            ("--size", args.size),
            ("--mean", args.mean),
            ("--std", args.std),
            ("--bgr", args.bgr or None),
            ("--resize-short", args.resize_short),
            ("--crop", args.crop),
        )
        if v is not None
    ]
    if args.files and _matrix_asked(args):
        return "FILE arguments benchmark those files; --weights/--models export the matrix: use one or the other"
    if from_options and args.labels is None:
        return f"{from_options[0]} describes a model file without mvit metadata: give its --labels too"
    if args.labels is not None and not args.files:
        return "--labels goes with FILE arguments"
    if args.reference is not None and not args.files:
        return "--reference goes with FILE arguments"
    if args.resize_short is not None and args.crop is not None:
        return "give --resize-short or --crop, not both"
    if args.crop is not None and not 0 < args.crop <= 1:
        return f"--crop {args.crop}: must be in (0, 1]"
    if args.resize_short is not None and args.resize_short < 1:
        return f"--resize-short {args.resize_short}: must be at least 1"
    if args.std is not None and min(args.std) <= 0:
        return "--std values must be > 0"
    if args.adb is not None and not args.files:
        return "--adb needs the model FILEs to run on the phone"
    if args.adb is None and args.adb_benchmark_binary:
        return "--adb-benchmark-binary goes with --adb"
    if args.adb_threads < 1 or args.adb_runs < 1 or args.adb_warmup < 0:
        return "--adb-threads and --adb-runs must be at least 1, --adb-warmup >= 0"
    if args.layer_images < 1 or args.keep_float_top < 0:
        return f"--layer-images {args.layer_images} / --keep-float-top {args.keep_float_top}: must be >= 1 / >= 0"
    if args.max_images is not None and args.max_images < 1:
        return f"--max-images {args.max_images}: must be at least 1"
    return None


def main_other(args, data_given: bool) -> int:
    """Run FILE benchmarks, a phone over adb and/or merge device results; write the reports."""

    def fail(msg: str) -> int:
        print(f"mvit-bench: error: {msg}", file=sys.stderr)
        return 2

    problem = check_args(args)
    if problem:
        return fail(problem)
    say = Progress()  # a copy of the terminal's stderr, taken before the libraries' chatter is captured
    with tempfile.TemporaryDirectory() as tmp:
        chatter = Path(tmp) / "bench.log"
        try:
            with captured(chatter):  # import-time warnings of torchao, ExecuTorch, LiteRT: to bench.log
                report, device, phone, rejected = _work(args, data_given, say)
        except (BenchError, DeviceResultsError) as e:
            return fail(str(e))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with open(Path(args.out) / "bench.log", "a") as log:
            log.write(chatter.read_text(errors="replace"))
    merge(report, device + phone, [str(f) for f in args.device_results] + [None] * len(phone))
    if phone:
        _write_phone_results(phone, Path(args.out), say)
    paths = write_reports(report, args.out, args.plot)
    say("done: " + ", ".join(str(p) for p in paths.values()))
    for line in rejected:
        print(f"mvit-bench: error: {line}", file=sys.stderr)
    return 2 if rejected else 0


def _work(args, data_given: bool, say):
    """(report, device result files, phone runs, rejected models) of the command."""

    device = [read_device_results(f) for f in args.device_results]  # bad files fail before any work
    opts = FileOptions()
    if args.labels is not None:
        opts = FileOptions(
            labels=read_labels(args.labels),
            size=args.size,
            mean=tuple(args.mean or (0, 0, 0)),
            std=tuple(args.std or (1, 1, 1)),
            bgr=args.bgr,
            resize_short=args.resize_short,
            crop=args.crop,
            interpolation=args.interpolation,
        )
    phone, rejected = [], []
    if args.adb is not None:
        phone, rejected = _run_adb(args, say)
    if args.files and args.adb is None:
        data = args.data if data_given else None
        if data is not None and not Path(data).is_dir():
            raise BenchError(f"--data {data}: no such folder")
        cfg = FilesConfig(
            files=list(args.files),
            options=opts,
            data=data,
            reference=args.reference,
            max_images=args.max_images,
            threads=args.threads,
            runs=args.runs,
            min_time=args.min_time,
            out=args.out,
            layer_report=args.layer_report,
            layer_images=args.layer_images,
            keep_float_top=args.keep_float_top,
        )
        return bench_files(cfg, say), device, phone, rejected
    return empty_report(), device, phone, rejected


def _run_adb(args, say) -> tuple[list[dict], list[str]]:
    """(device_results dictionaries, one line per model the phone refused)."""

    cfg = AdbConfig(
        files=list(args.files),
        binaries=parse_binary_args(args.adb_benchmark_binary),
        serial=args.adb or None,
        threads=args.adb_threads,
        runs=args.adb_runs,
        warmup=args.adb_warmup,
        gpu=args.adb_gpu,
        adb=args.adb_path,
    )
    results = run(cfg, say, describe=_describe)
    return results, cfg.rejected


def _describe(path: Path) -> tuple[str, str, str]:
    """(model name, precision, note) of a file for a phone row: from its metadata, else its op census."""

    fmt = format_of(path)
    backend = get_backend(fmt)
    try:
        meta = backend.read_metadata(path)
        return meta.get("architecture") or path.stem, meta.get("precision") or "fp32", ""
    except Exception:  # noqa: BLE001 - no metadata, or no runtime here to read it
        pass
    try:
        entry = FileEntry(path, fmt, backend, census=backend.op_census(path))
        return path.stem, precision_of(entry), "precision from the op census (no mvit metadata)"
    except Exception:  # noqa: BLE001
        return path.stem, "fp32", "precision unknown here (no metadata, no local runtime): assumed fp32"


def _write_phone_results(results: list[dict], out: Path, say) -> None:
    """Each phone run as its own device_results file beside the reports (to merge again later)."""
    for r in results:
        path = out / f"device-{r['serial']}-{r['source'].split(':')[1]}.json"
        text = json.dumps(r, indent=1) + "\n"
        atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
        say(f"phone rows: {path}")
