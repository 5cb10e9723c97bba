"""Export backends, one module per format, all with the interface described in ``export.base``."""
from __future__ import annotations

import importlib
from types import ModuleType

FORMATS = ("onnx", "tflite", "coreml", "executorch")


def get_backend(fmt: str) -> ModuleType:
    """The backend module for a format name."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return importlib.import_module(f"mvit.export.backends.{fmt}_backend")


def format_of(path) -> str:
    """Guess an artifact's format from its file name."""
    name = str(path).rstrip("/")
    for fmt in FORMATS:
        if name.endswith(get_backend(fmt).SUFFIX):
            return fmt
    raise ValueError(f"{path}: not an .onnx, .tflite, .mlpackage or .pte artifact")
