"""Where a model's int8 error comes from, by kind of tensor: the PT2E simulation (what TFLite, Core ML and
ExecuTorch int8 run) with every layer int8, then with one group of activations int8 alone and with
every group but one, counting top-1 flips against the float model and the flips expected from its
margins (``mvit.quant.search.expected_flips``). Groups: the op writing the tensor (``layer_norm``,
``gelu``, ...); linear layers' outputs also by the layer's name (``linear: qkv``, ``linear: fc2``).

    python -m mvit.benchmarks.int8_sources --weights benchmarks/article/checkpoints/vit_tiny_trashnet6_fp16.safetensors \\
        --calib ../shared/data/trashnet6/train --data ../shared/data/trashnet6/val

A group whose activations alone flip many images is where a float layer, another range or another
graph helps; one whose removal changes little is not worth float layers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from ..export.parity import torch_logits
from ..model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from ..model.export_prep import prepare_for_export
from ..model.images import image_files, load_pixels
from ..model.preprocess import normalize_hwc_uint8
from ..quant.plan import SEARCH_BATCH, SEARCH_CALIB_IMAGES, search_simulation
from ..quant.pt2e import model_input_range
from ..quant.search import expected_flips
from .script_args import fail


def groups(sim) -> dict[str, list[str]]:
    """Activation point names of ``sim`` by the kind of tensor they quantize."""
    out: dict[str, list[str]] = defaultdict(list)
    for name, p in sim.acts.items():
        op = "requantize" if p.requant or not p.op else p.op
        if op == "linear" and p.producer:
            op = f"linear: {p.producer.rsplit('.', 1)[-1]}"
        out[op].append(name)
    return dict(out)


def measure(sim, x, ref: np.ndarray, batch: int) -> list[dict]:
    """Rows: every layer int8, weights only, activations only, then per group alone and all but it."""

    def row(what: str, n: int | None = None) -> dict:
        out = sim.run(x, batch).numpy()
        cos = np.sum(out * ref, 1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
        return {
            "what": what,
            "points": n,
            "flips": int((out.argmax(1) != ref.argmax(1)).sum()),
            "expected": round(expected_flips(out, ref), 2),
            "cosine": round(float(cos.mean()), 6),
        }

    rows = []
    sim.enable_all()
    rows.append(row("every layer int8"))
    sim.enable_all(acts=False)
    rows.append(row("weights only"))
    sim.enable_all(weights=False)
    rows.append(row("activations only"))
    for g, names in sorted(groups(sim).items()):
        sim.enable_all(acts=False)
        for n in names:
            sim.acts[n].enabled = True
        alone = row(g, len(names))
        sim.enable_all()
        for n in names:
            sim.acts[n].enabled = False
        rows.append({**alone, "without": row(g)})
    sim.enable_all()
    return rows


def render(rep: dict) -> str:
    """Markdown table of ``measure``'s rows, groups by the flips they cause alone (most first)."""
    n = rep["images"]
    out = [
        f"{rep['weights']}: {n} images of {rep['data']}, PT2E simulation calibrated on {rep['calib_images']} "
        "images; flips = top-1 changed from float; expected = from the float margins and the int8 error's spread.",
        "",
        "| int8 | tensors | flips | expected | cosine | flips / expected with this group float |",
        "|---|---:|---:|---:|---:|---|",
    ]
    head, rest = rep["rows"][:3], sorted(rep["rows"][3:], key=lambda r: -r["expected"])
    for r in head:
        out.append(f"| {r['what']} | | {r['flips']} | {r['expected']:.1f} | {r['cosine']:.5f} | |")
    for r in rest:
        w = r["without"]
        out.append(
            f"| only {r['what']} | {r['points']} | {r['flips']} | {r['expected']:.1f} | {r['cosine']:.5f} | "
            f"{w['flips']} / {w['expected']:.1f} |"
        )
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    """Print the table; ``--json`` also writes the numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument(
        "--calib",
        required=True,
        help=f"calibration images (the simulation uses the first {SEARCH_CALIB_IMAGES}, as the int8 search does)",
    )
    ap.add_argument("--data", required=True, help="images the flips are counted on")
    ap.add_argument(
        "--max-images",
        type=int,
        default=None,
        help="at most this many --data images (image_files' seeded order); each of the ~30 simulations runs them all",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    for name, value in (("--threads", args.threads), ("--max-images", args.max_images)):
        if value is not None and value < 1:
            fail("int8_sources", f"{name} {value}: use 1 or more")
    torch.set_num_threads(args.threads)
    try:
        ckpt = load_checkpoint(Path(args.weights))
        c = ckpt.meta.contract
        calib, _ = load_pixels(image_files(args.calib), c, SEARCH_CALIB_IMAGES)
        pixels, _ = load_pixels(image_files(args.data), c, args.max_images)
    except Exception as e:  # noqa: BLE001 - one line for any unreadable input
        print(f"error: {e}", file=sys.stderr)
        return 2
    net = prepare_for_export(ckpt.model)
    ref = np.asarray(torch_logits(net, pixels, c))
    sim = search_simulation(net, torch.from_numpy(normalize_hwc_uint8(calib, c)), model_input_range(c))
    rows = measure(sim, torch.from_numpy(normalize_hwc_uint8(pixels, c)), ref, SEARCH_BATCH)
    rep = {
        "weights": Path(args.weights).name,
        "data": str(args.data),
        "images": int(len(pixels)),
        "calib_images": int(len(calib)),
        "threads": args.threads,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(rep, indent=1) + "\n")
    print(render(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
