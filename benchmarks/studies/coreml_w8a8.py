"""Core ML W8A8 on real images: PT2E vs coremltools' own activation calibration (issue #7).

Every variant is built by the exporter itself (``export.api.export_model``, Core ML, int8) from the
same calibration images (the first ``--calib-count`` of ``--calib`` in the loader's seeded order,
``export/calibration.py``), then run on every ``--val`` image by mvit's reference interpreter in
fp16 mode, and compared with the float PyTorch model:

  fp16                   float reference row: the fp16 Core ML model, no quantization
  pt2e-stem-float        PT2E (histogram observers), conv_1/layer_1/layer_2 float: the default today
  pt2e-all-int8          PT2E, everything int8 (--keep-float none)
  pt2e-minmax-stem-float PT2E with min/max observers (--calib-method min-max), stem float
  ct-stem-float          coremltools linear_quantize_activations, coremltools' documented settings
                         (symmetric activations), the same ops float, min/max over all images
  ct-all-int8            the same, everything int8
  ct-affine-stem-float   ct-stem-float with affine activations (mode "linear": a zero point, like
                         PT2E's): what --calib-method coremltools builds
  ct-affine-all-int8     the same, everything int8
  ct-asis-stem-float     ct-stem-float / ct-all-int8 with coremltools 9.0 as shipped: activation
  ct-asis-all-int8       ranges from the last calibration image only (export/coreml_interp/calibrate.py)

Metrics: top-1 agreement with the float model, top-1 accuracy against the folder labels, cosine of
the centred log-probabilities (mean over images, as mvit-export reports it), mean KL(float || int8),
package size, export time (calibration + conversion + quantization, no parity check).

Run (tens of minutes on 2 cores; one result file per variant under --out, reused unless --force):
  python benchmarks/studies/coreml_w8a8.py --calib /work/shared/data/trashnet6/train \\
      --val /work/shared/data/trashnet6/val --calib-count 256 --out runs/coreml_w8a8
The table is printed and written to <out>/table.md (benchmarks/results/coreml_w8a8.md holds a run).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

VARIANTS = {
    "fp16": dict(precision="fp16"),
    "pt2e-stem-float": dict(calib_method="histogram", keep_float=()),
    "pt2e-all-int8": dict(calib_method="histogram", keep_float=("none",)),
    "pt2e-minmax-stem-float": dict(calib_method="min-max", keep_float=()),
    "ct-stem-float": dict(calib_method="coremltools", keep_float=(), activation_mode="linear_symmetric"),
    "ct-all-int8": dict(calib_method="coremltools", keep_float=("none",), activation_mode="linear_symmetric"),
    "ct-affine-stem-float": dict(calib_method="coremltools", keep_float=(), activation_mode="linear"),
    "ct-affine-all-int8": dict(calib_method="coremltools", keep_float=("none",), activation_mode="linear"),
    "ct-asis-stem-float": dict(
        calib_method="coremltools", keep_float=(), as_shipped=True, activation_mode="linear_symmetric"
    ),
    "ct-asis-all-int8": dict(
        calib_method="coremltools", keep_float=("none",), as_shipped=True, activation_mode="linear_symmetric"
    ),
}


@contextmanager
def activation_mode(mode: str | None):
    """The coremltools route's activation mode (the backend's default unless given)."""
    from mvit.export.backends import coreml_backend

    original = coreml_backend.CT_ACTIVATION_MODE
    coreml_backend.CT_ACTIVATION_MODE = mode or original
    try:
        yield
    finally:
        coreml_backend.CT_ACTIVATION_MODE = original


@contextmanager
def coremltools_as_shipped():
    """The coremltools route without mvit's range fix: coremltools 9.0's last-sample ranges."""
    import mvit.export.coreml_interp as ci

    original = ci.calibrate_activations_linux
    ci.calibrate_activations_linux = functools.partial(original, accumulate=False)
    try:
        yield
    finally:
        ci.calibrate_activations_linux = original


def build(name: str, args) -> dict:
    from mvit.export.api import export_model

    v = VARIANTS[name]
    precision = v.get("precision", "int8")
    with coremltools_as_shipped() if v.get("as_shipped") else nullcontext(), activation_mode(v.get("activation_mode")):
        r = export_model(
            checkpoint=args.weights,
            formats=("coreml",),
            precisions=(precision,),
            out=Path(args.out) / name,
            calib=args.calib,
            calib_count=args.calib_count,
            calib_method=v.get("calib_method"),
            keep_float=v.get("keep_float", ()),
            verify=False,
            force=True,
        )[0]
    details = r.meta.get("quantization_details", {})
    return {
        "artifact": str(r.artifact),
        "size_bytes": r.size_bytes,
        "export_seconds": round(r.seconds, 1),
        "calibration_seconds": details.get("calibration_seconds"),
        "details": details,
    }


def evaluate(artifact: str, pixels: np.ndarray, log) -> tuple[np.ndarray, float]:
    """Scores of every image from the reference interpreter in fp16 mode; seconds per image."""
    from mvit.export import coreml_interp

    interp = coreml_interp.Interpreter(artifact)
    name = next(iter(interp.program.inputs))
    out = []
    t0 = time.perf_counter()
    for i, px in enumerate(pixels):
        feed = px.transpose(2, 0, 1)[None].astype(np.float32)  # image input: 0..255 RGB, NCHW
        out.append(coreml_interp.scores(interp.execute({name: feed}, "fp16"), interp.program))
        if (i + 1) % 50 == 0:
            log(f"    {i + 1}/{len(pixels)} images, {(time.perf_counter() - t0) / (i + 1):.2f} s each")
    return np.stack(out), (time.perf_counter() - t0) / len(pixels)


def metrics(ref_logits: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> dict:
    from mvit.export.parity import compare

    rep = compare(ref_logits, probs, "probabilities", labels, "int8")
    return {
        "n": rep.n,
        "top1_agreement": rep.top1_agreement,
        "accuracy": rep.artifact_accuracy,
        "float_accuracy": rep.float_accuracy,
        "cosine": rep.cosine,
        "kl_mean": rep.kl_mean,
        "disagreements": int(round((1 - rep.top1_agreement) * rep.n)),
    }


def render(rows: dict, meta: dict) -> str:
    lines = [
        "| variant | top-1 agreement | top-1 accuracy | cosine | KL | size MB | export s | calibration s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        r = rows.get(name)
        if r is None:
            continue
        m = r["metrics"]
        calib = r.get("calibration_seconds")
        lines.append(
            f"| {name} | {m['top1_agreement'] * 100:.2f}% ({m['disagreements']}/{m['n']} differ) | "
            f"{m['accuracy'] * 100:.2f}% | {m['cosine']:.5f} | {m['kl_mean']:.4f} | "
            f"{r['size_bytes'] / 1e6:.2f} | {r['export_seconds']:.0f} | "
            f"{'-' if calib is None else f'{calib:.0f}'} |"
        )
    lines.append("")
    lines.append(
        f"Float PyTorch model: top-1 accuracy {meta['float_accuracy'] * 100:.2f}% on the same "
        f"{meta['n_val']} images. Interpreter: {meta['seconds_per_image']:.2f} s per image (fp16 mode)."
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", help="checkpoint (default: the shipped model)")
    p.add_argument("--calib", required=True, help="calibration images (class folders)")
    p.add_argument("--val", required=True, help="labelled evaluation images (class folders)")
    p.add_argument("--calib-count", type=int, default=256)
    p.add_argument("--limit", type=int, help="evaluate on the first N val images only (smoke runs)")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), help="variants to run (default: all)")
    p.add_argument("--out", default="runs/coreml_w8a8")
    p.add_argument("--force", action="store_true", help="rebuild variants that already have results")
    args = p.parse_args(argv)

    from mvit.export.parity import torch_logits
    from mvit.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from mvit.model.images import image_files, labelled_indices, load_pixels

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(Path(args.weights) if args.weights else DEFAULT_CHECKPOINT)
    files = image_files(args.val)
    pixels, used = load_pixels(files, ckpt.meta.contract, args.limit)
    labels = labelled_indices(used, args.val, ckpt.meta.labels)
    if labels is None:
        raise SystemExit(f"{args.val}: class folders must be named after the model's labels")
    ref = torch_logits(ckpt.model.eval(), pixels, ckpt.meta.contract)
    log(f"{len(pixels)} val images; float top-1 accuracy {np.mean(ref.argmax(1) == labels):.4f}")

    rows = {}
    for name in args.only or list(VARIANTS):
        res = out / f"{name}.json"
        if res.exists() and not args.force:
            row = json.loads(res.read_text())
            if row["metrics"]["n"] == len(pixels):
                rows[name] = row
                log(f"{name}: reusing {res}")
                continue
        log(f"{name}: exporting ...")
        row = build(name, args)
        log(f"{name}: exported in {row['export_seconds']:.0f} s ({row['size_bytes'] / 1e6:.2f} MB); evaluating ...")
        probs, per_image = evaluate(row["artifact"], pixels, log)
        np.save(out / f"{name}.scores.npy", probs)
        row.update(
            metrics=metrics(ref, probs, labels),
            seconds_per_image=round(per_image, 3),
            calib_count=args.calib_count,
            calib=str(args.calib),
            val=str(args.val),
        )
        res.write_text(json.dumps(row, indent=1, default=str))
        rows[name] = row
        m = row["metrics"]
        log(f"{name}: agreement {m['top1_agreement']:.4f}, accuracy {m['accuracy']:.4f}, cosine {m['cosine']:.5f}")
    speeds = [r["seconds_per_image"] for r in rows.values() if "seconds_per_image" in r]
    table = render(
        rows,
        {
            "float_accuracy": float(np.mean(ref.argmax(1) == labels)),
            "n_val": len(pixels),
            "seconds_per_image": float(np.median(speeds)) if speeds else float("nan"),
        },
    )
    print(table)
    (out / "table.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
