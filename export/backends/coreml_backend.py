"""Core ML backend: ML Program for iOS 17+; fp16 (the default compute precision) / fp32, int8 weights,
W8A8.

W8A8 is calibrated in PyTorch with PT2E (``mvit.quant.pt2e``, the calibration the TFLite backend
shares), exported with ``torch.export`` + ``run_decompositions({})`` and converted by coremltools,
which turns the quantize/dequantize pairs into Core ML int8 ops. coremltools 9.0's own PT2E
``CoreMLQuantizer`` cannot be used: it imports ``torch.ao.quantization.quantizer``, gone in torch 2.13.
``--calib-method coremltools`` builds W8A8 with coremltools' own recipe instead
(``linear_quantize_activations``, calibrated by mvit's reference interpreter where macOS is not
available); PT2E stays the default because it is closer to the float model
(benchmarks/results/coreml_w8a8.md).

Image input (the default): Vision feeds camera buffers directly; scale 1/255 with the contract's
channel order, per-channel mean/std folded into the graph (Core ML's image scale is a scalar).
Outputs: ``classLabel`` and ``classLabel_probs`` (softmax in the graph), labels from the checkpoint.

Numerics: on macOS the runner uses Core ML's own predict; elsewhere mvit's reference interpreter of
the ML Program (``mvit.export.coreml_interp``): graph numerics, not a device measurement.

coremltools, a heavy import, is imported inside the functions that use it
(``# lazy: see the module docstring``): ``mvit-export`` imports every backend module (even for
``--help``, which lists each format's options), and ``format_of`` (each benchmark worker) may import
other formats' backends, so a process loads only the toolchains of the formats it uses.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ...model.preprocess import normalize_hwc_uint8
from ...quant.pt2e import Pt2eGraph, pixels_to_tensor, quantize_pt2e
from .. import coreml_interp
from ..base import Capabilities, ExportError, ExportJob, IOSpec, TensorSpec
from ..coreml_interp import calibrate_activations_linux
from ..runner import Runner
from ..wrappers import NormalizeOnly

FORMAT = "coreml"
SUFFIX = ".mlpackage"
RUNTIME = "Core ML"
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
INPUTS = ("image", "float-nchw")
KEEP_FLOAT = {"int8": "module names or module types (conv_1, LayerNorm) whose ops stay fp16; none = all int8"}
INT8_ROUTE = "pt2e"
RUNTIME_MODULES = ("coremltools",)  # imported before a benchmark times the model load
EXPORT_COST = 2
# PT2E int8 (or coremltools' own); off macOS the runner is mvit's reference interpreter
CAPABILITIES = Capabilities(pt2e_calibration=True, interpreted=True)
INTERPRETER_MAX_VERIFY = 48  # the reference interpreter takes ~0.4 s per 256x256 image: parity checks this many
META_KEY = "mvit"
INPUT_NAME = "image"
# --calib-method for coremltools' own activation calibration (the others, histogram / min-max, are PT2E's)
CT_CALIB_METHOD = "coremltools"
CALIB_METHODS = ("histogram", "min-max", CT_CALIB_METHOD)
# Activations of the coremltools route: "linear" (affine, a zero point, like PT2E's). coremltools'
# documented example, "linear_symmetric", measured worse on trashnet6 (benchmarks/results/coreml_w8a8.md).
CT_ACTIVATION_MODE = "linear"
QUANT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "quantize", "dequantize")


class _Softmax(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.softmax(self.model(x), dim=-1)


def _graph(job: ExportJob):
    """(module, sample, graph_input key, calibration mapping) for the job's input mode."""
    c = job.contract
    h, w = c.input_size
    if job.input_mode == "image":
        if c.is_plain_scale:
            inner, key = job.model, "normalized-nchw" if c.channel_order == "RGB" else "bgr-unit-nchw"
        else:
            inner, key = NormalizeOnly(job.model, c), "unit-nchw-" + c.channel_order

        def to_input(px):
            x = px.astype(np.float32) / 255.0
            if c.channel_order == "BGR":
                x = x[..., ::-1]
            return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

        return inner.eval(), torch.zeros(1, 3, h, w), key, to_input
    if job.input_mode == "float-nchw":
        return (
            job.model,
            torch.zeros(1, 3, h, w),
            "normalized-nchw",
            (lambda px: pixels_to_tensor(px, "NCHW", lambda p: normalize_hwc_uint8(p, c))),
        )
    raise ExportError(f"Core ML takes --input image or float-nchw, not {job.input_mode}")


def calibration_graph(job: ExportJob) -> Pt2eGraph | None:
    """The ``Pt2eGraph`` that ``export`` calibrates for an int8 ``job``; None for coremltools' own
    calibration (``--calib-method coremltools``)."""
    if job.calib_method == CT_CALIB_METHOD:
        return None
    inner, sample, key, to_input = _graph(job)
    return Pt2eGraph(job.model, inner, sample, to_input, key)


def _restart_op_names() -> None:
    """Number coremltools' generated op names (``const_12``) from zero again. Its MIL builder counts them
    process-wide, so a second conversion in one process, or the same one after other work, would name the
    same ops differently: the same inputs would not give the same bytes."""
    from coremltools.converters.mil.mil.builder import Builder  # lazy: see the module docstring

    Builder.name_count.clear()


def export(job: ExportJob, path: Path) -> IOSpec:
    """Convert ``job`` to an .mlpackage at ``path`` (a folder)."""
    import coremltools as ct  # lazy: see the module docstring

    inner, sample, key, to_input = _graph(job)
    details: dict = {}
    ct_route = job.precision == "int8" and job.calib_method == CT_CALIB_METHOD
    if ct_route:
        ct_keep_float = _ct_keep_float(job)  # checked before the (slow) conversion
    if job.precision == "int8" and not ct_route:
        inner, _, details = quantize_pt2e(
            calibration_graph(job), job.pt2e_settings(), cache=job.cache, fold_quantize=True
        )
        details = dict(details, coreml="W8A8: int8 weights and activations (quantize/dequantize ops)")
    module = _Softmax(inner).eval()
    with torch.no_grad():
        program = torch.export.export(module, (sample,)).run_decompositions({})
    c = job.contract
    if job.input_mode == "image":
        layout = ct.colorlayout.BGR if c.channel_order == "BGR" else ct.colorlayout.RGB
        inputs = [
            ct.ImageType(name=INPUT_NAME, shape=sample.shape, scale=1 / 255.0, bias=[0, 0, 0], color_layout=layout)
        ]
    else:
        inputs = [ct.TensorType(name=INPUT_NAME, shape=sample.shape, dtype=np.float32)]
    precision = ct.precision.FLOAT32 if job.precision == "fp32" else ct.precision.FLOAT16
    _restart_op_names()
    try:
        mlmodel = ct.convert(
            program,
            inputs=inputs,
            classifier_config=ct.ClassifierConfig(list(job.meta.labels)),
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=precision,
        )
    except Exception as e:
        raise ExportError(
            f"coremltools could not convert {job.meta.architecture}: {str(e).splitlines()[0][:200]}"
        ) from e
    if ct_route:
        mlmodel, details = _quantize_coremltools(job, mlmodel, program, to_input, *ct_keep_float)
    if job.precision == "dynamic":
        from coremltools.optimize.coreml import (  # lazy: see the module docstring
            OpLinearQuantizerConfig,
            OptimizationConfig,
            linear_quantize_weights,
        )

        cfg = OptimizationConfig(
            global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        )
        mlmodel = linear_quantize_weights(mlmodel, cfg)
        details = {
            "method": "coremltools linear_quantize_weights",
            "weights": "int8 per-channel symmetric",
            "activations": "float16",
        }
    mlmodel.short_description = f"mvit {job.meta.architecture} ({job.precision})"
    mlmodel.save(str(path))
    _stable_manifest(path)
    # A PT2E graph carries ExecuTorch debug handles, and coremltools then writes their op mapping
    # beside the model (a fifth of a small W8A8 package): not part of the model
    # (not in Manifest.json), not read by Core ML.
    Path(path, "executorch_debug_handle_mapping.json").unlink(missing_ok=True)
    h, w = c.input_size
    in_spec = (
        TensorSpec(INPUT_NAME, [1, h, w, 3], "uint8", "NHWC")
        if job.input_mode == "image"
        else TensorSpec(INPUT_NAME, [1, 3, h, w], "float32", "NCHW")
    )
    probs_name = mlmodel.get_spec().description.predictedProbabilitiesName
    io = IOSpec(
        in_spec,
        TensorSpec(probs_name, [1, job.meta.num_classes], "float32", "NC"),
        normalization_in_model=job.input_mode == "image",
        output_kind="probabilities",
        quantization_details=details,
    )
    if job.input_mode == "image":
        io.quantization_details = dict(
            io.quantization_details,
            coreml_image={"color_layout": c.channel_order, "scale": 1 / 255.0, "bias": [0.0, 0.0, 0.0]},
        )
    return io


def _stem_op_names(program, mlmodel, keep_float: tuple[str, ...]) -> list[str]:
    """Names of the Core ML ops that come from the modules (names or module type names) in
    ``keep_float``, found through the exported graph the model was converted from.

    coremltools names each op after the torch.export node it converts (fused conv + batch norm after
    the norm node), and the fp16 pass appends ``_cast_fp16``; the node's ``nn_module_stack`` says
    which module it ran in.
    """

    def model_path(path: str) -> str:  # the wrappers (_Softmax, NormalizeOnly) hold the model as .model
        while path.startswith("model."):
            path = path[len("model.") :]
        return path

    where: dict[str, tuple[list[str], list[str]]] = {}
    for n in program.graph.nodes:
        stack = [v for v in n.meta.get("nn_module_stack", {}).values() if isinstance(v, tuple) and len(v) == 2]
        where[n.name] = ([model_path(p) for p, _ in stack], [str(t).rsplit(".", 1)[-1].strip("'>") for _, t in stack])
    names = []
    for op in mlmodel._mil_program.functions["main"].operations:
        base = op.name[: -len("_cast_fp16")] if op.name.endswith("_cast_fp16") else op.name
        paths, types = where.get(base, ([], []))
        if any(p == k or p.startswith(k + ".") for p in paths for k in keep_float) or set(types) & set(keep_float):
            names.append(op.name)
    return names


def _ct_keep_float(job: ExportJob) -> tuple[tuple[str, ...], str]:
    """The keep-float list of the coremltools route (the export's int8 plan) and its source; every name
    must be a module or module type of the model."""
    keep_float, source = tuple(job.keep_float), job.keep_float_source
    names = {n for n, _ in job.model.named_modules() if n}
    types = {type(m).__name__ for m in job.model.modules()}
    unknown = [k for k in keep_float if k not in names and k not in types]
    if unknown:
        raise ExportError(
            f"--keep-float {unknown[0]!r}: no module or module type of that name in the model "
            f"(e.g. {next(iter(sorted(names)), '')!r} or 'LayerNorm')"
        )
    return keep_float, source


def _quantize_coremltools(job: ExportJob, mlmodel, program, to_input, keep_float, source):
    """W8A8 with coremltools' own recipe: ``linear_quantize_activations`` (per-tensor min/max of
    every activation on the calibration images, run by mvit's reference interpreter in fp16, as
    Core ML's predict would on macOS; ``export.coreml_interp.calibrate``), then
    ``linear_quantize_weights`` (int8 per-channel symmetric, every conv/linear weight). The ops of
    the ``keep_float`` modules keep fp16 weights and activations.
    """
    import coremltools.optimize.coreml as cto  # lazy: see the module docstring

    if job.calib_pixels is None or len(job.calib_pixels) == 0:
        raise ExportError("int8 export needs calibration images")
    excluded = _stem_op_names(program, mlmodel, keep_float) if keep_float else []
    if keep_float and not excluded:
        raise ExportError(f"--keep-float {', '.join(keep_float)}: no Core ML op comes from these modules")
    t0 = time.perf_counter()
    px = job.calib_pixels
    if job.input_mode == "image":  # the image input takes 0..255 RGB pixels, NCHW
        samples = [{INPUT_NAME: px[i : i + 1].transpose(0, 3, 1, 2).astype(np.float32)} for i in range(len(px))]
    else:
        samples = [{INPUT_NAME: to_input(px[i : i + 1]).numpy()} for i in range(len(px))]
    act = cto.OpLinearQuantizerConfig(mode=CT_ACTIVATION_MODE)
    wq = cto.OpLinearQuantizerConfig(mode="linear_symmetric", granularity="per_channel", weight_threshold=0)
    skip = {name: None for name in excluded}
    q = calibrate_activations_linux(
        mlmodel,
        samples,
        cto.OptimizationConfig(global_config=act, op_name_configs=skip),
        weight_config=cto.OptimizationConfig(global_config=wq, op_name_configs=skip),
        mode="fp16",
    )
    details = {
        "method": "coremltools",
        "observer": "min-max (per tensor, coremltools linear_quantize_activations)",
        "calibration_run": "mvit reference interpreter, fp16",
        "weights": "int8 per-channel symmetric",
        "activations": f"int8 per-tensor ({CT_ACTIVATION_MODE})",
        "calibration_images": int(len(px)),
        "keep_float": list(keep_float),
        "keep_float_source": source,
        "keep_float_ops": len(excluded),
        "calibration_seconds": round(time.perf_counter() - t0, 1),
        "coreml": "W8A8: int8 weights and activations (quantize/dequantize ops)",
    }
    return q, details


def embed_metadata(path: Path, meta: dict) -> None:
    """Store model_meta in the package's user-defined metadata (re-saving the package)."""
    import coremltools as ct  # lazy: see the module docstring

    mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    mlmodel.user_defined_metadata[META_KEY] = json.dumps(meta)
    tmp = Path(path).with_name(Path(path).stem + ".meta-tmp.mlpackage")
    mlmodel.save(str(tmp))
    _stable_manifest(tmp)
    shutil.rmtree(path)
    tmp.rename(path)


def _stable_manifest(package: Path) -> None:
    """Make a saved package's bytes a function of its content: the specification serialized with sorted
    map keys (protobuf orders the user-defined metadata by hash otherwise, which differs between
    processes), and item identifiers in Manifest.json derived from each item's path instead of the
    random ones coremltools writes."""
    from coremltools.proto import Model_pb2  # lazy: see the module docstring

    manifest = Path(package) / "Manifest.json"
    doc = json.loads(manifest.read_text())
    for item in doc["itemInfoEntries"].values():
        if item["name"] == "model.mlmodel":
            spec_path = Path(package) / "Data" / item["path"]
            spec = Model_pb2.Model()
            spec.ParseFromString(spec_path.read_bytes())
            spec_path.write_bytes(spec.SerializeToString(deterministic=True))
    renamed = {
        old: str(uuid.uuid5(uuid.NAMESPACE_URL, "mlpackage:" + item["path"]))
        for old, item in doc["itemInfoEntries"].items()
    }
    doc["itemInfoEntries"] = {renamed[k]: v for k, v in doc["itemInfoEntries"].items()}
    doc["rootModelIdentifier"] = renamed[doc["rootModelIdentifier"]]
    manifest.write_text(json.dumps(doc, indent=4, sort_keys=True))


def read_metadata(path: Path) -> dict:
    """model_meta stored in an .mlpackage."""
    spec = _spec(path)
    text = spec.description.metadata.userDefined.get(META_KEY)
    if not text:
        raise ValueError(f"{path}: no mvit metadata in this .mlpackage")
    return json.loads(text)


def _spec(path: Path):
    import coremltools as ct  # lazy: see the module docstring

    if not Path(path, "Manifest.json").exists():
        raise ValueError(f"{path}: not an .mlpackage (no Manifest.json)")
    try:
        return ct.utils.load_spec(str(path))
    except Exception as e:
        raise ValueError(f"{path}: unreadable .mlpackage ({str(e).splitlines()[0][:120]})") from None


def inspect_spec(path: Path) -> dict:
    """What can be checked without running the model: I/O, labels, op types, max tensor rank."""
    spec = _spec(path)
    ops: dict[str, int] = {}
    max_rank = 0
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in _walk(block.operations):
                ops[op.type] = ops.get(op.type, 0) + 1
                for out in op.outputs:
                    if out.type.HasField("tensorType"):
                        max_rank = max(max_rank, out.type.tensorType.rank)
    desc = spec.description
    return {
        "spec_version": spec.specificationVersion,
        "inputs": {i.name: i.type.WhichOneof("Type") for i in desc.input},
        "outputs": {o.name: o.type.WhichOneof("Type") for o in desc.output},
        "labels": _labels(spec),
        "probabilities_output": desc.predictedProbabilitiesName,
        "op_counts": ops,
        "max_rank": max_rank,
        "quant_ops": {k: v for k, v in ops.items() if k in QUANT_OPS},
    }


def _labels(spec) -> list[str]:
    """Class labels held by the program's ``classify`` op."""
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in _walk(block.operations):
                if op.type == "classify":
                    for arg in op.inputs["classes"].arguments:
                        return [v.immediateValue.tensor.strings.values[0] for v in arg.value.immediateValue.list.values]
    return []


def _walk(operations):
    for op in operations:
        yield op
        for block in op.blocks:
            yield from _walk(block.operations)


def can_time() -> tuple[bool, str]:
    """Core ML predictions need macOS (coremltools' native runtime)."""
    if platform.system() != "Darwin":
        return False, (
            f"no latency: Core ML runs only on Apple OSes (this is {platform.system()}); accuracy and "
            f"agreement are graph numerics from mvit's reference interpreter, not a device measurement"
        )
    try:
        import coremltools.libcoremlpython  # noqa: F401
    except ImportError:
        return False, "no latency: coremltools' native runtime (libcoremlpython) is not available"
    return True, ""


def unavailable() -> str | None:
    """Never: coremltools is a core dependency of mvit."""
    return None


def check_artifact(path: Path, meta: dict) -> list[str]:
    """The saved package against its metadata: input, labels, tensor ranks <= 5, and the quantization ops
    the precision promises ([] = sound)."""
    info = inspect_spec(path)
    problems = []
    if INPUT_NAME not in info["inputs"]:
        problems.append(f"input {INPUT_NAME!r} missing (has {list(info['inputs'])})")
    if info["labels"] != list(meta["labels"]):
        problems.append("class labels differ from the checkpoint's")
    if info["max_rank"] > 5:
        problems.append(f"a tensor of rank {info['max_rank']} (Core ML allows at most 5)")
    q = info["quant_ops"]
    if meta["precision"] == "dynamic" and not any(k.startswith("constexpr") for k in q):
        problems.append("int8 weights requested but no constexpr dequantize ops are present")
    if meta["precision"] == "int8" and not ({"quantize", "dequantize"} <= set(q)):
        problems.append("W8A8 requested but no quantize/dequantize activation ops are present")
    return problems


class CoreMLRunner(Runner):
    """Core ML predict on macOS; elsewhere the reference interpreter (graph numerics only)."""

    def __init__(self, path: Path, meta: dict, threads: int = 2, backend: str = "auto"):
        super().__init__(path, meta)
        self.backend = ("coreml" if platform.system() == "Darwin" else "interpreter") if backend == "auto" else backend
        if self.backend == "interpreter":
            self.max_verify = INTERPRETER_MAX_VERIFY
        if self.backend == "coreml":
            import coremltools as ct  # lazy: see the module docstring

            self.mlmodel = ct.models.MLModel(str(path))
        else:
            self.program = coreml_interp.load_program(str(path))
            self._interp = coreml_interp.Interpreter(self.program)  # constants prepared once, not per image
        self.probs_name = inspect_spec(path)["probabilities_output"]

    @property
    def numerics(self) -> str:
        return (
            "Core ML predict on this Mac"
            if self.backend == "coreml"
            else "graph numerics from mvit's reference interpreter (not a device measurement)"
        )

    def reproducible(self) -> Runner:
        """The reference interpreter (Core ML's predict on macOS depends on the Mac)."""
        if self.backend == "interpreter":
            return self
        self.close()
        return type(self)(self.path, self.meta, backend="interpreter")

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        if self.input["dtype"] == "uint8":  # image input: raw RGB pixels, NHWC
            return pixels
        return super().prepare(pixels)

    def invoke(self, native: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(native.shape[0]):
            x = native[i : i + 1]
            if self.backend == "coreml":
                feed = Image.fromarray(x[0]) if self.input["dtype"] == "uint8" else x
                probs = self.mlmodel.predict({INPUT_NAME: feed})[self.probs_name]
            else:
                feed = x.transpose(0, 3, 1, 2).astype(np.float32) if self.input["dtype"] == "uint8" else x
                probs = coreml_interp.run(self._interp, {INPUT_NAME: feed}, mode="auto")[self.probs_name]
            if isinstance(probs, dict):
                probs = np.array([probs[l] for l in self.meta["labels"]], np.float32)
            outs.append(np.asarray(probs, np.float32).reshape(1, -1))
        return np.concatenate(outs)


def load_runner(path: Path, threads: int = 2, meta: dict | None = None) -> Runner:
    """A runner for an .mlpackage: its mvit metadata, or ``meta`` describing a package without any."""
    return CoreMLRunner(Path(path), meta if meta is not None else read_metadata(path), threads)


# ------------------------------------------------------------------------------------------ any .mlpackage


def _mil_dtype(code: int) -> str:
    """The name of a MIL tensor data type (MIL.proto's DataType enum, e.g. 10 -> float16)."""
    from coremltools.proto import MIL_pb2  # lazy: see the module docstring

    try:
        return MIL_pb2.DataType.Name(code).lower()
    except ValueError:
        return str(code)


def io_details(path: Path) -> dict:
    """First input and output of any .mlpackage: name, shape, dtype (an image input: uint8 NHWC)."""
    desc = _spec(path).description
    out = {}
    for key, f in (("input", desc.input[0]), ("output", desc.output[0])):
        kind = f.type.WhichOneof("Type")
        if kind == "imageType":
            shape, dtype = [1, int(f.type.imageType.height), int(f.type.imageType.width), 3], "uint8"
        elif kind == "multiArrayType":
            shape = [int(v) for v in f.type.multiArrayType.shape]
            dtype = {65568: "float32", 65552: "float16", 131104: "int32"}.get(f.type.multiArrayType.dataType, "float32")
        else:
            shape, dtype = [], kind
        out[key] = {"name": f.name, "shape": shape, "dtype": dtype, "quantization": None}
    return out


def missing_ops(path: Path) -> list[str]:
    """Nothing can be checked against a runtime here: Core ML runs only on Apple OSes."""
    _spec(path)
    return []


def op_census(path: Path, threads: int = 2) -> dict:
    """Op types of the ML program with the dtype of each op's first output (Core ML decides at load
    time which compute unit runs what: no delegate split can be read from the file)."""
    spec = _spec(path)
    rows: dict = {}
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in _walk(block.operations):
                t = op.outputs[0].type if op.outputs else None
                dtype = _mil_dtype(t.tensorType.dataType) if t is not None and t.HasField("tensorType") else "-"
                r = rows.setdefault((op.type, dtype), {"op": op.type, "dtype": dtype, "count": 0})
                r["count"] += 1
    return {
        "runtime": "none here (Core ML runs on Apple OSes only)",
        "delegate": None,
        "ops_total": sum(r["count"] for r in rows.values()),
        "ops": sorted(rows.values(), key=lambda r: (-r["count"], r["op"])),
        "dtype_note": "dtype: the op's first output",
    }
