"""int8 for onnxruntime: the ONNX backend's quantized routes (static QDQ, dynamic, PT2E QDQ) and the
evaluator the float-set search runs (``mvit.quant.plan``, route ``onnxruntime-qdq``).

The ONNX backend (``mvit.export.backends.onnx_backend``) exports and simplifies the fp32 graph, runs and
censuses the files; everything that quantizes that graph lives here, beside ``mvit.quant.pt2e``. Static
int8 is onnxruntime's QDQ (uint8 activations, int8 per-channel weights) on every Conv, Gemm and MatMul
outside the layers ``mvit.quant.plan`` leaves float (those keep float weights too).
``compress_float_weights`` stores float ops' weights as int8 decoded at session load. The measurements
behind these choices: benchmarks/results/onnx_int8_variants.md and int8_search.md.

onnx and onnxruntime are imported inside the functions that use them
(``# lazy: see the module docstring``): this module loads with the ONNX backend, which ``mvit-export``
imports whatever the formats asked for.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..model.pixel_input import PixelInput
from ..model.preprocess import normalize_hwc_uint8
from . import QuantError
from .pt2e import Pt2eGraph, quantize_pt2e
from .search import score

if TYPE_CHECKING:  # the export job is handed down by the ONNX backend: its type only
    from ..export.base import ExportJob

CALIB_METHODS = ("min-max", "percentile", "entropy")
# int8 QDQ covers these op types (the "linear" layout); which of these layers stay float is
# mvit.quant.plan's choice.
STATIC_OPS = ("Conv", "Gemm", "MatMul")
# Elementwise ops onnxruntime's CPU EP runs on integer kernels when every input comes from a
# DequantizeLinear and the output goes only to a QuantizeLinear (its QDQ selectors: UnaryOpQDQRules for
# Sigmoid -> QLinearSigmoid, BinaryOpQDQRules for Add/Mul -> QLinearAdd/QLinearMul, VariadicOpQDQRules for
# Concat -> QLinearConcat in onnxruntime/core/optimizer/qdq_transformer/selectors_actions/
# qdq_selector_action_transformer.cc). SiLU is Sigmoid x Mul in the exported graph: quantizing the
# sigmoid's output and the product keeps it integer.
CHAIN_OPS = ("Sigmoid", "Mul", "Add", "Concat")
# Data movement: quantized with the scale of their input (onnxruntime's QDQDirect8BitOp, QDQSplit), so the
# unfold/fold reshapes and transposes between integer ops need no conversion; onnxruntime drops the
# DQ -> op -> Q pairs (DropQDQNodesRules, same file) and runs them on uint8.
MOVE_OPS = ("Transpose", "Reshape", "Split")
# Which ops a layout quantizes, and whether the attention's activation x activation MatMuls (and so its
# Softmax, fused to QLinearSoftmax between two quantized tensors) are among them. "linear" was the only
# layout before issue 26; the measurements behind the default: benchmarks/results/onnx_int8_integer.md.
LAYOUTS = {
    "linear": {"ops": STATIC_OPS, "attention": False},
    "silu": {"ops": STATIC_OPS + CHAIN_OPS, "attention": False},
    "integer": {"ops": STATIC_OPS + CHAIN_OPS + MOVE_OPS, "attention": True},
    "integer-float-attention": {"ops": STATIC_OPS + CHAIN_OPS + MOVE_OPS, "attention": False},
    # the same ops written as onnxruntime's QLinear* operators instead of QDQ pairs
    "integer-qoperator": {"ops": STATIC_OPS + CHAIN_OPS + MOVE_OPS, "attention": True, "format": "qoperator"},
}
LAYOUT = "linear"
# Weights in 7 bits: onnxruntime's uint8 x int8 kernels on x86 without VNNI (AVX2 vpmaddubsw) can
# saturate the int16 sum of two products; with 8-bit weights MobileNetV2 and ViT-Tiny lost 10 and 2
# points of agreement on trashnet6 val (benchmarks/results/README.md).
REDUCE_RANGE = True


class _Reader:
    """onnxruntime CalibrationDataReader over the job's calibration images, one at a time; ``set_range``
    limits it to a slice (onnxruntime's strided min-max calibration, ``CALIB_STRIDE``)."""

    def __init__(self, job: ExportJob, input_name: str):
        self.input_name = input_name
        if job.input_mode == "uint8-nhwc":
            self.data = [job.calib_pixels[i : i + 1] for i in range(len(job.calib_pixels))]
        else:
            x = job.calib_inputs()
            self.data = [x[i : i + 1] for i in range(len(x))]
        self.i, self.end = 0, len(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read images ``start_index`` to ``end_index`` (exclusive) next."""
        self.i, self.end = start_index, min(end_index, len(self.data))

    def get_next(self):
        if self.i >= self.end:
            return None
        self.i += 1
        return {self.input_name: self.data[self.i - 1]}

    def rewind(self):
        self.i, self.end = 0, len(self.data)


# onnxruntime's calibrator keeps every calibrated tensor of every image until it computes the ranges; the
# integer layouts calibrate several times more tensors than the linear one, so min-max calibration runs
# in slices of at most this many images (the ranges are the same: min and max merge exactly).
CALIB_STRIDE = 32


def calib_stride(count: int, most: int = CALIB_STRIDE) -> int:
    """The largest slice of at most ``most`` images that divides ``count`` (onnxruntime requires it)."""
    return next(s for s in range(min(most, max(count, 1)), 0, -1) if count % s == 0)


def _input_name(path: Path) -> str:
    import onnx  # lazy: see the module docstring

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def quantize(job: ExportJob, model, path: Path) -> dict:
    """``job``'s int8 (``job.precision`` "int8": static QDQ, or PT2E QDQ when the job carries learned
    ranges; "dynamic": onnxruntime's dynamic quantization) of the fp32 ONNX ``model``, written to
    ``path``; returns the quantization details for the artifact's metadata."""
    import onnx  # lazy: see the module docstring
    from onnxruntime.quantization import QuantType, quantize_dynamic  # lazy: see the module docstring
    from onnxruntime.quantization.shape_inference import quant_pre_process  # lazy: see the module docstring

    if job.precision == "int8" and job.learned_ranges is not None:
        return export_learned_int8(job, path, (model.graph.input[0].name, model.graph.output[0].name))
    with tempfile.TemporaryDirectory() as tmp:
        src, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        onnx.save_model(model, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        keep = tuple(job.keep_float)
        nodes = _nodes_to_keep_float(onnx.load(str(pre)), keep)
        if job.precision == "dynamic":
            quantize_dynamic(
                str(pre),
                str(path),
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_exclude=nodes,
                op_types_to_quantize=["MatMul", "Gemm", "Conv"],
            )
            details = {
                "method": "onnxruntime quantize_dynamic",
                "weights": "int8 per-channel",
                "keep_float_source": "user",
            }
        else:
            ranges = Path(tmp) / "ranges.json"
            key = (LAYOUT, job.input_mode, job.calib_method, len(job.calib_pixels))
            if key in job.cache.onnx_ranges:  # calibrated by an earlier export of this run (another float set)
                ranges.write_text(job.cache.onnx_ranges[key])
            quantize_qdq(pre, path, job, nodes, ranges)
            job.cache.onnx_ranges[key] = ranges.read_text()
            details = {
                "method": "onnxruntime quantize_static QDQ",
                "weights": "int8 per-channel symmetric" + (", 7-bit range" if REDUCE_RANGE else ""),
                "activations": "uint8 per-tensor affine",
                "calibration": job.calib_method,
                "calibration_images": int(len(job.calib_pixels)),
                "layout": LAYOUT,
                "quantized_ops": list(LAYOUTS[LAYOUT]["ops"]),
                "integer_attention": LAYOUTS[LAYOUT]["attention"],
                "keep_float_source": job.keep_float_source,
            }
        details["keep_float"] = list(keep)
    return details


def activation_matmuls(model) -> list[str]:
    """MatMul nodes multiplying two activations (attention's query x key and weights x value), which the
    layouts without integer attention leave float: their int8 form quantizes the softmax output to 1/255
    steps and makes onnxruntime run QLinearSoftmax (benchmarks/results/int8_search.md for the linear
    layout; onnx_int8_integer.md for the integer chain)."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


def float_closure(model, float_nodes, ops=CHAIN_OPS) -> list[str]:
    """``float_nodes`` and every node of the types ``ops`` joined to them through its inputs or outputs,
    transitively through such nodes.

    A float layer's SiLU (Sigmoid, Mul), residual Add and Concat carry no weight and no module path in
    the exported graph, so ``_nodes_to_keep_float`` does not find them; quantized, they would quantize the
    float layer's output and the input of the float layer after them, which is the int8 error the float
    set exists to avoid (why SiLU int8 cost agreement before: benchmarks/results/onnx_int8_integer.md).
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    keep = set(float_nodes)
    todo = [n for n in model.graph.node if n.op_type in ops and n.name not in keep]
    changed = True
    while changed:
        changed = False
        for n in todo:
            if n.name in keep:
                continue
            near = [producer[i].name for i in n.input if i in producer]
            near += [c.name for o in n.output for c in consumers.get(o, [])]
            if any(x in keep for x in near):
                keep.add(n.name)
                changed = True
    return sorted(keep)


def quantize_qdq(
    pre: Path, out: Path, job: ExportJob, nodes_to_exclude, calib_cache: Path | None = None, layout: str | None = None
) -> None:
    """onnxruntime static QDQ int8 of the pre-processed model ``pre`` into ``out``, calibrated on the job's
    images; ``calib_cache`` (a JSON path) keeps the calibrated ranges for further calls of the same layout
    (it holds the tensors of that layout's op types). ``layout`` (a ``LAYOUTS`` name, default
    ``LAYOUT``) says which op types are quantized; ``nodes_to_exclude`` stay float with the elementwise
    ops next to them (``float_closure``), and so do the ``activation_matmuls`` unless the layout takes
    the attention integer."""
    import onnx  # lazy: see the module docstring
    from onnxruntime.quantization import (  # lazy: see the module docstring
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    spec = LAYOUTS.get(layout or LAYOUT)
    if spec is None:
        raise QuantError(f"ONNX int8 layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    graph = onnx.load(str(pre))
    exclude = (
        set(float_closure(graph, nodes_to_exclude)) if set(CHAIN_OPS) & set(spec["ops"]) else set(nodes_to_exclude)
    )
    if not spec["attention"]:
        exclude |= set(activation_matmuls(graph))

    method = {
        "min-max": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }.get(job.calib_method)
    if method is None:
        raise QuantError(
            f"calibration method {job.calib_method!r} is not available for ONNX; use one of {', '.join(CALIB_METHODS)}"
        )
    args = dict(
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        reduce_range=REDUCE_RANGE,
        calibrate_method=method,
        extra_options={
            "CalibMovingAverage": False,
            # weights [in, out] (MatMul, Gemm transB=0): one scale per output
            "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        },
    )
    if job.calib_method == "min-max":
        args["extra_options"]["CalibStridedMinMax"] = calib_stride(len(job.calib_pixels))
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(calib_cache) if calib_cache is not None else Path(tmp) / "ranges.json"
        fmt = QuantFormat.QOperator if spec.get("format") == "qoperator" else QuantFormat.QDQ
        quantize_static(
            str(pre),
            str(out),
            None if cache.exists() else _Reader(job, _input_name(pre)),
            quant_format=fmt,
            nodes_to_exclude=sorted(exclude),
            op_types_to_quantize=list(spec["ops"]),
            calibration_cache_path=cache,
            **args,
        )


def int8_search_runner(job: ExportJob, pixels: np.ndarray, fp32_model):
    """``run(float_units) -> logits`` of this backend's int8 model on ``pixels`` (N,H,W,3 uint8) with
    those module paths float; calibrates once, then quantizes and runs each candidate in onnxruntime."""
    import onnx  # lazy: see the module docstring
    import onnxruntime as ort  # lazy: see the module docstring
    from onnxruntime.quantization.shape_inference import quant_pre_process  # lazy: see the module docstring

    tmp = Path(tempfile.mkdtemp(prefix="mvit-onnx-search-"))
    src, pre, out, ranges = tmp / "fp32.onnx", tmp / "pre.onnx", tmp / "int8.onnx", tmp / "ranges.json"
    onnx.save_model(fp32_model, str(src))
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre))
    x = pixels if job.input_mode == "uint8-nhwc" else normalize_hwc_uint8(pixels, job.contract)

    def run(float_units) -> np.ndarray:
        nodes = [n for u in float_units for n in _nodes_to_keep_float(graph, (u,), strict=False)]
        quantize_qdq(pre, out, job, nodes, ranges)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        sess = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])

    weakref.finalize(run, shutil.rmtree, tmp, True)
    return run


def int8_search_evaluator(job: ExportJob, heldout_pixels: np.ndarray, ref_logits: np.ndarray, fp32_model):
    """For ``mvit.quant.plan.int8_plan``: ``evaluate(float_units) -> (agreement, cosine, expected flips)``
    (``mvit.quant.search.score``) with the float model's ``ref_logits`` on ``heldout_pixels``, of this
    backend's int8 model (``int8_search_runner``)."""

    run, ref = int8_search_runner(job, heldout_pixels, fp32_model), torch.from_numpy(ref_logits)

    def evaluate(float_units) -> tuple[float, float, float]:
        return score(torch.from_numpy(run(float_units)), ref)

    evaluate.run = run  # keeps the runner (and its temporary folder) alive as long as the evaluator
    return evaluate


def dynamo_onnx(module: torch.nn.Module, sample: torch.Tensor, names: tuple[str, str]):
    """``module`` on ``sample`` through torch.onnx's dynamo exporter (its optimiser on), without its log
    and warnings; an onnx ModelProto with ``names`` (input, output)."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.onnx.export(
            module,
            (sample,),
            dynamo=True,
            input_names=[names[0]],
            output_names=[names[1]],
            verbose=False,
            optimize=True,
        ).model_proto


def export_learned_int8(job: ExportJob, path: Path, names: tuple[str, str]) -> dict:
    """int8 from a quantization-aware trained checkpoint: the PT2E graph that TFLite and Core ML get
    (``mvit.quant.pt2e``: same quantizer, the checkpoint's learned activation ranges), written with its
    QuantizeLinear/DequantizeLinear pairs by torch.onnx, so onnxruntime runs the quantization that was
    trained rather than one it calibrates itself; returns the details.

    Activations stay int8 (S8S8). As uint8 (zero point + 128, the same real values) onnxruntime's AVX2
    kernels without VNNI saturate on full-range 8-bit weights, and the shipped model's all-int8 graph
    then disagreed with its own unfused (QDQ-simulated) numerics far more often as U8S8 than as S8S8
    (benchmarks/results/README.md, the ONNX int8 sections).
    """
    import onnx  # lazy: see the module docstring

    h, w = job.contract.input_size
    if job.input_mode == "float-nchw":
        module, sample, graph_input = job.model, torch.zeros(1, 3, h, w), "normalized-nchw"
        to_input = lambda px: torch.from_numpy(normalize_hwc_uint8(px, job.contract))  # noqa: E731
    else:
        module, sample = PixelInput(job.model, job.contract, "NHWC").eval(), torch.zeros(1, h, w, 3, dtype=torch.uint8)
        graph_input, to_input = "pixels-nhwc-uint8", lambda px: torch.from_numpy(np.ascontiguousarray(px))  # noqa: E731
    converted, _, details = quantize_pt2e(
        Pt2eGraph(job.model, module, sample, to_input, graph_input),
        job.pt2e_settings(),
        cache=job.cache,
        fold_quantize=True,
    )
    proto = dynamo_onnx(converted, sample, names)
    for node in proto.graph.node:  # the exporter's per-node stack traces: most of a small model's bytes
        del node.metadata_props[:]
    onnx.save_model(proto, str(path))
    how = "the checkpoint's learned ranges" if job.learned_ranges is not None else "calibrated ranges"
    return dict(details, method=f"PT2E QDQ with {how}, exported by torch.onnx")


def _nodes_to_keep_float(model, keep_float, strict: bool = True) -> list[str]:
    """Node names for --keep-float items: exact node names, op types (all their nodes), or a
    module path, which matches every node whose weight initializer lives under that module
    (``conv_1`` -> ``conv_1.block.conv.weight``) or whose name contains it. ``strict``: an item
    matching nothing is an error (else it is skipped)."""
    inits = {i.name for i in model.graph.initializer}
    nodes = []
    for item in keep_float:
        matched = [n.name for n in model.graph.node if n.name == item or n.op_type == item]
        if not matched:
            prefix = item + "."
            matched = [n.name for n in model.graph.node if any(i in inits and i.startswith(prefix) for i in n.input)]
        if not matched:
            key = item.replace(".", "_")
            matched = [n.name for n in model.graph.node if item in n.name or key in n.name]
        if not matched and strict:
            raise QuantError(f"--keep-float {item!r}: no ONNX node, op type or module of that name")
        nodes += matched
    return nodes


WEIGHT_OPS = {"Conv": 0, "ConvTranspose": 1, "Gemm": None, "MatMul": -1}  # op -> output-channel axis of input 1
MIN_PACKED_WEIGHT = 128  # smaller weights stay float: a scale per channel would eat most of the saving


def compress_float_weights(model, float_weights=(), min_size: int = MIN_PACKED_WEIGHT) -> list[str]:
    """Store the float weights of float ops as int8 + a per-output-channel scale; returns their names.

    A float Conv/Gemm/MatMul weight initializer ``w`` becomes ``Mul(Cast(w_int8, float), w_scale)``
    (symmetric, max/127 per output channel). onnxruntime constant-folds Cast and Mul when the session
    loads, so the op sees a float constant again and runs exactly as in the fp32 model (prepacked
    weights, NCHWc convs, fused Gemm): a quarter of the bytes, the fp32 model's speed. A
    ``DequantizeLinear`` would say the same thing but is not folded on the CPU (onnxruntime keeps
    DQ nodes for its QDQ fusions): a DQ+Conv then dequantizes every run and loses the NCHWc layout,
    and DQ+MatMul/Gemm becomes an 8-bit MatMulNBits that ran slower than the float Gemm
    (benchmarks/results/onnx_int8_variants.md).
    Weights under a module in ``float_weights`` (a name prefix) stay float; so do weights that
    QDQ already quantized (their consumer reads a DequantizeLinear, not an initializer) and any
    initializer that another kind of op also reads.
    """
    from onnx import TensorProto, helper, numpy_helper  # lazy: see the module docstring

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    readers: dict[str, list] = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            readers.setdefault(i, []).append((n, k))
    prefixes = tuple(f + "." for f in float_weights)
    decode, packed = [], []
    for name, init in list(inits.items()):
        users = readers.get(name, [])
        if (
            not users
            or any(n.op_type not in WEIGHT_OPS or k != 1 for n, k in users)
            or init.data_type != TensorProto.FLOAT
            or name.startswith(prefixes)
            or any(n.name in float_weights or n.op_type in float_weights for n, _ in users)
        ):
            continue
        w = numpy_helper.to_array(init)
        if w.ndim < 2 or w.size < min_size:
            continue
        axes = set()
        for n, _ in users:
            axis = WEIGHT_OPS[n.op_type]
            if axis is None:  # Gemm: B is [K, N], or [N, K] with transB
                axis = 0 if any(a.name == "transB" and a.i for a in n.attribute) else 1
            axes.add(axis % w.ndim)
        if len(axes) != 1:
            continue
        axis = axes.pop()
        shape = [1] * w.ndim
        shape[axis] = -1
        amax = np.abs(w).max(axis=tuple(a for a in range(w.ndim) if a != axis))
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32).reshape(shape)
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        g.initializer.remove(init)
        g.initializer.extend(
            [numpy_helper.from_array(q, name + "_int8"), numpy_helper.from_array(scale, name + "_scale")]
        )
        decode += [
            helper.make_node("Cast", [name + "_int8"], [name + "_dequant"], name=name + "_Cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [name + "_dequant", name + "_scale"], [name], name=name + "_Mul"),
        ]
        packed.append(name)
    nodes = decode + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return packed
