"""TFLite backend: litert-torch conversion; fp32, fp16 weights, dynamic-range and full-integer int8.

int8 is PT2E (``mvit.quant.pt2e``: per-channel symmetric int8 weights, affine int8 activations, int8
input and output, SiLU in int8 too), the route measured fastest and most accurate here
(benchmarks/results/tflite_int8_speed.md). After conversion the graph dequantizes the int8 input
before the first conv's PAD so XNNPACK folds that PAD into the conv (``mvit.export.tflite_passes``).
Runs with ai-edge-litert's interpreter (XNNPACK). Metadata lives in a flatbuffer metadata entry
named ``mvit``.

litert-torch, ai-edge-quantizer and ai-edge-litert are imported inside the functions that use them
(``# lazy: see the module docstring``): ``mvit-export`` imports every backend module (even for
``--help``, which lists each format's options), and ``format_of`` (each benchmark worker) may import
other formats' backends, so a process loads only the toolchains of the formats it uses.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ..base import Capabilities, ExportError, ExportJob, IOSpec, TensorSpec
from ..metadata import to_json_bytes
from ..runner import Runner
from ..tflite_passes import dequantize_before_pad, float_softmax
from ..wrappers import input_graph, pt2e_input_graph, quantize_input_graph

FORMAT = "tflite"
SUFFIX = ".tflite"
RUNTIME = "LiteRT interpreter (XNNPACK)"
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
INPUTS = ("float-nchw", "uint8-nhwc")
CALIB_METHODS = ("histogram", "min-max")
KEEP_FLOAT = {"int8": "module names or module types (conv_1, LayerNorm) whose ops stay float; none = all int8"}
INT8_ROUTE = "pt2e"
RUNTIME_MODULES = ("ai_edge_litert.interpreter",)  # imported before a benchmark times the model load
EXPORT_COST = 3
CAPABILITIES = Capabilities(pt2e_calibration=True, tensor_error=True)
META_NAME = "mvit"
_DTYPES = {np.float32: "float32", np.float16: "float16", np.int8: "int8", np.uint8: "uint8"}


def _quiet():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("litert_torch").setLevel(logging.ERROR)


def _convert(module, sample, path: Path, **kw) -> None:
    import litert_torch  # lazy: see the module docstring

    _quiet()
    litert_torch.convert(module, (sample,), **kw).export(str(path))


def _fp32_bytes(job: ExportJob, module, sample, tmp: Path) -> bytes:
    key = (FORMAT, job.input_mode)
    if key not in job.cache.fp32:
        _convert(module, sample, tmp)
        job.cache.fp32[key] = tmp.read_bytes()
    return job.cache.fp32[key]


def calibration_graph(job: ExportJob):
    """The ``mvit.quant.pt2e.Pt2eGraph`` that ``export`` calibrates for an int8 ``job``."""
    return pt2e_input_graph(job, *input_graph(job, "TFLite"))


def export(job: ExportJob, path: Path) -> IOSpec:
    """Convert ``job`` to a .tflite file at ``path``."""
    module, sample, layout, in_model = input_graph(job, "TFLite")
    details: dict = {}
    if job.precision == "int8":
        converted, quantizer, details = quantize_input_graph(job, module, sample, layout, in_model)
        from litert_torch.quantize.quant_config import QuantConfig  # lazy: see the module docstring

        _convert(converted, sample, path, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    else:
        fp32 = _fp32_bytes(job, module, sample, path)
        if job.precision == "fp32":
            path.write_bytes(fp32)
        elif job.precision == "fp16":
            path.write_bytes(weights_to_fp16(fp32))
            details.update(method="float16 weights, dequantized at load")
        elif job.precision == "dynamic":
            path.write_bytes(_dynamic_range(fp32))
            details.update(
                method="ai-edge-quantizer dynamic_wi8_afp32",
                weights="int8 per-channel",
                activations="float (quantized on the fly)",
            )
        else:
            raise ExportError(f"TFLite has no precision {job.precision!r}")
    model_bytes, moved = finish_graph(path.read_bytes())
    if moved:
        details["dequantize_before_pad"] = moved
    path.write_bytes(model_bytes)
    spec = _io_spec(path.read_bytes(), layout)
    return IOSpec(spec[0], spec[1], normalization_in_model=in_model, quantization_details=details)


def finish_graph(model_bytes: bytes) -> tuple[bytes, int]:
    """What every export does to litert-torch's output: DEQUANTIZE before PAD (export/tflite_passes.py;
    returns how many moved), the softmax back in float (``float_softmax``) and module-path tensor names."""
    model_bytes, moved = dequantize_before_pad(model_bytes)
    model_bytes, _ = float_softmax(model_bytes)
    return shorten_tensor_names(model_bytes), moved


def _dynamic_range(fp32: bytes) -> bytes:
    from ai_edge_quantizer import quantizer, recipe  # lazy: see the module docstring

    q = quantizer.Quantizer(bytearray(fp32))
    q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    return bytes(q.quantize().quantized_model)


def _io_spec(model_bytes: bytes, layout: str) -> tuple[TensorSpec, TensorSpec]:
    from ai_edge_litert.interpreter import Interpreter  # lazy: see the module docstring

    it = Interpreter(model_content=model_bytes)
    specs = []
    for d, lay in ((it.get_input_details()[0], layout), (it.get_output_details()[0], "NC")):
        scale, zp = d["quantization"]
        dtype = _DTYPES[d["dtype"]]
        q = {"scale": float(scale), "zero_point": int(zp)} if dtype in ("int8", "uint8") and scale else None
        specs.append(TensorSpec(d["name"], [int(v) for v in d["shape"]], dtype, lay, q))
    return specs[0], specs[1]


def weights_to_fp16(model_bytes: bytes) -> bytes:
    """Store every float32 constant as float16 behind a DEQUANTIZE op (TFLite's fp16 scheme:
    half the size; XNNPACK and the GPU delegate consume it directly)."""
    from ai_edge_litert import schema_py_generated as schema  # lazy: see the module docstring
    from ai_edge_litert.tools import flatbuffer_utils as fb  # lazy: see the module docstring

    m = fb.read_model_from_bytearray(bytearray(model_bytes))
    deq = schema.BuiltinOperator.DEQUANTIZE
    code = next((i for i, c in enumerate(m.operatorCodes) if c.builtinCode == deq), None)
    if code is None:
        oc = schema.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = deq, deq, 3
        m.operatorCodes.append(oc)
        code = len(m.operatorCodes) - 1
    for sg in m.subgraphs:
        new_ops = []
        for ti, t in enumerate(list(sg.tensors)):
            buf = m.buffers[t.buffer] if t.buffer else None
            if t.type != schema.TensorType.FLOAT32 or buf is None or buf.data is None or len(buf.data) < 64:
                continue
            data = np.frombuffer(bytes(np.asarray(buf.data, np.uint8)), np.float32).astype(np.float16)
            nb = schema.BufferT()
            nb.data = np.frombuffer(data.tobytes(), np.uint8)
            m.buffers.append(nb)
            half = schema.TensorT()
            half.shape, half.type, half.buffer = t.shape, schema.TensorType.FLOAT16, len(m.buffers) - 1
            half.name = f"{_name(t.name or 'w')}_fp16"
            sg.tensors.append(half)
            buf.data = None  # the float32 tensor becomes the DEQUANTIZE output
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = code, [len(sg.tensors) - 1], [ti]
            new_ops.append(op)
        sg.operators = new_ops + list(sg.operators)
    return bytes(fb.convert_object_to_bytearray(m))


def check_artifact(path: Path, meta: dict) -> list[str]:
    """Ops the interpreter cannot run without extra libraries (Flex, custom), and I/O against metadata."""
    from ai_edge_litert.interpreter import Interpreter  # lazy: see the module docstring

    problems = [
        f"op {name} needs a runtime extension (Flex/custom), which phones' LiteRT lacks"
        for name in custom_ops(Path(path).read_bytes())
    ]
    it = Interpreter(model_path=str(path))
    shape = [int(v) for v in it.get_input_details()[0]["shape"]]
    if shape != meta["input"]["shape"]:
        problems.append(f"input shape {shape} != metadata {meta['input']['shape']}")
    return problems


def custom_ops(model_bytes: bytes) -> list[str]:
    """Names of the custom (including Flex) ops in a .tflite file."""
    from ai_edge_litert import schema_py_generated as schema  # lazy: see the module docstring
    from ai_edge_litert.tools import flatbuffer_utils as fb  # lazy: see the module docstring

    m = fb.read_model_from_bytearray(bytearray(model_bytes))
    return sorted(
        {
            _name(c.customCode)
            for c in m.operatorCodes
            if fb.get_builtin_code_from_operator_code(c) == schema.BuiltinOperator.CUSTOM
        }
    )


def can_time() -> tuple[bool, str]:
    """LiteRT's interpreter runs on this machine."""
    return True, ""


def unavailable() -> str | None:
    """Never: LiteRT is a core dependency of mvit."""
    return None


def embed_metadata(path: Path, meta: dict) -> None:
    """Add (or replace) the ``mvit`` metadata entry of a .tflite file in place."""
    from ai_edge_litert import schema_py_generated as schema  # lazy: see the module docstring
    from ai_edge_litert.tools import flatbuffer_utils as fb  # lazy: see the module docstring

    m = fb.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    buf = schema.BufferT()
    buf.data = np.frombuffer(to_json_bytes(meta), np.uint8)
    m.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = META_NAME, len(m.buffers) - 1
    m.metadata = [e for e in (m.metadata or []) if _name(e.name) != META_NAME] + [entry]
    Path(path).write_bytes(bytes(fb.convert_object_to_bytearray(m)))


def read_metadata(path: Path) -> dict:
    """The ``mvit`` metadata entry of a .tflite file."""
    from ai_edge_litert import schema_py_generated as schema  # lazy: see the module docstring

    data = Path(path).read_bytes()
    try:
        m = schema.Model.GetRootAs(data, 0)
        for i in range(m.MetadataLength()):
            md = m.Metadata(i)
            if _name(md.Name()) == META_NAME:
                return json.loads(m.Buffers(md.Buffer()).DataAsNumpy().tobytes())
    except Exception as e:  # flatbuffers raises assorted errors on foreign bytes
        raise ValueError(f"{path}: not a readable .tflite file ({type(e).__name__})") from None
    raise ValueError(f"{path}: no mvit metadata in this .tflite file")


def _name(n) -> str:
    return n.decode() if isinstance(n, bytes) else str(n)


def short_tensor_name(name: str) -> str:
    """``layer_3.0.block.red_1x1.block.conv;1`` for litert-torch's scope path
    ``model.mobilevit.MobileViT/torch.nn.modules.container.Sequential_layer_3/.../Conv2d_conv;1``.

    Each ``/`` segment is ``<qualified class>_<attribute>``; the attribute names make the module path.
    Names without a scope path (inputs, outputs, signature tensors) are returned unchanged.
    """
    parts = []
    for part in name.split(";"):
        if "/" in part:
            attrs = []
            for seg in part.split("/"):
                cls_attr = seg.rsplit(".", 1)[-1].lstrip("_")
                if "_" in cls_attr:
                    attrs.append(cls_attr.split("_", 1)[1])
            part = ".".join(attrs) or part.rsplit(".", 1)[-1]
        if part and (not parts or parts[-1] != part):
            parts.append(part)
    return ";".join(parts)


def shorten_tensor_names(model_bytes: bytes) -> bytes:
    """Rewrite litert-torch's scope-path tensor names (a quarter of an int8 MobileViT-XXS file) as
    module paths; the graph's own input and output tensors keep their names."""
    from ai_edge_litert.tools import flatbuffer_utils as fb  # lazy: see the module docstring

    m = fb.read_model_from_bytearray(bytearray(model_bytes))
    for sg in m.subgraphs:
        io = set(sg.inputs) | set(sg.outputs)
        for i, t in enumerate(sg.tensors):
            if i not in io and t.name:
                t.name = short_tensor_name(_name(t.name))
    return bytes(fb.convert_object_to_bytearray(m))


class TFLiteRunner(Runner):
    """ai-edge-litert interpreter (XNNPACK), batch 1 per invoke."""

    def __init__(self, path: Path, meta: dict, threads: int = 2, keep_tensors: bool = False):
        super().__init__(path, meta)
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # lazy: see the module docstring

        # keep_tensors: every intermediate tensor stays readable, on the reference kernels (the XNNPACK
        # delegate computes whole subgraphs without them)
        kw = (
            dict(
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                experimental_preserve_all_tensors=True,
            )
            if keep_tensors
            else {}
        )
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads, **kw)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._out = self.interpreter.get_output_details()[0]["index"]

    def invoke(self, native: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(native.shape[0]):
            self.interpreter.set_tensor(self._in, native[i : i + 1])
            self.interpreter.invoke()
            outs.append(self.interpreter.get_tensor(self._out).copy())
        return np.concatenate(outs)


def load_runner(path: Path, threads: int = 2, meta: dict | None = None, keep_tensors: bool = False) -> Runner:
    """A runner for a .tflite file: its mvit metadata, or ``meta`` describing a file without any;
    ``keep_tensors``: reference kernels with every intermediate tensor kept (for per-tensor reports)."""
    _quiet()
    return TFLiteRunner(Path(path), meta if meta is not None else read_metadata(path), threads, keep_tensors)


# ------------------------------------------------------------------------------------------ any .tflite file


def io_details(path: Path) -> dict:
    """Input and output tensors of any .tflite file: name, shape, dtype, quantization (or None)."""
    from ai_edge_litert.interpreter import Interpreter  # lazy: see the module docstring

    _quiet()
    it = Interpreter(model_path=str(path))
    out = {}
    for key, d in (("input", it.get_input_details()[0]), ("output", it.get_output_details()[0])):
        scale, zp = d["quantization"]
        dtype = _DTYPES.get(d["dtype"], np.dtype(d["dtype"]).name)
        q = {"scale": float(scale), "zero_point": int(zp)} if dtype in ("int8", "uint8") and scale else None
        out[key] = {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": dtype, "quantization": q}
    return out


def _operators(model_bytes: bytes, subgraphs=None) -> list[tuple[str, tuple[str, ...]]]:
    """(op name or custom code, input tensor types) per operator of the given subgraphs (default: all),
    from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema  # lazy: see the module docstring
    from ai_edge_litert.tools import flatbuffer_utils as fb  # lazy: see the module docstring

    try:
        m = fb.read_model_from_bytearray(bytearray(model_bytes))
    except Exception as e:  # flatbuffers raises assorted errors on foreign bytes
        raise ValueError(f"not a readable .tflite file ({type(e).__name__})") from None
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    ops = []
    for sg in m.subgraphs if subgraphs is None else [m.subgraphs[i] for i in subgraphs]:
        for op in sg.operators or []:
            code = m.operatorCodes[op.opcodeIndex]
            builtin = fb.get_builtin_code_from_operator_code(code)
            custom = _name(code.customCode) if code.customCode else None
            name = custom if builtin == schema.BuiltinOperator.CUSTOM else names.get(builtin, f"BUILTIN_{builtin}")
            dtypes = tuple(
                types.get(sg.tensors[int(t)].type, "?")
                for t in (op.inputs if op.inputs is not None else [])
                if int(t) >= 0
            )
            ops.append((name, dtypes))
    return ops


def missing_ops(path: Path) -> list[str]:
    """Ops of a .tflite file that ai-edge-litert's interpreter cannot run: Select TensorFlow (Flex)
    ops and custom ops (the interpreter registers neither), named."""
    try:
        custom = custom_ops(Path(path).read_bytes())
    except Exception as e:  # flatbuffers raises assorted errors on foreign bytes
        raise ValueError(f"not a readable .tflite file ({type(e).__name__})") from None
    return [
        f"{c} ({'Flex: a TensorFlow op, needs the Select TF ops delegate' if c.startswith('Flex') else 'custom op'})"
        for c in custom
    ]


def op_census(path: Path, threads: int = 2) -> dict:
    """Op types with their input dtypes, and which of them the XNNPACK delegate took in this runtime.

    The interpreter reports the DELEGATE nodes XNNPACK created next to the original nodes; the nodes a
    delegate replaced are the ones between its input and output tensors, found by walking back from
    its outputs.
    """
    from ai_edge_litert.interpreter import Interpreter  # lazy: see the module docstring

    _quiet()
    ops = _operators(Path(path).read_bytes(), subgraphs=[0])  # the interpreter's nodes are subgraph 0's
    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    nodes = it._get_ops_details()
    plain = [d for d in nodes if d["op_name"] != "DELEGATE"]
    producer = {int(t): d["index"] for d in plain for t in d["outputs"]}
    by_index = {d["index"]: d for d in nodes}
    taken = set()
    delegates = [d for d in nodes if d["op_name"] == "DELEGATE"]
    for dg in delegates:
        boundary = {int(t) for t in dg["inputs"]}
        stack = [int(t) for t in dg["outputs"]]
        while stack:
            t = stack.pop()
            if t in boundary or t not in producer or producer[t] in taken:
                continue
            taken.add(producer[t])
            stack += [int(i) for i in by_index[producer[t]]["inputs"] if int(i) >= 0]
    rows: dict = {}
    for i, (name, dtypes) in enumerate(ops[: len(plain)]):
        key = (name, dtypes[0] if dtypes else "-")
        r = rows.setdefault(key, {"op": name, "dtype": key[1], "count": 0, "delegated": 0})
        r["count"] += 1
        r["delegated"] += i in taken
    fallback = {}
    for r in rows.values():
        if r["count"] > r["delegated"]:
            fallback[f"{r['op']} ({r['dtype']})"] = r["count"] - r["delegated"]
    return {
        "runtime": f"ai-edge-litert interpreter, {threads} threads",
        "delegate": "XNNPACK",
        "ops_total": len(plain),
        "ops_delegated": len(taken),
        "delegate_partitions": len(delegates),
        "ops": sorted(rows.values(), key=lambda r: (-r["count"], r["op"])),
        "fallback": fallback,
        "dtype_note": "dtype: the op's first input tensor",
    }


def tensor_error(path: Path, model, pixels: np.ndarray) -> dict:
    """Per-tensor error of an int8 .tflite file against the float ``model`` on ``pixels`` (N,H,W,3 uint8):
    each int8 tensor on the reference kernels against its module's float output (``tflite_layers``)."""
    # lazy: breaks the cycle tflite_backend -> tflite_layers -> tflite_backend
    from .tflite_layers import file_tensor_error

    return {
        "method": "each int8 tensor of the .tflite file (reference kernels) against the float model's "
        "output of the module it is named after",
        "keep_float_names": f"module paths (mvit-export --format {FORMAT} --keep-float NAME)",
        "layers": file_tensor_error(path, model, pixels),
    }


MOVE_OPS = ("RESHAPE", "TRANSPOSE", "SLICE", "STRIDED_SLICE", "SQUEEZE", "EXPAND_DIMS", "GATHER")


def conversions_around_moves(path: Path) -> list[str]:
    """DEQUANTIZE -> QUANTIZE paths of a .tflite file with only ops that move values between them (no float
    op that needed the conversion), each as ``DEQUANTIZE#i -> RESHAPE#j -> QUANTIZE#k``."""
    from ai_edge_litert.tools import flatbuffer_utils as fb  # lazy: see the module docstring

    m = fb.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    sg = m.subgraphs[0]
    names = [name for name, _ in _operators(Path(path).read_bytes(), subgraphs=[0])]
    readers: dict[int, list[int]] = {}
    for k, op in enumerate(sg.operators):
        for t in op.inputs if op.inputs is not None else []:
            readers.setdefault(int(t), []).append(k)
    found = []
    for k, name in enumerate(names):
        if name != "DEQUANTIZE":
            continue
        stack = [(k, [f"DEQUANTIZE#{k}"])]
        while stack:
            i, trail = stack.pop()
            for j in readers.get(int(sg.operators[i].outputs[0]), []):
                if names[j] == "QUANTIZE":
                    found.append(" -> ".join(trail + [f"QUANTIZE#{j}"]))
                elif names[j] in MOVE_OPS:
                    stack.append((j, trail + [f"{names[j]}#{j}"]))
    return found
