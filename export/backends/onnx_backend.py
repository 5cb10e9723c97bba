"""ONNX backend: torch.onnx (dynamo exporter), simplified by onnxsim (onnxslim as fallback); fp32, fp16,
dynamic and static (QDQ) int8. Runs with onnxruntime on the CPU.

The artifact is a single file (weights folded back in, no ``.onnx.data``); metadata lives in
``metadata_props["mvit"]``. int8 is onnxruntime's static QDQ (uint8 activations, int8 per-channel
weights) on every Conv, Gemm and MatMul outside the layers ``mvit.quant.plan`` leaves float (those
keep float weights too). ``compress_float_weights`` stores float ops' weights as int8 decoded at
session load (measured in benchmarks/results/onnx_int8_variants.md). The measurements behind these
choices: benchmarks/results/onnx_simplifier.md, onnx_int8_variants.md and int8_search.md.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

from mvit.export.base import ExportError, ExportJob, IOSpec, TensorSpec
from mvit.export.runner import Runner
from mvit.export.wrappers import PixelInput
from mvit.model.preprocess import normalize_hwc_uint8

FORMAT = "onnx"
SUFFIX = ".onnx"
RUNTIME = "onnxruntime (CPU EP)"
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
INPUTS = ("float-nchw", "uint8-nhwc")
CALIB_METHODS = ("min-max", "percentile", "entropy")
KEEP_FLOAT = {p: "ONNX node names, op types (Conv, Gemm) or module paths whose nodes stay float"
              for p in ("fp16", "dynamic", "int8")}
INT8_ROUTE = "onnxruntime-qdq"
RUNTIME_MODULES = ("onnxruntime",)  # imported before a benchmark times the model load
EXPORT_COST = 1
# int8 QDQ covers these op types; elementwise ops, LayerNorm, Softmax and Transpose stay float (each QDQ
# pair there costs time and accuracy: QLinearSoftmax ran 4x slower than float Softmax). Which of these
# layers stay float is mvit.quant.plan's choice.
STATIC_OPS = ("Conv", "Gemm", "MatMul")
# Weights in 7 bits: onnxruntime's uint8 x int8 kernels on x86 without VNNI (AVX2 vpmaddubsw) can
# saturate the int16 sum of two products; with 8-bit weights MobileNetV2 and ViT-Tiny lost 10 and 2
# points of agreement on trashnet6 val (benchmarks/results/README.md).
REDUCE_RANGE = True
META_KEY = "mvit"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
# Tried in order: the first that succeeds simplifies the exported graph (see the module docstring).
SIMPLIFIERS = ("onnxsim", "onnxslim")
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8"}


def torch_export(job: ExportJob):
    """The dynamo exporter's graph for ``job`` (before simplification); an onnx ModelProto."""
    h, w = job.contract.input_size
    if job.input_mode == "float-nchw":
        module, sample = job.model, torch.zeros(1, 3, h, w)
    elif job.input_mode == "uint8-nhwc":
        module, sample = PixelInput(job.model, job.contract, "NHWC").eval(), torch.zeros(1, h, w, 3, dtype=torch.uint8)
    else:
        raise ExportError(f"ONNX takes --input float-nchw or uint8-nhwc, not {job.input_mode}")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(module, (sample,), dynamo=True, input_names=[INPUT_NAME],
                                 output_names=[OUTPUT_NAME], verbose=False, optimize=True)
    return prog.model_proto


def _onnxsim(model):
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim's check of the simplified graph failed")
    return simplified


def _onnxslim(model):
    import onnxslim

    return onnxslim.slim(model)


SIMPLIFIER_FUNCS = {"onnxsim": _onnxsim, "onnxslim": _onnxslim}


def simplify(model, tools=SIMPLIFIERS):
    """First of ``tools`` that simplifies ``model`` without failing; returns (model, tool or None).

    A tool that is missing, raises or fails its own check is logged and the next one is tried; with
    none left the exporter's graph is kept (it is valid, only less tidy). The input is not modified.
    """
    import onnx

    log = logging.getLogger(__name__)
    data = model.SerializeToString()
    for tool in tools:
        try:
            out = SIMPLIFIER_FUNCS[tool](onnx.load_from_string(data))
            onnx.checker.check_model(out)
            return out, tool
        except Exception as e:  # simplification is an optimisation: fall back rather than fail the export
            log.warning("%s failed (%s: %s); trying the next simplifier", tool, type(e).__name__, e)
    return onnx.load_from_string(data), None


def _fp32_model(job: ExportJob):
    """Export + simplify once per input mode; returns an onnx ModelProto."""
    import onnx

    key = ("onnx-fp32", job.input_mode)
    if key not in job.cache:
        model, tool = simplify(torch_export(job))
        job.cache[key] = model.SerializeToString()
        job.cache[("onnx-simplifier", job.input_mode)] = tool
    return onnx.load_from_string(job.cache[key])


class _Reader:
    """onnxruntime CalibrationDataReader over the job's calibration images, one at a time."""

    def __init__(self, job: ExportJob):
        if job.input_mode == "uint8-nhwc":
            self.data = [job.calib_pixels[i : i + 1] for i in range(len(job.calib_pixels))]
        else:
            x = job.calib_inputs()
            self.data = [x[i : i + 1] for i in range(len(x))]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.data):
            return None
        self.i += 1
        return {INPUT_NAME: self.data[self.i - 1]}

    def rewind(self):
        self.i = 0


def export(job: ExportJob, path: Path) -> IOSpec:
    """Convert ``job`` to a single-file .onnx at ``path``."""
    import onnx

    model = _fp32_model(job)
    details: dict = {}
    if job.precision == "fp32":
        onnx.save_model(model, str(path))
    elif job.precision == "fp16":
        from onnxconverter_common import float16

        blocked = list(job.keep_float)
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked or None)
        onnx.save_model(half, str(path))
        details = {"method": "onnxconverter-common float16, float32 I/O", "keep_float": blocked}
    elif job.precision == "int8" and job.learned_ranges is not None:
        return export_pt2e_qdq(job, path)
    elif job.precision in ("dynamic", "int8"):
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with tempfile.TemporaryDirectory() as tmp:
            src, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
            onnx.save_model(model, str(src))
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            keep = tuple(k for k in job.keep_float if k.lower() != "none")
            nodes = _nodes_to_keep_float(onnx.load(str(pre)), keep)
            if job.precision == "dynamic":
                quantize_dynamic(str(pre), str(path), weight_type=QuantType.QInt8, per_channel=True,
                                 nodes_to_exclude=nodes, op_types_to_quantize=["MatMul", "Gemm", "Conv"])
                details = {"method": "onnxruntime quantize_dynamic", "weights": "int8 per-channel",
                           "keep_float_source": "user"}
            else:
                quantize_qdq(pre, path, job, nodes)
                details = {"method": "onnxruntime quantize_static QDQ",
                           "weights": "int8 per-channel symmetric" + (", 7-bit range" if REDUCE_RANGE else ""),
                           "activations": "uint8 per-tensor affine", "calibration": job.calib_method,
                           "calibration_images": int(len(job.calib_pixels)), "quantized_ops": list(STATIC_OPS),
                           "keep_float_source": job.keep_float_source}
            details["keep_float"] = list(keep)
    else:
        raise ExportError(f"ONNX has no precision {job.precision!r}")
    return _io_spec_for(job, path, details)


def _io_spec_for(job: ExportJob, path: Path, details: dict) -> IOSpec:
    nhwc = job.input_mode == "uint8-nhwc"
    return _io_spec(path, "NHWC" if nhwc else "NCHW", nhwc, details)


def export_pt2e_qdq(job: ExportJob, path: Path) -> IOSpec:
    """``job``'s PT2E int8 graph as QDQ ONNX at ``path`` (``export_learned_int8``): the checkpoint's
    learned ranges when the job carries them, else calibrated on ``job.calib_pixels``; its I/O spec."""
    return _io_spec_for(job, path, export_learned_int8(job, path))


def activation_matmuls(model) -> list[str]:
    """MatMul nodes multiplying two activations (attention's query x key and weights x value), which
    static QDQ leaves float: their int8 form quantizes the softmax output to 1/255 steps (it flipped
    trashnet6 val images that every conv/linear layer float could not save) and makes onnxruntime run
    QLinearSoftmax, slower than float Softmax (benchmarks/results/int8_search.md)."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


def quantize_qdq(pre: Path, out: Path, job: ExportJob, nodes_to_exclude, calib_cache: Path | None = None) -> None:
    """onnxruntime static QDQ int8 of the pre-processed model ``pre`` into ``out``, calibrated on the job's
    images; ``calib_cache`` (a JSON path) keeps the calibrated ranges for further calls. Besides
    ``nodes_to_exclude``, the ``activation_matmuls`` stay float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"min-max": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}.get(job.calib_method)
    if method is None:
        raise ExportError(f"calibration method {job.calib_method!r} is not available for ONNX; "
                          f"use one of {', '.join(CALIB_METHODS)}")
    quantize_static(str(pre), str(out), _Reader(job), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    reduce_range=REDUCE_RANGE, calibrate_method=method,
                    nodes_to_exclude=sorted(set(nodes_to_exclude) | set(activation_matmuls(onnx.load(str(pre))))),
                    op_types_to_quantize=list(STATIC_OPS), calibration_cache_path=calib_cache,
                    extra_options={"CalibMovingAverage": False,
                                   # weights [in, out] (MatMul, Gemm transB=0): one scale per output
                                   "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}})


def int8_search_runner(job: ExportJob, pixels: np.ndarray):
    """``run(float_units) -> logits`` of this backend's int8 model on ``pixels`` (N,H,W,3 uint8) with
    those module paths float; calibrates once, then quantizes and runs each candidate in onnxruntime."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process

    tmp = Path(tempfile.mkdtemp(prefix="mvit-onnx-search-"))
    src, pre, out, ranges = tmp / "fp32.onnx", tmp / "pre.onnx", tmp / "int8.onnx", tmp / "ranges.json"
    onnx.save_model(_fp32_model(job), str(src))
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


def int8_search_evaluator(job: ExportJob, heldout_pixels: np.ndarray, ref_logits: np.ndarray):
    """For ``mvit.quant.plan.int8_plan``: ``evaluate(float_units) -> (agreement, cosine, expected flips)``
    (``mvit.quant.search.score``) with the float model's ``ref_logits`` on ``heldout_pixels``, of this
    backend's int8 model (``int8_search_runner``)."""
    from mvit.quant.search import score

    run, ref = int8_search_runner(job, heldout_pixels), torch.from_numpy(ref_logits)

    def evaluate(float_units) -> tuple[float, float, float]:
        return score(torch.from_numpy(run(float_units)), ref)

    evaluate.run = run  # keeps the runner (and its temporary folder) alive as long as the evaluator
    return evaluate


def export_learned_int8(job: ExportJob, path: Path) -> dict:
    """int8 from a quantization-aware trained checkpoint: the PT2E graph that TFLite and Core ML get
    (``mvit.quant.pt2e``: same quantizer, the checkpoint's learned activation ranges), written with its
    QuantizeLinear/DequantizeLinear pairs by torch.onnx, so onnxruntime runs the quantization that was
    trained rather than one it calibrates itself; returns the details.

    Activations stay int8 (S8S8). As uint8 (zero point + 128, the same real values) onnxruntime's AVX2
    kernels without VNNI saturate on full-range 8-bit weights: on 120 trashnet6 images the shipped
    model's all-int8 graph agreed with its own unfused (QDQ-simulated) numerics on 75% of the top-1s
    as U8S8, 95.8% as S8S8 (97.5% with 7-bit weights: the rest is fused-kernel rounding).
    """
    import onnx

    from mvit.quant.pt2e import quantize_pt2e

    h, w = job.contract.input_size
    if job.input_mode == "float-nchw":
        module, sample, graph_input = job.model, torch.zeros(1, 3, h, w), "normalized-nchw"
        to_input = lambda px: torch.from_numpy(normalize_hwc_uint8(px, job.contract))  # noqa: E731
    else:
        module, sample = PixelInput(job.model, job.contract, "NHWC").eval(), torch.zeros(1, h, w, 3, dtype=torch.uint8)
        graph_input, to_input = "pixels-nhwc-uint8", lambda px: torch.from_numpy(np.ascontiguousarray(px))  # noqa: E731
    converted, _, details = quantize_pt2e(job.model, module, sample, to_input, graph_input, fold_quantize=True,
                                         **job.quant_args())
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(converted, (sample,), dynamo=True, input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], verbose=False, optimize=True).model_proto
    for node in proto.graph.node:  # the exporter's per-node stack traces: most of a small model's bytes
        del node.metadata_props[:]
    onnx.save_model(proto, str(path))
    how = "the checkpoint's learned ranges" if job.learned_ranges is not None else "calibrated ranges"
    return dict(details, method=f"PT2E QDQ with {how}, exported by torch.onnx")


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
    and DQ+MatMul/Gemm becomes an 8-bit MatMulNBits that ran ~10% slower than the float Gemm.
    Weights under a module in ``float_weights`` (a name prefix) stay float; so do weights that
    QDQ already quantized (their consumer reads a DequantizeLinear, not an initializer) and any
    initializer that another kind of op also reads.
    """
    from onnx import TensorProto, helper, numpy_helper

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
        if (not users or any(n.op_type not in WEIGHT_OPS or k != 1 for n, k in users)
                or init.data_type != TensorProto.FLOAT or name.startswith(prefixes)
                or any(n.name in float_weights or n.op_type in float_weights for n, _ in users)):
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
        g.initializer.extend([numpy_helper.from_array(q, name + "_int8"), numpy_helper.from_array(scale, name + "_scale")])
        decode += [helper.make_node("Cast", [name + "_int8"], [name + "_dequant"], name=name + "_Cast",
                                    to=TensorProto.FLOAT),
                   helper.make_node("Mul", [name + "_dequant", name + "_scale"], [name], name=name + "_Mul")]
        packed.append(name)
    nodes = decode + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return packed


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
            matched = [n.name for n in model.graph.node
                       if any(i in inits and i.startswith(prefix) for i in n.input)]
        if not matched:
            key = item.replace(".", "_")
            matched = [n.name for n in model.graph.node if item in n.name or key in n.name]
        if not matched and strict:
            raise ExportError(f"--keep-float {item!r}: no ONNX node, op type or module of that name")
        nodes += matched
    return nodes


def _io_spec(path: Path, layout: str, in_model: bool, details: dict) -> IOSpec:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    i, o = sess.get_inputs()[0], sess.get_outputs()[0]
    return IOSpec(TensorSpec(i.name, list(i.shape), _ORT_DTYPES[i.type], layout),
                  TensorSpec(o.name, list(o.shape), _ORT_DTYPES[o.type], "NC"),
                  normalization_in_model=in_model, quantization_details=details)


def check_artifact(path: Path, meta: dict) -> list[str]:
    """onnx's checker, and a single self-contained file."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:  # onnx raises ValidationError and friends
        return [f"onnx checker: {str(e).splitlines()[0][:200]}"]
    external = [t.name for t in onnx.load(str(path), load_external_data=False).graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    return [f"{len(external)} weights stored outside the file"] if external else []


def can_time() -> tuple[bool, str]:
    """onnxruntime's CPU provider runs on this machine."""
    return True, ""


def unavailable() -> str | None:
    """Never: onnxruntime is a core dependency of mvit."""
    return None


def embed_metadata(path: Path, meta: dict) -> None:
    """Store model_meta as ``metadata_props["mvit"]`` (replacing an older entry)."""
    import onnx

    model = onnx.load(str(path))
    props = [p for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    model.metadata_props.add(key=META_KEY, value=json.dumps(meta))
    onnx.save_model(model, str(path))


def read_metadata(path: Path) -> dict:
    """model_meta stored in an .onnx file."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise ValueError(f"{path}: not a readable .onnx file ({type(e).__name__})") from None
    for p in model.metadata_props:
        if p.key == META_KEY:
            return json.loads(p.value)
    raise ValueError(f"{path}: no mvit metadata in this .onnx file")


class ONNXRunner(Runner):
    """onnxruntime CPU session with a fixed intra-op thread count."""

    def __init__(self, path: Path, meta: dict, threads: int = 2):
        super().__init__(path, meta)
        self.session = _session(path, threads)
        self._in = self.session.get_inputs()[0].name
        self._batch_one = self.session.get_inputs()[0].shape[0] == 1

    def invoke(self, native: np.ndarray) -> np.ndarray:
        if not self._batch_one:
            return self.session.run(None, {self._in: native})[0]
        return np.concatenate([self.session.run(None, {self._in: native[i : i + 1]})[0]
                               for i in range(native.shape[0])])


def load_runner(path: Path, threads: int = 2, meta: dict | None = None) -> Runner:
    """A runner for an .onnx file: its mvit metadata, or ``meta`` describing a file without any."""
    return ONNXRunner(Path(path), meta if meta is not None else read_metadata(path), threads)


# ------------------------------------------------------------------------------------------ any .onnx file

def _session(path: Path, threads: int = 2, optimized_path: Path | None = None):
    """An onnxruntime CPU session: ``threads`` intra-op threads, every graph optimisation (the
    optimised graph saved to ``optimized_path`` if given)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def io_details(path: Path) -> dict:
    """Input and output tensors of any .onnx file: name, shape, dtype (quantization: None, ONNX
    graphs quantize inside)."""
    sess = _session(path, 1)
    out = {}
    for key, t in (("input", sess.get_inputs()[0]), ("output", sess.get_outputs()[0])):
        out[key] = {"name": t.name, "shape": [v if isinstance(v, int) else 1 for v in t.shape],
                    "dtype": _ORT_DTYPES.get(t.type, t.type), "quantization": None}
    return out


def missing_ops(path: Path) -> list[str]:
    """Nodes of an .onnx file whose (domain, op type) onnxruntime has no schema for, named."""
    import onnx
    from onnxruntime.capi.onnxruntime_pybind11_state import get_all_operator_schema

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise ValueError(f"not a readable .onnx file ({type(e).__name__})") from None
    known = {(s.domain or "ai.onnx", s.name) for s in get_all_operator_schema()}
    local = {(f.domain or "ai.onnx", f.name) for f in model.functions}
    missing = sorted({(n.domain or "ai.onnx", n.op_type) for n in model.graph.node} - known - local)
    return [f"{op} (custom op, domain {domain})" for domain, op in missing]


def _output_dtype(node, types: dict) -> int:
    """The element type of ``node``'s output where shape inference has none (onnxruntime's contrib ops:
    QLinear* keep their input's type, QGemm without an output scale returns float, the rest pass the
    first input's type through)."""
    from onnx import TensorProto

    first = types.get(node.input[0], 0) if node.input else 0
    if node.op_type == "DequantizeLinear" or node.op_type == "MatMulIntegerToFloat":
        return TensorProto.FLOAT
    if node.op_type in ("QuantizeLinear", "DynamicQuantizeLinear"):
        zero_point = node.input[2] if len(node.input) > 2 and node.input[2] else None
        return types.get(zero_point, TensorProto.UINT8)
    if node.op_type == "QGemm" and (len(node.input) < 8 or not node.input[7]):
        return TensorProto.FLOAT
    if node.op_type in ("MatMulInteger", "ConvInteger"):
        return TensorProto.INT32
    return first


def op_census(path: Path, threads: int = 2) -> dict:
    """Node types with their first input's dtype, in the graph onnxruntime runs after its own
    optimisation (level ORT_ENABLE_ALL, CPU execution provider), against the file's own graph."""
    import tempfile

    import onnx

    def census(model) -> dict:
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # contrib ops without shape functions: dtypes of what it could infer
            pass
        g = model.graph
        types = {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.value_info) + list(g.output)}
        types.update({i.name: i.data_type for i in g.initializer})
        types = {k: v for k, v in types.items() if v}
        rows: dict = {}
        for n in g.node:  # topological order: outputs of ops shape inference does not know get _output_dtype
            for o in n.output:
                if o and o not in types:
                    types[o] = _output_dtype(n, types)
            dtype = onnx.helper.tensor_dtype_to_np_dtype(types[n.input[0]]).name if n.input and types.get(n.input[0]) else "-"
            op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
            r = rows.setdefault((op, dtype), {"op": op, "dtype": dtype, "count": 0})
            r["count"] += 1
        return {"nodes": len(g.node), "ops": sorted(rows.values(), key=lambda r: (-r["count"], r["op"]))}

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        _session(path, threads, optimized)
        after = census(onnx.load(str(optimized)))
    before = census(onnx.load(str(path)))
    return {"runtime": f"onnxruntime CPU execution provider, ORT_ENABLE_ALL, {threads} threads",
            "delegate": None, "ops_total": after["nodes"], "ops": after["ops"], "file_nodes": before["nodes"],
            "file_ops": before["ops"], "dtype_note": "dtype: the node's first input"}

