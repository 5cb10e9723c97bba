"""ONNX int8 variants of one MobileViT: size, latency vs fp32, agreement and top-1 (onnx_int8_variants.md).

    python benchmarks/studies/onnx_int8_variants.py --calib /work/shared/data/trashnet6/train \
        --verify-data /work/shared/data/trashnet6/val

Every variant is built by the ONNX backend from one simplified fp32 graph, with the same calibration
images and 8-bit weights (as when the first table was made; ``--reduce-range``: 7-bit, as mvit-export
writes them); a variant changes only which modules stay
float (``--keep-float``, or the float set mvit-export's search chose), which op types are quantized, and how the float-kept weights are stored
(``compress_float_weights`` applied to the exported file). Latency: all sessions in this process at ``--threads`` threads,
timed interleaved round by round (rotating order), ``--repeats`` times (0: not timed); the median ratio
to fp32 over the repeats is reported with the per-repeat ratios. Agreement: same top-1 as the PyTorch model.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEM = ("conv_1", "layer_1", "layer_2")
MV2 = ("layer_[345].0",)
UNFOLD_FOLD = ("*.local_rep.conv_1x1", "*.conv_proj")
ALL_CONV_KEEP = STEM + MV2 + UNFOLD_FOLD + ("*.local_rep.conv_3x3", "*.fusion", "conv_1x1_exp")

SEARCHED = ("<searched>",)  # the float set mvit-export's int8 search chose for the checkpoint (its cache)
QDQ = ("Conv", "Gemm", "MatMul")  # mvit-export's quantized op types (attention's activation matmuls stay float)

# name: (float-activation modules, op types with QDQ (attention MatMuls float) or a layout of
#        mvit.quant.onnx_qdq.LAYOUTS, float-weight modules or None = no weight-only int8,
#        weight storage for float ops: "castmul" | "dq" | None)
VARIANTS = {
    # the integer chain (issue 26: onnx_int8_integer.md); a float layer's SiLU, adds and concats stay float
    "searched, integer chain (SiLU, adds, reshapes, attention int8)": (SEARCHED, "integer", None, None),
    "searched, integer chain, attention float": (SEARCHED, "integer-float-attention", None, None),
    "searched, SiLU and adds int8": (SEARCHED, "silu", None, None),
    "searched, integer chain as QOperator": (SEARCHED, "integer-qoperator", None, None),
    "nothing float, integer chain": ((), "integer", None, None),
    # the search era (run on an AVX-512 VNNI CPU: onnx_int8_vnni.md)
    "searched float set (mvit-export's default)": (SEARCHED, QDQ, None, None),
    "searched + SiLU int8 (Sigmoid, Mul QDQ)": (SEARCHED, QDQ + ("Sigmoid", "Mul"), None, None),
    "nothing float": ((), QDQ, None, None),
    "nothing float + SiLU and residual Add int8": ((), QDQ + ("Sigmoid", "Mul", "Add"), None, None),
    "linear layers only (Gemm QDQ, every conv float)": ((), ("Gemm",), None, None),
    # the hand-written era (AVX2 CPU, 8-bit weights: onnx_int8_variants.md)
    "old default (float weights)": (STEM + UNFOLD_FOLD, ("Conv",), None, None),
    "old default + int8 weights (DequantizeLinear)": (STEM + UNFOLD_FOLD, ("Conv",), STEM, "dq"),
    "old default + int8 weights (Cast+Mul)": (STEM + UNFOLD_FOLD, ("Conv",), STEM, "castmul"),
    "all non-stem convs QDQ": (STEM, ("Conv",), STEM, "castmul"),
    "QDQ 3x3 + fusion + exp convs (new default)": (STEM + MV2 + UNFOLD_FOLD, ("Conv",), STEM, "castmul"),
    "QDQ fusion convs only": (
        ALL_CONV_KEEP[:-3] + ("*.local_rep.conv_3x3", "conv_1x1_exp"),
        ("Conv",),
        STEM,
        "castmul",
    ),
    "new default + QDQ Gemm": (STEM + MV2 + UNFOLD_FOLD, ("Conv", "Gemm"), STEM, "castmul"),
    "weight-only int8, stem float (no QDQ)": (ALL_CONV_KEEP, ("Conv",), STEM, "castmul"),
    "weight-only int8 everywhere (no QDQ)": (ALL_CONV_KEEP, ("Conv",), (), "castmul"),
}


_CASTMUL = []  # the backend's own compress_float_weights (patched during the run)


def _dq_weights(model, float_weights=(), min_size=128):
    """Like compress_float_weights, but decoded by a weight-only DequantizeLinear (for comparison)."""
    from onnx import helper, numpy_helper

    names = _CASTMUL[0](model, float_weights, min_size)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    drop = {n + s for n in names for s in ("_Cast", "_Mul")}
    nodes = [n for n in g.node if n.name not in drop]
    for name in names:
        scale = numpy_helper.to_array(inits[name + "_scale"])
        axis = int(np.argmax(scale.shape)) if scale.size > 1 else 0
        g.initializer.remove(inits[name + "_scale"])
        g.initializer.extend(
            [
                numpy_helper.from_array(scale.reshape(-1), name + "_scale"),
                numpy_helper.from_array(np.zeros(scale.size, np.int8), name + "_zp"),
            ]
        )
        nodes.insert(
            0,
            helper.make_node(
                "DequantizeLinear",
                [name + "_int8", name + "_scale", name + "_zp"],
                [name],
                name=name + "_DequantizeLinear",
                axis=axis,
            ),
        )
    del g.node[:]
    g.node.extend(nodes)
    return names


def _expand(net, patterns) -> tuple[str, ...]:
    """Module names matching the fnmatch ``patterns`` (plain names as they are)."""
    import fnmatch

    names = [n for n, _ in net.named_modules() if n]
    return tuple(n for p in patterns for n in ([p] if not any(c in p for c in "*?[") else fnmatch.filter(names, p)))


def main(argv=None) -> int:
    """Build every variant, measure it and print (with ``--out`` also write) the Markdown table."""
    import onnx
    from onnx_inputs import load_bench_inputs, onnx_bench_parser
    from onnx_simplifier import interleaved, timed_session

    from mvit.benchmarks.matrix import cpu_line
    from mvit.export.backends import onnx_backend as ob
    from mvit.export.base import ExportCache, ExportJob
    from mvit.export.parity import torch_logits
    from mvit.model.checkpoint import file_sha256
    from mvit.model.images import labelled_indices
    from mvit.quant import Int8Options, int8_plan, onnx_qdq

    ap = onnx_bench_parser(__doc__, rounds=12)
    ap.add_argument("--only", nargs="*", help="variant names to build (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    ap.add_argument("--reduce-range", action="store_true", help="7-bit weights, as mvit-export writes them")
    args = ap.parse_args(argv)
    argv_used = list(sys.argv[1:] if argv is None else argv)

    inp = load_bench_inputs(args)
    ck, net, calib, val, x_val = inp.ckpt, inp.net, inp.calib, inp.val, inp.x_val
    labels = labelled_indices(inp.val_files, args.verify_data, ck.meta.labels)
    ref = torch_logits(ck.model, val, ck.meta.contract).argmax(1)
    searched = tuple(
        int8_plan(
            ob.INT8_ROUTE, net, Int8Options(), checkpoint=Path(args.weights), sha256=file_sha256(args.weights)
        ).float_units
    )
    cache = ExportCache()
    saved = (onnx_qdq.LAYOUT, onnx_qdq.REDUCE_RANGE)
    _CASTMUL[:] = [onnx_qdq.compress_float_weights]
    storage_fn = {None: lambda m, fw=(), min_size=0: [], "dq": _dq_weights, "castmul": onnx_qdq.compress_float_weights}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32 = tmp / "fp32.onnx"
        ob.export(ExportJob(net, ck.meta, "fp32", cache=cache), fp32)
        rows["fp32"] = {"path": fp32, "build_s": 0.0}
        try:
            onnx_qdq.REDUCE_RANGE = args.reduce_range
            for name, (keep, ops, float_weights, storage) in VARIANTS.items():
                if args.only and name not in args.only:
                    continue
                if isinstance(ops, tuple):  # a layout of its own: these op types, attention float
                    onnx_qdq.LAYOUTS["variant"] = {"ops": ops, "attention": False}
                onnx_qdq.LAYOUT = ops if isinstance(ops, str) else "variant"
                path = tmp / f"v{len(rows)}.onnx"
                t0 = time.perf_counter()
                keep = searched if keep == SEARCHED else _expand(net, keep)
                ob.export(ExportJob(net, ck.meta, "int8", calib_pixels=calib, keep_float=keep, cache=cache), path)
                qmodel = onnx.load(str(path))
                storage_fn[storage](qmodel, _expand(net, float_weights or ()))
                onnx.save_model(qmodel, str(path))
                rows[name] = {"path": path, "build_s": time.perf_counter() - t0}
                print(f"built {name} in {rows[name]['build_s']:.0f} s", flush=True)
        finally:
            onnx_qdq.LAYOUT, onnx_qdq.REDUCE_RANGE = saved
            onnx_qdq.LAYOUTS.pop("variant", None)
        for name, r in rows.items():
            s = timed_session(r["path"], args.threads)
            out = np.concatenate([s.run(None, {"image": x_val[i : i + 1]})[0] for i in range(len(x_val))])
            c = ob.op_census(r["path"], args.threads)
            float_ops = {
                op: sum(x["count"] for x in c["ops"] if x["op"].split(":")[-1] in kinds and x["dtype"] == "float32")
                for op, kinds in (
                    ("Conv", ("Conv", "FusedConv")),
                    ("SiLU", ("Sigmoid", "QuickGelu")),
                    ("MatMul", ("MatMul", "FusedMatMul")),
                )
            }
            head = c["integer"]
            r["graph"] = (
                f"{head['integer_mac_ops']}/{head['mac_ops']}; {float_ops['Conv']} / {float_ops['SiLU']} / "
                f"{float_ops['MatMul']}; {head['conversions'].get('QuantizeLinear', 0)} / "
                f"{head['conversions'].get('DequantizeLinear', 0)}"
            )
            r.update(
                size=r["path"].stat().st_size,
                agree=float((out.argmax(1) == ref).mean()),
                top1=float((out.argmax(1) == labels).mean()),
                flips=int((out.argmax(1) != ref).sum()),
            )
            print(f"evaluated {name}: agreement {r['agree']:.2%}", flush=True)
        sessions = {name: timed_session(r["path"], args.threads) for name, r in rows.items()}
        ratios = {name: [] for name in rows}
        for rep in range(args.repeats):
            med = interleaved(sessions, x_val[:1], args.rounds, args.per_round)
            for name in rows:
                ratios[name].append(med[name] / med["fp32"])
                rows[name].setdefault("ms", []).append(med[name])
            print(f"repeat {rep}: fp32 {med['fp32']:.1f} ms", flush=True)
    import onnxruntime

    ort_version = onnxruntime.__version__
    fp32_size = rows["fp32"]["size"]
    command = " ".join(
        ["python benchmarks/studies/onnx_int8_variants.py"] + [f'"{a}"' if " " in a else a for a in argv_used]
    )
    lines = [
        f"# ONNX int8 variants of {Path(args.weights).name} (onnxruntime {ort_version})",
        "",
        f"Command: `{command}`",
        "",
        f"CPU: {cpu_line(args.threads)}, thread spinning off (sessions run in turn).",
        "",
        (
            f"Latency ratio = median over {args.repeats} repeats of (variant median / fp32 "
            f"median), {args.rounds}x{args.per_round} interleaved runs each; "
            if args.repeats
            else "Not timed (--repeats 0); "
        )
        + f"agreement/top-1 on {len(val)} images "
        f"of {args.verify_data}; {len(calib)} calibration images.",
        "",
        "onnxruntime's optimised graph (ORT_ENABLE_ALL, CPU EP): integer / all multiply-accumulate ops; float "
        "Conv / float SiLU (Sigmoid or QuickGelu) / float MatMul; QuantizeLinear / DequantizeLinear left.",
        "",
        "| variant | size MB | size / fp32 | latency ms | latency / fp32 (repeats) | agreement | flips | top-1 "
        "| optimised graph |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        rs = ratios[name]
        timed = (
            f"{np.median(r['ms']):.1f} | {np.median(rs):.3f} ({', '.join(f'{x:.2f}' for x in rs)})"
            if rs
            else "not timed | not timed"
        )  # --repeats 0: agreement and census only
        lines.append(
            f"| {name} | {r['size'] / 1e6:.2f} | {r['size'] / fp32_size:.3f} | {timed} "
            f"| {r['agree']:.2%} | {r['flips']} "
            f"| {r['top1']:.2%} | {r['graph']} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
