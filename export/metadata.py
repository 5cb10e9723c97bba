"""model_meta.json: what every artifact says about itself (schema in docs/model_meta.md)."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _v
from pathlib import Path
from typing import TypeGuard

from ..model.checkpoint import CheckpointMeta, atomic_write
from ..model.contract import PreprocessContract
from .base import IOSpec

SCHEMA = "mvit.model_meta/1"
META_FILE = "model_meta.json"
LABELS_FILE = "labels.txt"


def version() -> str:
    """mvit's installed version."""
    try:
        return _v("mvit")
    except PackageNotFoundError:
        return "0+unknown"


def build_meta(
    ckpt_meta: CheckpointMeta, io: IOSpec, fmt: str, precision: str, source_sha256: str, int8_plan: dict | None = None
) -> dict:
    """The model_meta dictionary for one artifact. ``int8_plan``: the layers an int8 artifact keeps
    float and how they were chosen (``mvit.quant.plan.Plan.to_dict()``), stored in
    ``quantization_details["int8_plan"]``."""
    inp = io.input.to_dict()
    inp["normalization_in_model"] = io.normalization_in_model
    out = io.output.to_dict()
    out["kind"] = io.output_kind
    return {
        "schema": SCHEMA,
        "architecture": ckpt_meta.architecture,
        "num_classes": ckpt_meta.num_classes,
        "labels": list(ckpt_meta.labels),
        "preprocess": ckpt_meta.contract.to_dict(),
        "input": inp,
        "output": out,
        "format": fmt,
        "precision": precision,
        "quantization_details": without_timings(
            dict(io.quantization_details, **({"int8_plan": int8_plan} if int8_plan else {}))
        ),
        "source_checkpoint_sha256": source_sha256,
        "mvit_version": version(),
    }


# Keys of quantization details that hold how long a step took: they go to export.log, not into the
# artifact, so that the same inputs give the same bytes.
TIMING_KEYS = ("seconds", "calibration_seconds")


def timings(details: dict, prefix: str = "") -> dict[str, float]:
    """The timing entries of nested ``details``, keyed by their dotted path."""
    found = {}
    for k, v in details.items():
        if k in TIMING_KEYS:
            found[prefix + k] = v
        elif isinstance(v, dict):
            found |= timings(v, f"{prefix}{k}.")
    return found


def without_timings(details: dict) -> dict:
    """``details`` with every timing entry removed, at any depth."""
    return {k: without_timings(v) if isinstance(v, dict) else v for k, v in details.items() if k not in TIMING_KEYS}


DTYPES = ("float32", "float16", "uint8", "int8")


def validate_meta(meta: dict, where: str = "model_meta") -> dict:
    """Raise ValueError listing every problem of an artifact's metadata (what runners and apps read);
    return ``meta``."""
    errs = meta_problems(meta)
    if errs:
        raise ValueError(f"{where}: " + "; ".join(errs))
    return meta


def meta_problems(meta: dict) -> list[str]:
    """Every way ``meta`` fails the model_meta schema the runners and the demo apps read (docs/model_meta.md)."""
    labels = meta.get("labels")
    n_labels = len(labels) if _label_list(labels) else 0
    contract, pre_errs = _preprocess_problems(meta.get("preprocess"))
    schema = [] if meta.get("schema") == SCHEMA else [f"schema is {meta.get('schema')!r}, expected {SCHEMA!r}"]
    num_classes = (
        [f"num_classes {meta['num_classes']} != {n_labels} labels"]
        if "num_classes" in meta and meta["num_classes"] != n_labels
        else []
    )
    return (
        schema
        + _label_problems(labels)
        + num_classes
        + pre_errs
        + _input_problems(meta.get("input"), contract)
        + _output_problems(meta.get("output"), n_labels)
    )


def _label_list(labels) -> TypeGuard[list]:
    return isinstance(labels, list) and bool(labels) and all(isinstance(x, str) and x.strip() for x in labels)


def _label_problems(labels) -> list[str]:
    if not _label_list(labels):
        return ["labels must be a non-empty list of non-empty strings"]
    return ["labels must not contain newlines"] if any("\n" in x for x in labels) else []


def _preprocess_problems(pre) -> tuple[PreprocessContract | None, list[str]]:
    """The contract ``pre`` describes (None if it does not) and what is wrong with it."""
    if not isinstance(pre, dict):
        return None, ["preprocess missing"]
    errs, contract = [], None
    try:
        contract = PreprocessContract.from_dict(pre)
    except ValueError as e:
        errs.append(f"preprocess: {e}")
    for key in ("input_size", "resize_short", "interpolation", "scale", "mean", "std", "channel_order"):
        if key not in pre:
            errs.append(f"preprocess.{key} missing")
    if contract is not None and pre.get("resize_short") not in (None, contract.resize_short):
        errs.append(
            f"preprocess.resize_short {pre.get('resize_short')} != {contract.resize_short} derived from input_size/crop_fraction"
        )
    return contract, errs


def _input_problems(inp, contract: PreprocessContract | None) -> list[str]:
    if not isinstance(inp, dict):
        return ["input missing"]
    errs = []
    shape, layout, dtype = inp.get("shape"), inp.get("layout"), inp.get("dtype")
    if layout not in ("NCHW", "NHWC"):
        errs.append(f"input.layout {layout!r} is not NCHW/NHWC")
    if dtype not in DTYPES:
        errs.append(f"input.dtype {dtype!r} is not one of {DTYPES}")
    if not (isinstance(shape, list) and len(shape) == 4 and shape[0] == 1 and all(isinstance(v, int) for v in shape)):
        errs.append(f"input.shape {shape!r} must be [1, ., ., .]")
    elif layout in ("NCHW", "NHWC") and contract is not None:
        c, h, w = (shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[3], shape[1], shape[2])
        if c != 3:
            errs.append(f"input has {c} channels, expected 3")
        if [h, w] != list(contract.input_size):
            errs.append(f"input.shape {shape} does not match preprocess.input_size {list(contract.input_size)}")
    if dtype in ("int8", "uint8") and not inp.get("normalization_in_model") and not _quant_ok(inp.get("quantization")):
        errs.append(f"input.dtype {dtype} needs input.quantization {{scale > 0, zero_point int}}")
    return errs


def _output_problems(out, n_labels: int) -> list[str]:
    if not isinstance(out, dict):
        return ["output missing"]
    errs = []
    if out.get("dtype") not in DTYPES:
        errs.append(f"output.dtype {out.get('dtype')!r} is not one of {DTYPES}")
    if out.get("dtype") in ("int8", "uint8") and not _quant_ok(out.get("quantization")):
        errs.append(f"output.dtype {out.get('dtype')} needs output.quantization")
    if out.get("kind", "logits") not in ("logits", "probabilities"):
        errs.append(f"output.kind {out.get('kind')!r} is not logits/probabilities")
    shape = out.get("shape")
    n = 1
    for v in shape if isinstance(shape, list) else [None]:
        n = n * v if isinstance(v, int) else -1
    if n != n_labels:
        errs.append(f"output.shape {shape!r} does not hold {n_labels} classes")
    return errs


def _quant_ok(q) -> bool:
    return (
        isinstance(q, dict)
        and isinstance(q.get("scale"), (int, float))
        and q["scale"] > 0
        and isinstance(q.get("zero_point"), int)
    )


def write_sidecars(folder: Path, meta: dict, stem: str | None = None) -> list[Path]:
    """Write ``model_meta.json`` and ``labels.txt`` (atomically) into ``folder``.

    With ``stem`` the files are ``<stem>.model_meta.json`` / ``<stem>.labels.txt`` so several
    artifacts can share a folder; an artifact's own sidecars are found by ``sidecar_paths``.
    """
    meta_path, labels_path = sidecar_paths(folder, stem)
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(meta_path, lambda tmp: Path(tmp).write_text(text))
    atomic_write(labels_path, lambda tmp: Path(tmp).write_text("\n".join(meta["labels"]) + "\n"))
    return [meta_path, labels_path]


def sidecar_paths(folder: Path, stem: str | None) -> tuple[Path, Path]:
    """Paths of the metadata and labels files for an artifact stem (or the plain names)."""
    folder = Path(folder)
    if stem:
        return folder / f"{stem}.{META_FILE}", folder / f"{stem}.{LABELS_FILE}"
    return folder / META_FILE, folder / LABELS_FILE


def to_json_bytes(meta: dict) -> bytes:
    """Compact JSON bytes for embedding inside an artifact."""
    return json.dumps(meta, separators=(",", ":")).encode()
