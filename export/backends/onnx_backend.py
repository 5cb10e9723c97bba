"""ONNX backend: torch.onnx (dynamo exporter), simplified by onnxsim (onnxslim as fallback); fp32, fp16,
dynamic and static (QDQ) int8. Runs with onnxruntime on the CPU.

The artifact is a single file (weights folded back in, no ``.onnx.data``); metadata lives in
``metadata_props["mvit"]``. int8 and dynamic quantization are ``mvit.quant.onnx_qdq``'s; this module
exports the fp32 graph, runs files and takes their op census after onnxruntime's own optimisation.
The measurements behind these choices: benchmarks/results/onnx_simplifier.md.

onnx, onnxruntime and the simplifiers are imported inside the functions that use them
(``# lazy: see the module docstring``): ``mvit-export`` imports every backend module (even for
``--help``, which lists each format's options), and ``format_of`` (each benchmark worker) may import
other formats' backends, so a process loads only the toolchains of the formats it uses.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from ...quant import onnx_qdq
from ..base import Capabilities, ExportError, ExportJob, IOSpec, TensorSpec
from ..runner import Runner
from ..wrappers import PixelInput
from .onnx_layers import qdq_layer_error

FORMAT = "onnx"
SUFFIX = ".onnx"
RUNTIME = "onnxruntime (CPU EP)"
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
INPUTS = ("float-nchw", "uint8-nhwc")
KEEP_FLOAT = {
    p: "ONNX node names, op types (Conv, Gemm) or module paths whose nodes stay float"
    for p in ("fp16", "dynamic", "int8")
}
INT8_ROUTE = "onnxruntime-qdq"
CALIB_METHODS = onnx_qdq.CALIB_METHODS
RUNTIME_MODULES = ("onnxruntime",)  # imported before a benchmark times the model load
EXPORT_COST = 1
# its own int8 (onnxruntime QDQ): searched in onnxruntime, debugged with onnxruntime's QDQ helpers
CAPABILITIES = Capabilities(int8_search=True, layer_error=True)
META_KEY = "mvit"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
# Tried in order: the first that succeeds simplifies the exported graph (see the module docstring).
SIMPLIFIERS = ("onnxsim", "onnxslim")
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


def torch_export(job: ExportJob):
    """The dynamo exporter's graph for ``job`` (before simplification); an onnx ModelProto."""
    h, w = job.contract.input_size
    if job.input_mode == "float-nchw":
        module, sample = job.model, torch.zeros(1, 3, h, w)
    elif job.input_mode == "uint8-nhwc":
        module, sample = PixelInput(job.model, job.contract, "NHWC").eval(), torch.zeros(1, h, w, 3, dtype=torch.uint8)
    else:
        raise ExportError(f"ONNX takes --input float-nchw or uint8-nhwc, not {job.input_mode}")
    return onnx_qdq.dynamo_onnx(module, sample, (INPUT_NAME, OUTPUT_NAME))


def _onnxsim(model):
    import onnxsim  # lazy: see the module docstring

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim's check of the simplified graph failed")
    return simplified


def _onnxslim(model):
    import onnxslim  # lazy: see the module docstring

    return onnxslim.slim(model)


SIMPLIFIER_FUNCS = {"onnxsim": _onnxsim, "onnxslim": _onnxslim}


def simplify(model, tools=SIMPLIFIERS):
    """First of ``tools`` that simplifies ``model`` without failing; returns (model, tool or None).

    A tool that is missing, raises or fails its own check is logged and the next one is tried; with
    none left the exporter's graph is kept (it is valid, only less tidy). The input is not modified.
    """
    import onnx  # lazy: see the module docstring

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


def fp32_model(job: ExportJob):
    """Export + simplify once per input mode; returns an onnx ModelProto."""
    import onnx  # lazy: see the module docstring

    key = (FORMAT, job.input_mode)
    if key not in job.cache.fp32:
        model, _ = simplify(torch_export(job))
        job.cache.fp32[key] = model.SerializeToString()
    return onnx.load_from_string(job.cache.fp32[key])


def export(job: ExportJob, path: Path) -> IOSpec:
    """Convert ``job`` to a single-file .onnx at ``path``."""
    import onnx  # lazy: see the module docstring

    model = fp32_model(job)
    details: dict = {}
    if job.precision == "fp32":
        onnx.save_model(model, str(path))
    elif job.precision == "fp16":
        from onnxconverter_common import float16  # lazy: see the module docstring

        blocked = list(job.keep_float)
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked or None)
        onnx.save_model(half, str(path))
        details = {"method": "onnxconverter-common float16, float32 I/O", "keep_float": blocked}
    elif job.precision in ("dynamic", "int8"):
        details = onnx_qdq.quantize(job, model, path)
    else:
        raise ExportError(f"ONNX has no precision {job.precision!r}")
    return _io_spec_for(job, path, details)


def int8_search_evaluator(job: ExportJob, heldout_pixels: np.ndarray, ref_logits: np.ndarray):
    """The float-set search's evaluator of this route, measured in onnxruntime itself
    (``CAPABILITIES.int8_search``; ``mvit.quant.onnx_qdq.int8_search_evaluator``)."""
    return onnx_qdq.int8_search_evaluator(job, heldout_pixels, ref_logits, fp32_model(job))


def _io_spec_for(job: ExportJob, path: Path, details: dict) -> IOSpec:
    nhwc = job.input_mode == "uint8-nhwc"
    return _io_spec(path, "NHWC" if nhwc else "NCHW", nhwc, details)


def export_pt2e_qdq(job: ExportJob, path: Path) -> IOSpec:
    """``job``'s PT2E int8 graph as QDQ ONNX at ``path`` (``mvit.quant.onnx_qdq.export_learned_int8``): the
    checkpoint's learned ranges when the job carries them, else calibrated on ``job.calib_pixels``; its I/O spec."""
    return _io_spec_for(job, path, onnx_qdq.export_learned_int8(job, path, (INPUT_NAME, OUTPUT_NAME)))


def _io_spec(path: Path, layout: str, in_model: bool, details: dict) -> IOSpec:
    import onnxruntime as ort  # lazy: see the module docstring

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    i, o = sess.get_inputs()[0], sess.get_outputs()[0]
    return IOSpec(
        TensorSpec(i.name, list(i.shape), _ORT_DTYPES[i.type], layout),
        TensorSpec(o.name, list(o.shape), _ORT_DTYPES[o.type], "NC"),
        normalization_in_model=in_model,
        quantization_details=details,
    )


def check_artifact(path: Path, meta: dict) -> list[str]:
    """onnx's checker, and a single self-contained file."""
    import onnx  # lazy: see the module docstring

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:  # onnx raises ValidationError and friends
        return [f"onnx checker: {str(e).splitlines()[0][:200]}"]
    external = [
        t.name
        for t in onnx.load(str(path), load_external_data=False).graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    return [f"{len(external)} weights stored outside the file"] if external else []


def can_time() -> tuple[bool, str]:
    """onnxruntime's CPU provider runs on this machine."""
    return True, ""


def unavailable() -> str | None:
    """Never: onnxruntime is a core dependency of mvit."""
    return None


def embed_metadata(path: Path, meta: dict) -> None:
    """Store model_meta as ``metadata_props["mvit"]`` (replacing an older entry)."""
    import onnx  # lazy: see the module docstring

    model = onnx.load(str(path))
    props = [p for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    model.metadata_props.add(key=META_KEY, value=json.dumps(meta))
    onnx.save_model(model, str(path))


def read_metadata(path: Path) -> dict:
    """model_meta stored in an .onnx file."""
    import onnx  # lazy: see the module docstring

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
        self.session = session(path, threads)
        self._in = self.session.get_inputs()[0].name
        self._batch_one = self.session.get_inputs()[0].shape[0] == 1

    def invoke(self, native: np.ndarray) -> np.ndarray:
        if not self._batch_one:
            return self.session.run(None, {self._in: native})[0]
        return np.concatenate(
            [self.session.run(None, {self._in: native[i : i + 1]})[0] for i in range(native.shape[0])]
        )


def load_runner(path: Path, threads: int = 2, meta: dict | None = None) -> Runner:
    """A runner for an .onnx file: its mvit metadata, or ``meta`` describing a file without any."""
    return ONNXRunner(Path(path), meta if meta is not None else read_metadata(path), threads)


# ------------------------------------------------------------------------------------------ any .onnx file


def session(
    path: Path,
    threads: int = 2,
    optimized_path: Path | None = None,
    spinning: bool = True,
    profile_prefix: Path | None = None,
):
    """An onnxruntime CPU session: ``threads`` intra-op threads, every graph optimisation (the
    optimised graph saved to ``optimized_path`` if given).

    ``spinning=False`` for sessions timed in turn in one process: idle spinning threads of one session
    would steal the cores of the next. ``profile_prefix`` turns onnxruntime's profiler on.
    """
    import onnxruntime as ort  # lazy: see the module docstring

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def io_details(path: Path) -> dict:
    """Input and output tensors of any .onnx file: name, shape, dtype (quantization: None, ONNX
    graphs quantize inside)."""
    sess = session(path, 1)
    out = {}
    for key, t in (("input", sess.get_inputs()[0]), ("output", sess.get_outputs()[0])):
        out[key] = {
            "name": t.name,
            "shape": [v if isinstance(v, int) else 1 for v in t.shape],
            "dtype": _ORT_DTYPES.get(t.type, t.type),
            "quantization": None,
        }
    return out


def missing_ops(path: Path) -> list[str]:
    """Nodes of an .onnx file whose (domain, op type) onnxruntime has no schema for, named."""
    import onnx  # lazy: see the module docstring
    from onnxruntime.capi.onnxruntime_pybind11_state import get_all_operator_schema  # lazy: see the module docstring

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
    from onnx import TensorProto  # lazy: see the module docstring

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


# multiply-accumulate ops of onnxruntime's optimised CPU graph: integer kernels, and the float ones they replace
# (the NCHWc and fused forms the CPU EP's optimiser writes included)
INTEGER_MAC_OPS = (
    "QLinearConv",
    "QGemm",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QAttention",
)
FLOAT_MAC_OPS = ("Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul", "Attention")
CONVERSION_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def integer_headline(ops: list[dict]) -> dict:
    """From census rows (``op``, ``dtype``, ``count``): how many multiply-accumulate ops run on integer
    kernels out of all of them (by node count, not by MACs), and the float <-> integer conversion nodes."""
    base = lambda r: r["op"].split(":")[-1]  # noqa: E731 - domain prefix off (com.microsoft:QGemm, ...nchwc:Conv)
    integer = sum(r["count"] for r in ops if base(r) in INTEGER_MAC_OPS)
    floating = sum(r["count"] for r in ops if base(r) in FLOAT_MAC_OPS and r["dtype"] in ("float32", "float16"))
    conversions = {op: sum(r["count"] for r in ops if base(r) == op) for op in CONVERSION_OPS}
    return {
        "mac_ops": integer + floating,
        "integer_mac_ops": integer,
        "integer_share": integer / (integer + floating) if integer + floating else 0.0,
        "conversions": {k: v for k, v in conversions.items() if v},
    }


def op_census(path: Path, threads: int = 2) -> dict:
    """Node types with their first input's dtype, in the graph onnxruntime runs after its own
    optimisation (level ORT_ENABLE_ALL, CPU execution provider), against the file's own graph; with
    ``integer``: the headline figures of that graph (``integer_headline``)."""

    import onnx  # lazy: see the module docstring

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
            dtype = (
                onnx.helper.tensor_dtype_to_np_dtype(types[n.input[0]]).name
                if n.input and types.get(n.input[0])
                else "-"
            )
            op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
            r = rows.setdefault((op, dtype), {"op": op, "dtype": dtype, "count": 0})
            r["count"] += 1
        return {"nodes": len(g.node), "ops": sorted(rows.values(), key=lambda r: (-r["count"], r["op"]))}

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        session(path, threads, optimized)
        after = census(onnx.load(str(optimized)))
    before = census(onnx.load(str(path)))
    return {
        "runtime": f"onnxruntime CPU execution provider, ORT_ENABLE_ALL, {threads} threads",
        "delegate": None,
        "ops_total": after["nodes"],
        "ops": after["ops"],
        "file_nodes": before["nodes"],
        "file_ops": before["ops"],
        "dtype_note": "dtype: the node's first input",
        "integer": integer_headline(after["ops"]),
    }


def layer_error(fp32_path: Path, int8_path: Path, pixels: np.ndarray, threads: int = 2) -> dict:
    """Per-layer error of a QDQ int8 .onnx against its fp32 sibling on ``pixels`` (N,H,W,3 uint8), by
    onnxruntime's QDQ debugging helpers (``onnx_layers.qdq_layer_error``)."""
    runner = load_runner(Path(int8_path), threads)
    try:
        inputs = runner.prepare(pixels)
    finally:
        runner.close()
    return {
        "method": "onnxruntime.quantization.qdq_loss_debug",
        "keep_float_names": f"ONNX node names (mvit-export --format {FORMAT} --keep-float NAME)",
        "layers": qdq_layer_error(fp32_path, int8_path, inputs),
    }
