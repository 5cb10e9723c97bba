"""Loading a saved Core ML ML Program and executing it op by op in numpy."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._threads import blas_threads
from .ops import INT_DTYPES, OPS, Args

# coremltools' milproto loader is not a public API: the interpreter is checked against exactly this
# release. Moving coremltools means re-running tests/test_coreml_interp.py and updating the pin here
# and in the project's dependency list together.
PINNED_COREMLTOOLS = "9.0"

MODES = ("fp16", "fp32", "fp64", "auto")
FLOAT_TYPES = ("fp16", "fp32", "fp64")
# Ops that only move or select values: a float32 result holds values of its inputs, which are
# already stored at the run's precision, so rounding it again would change nothing (and costs time).
_MOVE_OPS = frozenset(
    (
        "reshape",
        "transpose",
        "squeeze",
        "expand_dims",
        "concat",
        "split",
        "stack",
        "slice_by_index",
        "slice_by_size",
        "identity",
        "gather",
        "tile",
    )
)


class UnsupportedOpError(NotImplementedError):
    """The program holds an op type the interpreter has no implementation for."""

    def __init__(self, op_type: str, op_name: str):
        self.op_type, self.op_name = op_type, op_name
        super().__init__(
            f"Core ML reference interpreter: unsupported op type {op_type!r} (op {op_name!r}); "
            f"add it to export/coreml_interp/ops.py"
        )


class ProgramError(RuntimeError):
    """An op failed or produced a tensor whose shape or type differs from what the program declares."""


@dataclass
class InputInfo:
    name: str
    kind: str  # "tensor" | "image"
    shape: tuple | None  # static shape the program declares, None if symbolic
    dtype: str  # MIL dtype of the program input: fp32, fp16, int32, ...
    color_layout: str | None = None  # image inputs: RGB | BGR | GRAYSCALE | GRAYSCALE_FLOAT16


@dataclass
class CoreMLProgram:
    """A loaded ML Program: ``mil`` is coremltools' MIL ``Program`` (weights loaded), the rest comes
    from the model description (input kinds, classifier labels)."""

    mil: Any
    inputs: dict[str, InputInfo]
    output_names: list[str]
    labels: list | None = None  # classifier class labels, in class index order
    probabilities_output: str | None = None  # classifier: name of the {label: score} output
    path: str | None = None
    compute_precision: str = "fp32"  # "fp16" when any op output is declared fp16
    user_metadata: dict = field(default_factory=dict)

    @property
    def function(self):
        return self.mil.functions["main"]

    @property
    def op_types(self) -> dict[str, int]:
        """Op type -> count, consts included."""
        counts: dict[str, int] = {}
        for o in self.function.operations:
            counts[o.op_type] = counts.get(o.op_type, 0) + 1
        return counts


def _check_coremltools():
    import coremltools as ct  # lazy: heavy converter

    if ct.__version__ != PINNED_COREMLTOOLS and not os.environ.get("MVIT_COREML_INTERP_ANY_COREMLTOOLS"):
        raise RuntimeError(
            f"the Core ML reference interpreter is pinned to coremltools=={PINNED_COREMLTOOLS} (it uses the "
            f"non-public milproto loader); found {ct.__version__}"
        )
    return ct


def round_fp16(arr: np.ndarray) -> np.ndarray:
    """``arr.astype(float16).astype(float32)``, bit for bit (round to nearest even, overflow to inf).

    numpy converts to float16 element by element; for float32 arrays this rounds the mantissa to
    fp16's 10 bits with integer ops on the bit pattern (~6x faster), and sends the values that need
    more than that (fp16 subnormals: 0 < |x| < 2**-14; |x| >= 2**15, which may overflow; inf, nan)
    through numpy. Checked against numpy on 20 million random float32 bit patterns and the edge values.
    """
    if arr.dtype != np.float32 or arr.ndim == 0:
        return arr.astype(np.float16).astype(np.float32)
    u = arr.view(np.uint32)
    mag = u & np.uint32(0x7FFFFFFF)
    out = ((u + np.uint32(0x0FFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)).view(np.float32)
    slow = (mag - np.uint32(1)) < np.uint32(0x38800000 - 1)  # 0 < |x| < 2**-14 (0 wraps round: not slow)
    slow |= mag >= np.uint32(0x47000000)  # |x| >= 2**15, inf, nan
    if slow.any():
        out[slow] = arr[slow].astype(np.float16).astype(np.float32)
    return out


def _dtype_str(var) -> str | None:
    from coremltools.converters.mil.mil import types  # lazy: heavy converter

    try:
        return types.builtin_to_string(var.dtype)
    except Exception:  # list / dict / unknown types
        return None


def _static_shape(var):
    shape = getattr(var, "shape", None)
    if shape is None or not all(isinstance(s, (int, np.integer)) for s in shape):
        return None
    return tuple(int(s) for s in shape)


def _from_spec(spec, weights_dir: str, path: str | None) -> CoreMLProgram:
    _check_coremltools()
    from coremltools.converters.mil.frontend.milproto import load as milproto  # lazy: heavy converter
    from coremltools.proto import FeatureTypes_pb2 as ft  # lazy: heavy converter

    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{path or 'model'}: not an ML Program (model type {spec.WhichOneof('Type')!r})")
    mil = milproto.load(spec, spec.specificationVersion, weights_dir or "")
    fn = mil.functions["main"]
    desc = spec.description
    inputs = {}
    for d in desc.input:
        var = fn.inputs[d.name]
        kind, layout = "tensor", None
        if d.type.WhichOneof("Type") == "imageType":
            kind = "image"
            layout = ft.ImageFeatureType.ColorSpace.Name(d.type.imageType.colorSpace)
        inputs[d.name] = InputInfo(d.name, kind, _static_shape(var), _dtype_str(var), layout)
    labels = None
    prob_name = desc.predictedProbabilitiesName or None
    for o in fn.operations:
        if o.op_type == "classify":
            labels = list(o.inputs["classes"].val)
            prob_name = prob_name or o.outputs[1].name
    fp16 = any(_dtype_str(v) == "fp16" for o in fn.operations if o.op_type != "const" for v in o.outputs)
    return CoreMLProgram(
        mil=mil,
        inputs=inputs,
        output_names=[v.name for v in fn.outputs],
        labels=labels,
        probabilities_output=prob_name,
        path=path,
        compute_precision="fp16" if fp16 else "fp32",
        user_metadata=dict(desc.metadata.userDefined),
    )


def _from_mil(mil) -> CoreMLProgram:
    """Wrap an in-memory MIL Program (e.g. from ``mb.program``): all inputs are tensors."""
    _check_coremltools()
    fn = mil.functions["main"]
    inputs = {n: InputInfo(n, "tensor", _static_shape(v), _dtype_str(v)) for n, v in fn.inputs.items()}
    fp16 = any(_dtype_str(v) == "fp16" for o in fn.operations if o.op_type != "const" for v in o.outputs)
    return CoreMLProgram(
        mil=mil, inputs=inputs, output_names=[v.name for v in fn.outputs], compute_precision="fp16" if fp16 else "fp32"
    )


def load_program(mlpackage_path) -> CoreMLProgram:
    """Load a saved ``.mlpackage`` (ML Program) with its weights, for :func:`run`.

    Raises ``ValueError`` with a one-line message when the path is not a loadable ML Program package.
    """
    ct = _check_coremltools()
    p = Path(mlpackage_path)
    if not (p.is_dir() and (p / "Manifest.json").is_file()):
        raise ValueError(f"{mlpackage_path}: not a Core ML .mlpackage (no Manifest.json)")
    try:
        model = ct.models.MLModel(str(p), skip_model_load=True)
        spec = model.get_spec()
    except Exception as e:  # noqa: BLE001 - one clear line instead of a protobuf traceback
        raise ValueError(f"{mlpackage_path}: cannot read the Core ML package: {str(e).splitlines()[0]}") from e
    return _from_spec(spec, model.weights_dir, str(p))


def as_program(program_or_path) -> CoreMLProgram:
    """A CoreMLProgram from a CoreMLProgram, a package path, an in-memory ``ct.models.MLModel`` or a
    MIL ``Program``."""
    if isinstance(program_or_path, CoreMLProgram):
        return program_or_path
    if isinstance(program_or_path, (str, os.PathLike)):
        return load_program(program_or_path)
    if hasattr(program_or_path, "get_spec") and hasattr(program_or_path, "weights_dir"):
        return _from_spec(program_or_path.get_spec(), program_or_path.weights_dir, None)
    if hasattr(program_or_path, "functions") and "main" in program_or_path.functions:
        return _from_mil(program_or_path)
    raise TypeError(f"expected a CoreMLProgram, an .mlpackage path or an MLModel, got {type(program_or_path)}")


def _image_to_array(v) -> np.ndarray:
    if hasattr(v, "convert") and hasattr(v, "size"):  # PIL image, as coremltools' predict takes
        v = np.asarray(v.convert("RGB")).transpose(2, 0, 1)[None]
    return np.asarray(v, dtype=np.float64)


class Interpreter:
    """Executes one program; constants are prepared once per mode, so reuse it for many inputs."""

    def __init__(self, program_or_path):
        self.program = as_program(program_or_path)
        fn = self.program.function
        self.ops = list(fn.operations)
        for o in self.ops:
            if o.op_type != "const" and o.op_type not in OPS:
                raise UnsupportedOpError(o.op_type, o.name)
            if getattr(o, "blocks", None):
                raise UnsupportedOpError(o.op_type + " (with nested blocks)", o.name)
        self._consts: dict[str, dict] = {}
        self._types: dict[str, tuple] = {}

    def _out_types(self, var) -> tuple:
        """(declared dtype, static shape) of an op output, looked up once."""
        t = self._types.get(var.name)
        if t is None:
            t = self._types[var.name] = (_dtype_str(var), _static_shape(var))
        return t

    def resolve_mode(self, mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "auto":
            return "fp16" if self.program.compute_precision == "fp16" else "fp32"
        return mode

    def _store(self, value, declared: str | None, mode: str):
        """Round a value to the storage precision of this run (see ``run``)."""
        if isinstance(value, (str, dict)):
            return value
        arr = np.asarray(value)
        if arr.dtype.kind == "f" or declared in FLOAT_TYPES:
            if mode == "fp64":
                return arr.astype(np.float64)
            if mode == "fp16" or declared == "fp16":
                with np.errstate(over="ignore", invalid="ignore"):
                    return round_fp16(arr)
            return arr.astype(np.float32)
        if declared in INT_DTYPES and arr.dtype != INT_DTYPES[declared]:
            return arr.astype(INT_DTYPES[declared])
        return arr

    def _const_values(self, mode: str) -> dict:
        if mode not in self._consts:
            vals = {}
            for o in self.ops:
                if o.op_type == "const":
                    v = o.outputs[0]
                    val = v.val
                    if isinstance(val, np.ndarray) or np.isscalar(val) and not isinstance(val, str):
                        val = self._store(val, _dtype_str(v), mode)
                    vals[v.name] = val
            self._consts[mode] = vals
        return self._consts[mode]

    def _prepare_inputs(self, inputs: dict, mode: str) -> dict:
        prog = self.program
        if not isinstance(inputs, dict):
            inputs = {None: inputs}
        if len(prog.inputs) == 1 and len(inputs) == 1 and next(iter(inputs)) not in prog.inputs:
            inputs = {next(iter(prog.inputs)): next(iter(inputs.values()))}
        missing = [n for n in prog.inputs if n not in inputs]
        if missing:
            raise KeyError(f"missing program inputs {missing}; the program takes {list(prog.inputs)}")
        env = {}
        for name, info in prog.inputs.items():
            v = inputs[name]
            if info.kind == "image":
                arr = np.clip(np.rint(_image_to_array(v)), 0, 255)  # a pixel buffer holds bytes
                if arr.ndim == 3:
                    arr = arr[None]
                if info.color_layout == "BGR":
                    arr = arr[:, ::-1]
                elif info.color_layout.startswith("GRAYSCALE") and arr.shape[1] != 1:
                    raise ValueError(f"input {name!r} is a greyscale image: give one channel, got {arr.shape}")
            else:
                arr = np.asarray(v)
            if info.shape is not None and tuple(arr.shape) != info.shape:
                raise ValueError(f"input {name!r}: shape {tuple(arr.shape)}, the program takes {info.shape}")
            if info.dtype in FLOAT_TYPES:
                arr = np.asarray(arr, np.float64)
            env[name] = self._store(arr, info.dtype, mode)
        return env

    def execute(self, inputs: dict, mode: str = "auto", keep_all: bool = False) -> dict:
        """Run the program; returns the outputs, or every named value when ``keep_all``.

        numpy's OpenBLAS runs single-threaded meanwhile (small matrices; see ``_threads``)."""
        with blas_threads():
            return self._execute(inputs, mode, keep_all)

    def _execute(self, inputs: dict, mode: str, keep_all: bool) -> dict:
        mode = self.resolve_mode(mode)
        dtype = np.float64 if mode == "fp64" else np.float32
        env = dict(self._const_values(mode))
        env.update(self._prepare_inputs(inputs, mode))
        for o in self.ops:
            if o.op_type == "const":
                continue
            vals = {}
            for k, v in o.inputs.items():
                if isinstance(v, (tuple, list)):
                    vals[k] = [env[x.name] if x.name in env else x.val for x in v]
                else:
                    vals[k] = env[v.name] if v.name in env else v.val
            try:
                with np.errstate(all="ignore"):
                    res = OPS[o.op_type](Args(o, vals, dtype))
            except (UnsupportedOpError, ProgramError):
                raise
            except Exception as e:  # noqa: BLE001 - name the op that failed
                raise ProgramError(f"op {o.name!r} ({o.op_type}) failed: {e}") from e
            res = res if len(o.outputs) > 1 else (res,)
            if len(res) != len(o.outputs):
                raise ProgramError(f"op {o.name!r} ({o.op_type}): {len(res)} results for {len(o.outputs)} outputs")
            exact = o.op_type in _MOVE_OPS and mode != "fp64"
            for var, r in zip(o.outputs, res):
                declared, shape = self._out_types(var)
                if not (exact and isinstance(r, np.ndarray) and r.dtype == np.float32):
                    r = self._store(r, declared, mode)
                if shape is not None and isinstance(r, np.ndarray) and tuple(r.shape) != shape:
                    raise ProgramError(
                        f"op {o.name!r} ({o.op_type}) produced shape {tuple(r.shape)}, the program declares {shape}"
                    )
                env[var.name] = r
        if keep_all:
            return env
        return {n: env[n] for n in self.program.output_names}


def run(program_or_path, inputs: dict, mode: str = "auto") -> dict:
    """Execute a Core ML ML Program with the numpy reference interpreter.

    ``program_or_path``: a :class:`CoreMLProgram` (from :func:`load_program`), an ``.mlpackage`` path,
    or an in-memory ``coremltools.models.MLModel``.

    ``inputs``: ``{input name: array}`` (a bare array is accepted for a one-input program). Tensor
    inputs are given as the program declares them. An *image* input (``ct.ImageType``) is given as a
    float (or uint8) **NCHW array of 0..255 pixel values in RGB order**, shape (1, 3, H, W) or
    (3, H, W), or as a PIL image: like a pixel buffer on device it is rounded to whole values in 0..255,
    reordered to the model's channel order (BGR flips it), and the program's own preprocessing
    (scale, bias) then runs as part of the graph.

    ``mode`` (numerics of the run; weights are used as stored in the package):
      * ``"fp16"``: every float tensor (constants and op results) stored rounded to fp16
        (round-to-nearest-even; overflow gives inf), math and accumulation in fp32: what fp16
        hardware (GPU, Neural Engine) does, whatever precision the program declares.
      * ``"fp32"``: math in fp32; tensors the program declares fp16 are rounded to fp16.
      * ``"fp64"``: everything in float64, no fp16 rounding: the graph's ideal numerics.
      * ``"auto"`` (default): ``"fp16"`` for a program converted with fp16 compute precision (any op
        output declared fp16), ``"fp32"`` otherwise.
    ``quantize`` rounds half to even and clips to the output type's range in every mode.

    Returns ``{output name: value}`` as Core ML's ``predict`` would: float arrays (float32, or float64
    in fp64 mode); a classifier's outputs are the top label and a ``{label: score}`` dict.
    Raises :class:`UnsupportedOpError` for an op type it does not implement and :class:`ProgramError`
    when an op fails or its result contradicts the shape the program declares.
    """
    interp = program_or_path if isinstance(program_or_path, Interpreter) else Interpreter(program_or_path)
    return interp.execute(inputs, mode)


def scores(outputs: dict, program: CoreMLProgram) -> np.ndarray:
    """The model's score vector from ``run``'s outputs: the classifier's ``{label: score}`` dict in
    label order, or the (single) tensor output, as float64."""
    if program.labels is not None:
        d = outputs[program.probabilities_output]
        return np.asarray([d[lab] for lab in program.labels], dtype=np.float64)
    tensors = [v for v in outputs.values() if isinstance(v, np.ndarray)]
    if len(tensors) != 1:
        raise ValueError(f"expected one tensor output, the program has {list(outputs)}")
    return tensors[0].astype(np.float64)
