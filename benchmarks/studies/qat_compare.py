"""Quantization-aware fine-tuning against post-training int8, every convolution and linear layer int8.

For one float checkpoint and a QAT checkpoint fine-tuned from it (``mvit-train --qat --init FLOAT``),
this exports int8 TFLite, ONNX and Core ML through ``mvit.export`` and measures each artifact against
the float checkpoint (not the QAT checkpoint's own float weights: the question is how often the int8
model on the phone predicts what the float model does) on every image of ``--val``:

- PTQ, histogram and min-max calibration: ``mvit-export --quantize int8 --keep-float none
  [--calib-method min-max]`` on the float checkpoint (PT2E for TFLite and Core ML; onnxruntime's
  QDQ on the op types mvit quantizes for ONNX);
- PTQ through the QAT checkpoints' ONNX route: the same PT2E graph (histogram), written as QDQ by
  torch.onnx (``onnx_backend.export_pt2e_qdq`` without learned ranges), so ONNX is compared like
  for like;
- QAT: ``mvit-export --quantize int8`` on the QAT checkpoint (its learned ranges, all int8).

All calibrate on the same ``--calib-count`` images of ``--calib``. Core ML runs in mvit's reference
interpreter here (no Core ML runtime off macOS), on the first ``--coreml-images`` images.

    python benchmarks/studies/qat_compare.py --float model/weights/mobilevit_xxs_trashnet6.safetensors \\
        --qat runs/qat/last.safetensors --calib ../shared/data/trashnet6/train \\
        --val ../shared/data/trashnet6/val --out benchmarks/results

writes ``qat.md`` and ``qat.json`` (with the QAT run's own summary.json, when beside the checkpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mvit.benchmarks.census import census, heavy_ops

FORMATS = ("tflite", "onnx", "coreml")


def _evaluate(artifact: Path, pixels: np.ndarray, threads: int) -> np.ndarray:
    from mvit.export.api import load_artifact_runner

    runner = load_artifact_runner(artifact, threads)
    try:
        return np.concatenate([runner.run(pixels[i : i + 1]) for i in range(len(pixels))])
    finally:
        runner.close()


def _export(say, **kw) -> list:
    from mvit.export.api import export_model
    from mvit.export.request import ExportRequest

    return export_model(ExportRequest.of(precisions=("int8",), verify=False, force=True, **kw), say=say)


def _pt2e_onnx_ptq(weights: Path, calib_pixels: np.ndarray, out: Path) -> tuple[Path, float]:
    """The PT2E graph (histogram, nothing float) as QDQ ONNX: the QAT ONNX route with calibrated ranges."""
    from mvit.export.backends import onnx_backend
    from mvit.export.base import ExportJob
    from mvit.export.metadata import build_meta
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.export_prep import prepare_for_export

    ck = load_checkpoint(weights)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    t0 = time.perf_counter()
    job = ExportJob(prepare_for_export(ck.model), ck.meta, "int8", "float-nchw", calib_pixels, "histogram", ())
    io = onnx_backend.export_pt2e_qdq(job, path)
    seconds = time.perf_counter() - t0
    onnx_backend.embed_metadata(path, build_meta(ck.meta, io, "onnx", "int8", ck.sha256))
    return path, seconds


def run(args, say) -> dict:
    import torch

    from mvit.export.backends import get_backend
    from mvit.export.parity import torch_logits
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.images import image_files, labelled_indices, load_pixels

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    flt = load_checkpoint(args.float)
    contract = flt.meta.contract
    val, used = load_pixels(image_files(args.val), contract, None)
    labels = labelled_indices(used, args.val, flt.meta.labels)
    ref = torch_logits(flt.model, val, contract)
    qat = load_checkpoint(args.qat)
    own = torch_logits(qat.model, val, contract)
    common = {"calib": Path(args.calib), "calib_count": args.calib_count, "threads": args.threads}
    arts = []  # (label, format, path, export seconds)
    for label, ckpt, extra in (
        ("PTQ histogram", args.float, {"keep_float": ("none",)}),
        ("PTQ min-max", args.float, {"keep_float": ("none",), "calib_method": "min-max"}),
        ("QAT", args.qat, {}),
    ):
        formats = FORMATS if label != "PTQ min-max" else ("tflite", "coreml")
        say(f"exporting {label} ({', '.join(formats)}) ...")
        for r in _export(
            say, checkpoint=Path(ckpt), formats=formats, out=work / label.replace(" ", "-"), **common, **extra
        ):
            arts.append((label, r.format, r.artifact, r.seconds, r.meta.get("quantization_details", {})))
    calib, _ = load_pixels(image_files(args.calib), contract, args.calib_count)
    say("exporting the PT2E PTQ graph as QDQ ONNX ...")
    path, seconds = _pt2e_onnx_ptq(Path(args.float), calib, work / "PTQ-pt2e-onnx")
    arts.append(("PTQ histogram, PT2E QDQ route", "onnx", path, seconds, {}))

    rows = []
    for label, fmt, path, seconds, details in arts:
        runs_here, _ = get_backend(fmt).can_time()  # Core ML off macOS: mvit's (slow) reference interpreter
        n = len(val) if runs_here else min(len(val), args.coreml_images)
        say(f"evaluating {label} {fmt} on {n} images ...")
        t0 = time.perf_counter()
        scores = _evaluate(path, val[:n], args.threads)
        top = scores.argmax(1)
        row = {
            "method": label,
            "format": fmt,
            "artifact": str(path),
            "export_s": round(seconds, 1),
            "eval_s": round(time.perf_counter() - t0, 1),
            "images": n,
            "agreement_with_float": float(np.mean(top == ref[:n].argmax(1))),
            "agreement_with_own_float": float(np.mean(top == (own if label == "QAT" else ref)[:n].argmax(1))),
            "top1": float(np.mean(top == labels[:n])) if labels is not None else None,
            "learned_ranges_applied": details.get("learned_ranges_applied"),
            "calibrated_ranges": details.get("calibrated_ranges"),
        }
        row["census"] = census(path, fmt)
        rows.append(row)
    summary_path = Path(args.qat).parent / "summary.json"
    qat_run = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return {
        "float": str(args.float),
        "float_sha256": flt.sha256,
        "qat": str(args.qat),
        "qat_sha256": qat.sha256,
        "qat_provenance": qat.meta.provenance,
        "qat_run": qat_run,
        "float_top1": float(np.mean(ref.argmax(1) == labels)) if labels is not None else None,
        "qat_float_top1": float(np.mean(own.argmax(1) == labels)) if labels is not None else None,
        "qat_float_agreement": float(np.mean(own.argmax(1) == ref.argmax(1))),
        "calibration": f"{args.calib_count} images of {args.calib}",
        "evaluation": f"{len(val)} images of {args.val}",
        "command": "python benchmarks/studies/qat_compare.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }


def render(rep: dict) -> str:
    run_ = rep.get("qat_run") or {}
    prov = rep.get("qat_provenance") or {}
    lines = [
        "# Quantization-aware fine-tuning vs post-training int8 (every conv and linear int8)",
        "",
        f"Float model `{Path(rep['float']).name}` (top-1 {100 * rep['float_top1']:.2f}% on {rep['evaluation']}); "
        f"QAT checkpoint `{Path(rep['qat']).name}`: `{prov.get('command', '?')}`.",
        f"QAT training: {run_.get('epochs', '?')} epochs, {run_.get('train_time_s', '?')} s of training steps "
        f"on {run_.get('device', '?')} (wall time of the whole run: see the QAT section of the results README); "
        f"its float weights alone: top-1 {100 * rep['qat_float_top1']:.2f}%, agreement with the float model "
        f"{100 * rep['qat_float_agreement']:.2f}%.",
        f"Calibration: {rep['calibration']}. Agreement = same top-1 as the float model.",
        "",
        f"Command: `{rep['command']}`",
        "",
        "| method | format | images | agreement with float | top-1 | export s | convs / matmuls (input dtype) | Q / DQ |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rep["rows"]:
        c = r.get("census")
        lines.append(
            f"| {r['method']} | {r['format']} | {r['images']} | {100 * r['agreement_with_float']:.2f}% | "
            + (f"{100 * r['top1']:.2f}%" if r["top1"] is not None else "")
            + f" | {r['export_s']:.0f} | {heavy_ops(c)} | "
            + (f"{c['quantize']} / {c['dequantize']}" if c else "")
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--float", required=True, help="the float checkpoint the QAT run started from")
    p.add_argument("--qat", required=True, help="the QAT checkpoint (mvit-train --qat --init FLOAT)")
    p.add_argument("--calib", required=True)
    p.add_argument("--calib-count", type=int, default=256)
    p.add_argument("--val", required=True)
    p.add_argument("--coreml-images", type=int, default=407, help="Core ML (reference interpreter): first N images")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="qat-compare-work")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    if min(args.calib_count, args.coreml_images, args.threads) < 1:
        p.error("--calib-count, --coreml-images and --threads must be at least 1")
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    from mvit.benchmarks.peers import write_report

    print(write_report(Path(args.out), "qat", run(args, say), render))
    return 0


if __name__ == "__main__":
    sys.exit(main())
