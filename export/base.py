"""The interface every export backend implements (``Backend``), and what a backend is given and returns.

A backend is one module, ``export/backends/<format>_backend.py``, registered in
``mvit.export.backends.FORMATS``; everything format-specific lives there and nowhere else. Its
artifacts run through ``mvit.export.runner.Runner`` subclasses: pixels in, float scores out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch import nn

from ..model.checkpoint import CheckpointMeta
from ..model.contract import PreprocessContract
from ..model.preprocess import normalize_hwc_uint8

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
    keep_float: tuple[str, ...] = ()   # module names or op types kept in float (int8: the plan's)
    cache: dict[str, Any] = field(default_factory=dict)  # shared between formats of one export run
    learned_ranges: Any = None  # a QAT checkpoint's activation ranges (mvit.quant.qat.LearnedRanges), for int8
    keep_float_source: str = "user"    # where keep_float came from (mvit.quant.plan.Plan.source)

    @property
    def contract(self) -> PreprocessContract:
        return self.meta.contract

    def quant_args(self) -> dict:
        """The keyword arguments ``mvit.quant`` calibration takes from this job."""
        return {"calib_pixels": self.calib_pixels, "method": self.calib_method, "keep_float": self.keep_float,
                "keep_float_source": self.keep_float_source, "cache": self.cache, "ranges": self.learned_ranges}

    def calib_inputs(self) -> np.ndarray:
        """Calibration images as float NCHW model inputs (the contract's normalisation)."""
        if self.calib_pixels is None:
            raise ExportError("int8 export needs calibration images")
        return normalize_hwc_uint8(self.calib_pixels, self.contract)


class Backend(Protocol):
    """What an export backend module provides (checked for every registered backend by the tests)."""

    FORMAT: str                      # the --format name: "onnx", "tflite", ...
    SUFFIX: str                      # artifact suffix: ".onnx", ".tflite", ".mlpackage" (a folder), ...
    RUNTIME: str                     # what runs the artifact here, for reports ("onnxruntime (CPU EP)")
    PRECISIONS: tuple[str, ...]      # subset of PRECISIONS
    INPUTS: tuple[str, ...]          # subset of INPUT_MODES; the first is the default
    CALIB_METHODS: tuple[str, ...]   # int8 calibration methods; the first is the default
    KEEP_FLOAT: dict[str, str]       # precision -> what --keep-float NAME means there; absent = refused
    INT8_ROUTE: str                  # the mvit.quant route its int8 takes: "pt2e" or "onnxruntime-qdq"
    RUNTIME_MODULES: tuple[str, ...]  # Python modules of the runtime, imported before timing a model load
    EXPORT_COST: int                 # relative export time, to start the slowest first when in parallel

    def export(self, job: ExportJob, path: Path) -> IOSpec:
        """Write the artifact for ``job`` to ``path`` (a temporary path the caller renames)."""

    def check_artifact(self, path: Path, meta: dict) -> list[str]:
        """Static checks of a written artifact against its metadata: problems, [] when sound."""

    def embed_metadata(self, path: Path, meta: dict) -> None:
        """Store model_meta inside the artifact."""

    def read_metadata(self, path: Path) -> dict:
        """model_meta stored in the artifact (ValueError with one line if none or unreadable)."""

    def load_runner(self, path: Path, threads: int = 2) -> Any:
        """A ``Runner`` for the artifact."""

    def can_time(self) -> tuple[bool, str]:
        """Whether this machine runs the format natively (latency means something), and if not, why."""

    def unavailable(self) -> str | None:
        """Why this machine cannot export or run the format at all (an optional converter or runtime
        not installed: one line saying how to install it), or None."""

    # Optional, for backends whose int8 is PT2E (mvit.quant.pt2e): ``calibration_graph(job) -> Pt2eGraph
    # | None``, the graph ``export`` calibrates, so a parallel export calibrates it once for all of them.


def option_problems(backend: Backend, precision: str, input_mode: str | None, calib_method: str | None,
                    keep_float: tuple[str, ...]) -> list[str]:
    """Why ``backend`` cannot export at these options (one line each; [] when it can)."""
    fmt, problems = backend.FORMAT, []
    why = backend.unavailable()
    if why:
        return [why]
    if precision not in backend.PRECISIONS:
        problems.append(f"{fmt} has no precision {precision} (it has {', '.join(backend.PRECISIONS)})")
    if input_mode is not None and input_mode not in backend.INPUTS:
        problems.append(f"{fmt} does not take --input {input_mode} (it takes {', '.join(backend.INPUTS)})")
    if calib_method is not None and precision == "int8" and calib_method not in backend.CALIB_METHODS:
        problems.append(f"{fmt} int8 has no --calib-method {calib_method} (it has {', '.join(backend.CALIB_METHODS)})")
    if keep_float and precision not in backend.KEEP_FLOAT:
        where = ", ".join(backend.KEEP_FLOAT) or "no precision"
        problems.append(f"{fmt} {precision} cannot keep layers float (--keep-float applies to {fmt} {where})")
    return problems
