"""The small interface every export backend implements, and the runner every artifact gets.

A backend module (``export/backends/<format>.py``) defines:

    FORMAT: str                     # "onnx" | "tflite" | "coreml"
    SUFFIX: str                     # file or package suffix, e.g. ".tflite"
    PRECISIONS: tuple[str, ...]     # subset of ("fp32", "fp16", "dynamic", "int8")
    INPUTS: tuple[str, ...]         # subset of ("float-nchw", "uint8-nhwc", "image")
    def export(job: ExportJob, path: Path) -> IOSpec
        write the artifact to ``path`` (a temporary path the caller renames), return its I/O spec
    def embed_metadata(path: Path, meta: dict) -> None   # store model_meta inside the artifact
    def read_metadata(path: Path) -> dict                # read it back
    def load_runner(path: Path, threads: int = 2) -> Runner

Runners take what a phone has, decoded pixels after resize and centre crop (uint8 NHWC, RGB),
and apply the artifact's own input contract from its metadata, so parity checks and benchmarks
exercise exactly the conversion an app must do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from model.checkpoint import CheckpointMeta
from model.preprocess import normalize_hwc_uint8
from model.contract import PreprocessContract

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
INPUT_MODES = ("float-nchw", "uint8-nhwc", "image")


class ExportError(RuntimeError):
    """An export that cannot be done: one line saying what and why."""


@dataclass
class TensorSpec:
    """One input or output tensor of an artifact, as an app must feed or read it."""

    name: str
    shape: list[int]
    dtype: str                      # float32 | float16 | uint8 | int8
    layout: str = "NCHW"            # NCHW | NHWC (inputs); "NC" for outputs
    quantization: dict | None = None  # {"scale": s, "zero_point": z}: real = (q - z) * s

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "layout": self.layout,
                "quantization": self.quantization}


@dataclass
class IOSpec:
    """What ``export`` returns: the artifact's input and output tensors and quantization facts."""

    input: TensorSpec
    output: TensorSpec
    normalization_in_model: bool = False
    output_kind: str = "logits"
    quantization_details: dict = field(default_factory=dict)


@dataclass
class ExportJob:
    """Everything a backend needs to convert one checkpoint at one precision."""

    model: nn.Module                # float model, eval mode
    meta: CheckpointMeta
    precision: str                  # one of PRECISIONS
    input_mode: str = "float-nchw"  # one of INPUT_MODES
    calib_pixels: np.ndarray | None = None  # N,H,W,3 uint8 RGB (resized + cropped), for int8
    calib_method: str = "min-max"
    keep_float: tuple[str, ...] = ()   # module names or op types kept in float
    cache: dict[str, Any] = field(default_factory=dict)  # shared between formats of one export run

    @property
    def contract(self) -> PreprocessContract:
        return self.meta.contract

    def calib_inputs(self) -> np.ndarray:
        """Calibration images as float NCHW model inputs (the contract's normalisation)."""
        if self.calib_pixels is None:
            raise ExportError("int8 export needs calibration images")
        return normalize_hwc_uint8(self.calib_pixels, self.contract)


def quantize_array(x: np.ndarray, q: dict, dtype: str) -> np.ndarray:
    """Affine quantisation with round-half-even and clipping to the integer type's range."""
    info = np.iinfo(np.dtype(dtype))
    return np.clip(np.rint(x / q["scale"]) + q["zero_point"], info.min, info.max).astype(dtype)


def dequantize_array(x: np.ndarray, q: dict) -> np.ndarray:
    """Inverse of ``quantize_array``: real = (q - zero_point) * scale, as float32."""
    return ((x.astype(np.float32) - q["zero_point"]) * q["scale"]).astype(np.float32)


class Runner:
    """Runs one artifact. Subclasses implement ``invoke`` on native inputs (batch of 1 or more)."""

    max_verify: int | None = None  # a slow runner caps how many images the export parity check feeds it

    def __init__(self, path: Path, meta: dict):
        from export.metadata import validate_meta  # metadata imports this module

        validate_meta(meta, f"{path}: mvit metadata")
        self.path = Path(path)
        self.meta = meta
        self.contract = PreprocessContract.from_dict(meta["preprocess"])
        self.input = meta["input"]
        self.output = meta["output"]

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC RGB pixels (already resized and cropped) -> the artifact's native input."""
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError(f"expected N,H,W,3 uint8 pixels, got {pixels.dtype} {pixels.shape}")
        if self.input.get("normalization_in_model"):
            x = pixels.astype(np.float32)  # raw RGB 0..255: the artifact normalises
            if self.input["layout"] == "NCHW":
                x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        else:
            x = normalize_hwc_uint8(pixels, self.contract)  # NCHW float32
            if self.input["layout"] == "NHWC":
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        q = self.input.get("quantization")
        if q and self.input["dtype"] in ("int8", "uint8"):
            return quantize_array(x, q, self.input["dtype"])
        return x.astype(self.input["dtype"])

    def invoke(self, native: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def finish(self, out: np.ndarray) -> np.ndarray:
        """Native output -> float32 logits (or probabilities, per ``output.kind``)."""
        q = self.output.get("quantization")
        if q and self.output["dtype"] in ("int8", "uint8"):
            return dequantize_array(out, q)
        return out.astype(np.float32)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels -> float32 scores [N, classes]."""
        return self.finish(self.invoke(self.prepare(pixels)))

    def close(self) -> None:
        """Release the runtime (optional)."""
