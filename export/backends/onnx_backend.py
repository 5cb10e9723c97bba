"""ONNX backend: torch.onnx (dynamo exporter), onnxsim, fp16, dynamic and static (QDQ) int8.

Runs with onnxruntime on the CPU. Metadata lives in ``metadata_props["mvit"]``. The artifact is a
single file: weights are folded back in rather than left in a separate ``.onnx.data``.
"""
from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from export.base import ExportError, ExportJob, IOSpec, Runner, TensorSpec
from export.wrappers import PixelInput

FORMAT = "onnx"
SUFFIX = ".onnx"
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
INPUTS = ("float-nchw", "uint8-nhwc")
CALIB_METHODS = ("min-max", "percentile", "entropy")
META_KEY = "mvit"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8"}


def _fp32_model(job: ExportJob):
    """Export + simplify once per input mode; returns an onnx ModelProto."""
    import onnx

    key = ("onnx-fp32", job.input_mode)
    if key in job.cache:
        return onnx.load_from_string(job.cache[key])
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
    model = prog.model_proto
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if ok:
            model = simplified
    except Exception as e:  # onnxsim is an optimisation: keep the exporter's graph if it fails
        logging.getLogger(__name__).warning("onnxsim failed (%s); keeping the unsimplified graph", e)
    job.cache[key] = model.SerializeToString()
    return model


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
    elif job.precision in ("dynamic", "int8"):
        from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with tempfile.TemporaryDirectory() as tmp:
            src, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
            onnx.save_model(model, str(src))
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            if job.precision == "int8":
                from export.quant_defaults import onnx_static_ops, resolve_keep_float

                keep, source = resolve_keep_float(job.model, job.keep_float, "onnx")
                ops = onnx_static_ops(job.model)
            else:
                keep, source = tuple(k for k in job.keep_float if k.lower() != "none"), "user"
            nodes = _nodes_to_keep_float(onnx.load(str(pre)), keep)
            if job.precision == "dynamic":
                quantize_dynamic(str(pre), str(path), weight_type=QuantType.QInt8, per_channel=True,
                                 nodes_to_exclude=nodes, op_types_to_quantize=["MatMul", "Gemm", "Conv"])
                details = {"method": "onnxruntime quantize_dynamic", "weights": "int8 per-channel"}
            else:
                method = {"min-max": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                          "entropy": CalibrationMethod.Entropy}.get(job.calib_method)
                if method is None:
                    raise ExportError(f"calibration method {job.calib_method!r} is not available for ONNX; "
                                      f"use one of {', '.join(CALIB_METHODS)}")
                quantize_static(str(pre), str(path), _Reader(job), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=method, nodes_to_exclude=nodes, op_types_to_quantize=list(ops),
                                extra_options={"CalibMovingAverage": False,
                                               # weights [in, out] (MatMul, Gemm transB=0): one scale per output
                                               "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}})
                details = {"method": "onnxruntime quantize_static QDQ", "weights": "int8 per-channel symmetric",
                           "activations": "uint8 per-tensor affine", "calibration": job.calib_method,
                           "calibration_images": int(len(job.calib_pixels)), "quantized_ops": list(ops),
                           "keep_float_source": source}
            details["keep_float"] = list(keep)
    else:
        raise ExportError(f"ONNX has no precision {job.precision!r}")
    return _io_spec(path, "NHWC" if job.input_mode == "uint8-nhwc" else "NCHW", job.input_mode == "uint8-nhwc",
                    details)


def _nodes_to_keep_float(model, keep_float) -> list[str]:
    """Node names for --keep-float items: exact node names, op types (all their nodes), or a
    module path, which matches every node whose weight initializer lives under that module
    (``conv_1`` -> ``conv_1.block.conv.weight``) or whose name contains it."""
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
        if not matched:
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
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._in = self.session.get_inputs()[0].name
        self._batch_one = self.session.get_inputs()[0].shape[0] == 1

    def invoke(self, native: np.ndarray) -> np.ndarray:
        if not self._batch_one:
            return self.session.run(None, {self._in: native})[0]
        return np.concatenate([self.session.run(None, {self._in: native[i : i + 1]})[0]
                               for i in range(native.shape[0])])


def load_runner(path: Path, threads: int = 2) -> Runner:
    """A runner for an .onnx artifact carrying mvit metadata."""
    return ONNXRunner(Path(path), read_metadata(path), threads)
