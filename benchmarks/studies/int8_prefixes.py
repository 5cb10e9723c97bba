"""Flips of int8 float sets on two disjoint halves of an image set: how well a search on one half
predicts the other (benchmarks/results/int8_search.md, "Search target").

For each prefix length k of the search's ranked order (stored in the checkpoint's ``<name>.int8.json``
for the route), the route's own int8 model with those k units float is run on every image of both
halves and on their mirror images; a flip is an image whose top-1 differs from the float model's.
Beside each count, the flips expected from the float margins and the int8 error's spread
(``mvit.quant.search.expected_flips``), which near-ties do not make jump.

    python benchmarks/studies/split_halves.py ../shared/data/trashnet6/val VALSPLIT
    python benchmarks/studies/int8_prefixes.py --route onnxruntime-qdq --prefixes 0,8,12,14,16,18,24,33 \\
        --calib ../shared/data/trashnet6/train --search VALSPLIT/search --verify VALSPLIT/verify
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def prefix_runner(route: str, net, meta, calib: np.ndarray, pixels: np.ndarray, recipe=None):
    """``run(float_units) -> logits`` on ``pixels`` for ``route``: onnxruntime QDQ, or the PT2E simulation
    the search measures TFLite / Core ML / ExecuTorch int8 with (``recipe``: its float rewrites)."""
    import torch

    from mvit.model.preprocess import normalize_hwc_uint8

    if route == "onnxruntime-qdq":
        from mvit.export.backends.onnx_backend import fp32_model
        from mvit.export.base import ExportJob
        from mvit.quant.onnx_qdq import int8_search_runner

        job = ExportJob(net, meta, "int8", "float-nchw", calib, "min-max", ())
        return int8_search_runner(job, pixels, fp32_model(job))
    from mvit.quant.plan import SEARCH_BATCH, search_simulation
    from mvit.quant.pt2e import model_input_range

    sim = search_simulation(
        net, torch.from_numpy(normalize_hwc_uint8(calib, meta.contract)), model_input_range(meta.contract), recipe
    )
    x = torch.from_numpy(normalize_hwc_uint8(pixels, meta.contract))

    def run(float_units) -> np.ndarray:
        sim.set_float(float_units)
        return sim.run(x, SEARCH_BATCH).numpy()

    return run


def measure(args) -> dict:
    """Flips per prefix on each half, plain and mirrored."""
    import torch

    from mvit.export.parity import torch_logits
    from mvit.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from mvit.model.export_prep import prepare_for_export
    from mvit.model.images import image_files, load_pixels
    from mvit.quant.plan import search_cache_key, search_samples
    from mvit.quant.search import cache_path, expected_flips

    torch.set_num_threads(args.threads)
    weights = Path(args.weights or DEFAULT_CHECKPOINT)
    ckpt = load_checkpoint(weights)
    entries = json.loads(cache_path(weights).read_text())["entries"]
    key = search_cache_key(args.route, args.min_agreement)
    if key not in entries:
        raise SystemExit(f"{cache_path(weights)}: no search result {key!r}; run the export's search first")
    order = entries[key]["order"]
    too_long = [k for k in args.prefixes if not 0 <= k <= len(order)]
    if too_long:
        raise SystemExit(f"--prefixes {too_long}: the cached order has {len(order)} unit(s) (0 to {len(order)})")
    c = ckpt.meta.contract
    calib, _ = load_pixels(image_files(args.calib), c, args.calib_count)
    halves = {
        name: load_pixels(image_files(folder), c, None)[0]
        for name, folder in (("search", args.search), ("verify", args.verify))
    }
    pixels = np.concatenate([search_samples(px) for px in halves.values()])
    net = prepare_for_export(ckpt.model)
    ref_logits = torch_logits(net, pixels, c)
    ref = ref_logits.argmax(1)
    recipe = None
    if args.smooth_alpha or args.balance_attention:
        from mvit.quant.ptq import Recipe

        recipe = Recipe(smooth_alpha=args.smooth_alpha, balance_attention=args.balance_attention)
    run = prefix_runner(args.route, net, ckpt.meta, calib, pixels, recipe)
    bounds, start = {}, 0
    for name, px in halves.items():
        n = len(px)
        bounds[name] = {"plain": slice(start, start + n), "mirrored": slice(start + n, start + 2 * n)}
        start += 2 * n
    rows = []
    for k in args.prefixes:
        t0 = time.perf_counter()
        logits = run(order[:k])
        flips = logits.argmax(1) != ref
        rows.append(
            {
                "k": k,
                "added": order[k - 1] if k else "-",
                **{f"{h}_{v}": int(flips[s].sum()) for h, b in bounds.items() for v, s in b.items()},
                **{
                    f"{h}_{v}_expected": round(expected_flips(logits[s], ref_logits[s]), 2)
                    for h, b in bounds.items()
                    for v, s in b.items()
                },
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(f"k={k}: {rows[-1]}", file=sys.stderr, flush=True)
    return {
        "route": args.route,
        "key": key,
        "smooth_alpha": args.smooth_alpha,
        "balance_attention": args.balance_attention,
        "sizes": {h: len(px) for h, px in halves.items()},
        "rows": rows,
    }


def render(rep: dict) -> str:
    """Markdown table of ``measure``'s result."""
    s, v = rep["sizes"]["search"], rep["sizes"]["verify"]
    recipe = f", SmoothQuant alpha {rep['smooth_alpha']}" if rep.get("smooth_alpha") else ""
    recipe += ", attention balanced" if rep.get("balance_attention") else ""
    out = [
        f"Route `{rep['route']}` (cache entry `{rep['key']}`{recipe}): flips of {s} search and {v} verify images, "
        "plain / mirrored; all = both halves plain.",
        "",
        "| k float units | last unit added | search flips | verify flips | expected search / verify flips "
        "(plain) | agreement, both halves plain |",
        "|---|---|---|---|---|---|",
    ]
    for r in rep["rows"]:
        plain = r["search_plain"] + r["verify_plain"]
        out.append(
            f"| {r['k']} | {r['added']} | {r['search_plain']} / {r['search_mirrored']} | "
            f"{r['verify_plain']} / {r['verify_mirrored']} | {r['search_plain_expected']:.1f} / "
            f"{r['verify_plain_expected']:.1f} | {100 * (1 - plain / (s + v)):.2f}% |"
        )
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    """Print the table; ``--json`` also writes the numbers."""
    from mvit.quant.plan import DEFAULT_MIN_AGREEMENT, ROUTES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--route", choices=ROUTES, required=True)
    ap.add_argument(
        "--prefixes",
        type=lambda t: [int(x) for x in t.split(",")],
        required=True,
        help="comma-separated prefix lengths of the ranked order",
    )
    ap.add_argument("--weights", help="checkpoint (default: the shipped model); its int8 cache gives the order")
    ap.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT, help="the cache entry's gate")
    ap.add_argument("--calib", required=True)
    ap.add_argument("--calib-count", type=int, default=256)
    ap.add_argument("--search", required=True, help="the half the search measured on")
    ap.add_argument("--verify", required=True, help="the other half")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--smooth-alpha",
        type=float,
        default=0.0,
        help="pt2e: SmoothQuant alpha for LayerNorm -> linear in the simulation (0: off, as exported)",
    )
    ap.add_argument(
        "--balance-attention",
        action="store_true",
        help="pt2e: even out each fused qkv output's query/key/value ranges in the simulation "
        "(mvit.quant.smooth.balance_attention_; off, as exported)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not 0 <= args.smooth_alpha <= 1:
        ap.error(f"--smooth-alpha {args.smooth_alpha}: use a value in [0, 1]")
    if (args.smooth_alpha or args.balance_attention) and args.route != "pt2e":
        ap.error("--smooth-alpha and --balance-attention apply to the pt2e route's simulation only")
    rep = measure(args)
    if args.json:
        args.json.write_text(json.dumps(rep, indent=1) + "\n")
    print(render(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
