"""Rewrites of converted .tflite graphs that litert-torch's converter leaves for XNNPACK to pay for."""

from __future__ import annotations

import numpy as np


def dequantize_before_pad(model_bytes: bytes) -> tuple[bytes, int]:
    """Move each DEQUANTIZE that follows an int8/uint8 PAD in front of it; returns the new bytes and
    how many PADs moved.

    With a float stem behind an int8 input, the converter pads the quantized image and dequantizes
    the padded copy (TRANSPOSE -> PAD -> DEQUANTIZE -> CONV_2D). XNNPACK folds a float PAD into the
    convolution that follows it, but not one with a DEQUANTIZE in between, and a stand-alone PAD of
    the full-resolution image is a measurable share of the model's time (benchmarks/results/
    tflite_int8_speed.md). Dequantized first, the PAD runs in float and folds.
    The result is exact: a quantized PAD fills with the zero point, which dequantizes to 0.0, the
    float PAD's fill.
    """
    from ai_edge_litert import schema_py_generated as schema  # lazy: loaded only when a .tflite file is rewritten
    from ai_edge_litert.tools import flatbuffer_utils as fb  # lazy: loaded only when a .tflite file is rewritten

    m = fb.read_model_from_bytearray(bytearray(model_bytes))
    op_ = schema.BuiltinOperator
    quantized = (schema.TensorType.INT8, schema.TensorType.UINT8)

    def code(op) -> int:
        return fb.get_builtin_code_from_operator_code(m.operatorCodes[op.opcodeIndex])

    moved = 0
    for sg in m.subgraphs:
        ops = sg.operators
        consumers: dict[int, list[int]] = {}
        for k, op in enumerate(ops):
            for t in op.inputs:
                consumers.setdefault(int(t), []).append(k)
        for k, pad in enumerate(ops):
            if code(pad) != op_.PAD or len(pad.inputs) != 2:
                continue
            src, padded = int(pad.inputs[0]), int(pad.outputs[0])
            users = consumers.get(padded, [])
            if (
                sg.tensors[src].type not in quantized
                or padded in set(sg.outputs)
                or len(users) != 1
                or code(ops[users[0]]) != op_.DEQUANTIZE
            ):
                continue
            deq = ops[users[0]]
            # The padded int8 tensor becomes the unpadded float one between DEQUANTIZE and PAD.
            mid = sg.tensors[padded]
            mid.type, mid.quantization = schema.TensorType.FLOAT32, None
            mid.shape = np.array([int(v) for v in sg.tensors[src].shape], np.int32)
            if sg.tensors[src].shapeSignature is not None:
                mid.shapeSignature = np.array([int(v) for v in sg.tensors[src].shapeSignature], np.int32)
            deq.inputs, deq.outputs, pad.outputs = (np.array(v, np.int32) for v in ([src], [padded], deq.outputs))
            pad.inputs = np.array([padded, int(pad.inputs[1])], np.int32)
            ops[k], ops[users[0]] = deq, pad  # DEQUANTIZE only needs ``src``, produced before the PAD
            moved += 1
    if not moved:
        return model_bytes, 0
    return bytes(fb.convert_object_to_bytearray(m)), moved


def float_softmax(model_bytes: bytes) -> tuple[bytes, int]:
    """Run each int8 SOFTMAX in float between a DEQUANTIZE and a QUANTIZE; returns the new bytes and how
    many.

    mvit's PT2E graph leaves the softmax float (``mvit.quant.int8_graph``): the int8 attention matmul
    before it is dequantized, the float probabilities are quantized for the matmul after it. litert-torch's
    converter folds that DEQUANTIZE -> SOFTMAX -> QUANTIZE into one int8 SOFTMAX with the calibrated
    output scale, which TFLite's int8 kernel refuses (it takes only 1/256, zero point -128) and XNNPACK
    does not take at all (it has no int8 softmax). Split again, the file computes what the PT2E model
    computes, and XNNPACK runs all three ops.
    """
    from ai_edge_litert import schema_py_generated as schema  # lazy: loaded only when a .tflite file is rewritten
    from ai_edge_litert.tools import flatbuffer_utils as fb  # lazy: loaded only when a .tflite file is rewritten

    m = fb.read_model_from_bytearray(bytearray(model_bytes))
    op_ = schema.BuiltinOperator
    quantized = (schema.TensorType.INT8, schema.TensorType.UINT8)

    def code(builtin: int) -> int:
        for i, c in enumerate(m.operatorCodes):
            if fb.get_builtin_code_from_operator_code(c) == builtin:
                return i
        oc = schema.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, builtin, 2
        m.operatorCodes.append(oc)
        return len(m.operatorCodes) - 1

    changed = 0
    for sg in m.subgraphs:
        new_ops = []
        for op in sg.operators:
            is_softmax = fb.get_builtin_code_from_operator_code(m.operatorCodes[op.opcodeIndex]) == op_.SOFTMAX
            src, dst = int(op.inputs[0]), int(op.outputs[0])
            if not is_softmax or sg.tensors[src].type not in quantized:
                new_ops.append(op)
                continue
            floats = []
            for t in (src, dst):
                ft = schema.TensorT()
                ft.shape = np.array([int(v) for v in sg.tensors[t].shape], np.int32)
                ft.type, ft.buffer = schema.TensorType.FLOAT32, 0
                ft.name = (sg.tensors[t].name or b"softmax") + b"_float"
                sg.tensors.append(ft)
                floats.append(len(sg.tensors) - 1)
            deq, quant = schema.OperatorT(), schema.OperatorT()
            deq.opcodeIndex, deq.inputs, deq.outputs = (
                code(op_.DEQUANTIZE),
                np.array([src], np.int32),
                np.array([floats[0]], np.int32),
            )
            quant.opcodeIndex, quant.inputs, quant.outputs = (
                code(op_.QUANTIZE),
                np.array([floats[1]], np.int32),
                np.array([dst], np.int32),
            )
            op.inputs, op.outputs = np.array([floats[0]], np.int32), np.array([floats[1]], np.int32)
            new_ops += [deq, op, quant]
            changed += 1
        sg.operators = new_ops
    if not changed:
        return model_bytes, 0
    return bytes(fb.convert_object_to_bytearray(m)), changed
