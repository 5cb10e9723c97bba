"""Op census summaries for results tables, over ``Backend.op_census`` (what ``mvit-bench FILE`` reports:
the ops the runtime runs with their input dtypes; ONNX after onnxruntime's own graph optimisation).

CPU-independent evidence of what an int8 artifact computes in int8 (int8 kernels' speed depends on the
CPU: without VNNI / dot-product instructions they run at fp32 speed).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..export.backends import get_backend
from ..export.backends.onnx_backend import FLOAT_MAC_OPS, INTEGER_MAC_OPS

QUANTIZE_OPS = ("QUANTIZE", "QuantizeLinear", "quantize")  # TFLite, ONNX, Core ML (MIL)
DEQUANTIZE_OPS = ("DEQUANTIZE", "DequantizeLinear", "dequantize")
# ExecuTorch's XNNPACK nodes convert between float and int8 (``Convert``), counted by the target dtype
# in the census's input-dtype column: Convert(float32) quantizes, Convert(int8) dequantizes
XNNPACK_CONVERT = "Convert"
# convolutions and matrix products of every runtime's census (float and integer kernels)
HEAVY_OPS = (
    *("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL"),  # TFLite
    *INTEGER_MAC_OPS,  # ONNX, onnxruntime's optimised CPU graph: the ops of its integer headline,
    *FLOAT_MAC_OPS,  # and the NCHWc convolution by its own name
    "NchwcConv",
    *("conv", "linear", "matmul"),  # Core ML
    *("Conv2d", "DepthwiseConv2d", "FullyConnected", "BatchMatrixMultiply"),  # XNNPACK
)
BATCH_MATMUL_OPS = ("BATCH_MATMUL", "BatchMatrixMultiply", "MatMul", "matmul", "QLinearMatMul")
LOGISTIC_OPS = ("LOGISTIC", "Sigmoid", "sigmoid")
FLOAT_DTYPES = ("float32", "float16")


def census(path: Path, fmt: str, threads: int = 1) -> dict:
    """``{"runtime", "nodes", "quantize", "dequantize", "ops": {"op(dtype)": count}}`` for an artifact."""

    c = get_backend(fmt).op_census(Path(path), threads)
    ops: Counter = Counter()
    for r in c["ops"]:
        ops[f"{r['op'].split(':')[-1]}({r['dtype']})"] += r["count"]

    def count(names):
        return sum(v for k, v in ops.items() if k.split("(")[0] in names)

    return {
        "runtime": c["runtime"],
        "nodes": c["ops_total"],
        "quantize": count(QUANTIZE_OPS) + ops.get(f"{XNNPACK_CONVERT}(float32)", 0),
        "dequantize": count(DEQUANTIZE_OPS) + sum(ops.get(f"{XNNPACK_CONVERT}({t})", 0) for t in ("int8", "uint8")),
        "ops": dict(sorted(ops.items())),
    }


def heavy_ops(c: dict) -> str:
    """The convolutions and matrix products of a ``census`` by input dtype, e.g. ``CONV_2D int8 35``."""
    parts = [
        f"{k.split('(')[0]} {k.split('(')[1][:-1]} {v}" for k, v in c["ops"].items() if k.split("(")[0] in HEAVY_OPS
    ]
    return ", ".join(parts)


def census_line(c: dict) -> str:
    """One-line summary of a ``census`` for a results table."""
    return f"{heavy_ops(c)}; quantize {c['quantize']}, dequantize {c['dequantize']}"


def int8_headline(c: dict) -> dict:
    """The int8 figures of a ``Backend.op_census`` (TFLite, ExecuTorch): multiply-accumulate ops
    (``HEAVY_OPS``) in int8, BATCH_MATMULs in int8 and how many of those the XNNPACK delegate runs, float
    LOGISTICs, DEQUANTIZE and QUANTIZE counts. A kernel outside the delegate whose dtype the census cannot
    tell (ExecuTorch's portable kernels: ``-``) counts as not int8."""
    rows = c.get("ops") or []

    def total(names, dtypes=None, delegated=False):
        return sum(
            r["delegated" if delegated else "count"]
            for r in rows
            if r["op"].split(":")[-1] in names and (dtypes is None or r["dtype"] in dtypes)
        )

    mac, mac_int8 = total(HEAVY_OPS), total(HEAVY_OPS, ("int8", "uint8"))
    convert = (XNNPACK_CONVERT,)
    return {
        "mac_ops": mac,
        "mac_int8": mac_int8,
        "mac_int8_share": mac_int8 / mac if mac else 0.0,
        "batch_matmul": total(BATCH_MATMUL_OPS),
        "batch_matmul_int8": total(BATCH_MATMUL_OPS, ("int8", "uint8")),
        "batch_matmul_int8_delegated": total(BATCH_MATMUL_OPS, ("int8", "uint8"), delegated=True),
        "float_logistic": total(LOGISTIC_OPS, FLOAT_DTYPES),
        "dequantize": total(DEQUANTIZE_OPS) + total(convert, ("int8", "uint8")),
        "quantize": total(QUANTIZE_OPS) + total(convert, FLOAT_DTYPES),
    }


def headline_line(h: dict) -> str:
    """One line of an ``int8_headline``."""
    return (
        f"int8 multiply-accumulate ops {h['mac_int8']}/{h['mac_ops']} ({h['mac_int8_share'] * 100:.0f}%); "
        f"BATCH_MATMUL int8 {h['batch_matmul_int8']}/{h['batch_matmul']}, "
        f"{h['batch_matmul_int8_delegated']} of them in XNNPACK; float LOGISTIC {h['float_logistic']}; "
        f"DEQUANTIZE {h['dequantize']}, QUANTIZE {h['quantize']}"
    )


def with_int8_headline(c: dict) -> dict:
    """``c`` (a ``Backend.op_census``) with its ``int8_headline`` under ``"int8"`` when an XNNPACK runtime
    (TFLite, ExecuTorch) runs it and it holds int8 ops; other censuses unchanged."""
    if c.get("delegate") == "XNNPACK" and any(r.get("dtype") in ("int8", "uint8") for r in c.get("ops") or []):
        return dict(c, int8=int8_headline(c))
    return c
