"""``Int8Options``: how an int8 export is calibrated and which of its layers stay float, checked as a whole.

``mvit.export.request.ExportRequest.int8`` holds one; ``mvit.quant.plan.int8_plan`` reads the float-set
choice from it. Every layer int8 is the flag ``all_int8``; ``none`` is only the command line's word for it
(``--keep-float none``, ``from_words``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .plan import DEFAULT_MIN_AGREEMENT

KEEP_NOTHING_FLOAT = "none"  # --keep-float none: quantize every layer


@dataclass(frozen=True)
class Int8Options:
    """Calibration images and method, the float set (explicit, all int8, or searched to a budget) and the
    images the search measures on."""

    calib: Path | None = None  # calibration images; None = data-free (ZeroQ)
    calib_count: int = 256
    calib_method: str | None = None  # None = each backend's default
    zeroq_count: int = 32  # data-free images synthesised when none are shipped
    keep_float: tuple[str, ...] = ()  # layers kept float (backend-specific names); () = searched
    all_int8: bool = False  # every layer int8: no search (--keep-float none)
    min_agreement: float = DEFAULT_MIN_AGREEMENT  # the search's budget and the parity gate
    search_data: Path | None = None  # search images; None = --calib images not used to calibrate

    def __post_init__(self):
        keep = (self.keep_float,) if isinstance(self.keep_float, str) else self.keep_float
        object.__setattr__(self, "keep_float", tuple(dict.fromkeys(k for k in keep if k)))
        for name in ("calib", "search_data"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @classmethod
    def from_words(cls, keep_float=(), **kwargs) -> Int8Options:
        """Options from the command line's ``--keep-float`` words: ``none`` sets ``all_int8``."""
        keep = (keep_float,) if isinstance(keep_float, str) else tuple(k for k in keep_float if k)
        names = tuple(k for k in keep if k.lower() != KEEP_NOTHING_FLOAT)
        return cls(keep_float=names, all_int8=len(names) < len(keep), **kwargs)

    def words(self) -> tuple[str, ...]:
        """The ``--keep-float`` words these options come from (``from_words`` inverted)."""
        return self.keep_float + ((KEEP_NOTHING_FLOAT,) if self.all_int8 else ())

    @property
    def searches(self) -> bool:
        """Whether the float set is left to the search (neither a list nor all int8 given)."""
        return not (self.keep_float or self.all_int8)

    def problems(self, int8_asked: bool) -> list[str]:
        """What is wrong with these options, one line each; ``int8_asked``: whether int8 is exported."""
        errs = []
        for name, low in (("calib_count", 1), ("zeroq_count", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                errs.append(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        m = self.min_agreement
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m <= 1:
            errs.append(f"--min-agreement must be a number in (0, 1], got {m!r}")
        if self.all_int8 and self.keep_float:
            errs.append(
                f"--keep-float {KEEP_NOTHING_FLOAT} (every layer int8) cannot be given with layer names "
                f"({', '.join(self.keep_float)})"
            )
        if self.search_data is not None and not int8_asked:
            errs.append("--search-data applies to int8 only")
        if self.calib_method is not None and not int8_asked:
            errs.append("--calib-method applies to int8 only")
        return errs
