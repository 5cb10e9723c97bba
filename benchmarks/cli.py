"""mvit-bench: export (or reuse) every format x precision of a checkpoint and measure each one.

Writes bench.json (machine-readable, with the machine and library versions), bench.md (a table) and
bench.png (accuracy against latency) to --out. Rows: PyTorch eager fp32 (the baseline), then each
artifact: status, size, top-1/top-5 accuracy on --data, agreement / KL / cosine against the float
model, latency (load, first run, warm median/p90/min/std, throughput, ratio to eager), peak memory.
For int8, a per-layer error report names the layers to keep in float (mvit-export --keep-float).

Exit status: 0 done; 1 a --fail-below / --fail-above limit was not met; 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..export.backends import FORMATS
from ..export.base import PRECISIONS
from ..model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, read_meta
from ..model.images import ImageFolderError, image_files
from .cli_files import add_arguments, main_other, wants_other_mode
from .device_results import merge, read_device_results
from .matrix import BenchConfig, BenchError, Progress, resolve_checkpoint, run
from .report import check_floors, parse_floor, write_reports


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _list(choices, allow_all=True, aliases=None):
    aliases = aliases or {}

    def parse(text: str) -> list[str]:
        items = []
        for part in text.replace(",", " ").split():
            part = aliases.get(part, part)
            if part == "all" and allow_all:
                items += list(choices)
            elif part in choices:
                items.append(part)
            else:
                raise argparse.ArgumentTypeError(
                    f"unknown value {part!r}; choose from {', '.join(choices)}{' or all' if allow_all else ''}"
                )
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mvit-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="checkpoint (.safetensors); default: the shipped model")
    p.add_argument(
        "--models",
        nargs="+",
        metavar="CKPT_OR_NAME",
        help="several checkpoints (paths, or zoo names trained for the article: "
        "benchmarks/article/checkpoints/NAME*.safetensors), benchmarked one after another",
    )
    p.add_argument(
        "--data",
        type=Path,
        help="evaluation images: class folders named like the checkpoint's labels give accuracy; "
        "a flat folder gives agreement with the float model only (required for the matrix; "
        "with FILE arguments, optional)",
    )
    p.add_argument(
        "--calib",
        type=Path,
        help="int8 calibration images; default: the 'train' folder beside --data "
        "if there is one, else data-free (ZeroQ)",
    )
    p.add_argument("--calib-count", type=int, default=128)
    p.add_argument(
        "--calib-method",
        help="passed to mvit-export (onnx: min-max, percentile, entropy; tflite/coreml: histogram, min-max)",
    )
    p.add_argument(
        "--formats",
        nargs="+",
        type=_list(FORMATS),
        default=[list(FORMATS)],
        metavar="FORMAT",
        help=f"{' '.join(FORMATS)} or all (default all)",
    )
    p.add_argument(
        "--quantize",
        nargs="+",
        type=_list(PRECISIONS, aliases={"none": "fp32"}),
        default=[list(PRECISIONS)],
        metavar="PRECISION",
        help=f"{' '.join(PRECISIONS)} or all (default all)",
    )
    p.add_argument("--threads", type=int, default=2, help="threads of every runtime (default 2)")
    p.add_argument("--runs", type=int, default=30, help="minimum warm runs per row (default 30)")
    p.add_argument("--min-time", type=float, default=3.0, help="minimum seconds of warm runs per row (default 3)")
    p.add_argument("--max-images", type=int, help="evaluate on at most this many images of --data")
    p.add_argument(
        "--coreml-max-images",
        type=int,
        default=32,
        help="images for Core ML's reference interpreter off macOS (slow: about 0.5-1 s per image for mobilevit_xxs; default 32)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="reports and artifacts/ (default runs/bench)")
    p.add_argument("--artifacts", type=Path, help="where artifacts (and bench.log) go; default OUT/artifacts")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="reuse artifacts in the artifacts folder exported from the same checkpoint (sha256) instead of re-exporting",
    )
    p.add_argument(
        "--no-layer-report",
        dest="layer_report",
        action="store_false",
        help="skip the per-layer int8 error (of the matrix's int8 artifacts; of int8 .tflite FILEs "
        "against a checkpoint --reference)",
    )
    p.add_argument(
        "--layer-images",
        type=int,
        default=16,
        help="images for the per-layer report (calibration images; for FILEs the first --data images)",
    )
    p.add_argument("--keep-float-top", type=int, default=3, help="how many worst layers to suggest keeping in float")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip bench.png")
    p.add_argument(
        "--fail-below",
        action="append",
        default=[],
        metavar="[ROWS:]METRIC=VALUE",
        help="exit 1 if a metric is below VALUE in any matching row, e.g. agreement=0.99, "
        "'*-int8:top1=0.75', tflite-int8:throughput=100 (metrics: top1, top5, agreement, cosine, "
        "throughput, ...)",
    )
    p.add_argument(
        "--fail-above",
        action="append",
        default=[],
        metavar="[ROWS:]METRIC=VALUE",
        help="exit 1 if a metric is above VALUE, e.g. 'tflite-int8:latency_vs_eager=0.2', kl=0.01, "
        "top1_drop=0.5, size_vs_fp32=0.3",
    )

    add_arguments(p)
    return p


def _flat(groups) -> tuple[str, ...]:
    seen = []
    for g in groups:
        for x in g:
            if x not in seen:
                seen.append(x)
    return tuple(seen)


def main(argv=None) -> int:
    """Entry point of ``mvit-bench``."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"mvit-bench: error: {msg}", file=sys.stderr)
        return 2

    if wants_other_mode(args):
        return main_other(args, data_given=args.data is not None)
    if args.data is None:
        return fail("the matrix needs --data DIR (evaluation images)")

    try:
        for spec in args.fail_below + args.fail_above:
            parse_floor(spec)
    except ValueError as e:
        return fail(f"--fail-below/--fail-above {e}")
    if args.threads < 1 or args.runs < 1 or args.min_time < 0 or args.calib_count < 1 or args.layer_images < 1:
        return fail("--threads, --runs, --calib-count and --layer-images must be at least 1, --min-time >= 0")
    if not args.data.exists():
        return fail(f"--data {args.data}: no such folder")
    if not args.data.is_dir():
        return fail(f"--data {args.data}: not a folder")
    calib = args.calib
    if calib is None and (args.data.parent / "train").is_dir() and args.data.name != "train":
        calib = args.data.parent / "train"
    if calib is not None and not calib.is_dir():
        return fail(f"--calib {calib}: no such folder")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return fail("the PNG plot needs matplotlib (pip install matplotlib), or pass --no-plot")

    try:
        image_files(args.data)
        weights = []
        if args.weights or not args.models:
            weights.append(Path(args.weights) if args.weights else DEFAULT_CHECKPOINT)
        weights += [resolve_checkpoint(m) for m in args.models or []]
        for w in weights:
            if not Path(w).exists():
                raise BenchError(
                    f"{w}: no such checkpoint"
                    + (" (the shipped model is not there yet; pass --weights)" if Path(w) == DEFAULT_CHECKPOINT else "")
                )
            read_meta(w)
        device = [read_device_results(f) for f in args.device_results]
    except (BenchError, ImageFolderError, CheckpointError, ValueError) as e:
        return fail(str(e))

    cfg = BenchConfig(
        weights=weights,
        data=args.data,
        calib=calib,
        calib_count=args.calib_count,
        formats=_flat(args.formats),
        precisions=_flat(args.quantize),
        threads=args.threads,
        runs=args.runs,
        min_time=args.min_time,
        out=args.out,
        artifacts=args.artifacts,
        reuse=args.reuse,
        max_images=args.max_images,
        coreml_max_images=args.coreml_max_images,
        layer_report=args.layer_report,
        layer_images=args.layer_images,
        keep_float_top=args.keep_float_top,
        calib_method=args.calib_method,
    )
    say = Progress()
    if calib is None:
        say("warning: no --calib folder and no 'train' folder beside --data: int8 uses data-free (ZeroQ) calibration")
    try:
        report = run(cfg, say)
    except (BenchError, ImageFolderError, CheckpointError) as e:
        return fail(str(e))

    merge(report, device, [str(f) for f in args.device_results])
    paths = write_reports(report, cfg.out, args.plot)
    say(f"done in {report['seconds']:.0f} s: " + ", ".join(str(p) for p in paths.values()))
    _print_summary(report)
    problems = check_floors(report, args.fail_below, args.fail_above)
    for p in problems:
        print(f"mvit-bench: limit not met: {p}", file=sys.stderr)
    return 1 if problems else 0


def _print_summary(report: dict) -> None:
    for m in report["models"]:
        print(f"{m['architecture']}  ({m['evaluation']}, {report['settings']['threads']} threads)")
        print(f"  {'row':<16} {'status':<24} {'MB':>6} {'top1%':>6} {'agree%':>7} {'median ms':>10} {'vs eager':>9}")
        for r in m["rows"]:
            lat = (r.get("latency") or {}).get("median_ms")
            print(
                f"  {r['format'] + ' ' + r['precision']:<16} {r['status']:<24} "
                f"{(r.get('size_mb') or 0):>6.2f} {_p(r.get('top1')):>6} {_p(r.get('agreement')):>7} "
                f"{(f'{lat:.2f}' if lat else '–'):>10} "
                f"{_x(r.get('latency_vs_eager')):>9}"
            )


def _x(v):
    return "–" if v is None else f"{v:.2f}x"


def _p(v):
    return "–" if v is None else f"{100 * v:.1f}"


if __name__ == "__main__":
    sys.exit(main())
