"""mvit.export: a checkpoint to ONNX / TFLite / Core ML / ExecuTorch artifacts, each verified against the float model.

``mvit.export(request)`` (this package is callable) runs an ``ExportRequest`` and returns one
``ExportResult`` per artifact; it is ``mvit.export.api.export_model``. Inside: one backend module per
format (``mvit.export.backends``), the metadata every artifact carries (``mvit.export.metadata``),
runners (``mvit.export.runner``) and the parity check (``mvit.export.parity``).
"""

import sys
import types

from ..quant.options import Int8Options
from .api import export_model
from .request import ExportRequest

__all__ = ["ExportRequest", "Int8Options"]


class _Callable(types.ModuleType):
    def __call__(self, request=None, **kwargs):
        """Run an ``ExportRequest`` (or one built from ``kwargs``); returns the export results."""
        return export_model(request, **kwargs)


sys.modules[__name__].__class__ = _Callable
