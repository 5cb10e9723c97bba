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

Runners (``mvit.export.runner``) take what a phone has, decoded pixels after resize and centre crop
(uint8 NHWC, RGB), and apply the artifact's own input contract from its metadata.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mvit.model.checkpoint import CheckpointMeta
from mvit.model.contract import PreprocessContract

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

    def quant_args(self) -> dict:
        """The keyword arguments ``mvit.quant`` calibration takes from this job."""
        return {"calib_pixels": self.calib_pixels, "method": self.calib_method, "keep_float": self.keep_float,
                "cache": self.cache}

    def calib_inputs(self) -> np.ndarray:
        """Calibration images as float NCHW model inputs (the contract's normalisation)."""
        if self.calib_pixels is None:
            raise ExportError("int8 export needs calibration images")
        return normalize_hwc_uint8(self.calib_pixels, self.contract)
