"""Export backends: one module per format, each providing what ``mvit.export.base.Backend`` lists.

Adding a format is one module here plus its name in ``FORMATS``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..base import OPTIONAL_MEMBERS, Backend, Capabilities

FORMATS = ("onnx", "tflite", "coreml", "executorch", "coreai")  # coreai: the optional Core AI extra (issue 30)


def get_backend(fmt: str) -> ModuleType:
    """The backend module for a format name."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return importlib.import_module(f"mvit.export.backends.{fmt}_backend")


def format_of(path) -> str:
    """An artifact's format, from its file name."""
    name = str(path).rstrip("/")
    for fmt in FORMATS:
        if name.endswith(get_backend(fmt).SUFFIX):
            return fmt
    raise ValueError(f"{path}: not an {', '.join(get_backend(f).SUFFIX for f in FORMATS)} artifact")


def missing_members(backend: ModuleType) -> list[str]:
    """Names of ``mvit.export.base.Backend`` members that ``backend`` lacks: attributes not defined,
    methods not callable, and optional methods its ``CAPABILITIES`` claim but it does not define."""

    missing = [n for n in Backend.__annotations__ if not hasattr(backend, n)]
    if "CAPABILITIES" not in missing and not isinstance(backend.CAPABILITIES, Capabilities):
        return missing + ["CAPABILITIES (not a mvit.export.base.Capabilities)"]
    methods = [n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")]
    for n in methods:
        optional = OPTIONAL_MEMBERS.get(n)
        if optional is not None and "CAPABILITIES" in missing:
            continue
        if optional is not None and not getattr(backend.CAPABILITIES, optional):
            continue  # declared "not supported"
        if not callable(getattr(backend, n, None)):
            missing.append(n)
    return missing
