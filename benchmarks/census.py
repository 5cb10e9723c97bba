"""Op census of an artifact: which operators it holds and in which dtype they compute.

CPU-independent evidence of what an int8 artifact will run in int8 (the latency of int8 kernels
depends on the CPU: without VNNI / dot-product instructions they run at fp32 speed).

- .tflite: every operator by name and the dtype of its first input (``CONV_2D:INT8``), with totals of
  QUANTIZE / DEQUANTIZE and of operators computing in float.
- .onnx: node types of the graph onnxruntime actually runs (after its CPU graph optimisations, which
  fuse QDQ patterns into QLinearConv, QGemm, MatMulIntegerToFloat, ...), with totals of quantized
  kernels and of remaining QuantizeLinear / DequantizeLinear nodes.
"""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

FLOAT_TYPES = ("FLOAT32", "FLOAT16")
# onnxruntime CPU kernels that compute in integers
ORT_INT_OPS = ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "ConvInteger",
               "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearGlobalAveragePool", "QLinearConcat",
               "QLinearSoftmax", "QLinearLeakyRelu", "DynamicQuantizeMatMul", "QAttention", "NhwcQLinearConv")


def tflite_census(path) -> dict:
    """Operators of a .tflite file: counts by ``OP:DTYPE`` and totals."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    m = fb.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    g = m.subgraphs[0]
    ops = Counter()
    float_ops = int_ops = 0
    for op in g.operators:
        name = names[fb.get_builtin_code_from_operator_code(m.operatorCodes[op.opcodeIndex])]
        first = next((int(t) for t in op.inputs if t >= 0), None)
        dtype = types[g.tensors[first].type] if first is not None else "NONE"
        ops[f"{name}:{dtype}"] += 1
        if name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if dtype in FLOAT_TYPES:
            float_ops += 1
        else:
            int_ops += 1
    return {"ops": dict(sorted(ops.items())), "total": len(g.operators),
            "quantize": sum(v for k, v in ops.items() if k.startswith("QUANTIZE:")),
            "dequantize": sum(v for k, v in ops.items() if k.startswith("DEQUANTIZE:")),
            "float_ops": float_ops, "int_ops": int_ops,
            "float_conv": sum(v for k, v in ops.items() if k.split(":")[0] in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                                                                 "FULLY_CONNECTED", "BATCH_MATMUL")
                              and k.split(":")[1] in FLOAT_TYPES)}


def onnx_census(path, level: str = "all") -> dict:
    """Node types of the graph onnxruntime runs for an .onnx file (CPU, optimisation ``level``)."""
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                     "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                     "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "optimized.onnx"
        opts.optimized_model_filepath = str(out)
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(out), load_external_data=False).graph
    ops = Counter(n.op_type for n in graph.node)
    return {"ops": dict(sorted(ops.items())), "total": sum(ops.values()),
            "int_kernels": sum(v for k, v in ops.items() if k in ORT_INT_OPS),
            "quantize": ops.get("QuantizeLinear", 0) + ops.get("DynamicQuantizeLinear", 0),
            "dequantize": ops.get("DequantizeLinear", 0),
            "float_conv": ops.get("Conv", 0) + ops.get("FusedConv", 0) + ops.get("NchwcConv", 0),
            "float_matmul": ops.get("MatMul", 0) + ops.get("Gemm", 0) + ops.get("FusedMatMul", 0)}


def census_line(c: dict, fmt: str) -> str:
    """One-line summary of a census for a results table."""
    if fmt == "onnx":
        return (f"{c['int_kernels']} int8 kernels, {c['float_conv']} float Conv, {c['float_matmul']} float MatMul/Gemm, "
                f"{c['quantize']} Q / {c['dequantize']} DQ")
    return (f"{c['int_ops']} int8 ops, {c['float_ops']} float ops ({c['float_conv']} conv/FC/matmul), "
            f"{c['quantize']} QUANTIZE / {c['dequantize']} DEQUANTIZE")
