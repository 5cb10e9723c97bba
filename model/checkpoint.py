"""The one checkpoint format: a single ``.safetensors`` file whose header metadata holds JSON
(architecture, classes, labels, preprocessing contract, provenance). Loading never unpickles."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .contract import PreprocessContract
from .import_weights import WeightImportError, load_into
from .registry import create, list_models

SCHEMA = "mvit.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: one line naming the file and the problem."""


@dataclass
class CheckpointMeta:
    """Everything a checkpoint says about itself besides the weights."""

    architecture: str
    labels: list[str]
    contract: PreprocessContract
    provenance: dict = field(default_factory=dict)
    model_kwargs: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema": SCHEMA,
                "architecture": self.architecture,
                "num_classes": self.num_classes,
                "labels": self.labels,
                "preprocess": self.contract.to_dict(),
                "provenance": self.provenance,
                "model_kwargs": self.model_kwargs,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CheckpointMeta:
        d = json.loads(text)
        if d.get("schema") != SCHEMA:
            raise ValueError(f"unknown checkpoint schema {d.get('schema')!r}")
        labels = [str(x) for x in d["labels"]]
        if int(d.get("num_classes", len(labels))) != len(labels):
            raise ValueError(f"num_classes {d['num_classes']} disagrees with {len(labels)} labels")
        return cls(
            d["architecture"],
            labels,
            PreprocessContract.from_dict(d["preprocess"]),
            d.get("provenance", {}),
            d.get("model_kwargs", {}),
        )


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode, its metadata, and the file's SHA-256."""

    model: nn.Module
    meta: CheckpointMeta
    sha256: str
    path: Path


def file_sha256(path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path, write_fn) -> None:
    """Call ``write_fn(tmp_path)`` and rename the result onto ``path``; nothing half-written remains."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a finished file gets normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path, model: nn.Module, meta: CheckpointMeta, extra_header: dict[str, str] | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` atomically; returns the path.

    ``extra_header``: further named JSON strings for the safetensors header (e.g. ``mvit_qat``, the
    activation ranges of a quantization-aware fine-tuned checkpoint: mvit.quant.qat); loading ignores them.
    """
    if getattr(model, "num_classes", meta.num_classes) != meta.num_classes:
        raise CheckpointError(f"model has {model.num_classes} classes but {meta.num_classes} labels were given")
    tensors = {
        k: v.detach().to("cpu").contiguous()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    header = dict(extra_header or {}) | {"mvit": meta.to_json()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    return Path(path)


def read_header_entry(path, key: str) -> str | None:
    """One named entry of a checkpoint's safetensors header (``None`` when absent); reads only the header."""
    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get(key)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({_first_line(e)})") from None


def read_meta(path) -> CheckpointMeta:
    """Read only the metadata of a checkpoint (cheap: the header, not the weights)."""
    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({_first_line(e)})") from None
    if "mvit" not in header:
        raise CheckpointError(
            f"{path}: a safetensors file without mvit metadata; import foreign weights with `mvit-import` first"
        )
    try:
        return CheckpointMeta.from_json(header["mvit"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid mvit metadata ({_first_line(e)})") from None


def load_checkpoint(path, num_classes: int | None = None, architecture: str | None = None) -> Checkpoint:
    """Load a checkpoint into its registered architecture, in eval mode.

    ``num_classes`` / ``architecture``, when given, are what the caller expects; a mismatch is a
    ``CheckpointError`` rather than a silently different model.
    """
    path = Path(path)
    meta = read_meta(path)
    if meta.architecture not in list_models():
        raise CheckpointError(f"{path}: unknown architecture {meta.architecture!r}")
    if architecture is not None and architecture != meta.architecture:
        raise CheckpointError(f"{path}: holds {meta.architecture}, not the requested {architecture}")
    if num_classes is not None and num_classes != meta.num_classes:
        raise CheckpointError(f"{path}: has {meta.num_classes} classes, expected {num_classes}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({_first_line(e)})") from None
    model = create(meta.architecture, num_classes=meta.num_classes, **meta.model_kwargs)
    try:
        load_into(model, state, source="native")
    except WeightImportError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return Checkpoint(model.eval(), meta, file_sha256(path), path)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(9)
    if not head:
        raise CheckpointError(f"{path}: empty file")
    # safetensors: 8-byte little-endian header length, then a JSON object
    if len(head) == 9 and head[8:9] == b"{":
        return
    if head.startswith(b"PK\x03\x04") or (head[0] == 0x80 and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        raise CheckpointError(
            f"{path}: looks like a pickled PyTorch file; mvit never unpickles weights: "
            f"convert it with `mvit-import` (uses torch.load(weights_only=True))"
        )


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "mobilevit_xxs_trashnet6.safetensors"
