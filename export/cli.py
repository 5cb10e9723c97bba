"""mvit-export: checkpoint -> ONNX / TFLite / Core ML artifacts, verified against the float model."""
from __future__ import annotations

import argparse
import os
import sys

from mvit.export.backends import FORMATS
from mvit.export.base import INPUT_MODES, PRECISIONS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mvit-export", description=__doc__)
    p.add_argument("--weights", help="mvit checkpoint (.safetensors); default: the shipped garbage-sorting model")
    p.add_argument("--format", default="tflite", choices=FORMATS + ("all",))
    p.add_argument("--quantize", default="none", choices=("none",) + PRECISIONS[1:] + ("all",),
                   help="none = fp32; fp16; dynamic (int8 weights); int8 (weights and activations)")
    p.add_argument("--calib", help="calibration images (class folders or flat); default: data-free (ZeroQ)")
    p.add_argument("--calib-count", type=int, default=256)
    p.add_argument("--calib-method", help="onnx: min-max, percentile, entropy; tflite/coreml: histogram, min-max "
                                          "(PT2E); coreml also: coremltools (its linear_quantize_activations)")
    p.add_argument("--input", dest="input_mode", choices=INPUT_MODES,
                   help="artifact input: float-nchw (normalised tensor), uint8-nhwc (raw pixels, normalisation "
                        "in the model), image (Core ML image). Default: image for Core ML, float-nchw otherwise")
    p.add_argument("--keep-float", action="append", default=[], metavar="NAME",
                   help="module/node name or op type to keep in float (repeatable; accepts mvit-bench's names)")
    p.add_argument("--out", default="out", help="output folder (one subfolder per artifact)")
    p.add_argument("--force", action="store_true", help="replace existing artifacts")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the parity check")
    p.add_argument("--verify-data", help="images for the parity check (default: --calib images not used "
                                         "for calibration, else generated images)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads in all (split between --jobs)")
    p.add_argument("--jobs", type=int, default=0,
                   help="formats exported at once, each in its own process (default: one per format, "
                        "at most the number of CPUs; 1 = one after another in this process)")
    p.add_argument("--app", choices=("android", "ios"), help="also install the artifact into a demo app and "
                                                              "re-record the app's golden cases of it")
    p.add_argument("--no-app-fixtures", dest="app_fixtures", action="store_false",
                   help="with --app: install only; print the command that re-records the golden cases")
    return p


def render(results) -> str:
    """A plain-text table of export results."""
    rows = [("format", "precision", "size MB", "s", "agree", "top5", "cosine", "max|diff|", "status")]
    for r in results:
        p = r.parity
        rows.append((r.format, r.precision, f"{r.size_bytes / 1e6:.2f}", f"{r.seconds:.0f}",
                     f"{p.top1_agreement:.4f}" if p else "-", f"{p.top5_overlap:.4f}" if p else "-",
                     f"{p.cosine:.6f}" if p else "-", f"{p.max_abs_diff:.4g}" if p else "-", r.status))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)) for row in rows]
    for r in results:
        lines.append(f"{r.format} {r.precision}: {r.artifact}")
        if r.parity:
            lines.append(f"  parity on {r.parity.data} ({r.parity.space}{'; ' + r.parity.numerics if r.parity.numerics else ''})")
            if r.parity.float_accuracy is not None:
                lines.append(f"  top-1 accuracy: float {r.parity.float_accuracy:.4f}, artifact {r.parity.artifact_accuracy:.4f}")
            for f in r.parity.failures:
                lines.append(f"  FAILED: {f}")
        for n in r.notes:
            lines.append(f"  note: {n}")
    return "\n".join(lines)


def all_formats(precisions) -> tuple[str, ...]:
    """``--format all``: the formats installed here that take every precision asked for (the others
    are named on stderr: ask for them by name)."""
    from mvit.export.backends import get_backend

    chosen = []
    for fmt in FORMATS:
        backend = get_backend(fmt)
        why = getattr(backend, "unavailable", lambda: None)()
        lacking = [p for p in precisions if p not in backend.PRECISIONS]
        if why or lacking:
            print(f"mvit-export: note: --format all leaves out {fmt}: "
                  f"{why or 'it has no ' + ', '.join(lacking) + ' precision'}", file=sys.stderr)
        else:
            chosen.append(fmt)
    return tuple(chosen)


def main(argv=None) -> int:
    """Entry point of ``mvit-export``."""
    args = build_parser().parse_args(argv)
    from mvit.export.api import ExportError, export_model
    from mvit.quant.calibration import CalibrationError
    from mvit.model.checkpoint import CheckpointError

    q = {"none": "fp32"}.get(args.quantize, args.quantize)
    precisions = PRECISIONS if q == "all" else (q,)
    formats = all_formats(precisions) if args.format == "all" else (args.format,)
    try:
        results = export_model(args.weights, formats, precisions, args.out, args.calib, args.calib_count,
                               args.calib_method, args.input_mode, tuple(args.keep_float), args.verify,
                               args.verify_data, args.force, args.threads,
                               jobs=args.jobs or min(len(formats), os.cpu_count() or 1))
        if args.app:
            from mvit.apps.install import after_install, install_into_app

            variants = []
            for r in results:
                variants.append("int8" if r.precision == "int8" else "float")
                dest = install_into_app(r.folder, args.app, variant=variants[-1])
                print(f"installed {r.format} {r.precision} into the {args.app} app: {dest['model']}")
            if variants:
                after_install(args.app, sorted(set(variants)), args.app_fixtures)
    except (ExportError, CalibrationError, CheckpointError, ValueError, OSError) as e:
        print(f"mvit-export: error: {e}", file=sys.stderr)
        return 2
    print(render(results))
    failed = [r for r in results if r.parity is not None and not r.parity.passed]
    if failed:
        print(f"mvit-export: error: {len(failed)} artifact(s) failed the parity check "
              f"({', '.join(f'{r.format} {r.precision}: {r.parity.failures[0]}' for r in failed)}); "
              f"files kept and marked status=failed-parity", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
