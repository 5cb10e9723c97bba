"""Op census summaries for results tables, over ``Backend.op_census`` (what ``mvit-bench FILE`` reports:
the ops the runtime runs with their input dtypes; ONNX after onnxruntime's own graph optimisation).

CPU-independent evidence of what an int8 artifact computes in int8 (int8 kernels' speed depends on the
CPU: without VNNI / dot-product instructions they run at fp32 speed).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..export.backends import get_backend

QUANTIZE_OPS = ("QUANTIZE", "QuantizeLinear", "quantize")  # TFLite, ONNX, Core ML (MIL)
DEQUANTIZE_OPS = ("DEQUANTIZE", "DequantizeLinear", "dequantize")
# ExecuTorch's XNNPACK nodes convert between float and int8 (``Convert``), counted by the target dtype
# in the census's input-dtype column: Convert(float32) quantizes, Convert(int8) dequantizes
XNNPACK_CONVERT = "Convert"
# convolutions and matrix products of every runtime's census (float and integer kernels)
HEAVY_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "Conv", "QLinearConv", "MatMul",
             "conv", "linear", "matmul", "Gemm", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger",
             "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "FusedConv", "FusedMatMul", "NchwcConv",
             "Conv2d", "DepthwiseConv2d", "FullyConnected", "BatchMatrixMultiply")  # the last four: XNNPACK


def census(path: Path, fmt: str, threads: int = 1) -> dict:
    """``{"runtime", "nodes", "quantize", "dequantize", "ops": {"op(dtype)": count}}`` for an artifact."""

    c = get_backend(fmt).op_census(Path(path), threads)
    ops: Counter = Counter()
    for r in c["ops"]:
        ops[f"{r['op'].split(':')[-1]}({r['dtype']})"] += r["count"]

    def count(names):
        return sum(v for k, v in ops.items() if k.split("(")[0] in names)

    return {"runtime": c["runtime"], "nodes": c["ops_total"],
            "quantize": count(QUANTIZE_OPS) + ops.get(f"{XNNPACK_CONVERT}(float32)", 0),
            "dequantize": count(DEQUANTIZE_OPS) + sum(ops.get(f"{XNNPACK_CONVERT}({t})", 0) for t in ("int8", "uint8")),
            "ops": dict(sorted(ops.items()))}


def heavy_ops(c: dict) -> str:
    """The convolutions and matrix products of a ``census`` by input dtype, e.g. ``CONV_2D int8 35``."""
    parts = [f"{k.split('(')[0]} {k.split('(')[1][:-1]} {v}" for k, v in c["ops"].items()
             if k.split("(")[0] in HEAVY_OPS]
    return ", ".join(parts)


def census_line(c: dict) -> str:
    """One-line summary of a ``census`` for a results table."""
    return f"{heavy_ops(c)}; quantize {c['quantize']}, dequantize {c['dequantize']}"
