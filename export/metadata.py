"""model_meta.json: what every artifact says about itself (schema in docs/model_meta.md)."""
from __future__ import annotations

import json
from pathlib import Path

from export.base import IOSpec
from model.checkpoint import CheckpointMeta, atomic_write

SCHEMA = "mvit.model_meta/1"
META_FILE = "model_meta.json"
LABELS_FILE = "labels.txt"
REQUIRED = ("schema", "architecture", "labels", "preprocess", "input", "output", "format", "precision")


def version() -> str:
    """mvit's installed version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _v

    try:
        return _v("mvit")
    except PackageNotFoundError:
        return "0+unknown"


def build_meta(ckpt_meta: CheckpointMeta, io: IOSpec, fmt: str, precision: str, source_sha256: str) -> dict:
    """The model_meta dictionary for one artifact."""
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
        "quantization_details": io.quantization_details,
        "source_checkpoint_sha256": source_sha256,
        "mvit_version": version(),
    }


def validate_meta(meta: dict, where: str = "model_meta") -> dict:
    """Raise ValueError naming the first missing field; return ``meta``."""
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    if meta["schema"] != SCHEMA:
        raise ValueError(f"{where}: unknown schema {meta['schema']!r}")
    if len(meta["labels"]) != meta.get("num_classes", len(meta["labels"])):
        raise ValueError(f"{where}: {len(meta['labels'])} labels for {meta['num_classes']} classes")
    return meta


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
