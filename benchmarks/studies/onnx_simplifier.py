"""onnxsim vs onnxslim on the exported ONNX graph: nodes, size, time, onnxruntime latency, outputs.

    python benchmarks/studies/onnx_simplifier.py --calib /work/shared/data/trashnet6/train \
        --verify-data /work/shared/data/trashnet6/val --out benchmarks/results/onnx_simplifier.md

Each simplifier chain (none, onnxsim, onnxslim, both orders) simplifies the same dynamo export; the
int8 model of each is then built by the ONNX backend from that fp32 graph (same calibration images).
Latency: all sessions live in this one process, at ``--threads`` intra-op threads, and are timed
interleaved, round by round in rotating order; medians and ratios to the unsimplified graph.
"""

from __future__ import annotations

import collections
import tempfile
import time
from pathlib import Path

import numpy as np

CHAINS = {
    "none": (),
    "onnxsim": ("onnxsim",),
    "onnxslim": ("onnxslim",),
    "onnxsim+onnxslim": ("onnxsim", "onnxslim"),
    "onnxslim+onnxsim": ("onnxslim", "onnxsim"),
}


def _chain(model, tools):
    from mvit.export.backends import onnx_backend as ob

    for tool in tools:
        model = ob.SIMPLIFIER_FUNCS[tool](model)
    return model


def timed_session(path: Path, threads: int, optimized: Path | None = None):
    """A session for timing in turn with others in one process (thread spinning off)."""
    from mvit.export.backends.onnx_backend import session

    return session(path, threads, optimized, spinning=False)


def interleaved(sessions: dict, x: np.ndarray, rounds: int, per_round: int) -> dict:
    from mvit.benchmarks.latency import interleaved_medians

    return interleaved_medians(
        {k: (lambda s=s: s.run(None, {"image": x})) for k, s in sessions.items()}, rounds, per_round
    )


def main(argv=None) -> int:
    """Simplify, build, time and compare every chain; write ``--out`` and print it."""
    import onnx
    from onnx_inputs import load_bench_inputs, onnx_bench_parser

    from mvit.export.backends import onnx_backend as ob
    from mvit.export.base import ExportJob

    ap = onnx_bench_parser(__doc__, rounds=30)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx_simplifier.md"))
    args = ap.parse_args(argv)

    inp = load_bench_inputs(args)
    ck, net, calib, val, x_val = inp.ckpt, inp.net, inp.calib, inp.val, inp.x_val
    t0 = time.perf_counter()
    raw = ob.torch_export(ExportJob(net, ck.meta, "fp32"))
    export_s = time.perf_counter() - t0
    raw_bytes = raw.SerializeToString()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, tools in CHAINS.items():
            spent = []
            for _ in range(3):
                t0 = time.perf_counter()
                model = _chain(onnx.load_from_string(raw_bytes), tools)
                spent.append(time.perf_counter() - t0)
            fp32 = tmp / f"{name}-fp32.onnx"
            onnx.save_model(model, str(fp32))
            job = ExportJob(net, ck.meta, "int8", calib_pixels=calib)
            job.cache.fp32[("onnx", job.input_mode)] = model.SerializeToString()
            int8 = tmp / f"{name}-int8.onnx"
            t0 = time.perf_counter()
            ob.export(job, int8)
            int8_s = time.perf_counter() - t0
            for precision, path in (("fp32", fp32), ("int8", int8)):
                m = onnx.load(str(path))
                opt = tmp / f"{name}-{precision}.opt.onnx"
                timed_session(path, args.threads, opt)
                rows.append(
                    {
                        "chain": name,
                        "precision": precision,
                        "path": path,
                        "nodes": len(m.graph.node),
                        "ops": collections.Counter(n.op_type for n in m.graph.node),
                        "ort_nodes": len(onnx.load(str(opt)).graph.node),
                        "bytes": path.stat().st_size,
                        "simplify_s": float(np.median(spent)),
                        "int8_build_s": int8_s,
                    }
                )
            print(f"{name}: built", flush=True)
        sessions = {(r["chain"], r["precision"]): timed_session(r["path"], args.threads) for r in rows}
        logits = {
            k: np.concatenate([s.run(None, {"image": x_val[i : i + 1]})[0] for i in range(len(x_val))])
            for k, s in sessions.items()
        }
        lats = [interleaved(sessions, x_val[:1], args.rounds, args.per_round) for _ in range(args.repeats)]
    for r in rows:
        key, base = (r["chain"], r["precision"]), ("none", r["precision"])
        r["ms"] = float(np.median([lat[key] for lat in lats]))
        r["ratios"] = [lat[key] / lat[base] for lat in lats]
        r["maxdiff"] = float(np.abs(logits[key] - logits[base]).max())
        r["agree"] = float((logits[key].argmax(1) == logits[base].argmax(1)).mean())
    report = _markdown(rows, args, len(val), export_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 0


def _markdown(rows, args, n_val, export_s) -> str:
    import onnxruntime
    import onnxsim
    import onnxslim

    cmd = (
        f"python benchmarks/studies/onnx_simplifier.py --calib {args.calib} --verify-data {args.verify_data} "
        f"--threads {args.threads} --rounds {args.rounds} --per-round {args.per_round} --repeats {args.repeats} "
        f"--out {args.out}"
    )
    lines = [
        "# ONNX graph simplifiers: onnxsim vs onnxslim",
        "",
        f"Model: `{Path(args.weights).name}`; dynamo export took {export_s:.0f} s. onnxsim {onnxsim.__version__}, "
        f"onnxslim {onnxslim.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} intra-op threads.",
        "int8 = the ONNX backend's int8 export built from that fp32 graph "
        f"({args.calib_count} calibration images of `{args.calib}`).",
        f"Latency: median of {args.rounds} x {args.per_round} runs per model, all models interleaved round by "
        f"round in one process, {args.repeats} times; ratio to the unsimplified graph of the same precision: the "
        "median over the repeats (each repeat's ratio in brackets). Outputs compared with the "
        f"unsimplified graph of the same precision on the {n_val} images of `{args.verify_data}`. "
        "ORT nodes: the graph onnxruntime runs after its own optimisations (ORT_ENABLE_ALL).",
        "",
        "| graph | precision | nodes | ORT nodes | Reshape | size (bytes) | simplify s | latency ms | ratio "
        "| max abs diff | top-1 same |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['chain']} | {r['precision']} | {r['nodes']} | {r['ort_nodes']} | {r['ops']['Reshape']} "
            f"| {r['bytes']:,} | {r['simplify_s']:.2f} | {r['ms']:.1f} | {np.median(r['ratios']):.3f} "
            f"({', '.join(f'{x:.2f}' for x in r['ratios'])}) "
            f"| {r['maxdiff']:.2g} | {r['agree']:.2%} |"
        )
    lines += ["", f"Command: `{cmd}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
