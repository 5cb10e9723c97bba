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
from ..quant.cache import QuantCache
from ..quant.pt2e import Pt2eSettings

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
INPUT_MODES = ("float-nchw", "uint8-nhwc", "image")


class ExportError(RuntimeError):
    """An export that cannot be done: one line saying what and why."""


@dataclass
class TensorSpec:
    """One input or output tensor of an artifact, as an app must feed or read it."""

    name: str
    shape: list[int]
    dtype: str  # float32 | float16 | uint8 | int8
    layout: str = "NCHW"  # NCHW | NHWC (inputs); "NC" for outputs
    quantization: dict | None = None  # {"scale": s, "zero_point": z}: real = (q - z) * s

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
            "quantization": self.quantization,
        }


@dataclass
class IOSpec:
    """What ``export`` returns: the artifact's input and output tensors and quantization facts."""

    input: TensorSpec
    output: TensorSpec
    normalization_in_model: bool = False
    output_kind: str = "logits"
    quantization_details: dict = field(default_factory=dict)


@dataclass
class ExportCache(QuantCache):
    """What the formats of one export run share: ``QuantCache``'s int8 calibrations and plans, and each
    format's fp32 artifact per input mode (fp16 and dynamic-range int8 are derived from it)."""

    fp32: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (format, input mode) -> artifact bytes
    # Core AI: coreai-opt's finalized W8A8 program by (input in model, float set, calibration images' hash)
    coreai_w8a8: dict[tuple[bool, tuple[str, ...], str], Any] = field(default_factory=dict)


@dataclass
class ExportJob:
    """Everything a backend needs to convert one checkpoint at one precision."""

    model: nn.Module  # float model, eval mode
    meta: CheckpointMeta
    precision: str  # one of PRECISIONS
    input_mode: str = "float-nchw"  # one of INPUT_MODES
    calib_pixels: np.ndarray | None = None  # N,H,W,3 uint8 RGB (resized + cropped), for int8
    calib_method: str = "min-max"
    keep_float: tuple[str, ...] = ()  # module names or op types kept in float (int8: the plan's; () = none)
    cache: ExportCache = field(default_factory=ExportCache)  # shared between formats of one export run
    learned_ranges: Any = None  # a QAT checkpoint's activation ranges (mvit.quant.qat.LearnedRanges), for int8
    keep_float_source: str = "user"  # where keep_float came from (mvit.quant.plan.Plan.source)

    @property
    def contract(self) -> PreprocessContract:
        return self.meta.contract

    def pt2e_settings(self):
        """How ``mvit.quant.pt2e`` calibrates this job (a ``Pt2eSettings``)."""
        return Pt2eSettings(
            self.calib_pixels, self.calib_method, self.keep_float, self.keep_float_source, self.learned_ranges
        )

    def calib_inputs(self) -> np.ndarray:
        """Calibration images as float NCHW model inputs (the contract's normalisation)."""
        if self.calib_pixels is None:
            raise ExportError("int8 export needs calibration images")
        return normalize_hwc_uint8(self.calib_pixels, self.contract)


@dataclass(frozen=True)
class Capabilities:
    """What a backend does beyond what every backend does: each flag enables one optional ``Backend``
    member (``OPTIONAL_MEMBERS``). Callers ask these flags, never the format's name."""

    pt2e_calibration: bool = False  # calibration_graph: its int8 calibrates a PT2E graph, shareable between formats
    int8_search: bool = False  # int8_search_evaluator: the int8 search measures candidates in its own runtime
    layer_error: bool = False  # layer_error: per-layer error of its int8 artifact against its fp32 sibling
    tensor_error: bool = False  # tensor_error: per-tensor error of its int8 file against the float model
    interpreted: bool = False  # its runner may be a reference interpreter here (seconds per image)
    untimed_numerics: bool = False  # cannot be timed here, but its runner runs: mvit-bench scores it in process


# optional member -> the capability that says the backend has it
OPTIONAL_MEMBERS = {
    "calibration_graph": "pt2e_calibration",
    "int8_search_evaluator": "int8_search",
    "layer_error": "layer_error",
    "tensor_error": "tensor_error",
}


class Backend(Protocol):
    """What an export backend module provides (checked for every registered backend by the tests).

    Members named in ``OPTIONAL_MEMBERS`` exist only where ``CAPABILITIES`` says so; all others always.
    """

    FORMAT: str  # the --format name: "onnx", "tflite", ...
    SUFFIX: str  # artifact suffix: ".onnx", ".tflite", ".mlpackage" (a folder), ...
    RUNTIME: str  # what runs the artifact here, for reports ("onnxruntime (CPU EP)")
    PRECISIONS: tuple[str, ...]  # subset of PRECISIONS
    INPUTS: tuple[str, ...]  # subset of INPUT_MODES; the first is the default
    CALIB_METHODS: tuple[str, ...]  # int8 calibration methods; the first is the default
    KEEP_FLOAT: dict[str, str]  # precision -> what --keep-float NAME means there; absent = refused
    INT8_ROUTE: str  # the mvit.quant route its int8 takes: "pt2e" or "onnxruntime-qdq"
    RUNTIME_MODULES: tuple[str, ...]  # Python modules of the runtime, imported before timing a model load
    EXPORT_COST: int  # relative export time, to start the slowest first when in parallel
    CAPABILITIES: Capabilities  # which optional members it has, and how its runner behaves

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

    def io_details(self, path: Path) -> dict:
        """The artifact's input and output tensors as its runtime declares them: ``{"input": {...},
        "output": {...}}``, each with name, shape, dtype and quantization (None when float)."""

    def missing_ops(self, path: Path) -> list[str]:
        """Ops of the artifact the runtime here cannot run ([] when it runs them all)."""

    def op_census(self, path: Path, threads: int = 2) -> dict:
        """The ops the runtime runs with their input dtypes: ``{"runtime", "ops_total", "ops": [...]}``."""

    def calibration_graph(self, job: ExportJob) -> Any:
        """(``pt2e_calibration``) The ``mvit.quant.pt2e.Pt2eGraph`` that ``export`` calibrates for an int8
        ``job``, or None where that job calibrates otherwise; a parallel export calibrates it once for all."""

    def int8_search_evaluator(self, job: ExportJob, heldout_pixels: np.ndarray, ref_logits: np.ndarray) -> Any:
        """(``int8_search``) ``evaluate(float_units) -> (agreement, cosine)`` of its int8 model against the
        float model's ``ref_logits`` on ``heldout_pixels``, for ``mvit.quant.plan.int8_plan``."""

    def layer_error(self, fp32_path: Path, int8_path: Path, pixels: np.ndarray, threads: int = 2) -> dict:
        """(``layer_error``) Per-layer error of an int8 artifact against its fp32 sibling on ``pixels``:
        ``{"method", "keep_float_names", "layers": [rows, worst local SQNR first]}``."""

    def tensor_error(self, path: Path, model: nn.Module, pixels: np.ndarray) -> dict:
        """(``tensor_error``) Per-tensor error of an int8 file against the float ``model`` it came from, on
        ``pixels``: ``{"method", "keep_float_names", "layers": [rows, worst local SQNR first]}``."""


def supports(backend: Backend, member: str) -> bool:
    """Whether ``backend`` has the optional ``member`` (its capability flag for it)."""
    return getattr(backend.CAPABILITIES, OPTIONAL_MEMBERS[member])


def option_problems(
    backend: Backend, precision: str, input_mode: str | None, calib_method: str | None, keep_float: tuple[str, ...]
) -> list[str]:
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
