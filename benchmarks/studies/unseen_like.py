"""Do the int8 search's samples stand in for photos the model never saw?

For each float set and each sample source, the int8 model's agreement with the float model, the float
margins (top-1 minus runner-up; their median and 10th percentile), the spread of the int8 error of the
margin and the expected flips per 1000 samples (``mvit.quant.search.expected_flips``). Sources: the
held-out calibration-folder images with their mirror images (the search's samples before the
"unseen-like" rule), unseen-like views of the same images (``mvit.quant.plan.search_samples``), and the
verification images. Routes: ``onnxruntime-qdq`` (the exported ONNX int8 in onnxruntime) or ``pt2e`` (the
search's simulated PT2E graph).

    python benchmarks/studies/unseen_like.py --route onnxruntime-qdq --calib ../shared/data/trashnet6/train \
        --val ../shared/data/trashnet6/val --set six=conv_1,layer_1.0 --set none= --out report.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mvit.benchmarks.matrix import cpu_info
from mvit.benchmarks.script_args import emit_report
from mvit.export.backends import onnx_backend
from mvit.export.base import ExportCache, ExportJob
from mvit.export.parity import torch_logits
from mvit.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from mvit.model.export_prep import prepare_for_export
from mvit.model.images import image_files, load_pixels
from mvit.model.preprocess import normalize_hwc_uint8
from mvit.quant import onnx_qdq
from mvit.quant.plan import HELDOUT_IMAGES, SEARCH_BATCH, search_samples, search_simulation
from mvit.quant.pt2e import model_input_range
from mvit.quant.search import expected_flips, margins


def _runner(route: str, net, meta, calib: np.ndarray, pixels: np.ndarray, method: str):
    """``run(float_units) -> logits`` of ``route``'s int8 model on ``pixels``, calibrated with ``method``."""
    c = meta.contract
    if route == "onnxruntime-qdq":
        job = ExportJob(net, meta, "int8", "float-nchw", calib, method, (), ExportCache())
        return onnx_qdq.int8_search_runner(job, pixels, onnx_backend.fp32_model(job))
    sim = search_simulation(net, torch.from_numpy(normalize_hwc_uint8(calib, c)), model_input_range(c), method=method)
    x = torch.from_numpy(normalize_hwc_uint8(pixels, c))

    def run(float_units) -> np.ndarray:
        sim.set_float(float_units)
        return sim.run(x, SEARCH_BATCH).numpy()

    return run


def _row(set_name: str, source: str, out: np.ndarray, ref: np.ndarray) -> str:
    o, r = torch.from_numpy(out).double(), torch.from_numpy(ref).double()
    top = r.argmax(1)
    m = margins(r, top)
    e = margins(o, top) - m
    agree = float((o.argmax(1) == top).double().mean())
    return (
        f"| {set_name} | {source} | {len(r)} | {100 * agree:.2f} | {float(m.median()):.2f} | "
        f"{float(m.quantile(0.1)):.2f} | {float(e.std()):.3f} | {1000 * expected_flips(o, r) / len(r):.2f} |"
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--route", choices=("onnxruntime-qdq", "pt2e"), required=True)
    ap.add_argument("--weights", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--calib", required=True, help="calibration folder (the held-out images come from it)")
    ap.add_argument("--calib-count", type=int, default=256)
    ap.add_argument("--val", required=True, help="images the model never saw")
    ap.add_argument("--set", action="append", required=True, help="NAME=unit,unit,... (NAME= : all int8)")
    ap.add_argument("--calib-method", help="default: the route's export default (pt2e histogram, onnx min-max)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = {s.split("=", 1)[0]: [u for u in s.split("=", 1)[1].split(",") if u] for s in args.set}
    ck = load_checkpoint(args.weights)
    c, net = ck.meta.contract, prepare_for_export(ck.model)
    files = image_files(args.calib)
    calib, used = load_pixels(files, c, args.calib_count)
    held, _ = load_pixels([f for f in files if f not in set(used)], c, HELDOUT_IMAGES)
    val, _ = load_pixels(image_files(args.val), c, None)
    sources = {
        "held-out + mirrored": search_samples(held),
        "unseen-like views": search_samples(held, unseen_like=True),
        "verification images": val,
    }
    method = args.calib_method or ("min-max" if args.route == "onnxruntime-qdq" else "histogram")
    rows = []
    for source, px in sources.items():
        ref = torch_logits(net, px, c)
        run = _runner(args.route, net, ck.meta, calib, px, method)
        rows += [_row(name, source, run(units), ref) for name, units in sets.items()]
    cpu, isa = cpu_info()
    text = "\n".join(
        [
            f"Route {args.route} ({method} calibration), {args.weights}, {len(calib)} calibration images of {args.calib}, "
            f"{len(held)} held out, verification {args.val}; {time.strftime('%Y-%m-%d')}, {cpu} ({' '.join(isa)}).",
            "",
            "| float set | samples | n | agreement % | margin median | margin p10 | int8 margin error std | "
            "expected flips / 1000 |",
            "|---|---|---|---|---|---|---|---|",
            *sorted(rows),
            "",
            "Sets: " + "; ".join(f"{n}: {', '.join(u) or 'every layer int8'}" for n, u in sets.items()),
        ]
    )
    emit_report(text, args.out)


if __name__ == "__main__":
    main()
