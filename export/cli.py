"""mvit-export: checkpoint -> ONNX / TFLite / Core ML artifacts, verified against the float model.

Exit status: 0 done; 1 an artifact failed its parity check (files kept, marked failed-parity);
2 bad input or a failed conversion.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..model.checkpoint import CheckpointError
from ..model.images import ImageFolderError
from ..quant.options import Int8Options
from ..quant.plan import DEFAULT_MIN_AGREEMENT, HELDOUT_IMAGES
from .api import export_model
from .apps.install import after_install, install_into_app, plan_install
from .backends import FORMATS, get_backend
from .base import INPUT_MODES, PRECISIONS, ExportError
from .request import ExportRequest

QUANTIZE_CHOICES = ("none",) + PRECISIONS + ("all",)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    calib_help = "; ".join(f"{f}: {', '.join(get_backend(f).CALIB_METHODS)}" for f in FORMATS)
    p = _Parser(prog="mvit-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--weights", type=Path, help="mvit checkpoint (.safetensors); default: the shipped garbage-sorting model"
    )
    p.add_argument(
        "--format",
        nargs="+",
        default=["tflite"],
        choices=FORMATS + ("all",),
        metavar="FORMAT",
        help=f"one or more of {', '.join(FORMATS)}, or all (default tflite)",
    )
    p.add_argument(
        "--quantize",
        nargs="+",
        default=["none"],
        choices=QUANTIZE_CHOICES,
        metavar="PRECISION",
        help="one or more of none (= fp32), fp16, dynamic (int8 weights), int8 (weights and "
        "activations), or all (default none)",
    )
    p.add_argument("--calib", type=Path, help="calibration images (class folders or flat); default: data-free (ZeroQ)")
    p.add_argument("--calib-count", type=int, default=256, help="calibration images used at most (default 256)")
    p.add_argument("--calib-method", help=f"int8 calibration; first is the default: {calib_help}")
    p.add_argument(
        "--input",
        dest="input_mode",
        choices=INPUT_MODES,
        help="artifact input: float-nchw (normalised tensor), uint8-nhwc (raw pixels, normalisation "
        "in the model), image (Core ML image). Default: each format's first: "
        + ", ".join(f"{f} {get_backend(f).INPUTS[0]}" for f in FORMATS),
    )
    p.add_argument(
        "--keep-float",
        action="append",
        default=[],
        metavar="NAME",
        help="layer to keep in float (repeatable; module path or op type, as mvit-bench's per-layer "
        "report names them); none = every layer int8. Default for int8: the layers the search "
        "for --min-agreement chose",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        metavar="X",
        help="int8: share of images whose top-1 must match the float model, in (0, 1] (default "
        f"{DEFAULT_MIN_AGREEMENT}). Without --keep-float the layers left float are searched to meet "
        "it on calibration images held out from calibration (cached per checkpoint); the parity "
        "check gates int8 at it",
    )
    p.add_argument(
        "--search-data",
        type=Path,
        metavar="DIR",
        help=f"int8: images the float-layer search measures agreement on (up to {HELDOUT_IMAGES}; "
        "default: --calib images not used for calibration). Images the model was not trained on "
        "show its int8 flips; training images rarely flip",
    )
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder (one subfolder per artifact)")
    p.add_argument("--force", action="store_true", help="replace existing artifacts")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the parity check")
    p.add_argument(
        "--verify-data",
        type=Path,
        help="images for the parity check (default: --calib images not used for calibration, else generated images)",
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads in all (split between --jobs)")
    p.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="formats exported at once, each in its own process (default: one per format, "
        "at most the number of CPUs; 1 = one after another in this process)",
    )
    p.add_argument("--verbose", action="store_true", help="show the converters' output (always in each export.log)")
    p.add_argument(
        "--app",
        choices=("android", "ios"),
        help="also install the artifacts into a demo app and re-record the app's golden cases of them",
    )
    p.add_argument(
        "--no-app-fixtures",
        dest="app_fixtures",
        action="store_false",
        help="with --app: install only; print the command that re-records the golden cases",
    )
    return p


def request_from_args(args):
    """The ``ExportRequest`` the command line asks for."""

    asked = ["fp32" if q == "none" else q for q in args.quantize]
    precisions = PRECISIONS if "all" in asked else tuple(dict.fromkeys(asked))
    formats = all_formats(precisions) if "all" in args.format else tuple(args.format)
    jobs = args.jobs if args.jobs else min(len(formats), os.cpu_count() or 1)
    int8 = Int8Options.from_words(
        args.keep_float,
        calib=args.calib,
        calib_count=args.calib_count,
        calib_method=args.calib_method,
        min_agreement=args.min_agreement,
        search_data=args.search_data,
    )
    return ExportRequest(
        checkpoint=args.weights,
        formats=formats,
        precisions=precisions,
        out=args.out,
        force=args.force,
        int8=int8,
        input_mode=args.input_mode,
        verify=args.verify,
        verify_data=args.verify_data,
        threads=args.threads,
        jobs=jobs,
        verbose=args.verbose,
    )


def all_formats(precisions) -> tuple[str, ...]:
    """``--format all``: the formats installed here that take every precision asked for (the others
    are named on stderr: ask for them by name)."""
    chosen = []
    for fmt in FORMATS:
        backend = get_backend(fmt)
        why = backend.unavailable()
        lacking = [p for p in precisions if p not in backend.PRECISIONS]
        if why or lacking:
            print(
                f"mvit-export: note: --format all leaves out {fmt}: "
                f"{why or 'it has no ' + ', '.join(lacking) + ' precision'}",
                file=sys.stderr,
            )
        else:
            chosen.append(fmt)
    return tuple(chosen)


def render(results) -> str:
    """The result table, then per artifact: its path and what its parity figures rest on."""
    rows = [("format", "precision", "MB", "s", "agree", "top5", "cosine", "status")]
    for r in results:
        p = r.parity
        agree = "-" if p is None else (f"{p.top1_agreement:.4f}" if p.agreement_gated else "n/a")
        rows.append(
            (
                r.format,
                r.precision,
                f"{r.size_bytes / 1e6:.2f}",
                f"{r.seconds:.0f}",
                agree,
                f"{p.top5_overlap:.4f}" if p else "-",
                f"{p.cosine:.6f}" if p else "-",
                r.status,
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    for r in results:
        lines.append(f"{r.format} {r.precision}: {r.artifact}")
        p = r.parity
        if p is not None:
            lines.append(f"  parity on {p.data} ({p.space}{'; ' + p.numerics if p.numerics else ''})")
            if not p.agreement_gated:
                lines.append(
                    "  generated images say nothing about top-1 agreement (near-tie classes): gated on "
                    "cosine only; for a real check pass --verify-data DIR (class folders also give accuracy)"
                )
            if p.float_accuracy is not None:
                lines.append(f"  top-1 accuracy: float {p.float_accuracy:.4f}, artifact {p.artifact_accuracy:.4f}")
            for f in p.failures:
                lines.append(f"  FAILED: {f}")
            if p.changed and p.agreement_gated and p.failures:
                shown = ", ".join(f"{c['image']} ({c['float_margin']:.3f})" for c in p.changed[:5])
                more = f" and {len(p.changed) - 5} more" if len(p.changed) > 5 else ""
                lines.append(
                    f"  top-1 changed on: {shown}{more} (float top-1 minus top-2 in brackets; near 0 = "
                    f"a near-tie; all in model_meta.json parity.changed)"
                )
        for n in r.notes:
            lines.append(f"  note: {n}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point of ``mvit-export``."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or one line about a bad option (already printed)
        return e.code

    def fail(msg) -> int:
        print(f"mvit-export: error: {msg}", file=sys.stderr)
        return 2

    try:
        request = request_from_args(args).check()
        slots = _app_slots(args.app, request) if args.app else None
        results = export_model(request)
        if args.app:
            for r in results:
                dest = install_into_app(r.folder, args.app, variant=slots[(r.format, r.precision)])
                print(f"installed {r.format} {r.precision} into the {args.app} app: {dest['model']}")
            after_install(args.app, sorted(set(slots.values())), args.app_fixtures)
    except (ExportError, ImageFolderError, CheckpointError, ValueError, OSError) as e:
        return fail(e)
    print(render(results))
    failed = [r for r in results if r.parity is not None and not r.parity.passed]
    if failed:
        print(
            f"mvit-export: error: {len(failed)} artifact(s) failed the parity check "
            f"({', '.join(f'{r.format} {r.precision}: {r.parity.failures[0]}' for r in failed)}); "
            f"files kept and marked status=failed-parity",
            file=sys.stderr,
        )
        return 1
    return 0


def _app_slots(app: str, request) -> dict:
    """(format, precision) -> the app slot it goes to; refuses what the app cannot use before any export."""

    return plan_install(app, request.formats, request.precisions)


if __name__ == "__main__":
    sys.exit(main())
