"""mvit's int8 quantization engine: calibration data, PT2E calibration and conversion, and the choice of
which layers stay float. Export backends call it; it knows no file formats, only the quantizer
configurations they need.

The front door (imported on first use):

* ``Int8Options``: what an int8 export asks for: calibration images and method, the float set (a list,
  ``all_int8``, or searched to ``min_agreement``), the search's images.
* ``int8_plan(route, model, options, SearchInputs(...))``: which layers stay float (a ``Plan``): the
  options' list, the checkpoint's cached search result, or a new search (``search_route``).
* ``calibrate_pt2e(graph, settings, cache)`` / ``quantize_pt2e(graph, settings, cache=...)``: a
  ``Pt2eGraph`` calibrated as ``Pt2eSettings`` say, and converted to int8.
* ``load_cached`` / ``store``: the search results cached beside a checkpoint (``<name>.int8.json``).
* ``QuantCache``: what the formats of one export run share (calibrations, plans);
  ``calibration_states`` / ``seed_calibrations`` move calibrations between processes.
"""

import importlib


class QuantError(ValueError):
    """Quantization that cannot be done as asked: one line saying what and why."""


_FRONT_DOOR = {
    "Int8Options": "options",
    "KEEP_NOTHING_FLOAT": "options",
    "Plan": "plan",
    "SearchInputs": "plan",
    "int8_plan": "plan",
    "needs_search": "plan",
    "search_route": "plan",
    "Pt2eGraph": "pt2e",
    "Pt2eSettings": "pt2e",
    "calibrate_pt2e": "pt2e",
    "quantize_pt2e": "pt2e",
    "calibration_states": "pt2e",
    "seed_calibrations": "pt2e",
    "SearchResult": "search",
    "load_cached": "search",
    "store": "search",
    "QuantCache": "cache",
    "CalibrationKey": "cache",
}
__all__ = ["QuantError", *_FRONT_DOOR]


def __getattr__(name: str):
    """The front door's names, imported from their modules on first use (torch loads only then)."""
    module = _FRONT_DOOR.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
