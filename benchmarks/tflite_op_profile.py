"""Where a .tflite model's time goes: every operator timed on its own, summed by op type and dtype.

ai-edge-litert's Python interpreter has no per-op profiler, so each operator is cut out into a one-op
model (same tensors, constants and options; its non-constant inputs become graph inputs, filled with
zeros) and timed with XNNPACK like the whole model. Sums come close to the whole model's time but not
exactly: XNNPACK fuses some neighbours in a full graph (a float PAD into the next conv, for one), which
one-op models cannot show; cut a few consecutive ops together (``--span``) to see such effects.
Comparing two models side by side (fp32 and int8) shows which op types int8 makes slower or faster:

    python -m mvit.benchmarks.tflite_op_profile runs/x/fp32/model.tflite runs/x/int8/model.tflite
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils as fb

from .latency import interleaved_medians, tflite_on_zeros
from .matrix import cpu_line
from .script_args import emit_report, fail, op_profile_args, op_profile_parser


def _names():
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return ops, types


def cut(model, lo: int, hi: int) -> bytes:
    """Operators ``lo``..``hi - 1`` of subgraph 0 of ``model`` (a flatbuffer ModelT, modified in place
    and restored) as a model of their own: inputs are the tensors they read but neither compute nor
    hold as constants, outputs are the last operator's outputs."""
    sg = model.subgraphs[0]
    saved = sg.operators, sg.inputs, sg.outputs, model.signatureDefs
    ops = saved[0][lo:hi]
    made = {int(t) for op in ops for t in op.outputs}

    def constant(t: int) -> bool:
        data = model.buffers[sg.tensors[t].buffer].data
        return data is not None and len(data) > 0

    inputs = []
    for op in ops:
        for t in (int(t) for t in op.inputs):
            if t >= 0 and t not in made and not constant(t) and t not in inputs:
                inputs.append(t)
    sg.operators, model.signatureDefs = ops, []
    sg.inputs, sg.outputs = np.array(inputs, np.int32), np.array(ops[-1].outputs, np.int32)
    try:
        return bytes(fb.convert_object_to_bytearray(model))
    finally:
        sg.operators, sg.inputs, sg.outputs, model.signatureDefs = saved


def _median_ms(model_bytes: bytes, threads: int, runs: int) -> float:

    return interleaved_medians({0: tflite_on_zeros(model_bytes, threads)}, 1, runs)[0]


def profile(path: Path, threads: int = 2, runs: int = 40, span: int = 1) -> list[dict]:
    """One row per ``span`` consecutive operators of ``path``: index, op type(s), input and output
    dtype, output shape, median ms of the cut-out model."""
    ops_by_code, types = _names()
    model = fb.read_model(str(path))
    sg = model.subgraphs[0]
    rows = []
    for lo in range(0, len(sg.operators), span):
        hi = min(lo + span, len(sg.operators))
        group = sg.operators[lo:hi]
        codes = [model.operatorCodes[op.opcodeIndex] for op in group]
        first, last = sg.tensors[group[0].inputs[0]], sg.tensors[group[-1].outputs[0]]
        rows.append(
            {
                "index": lo,
                "op": "+".join(ops_by_code.get(fb.get_builtin_code_from_operator_code(c), "CUSTOM") for c in codes),
                "dtype": f"{types[first.type]}>{types[last.type]}".lower(),
                "shape": [int(v) for v in last.shape],
                "ms": _median_ms(cut(model, lo, hi), threads, runs),
            }
        )
    return rows


def by_type(rows: list[dict]) -> dict[tuple[str, str], tuple[int, float]]:
    """(op, dtype) -> (count, summed ms)."""
    agg: dict = defaultdict(lambda: [0, 0.0])
    for r in rows:
        a = agg[(r["op"], r["dtype"])]
        a[0] += 1
        a[1] += r["ms"]
    return {k: (n, ms) for k, (n, ms) in agg.items()}


def render(profiles: dict[str, list[dict]], threads: int, top: int = 10) -> str:
    """Markdown: per model, the op types by summed time, then the slowest single rows."""

    lines = [
        f"# Per-op latency (XNNPACK, {threads} threads, each op timed alone; medians)",
        "",
        f"CPU: {cpu_line(threads)}.",
        "",
        "Each row is a one-op model cut out of the file, so sums exceed the whole model's time: a one-op",
        "model pays the interpreter's per-invoke overhead (what RESHAPE rows mostly show) and cannot show",
        "what XNNPACK fuses in a full graph (a float PAD into the conv after it, for one). Command: "
        "`python -m mvit.benchmarks.tflite_op_profile " + " ".join(profiles) + "`",
        "",
    ]
    for name, rows in profiles.items():
        total = sum(r["ms"] for r in rows)
        lines += [
            f"## {name}: {len(rows)} rows, {total:.2f} ms summed",
            "",
            "| op | dtype | count | ms | share |",
            "|---|---|---:|---:|---:|",
        ]
        for (op, dt), (n, ms) in sorted(by_type(rows).items(), key=lambda kv: -kv[1][1]):
            lines.append(f"| {op} | {dt} | {n} | {ms:.3f} | {100 * ms / total:.1f}% |")
        lines += ["", f"Slowest {top}:", "", "| # | op | dtype | output shape | ms |", "|---:|---|---|---|---:|"]
        for r in sorted(rows, key=lambda r: -r["ms"])[:top]:
            lines.append(f"| {r['index']} | {r['op']} | {r['dtype']} | {r['shape']} | {r['ms']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Profile each model given and print (or write) the report."""

    ap = op_profile_parser(__doc__, ".tflite files", runs=40)
    ap.add_argument("--span", type=int, default=1, help="consecutive ops per cut-out model")
    args = op_profile_args(ap, "tflite_op_profile", argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        profiles = {m: profile(Path(m), args.threads, args.runs, args.span) for m in args.models}
    except Exception as e:  # noqa: BLE001 - flatbuffers raise assorted errors on foreign bytes
        fail("tflite_op_profile", f"cannot read a .tflite model: {e}")
    emit_report(render(profiles, args.threads, args.top), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
