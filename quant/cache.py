"""What int8 work shares between the formats of one export run, with named fields (``QuantCache``).

An export run keeps one cache (``mvit.export.base.ExportCache`` adds the formats' fp32 artifacts): each
PT2E calibration is made once for every format that takes it, and the int8 plan is searched once per route.
Across worker processes only observer states travel (``CalibrationState``: picklable), never graphs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from torch import nn

    from .plan import Plan


class CalibrationKey(NamedTuple):
    """One PT2E calibration: the graph input's kind (``Pt2eGraph.graph_input``), the observer method and
    the modules kept float; ``ranges`` tells learned QAT ranges apart (their ``id``: this process only)."""

    graph_input: str
    method: str
    keep_float: tuple[str, ...]
    ranges: int | None = None

    @property
    def shareable(self) -> bool:
        """Whether another process can take this calibration's observer states (no learned ranges)."""
        return self.ranges is None


@dataclass
class Calibration:
    """A calibrated PT2E graph (observers inserted and filled), its quantizer and what to record of it."""

    prepared: nn.Module
    quantizer: Any
    details: dict


@dataclass(frozen=True)
class CalibrationState:
    """A ``Calibration`` as another process can take it: observer name -> (type name, observed node)
    (``signature``), the observers' state dicts and the details. Picklable."""

    signature: dict
    states: dict
    details: dict


class PlanKey(NamedTuple):
    """One int8 plan: the search's cache entry (route, budget, rule) and the checkpoint's SHA-256."""

    search_key: str
    sha256: str | None


@dataclass
class QuantCache:
    """PT2E calibrations made in this process, observer states made in another (``seeded``), and the
    int8 plans of this run."""

    calibrations: dict[CalibrationKey, Calibration] = field(default_factory=dict)
    seeded: dict[CalibrationKey, CalibrationState] = field(default_factory=dict)
    plans: dict[PlanKey, Plan] = field(default_factory=dict)
    # onnxruntime QDQ calibrations (its calibration cache, JSON) by (layout, input mode, method, image count):
    # the ranges do not depend on the float set, so one calibration serves every set tried in a run
    onnx_ranges: dict[tuple[str, str, str | None, int], str] = field(default_factory=dict)
