"""``ExportRequest``: everything one export run is asked to do, checked before any work starts.

The CLI builds one from its options, ``mvit-bench`` builds one per format, Python users build one
directly; ``mvit.export.api.export_model(request)`` is the only way into export. Formats come from
the backend registry, precisions and input modes from ``mvit.export.base``, and artifact folders are
named here, once.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from .backends import FORMATS, get_backend
from .base import INPUT_MODES, PRECISIONS, ExportError, option_problems
from ..quant.plan import DEFAULT_MIN_AGREEMENT

KEEP_NOTHING_FLOAT = "none"  # --keep-float none: quantize every layer


@dataclass(frozen=True)
class ExportRequest:
    """One export run: which checkpoint, to which formats and precisions, calibrated and verified how."""

    checkpoint: Path | None = None        # mvit .safetensors; None = the shipped model
    formats: tuple[str, ...] = ("tflite",)
    precisions: tuple[str, ...] = ("fp32",)
    out: Path = Path("out")               # one subfolder per artifact (``artifact_folder``)
    force: bool = False                   # replace existing artifact folders
    calib: Path | None = None             # calibration images; None = data-free (ZeroQ)
    calib_count: int = 256
    calib_method: str | None = None       # None = each backend's default
    zeroq_count: int = 32                 # data-free images synthesised when none are shipped
    keep_float: tuple[str, ...] = ()      # layers kept float (backend-specific names; "none" = all int8)
    min_agreement: float = DEFAULT_MIN_AGREEMENT  # int8: the search's budget and the parity gate
    search_data: Path | None = None       # int8 search images; None = --calib images not used to calibrate
    input_mode: str | None = None         # None = each backend's default input
    verify: bool = True
    verify_data: Path | None = None       # None = --calib images not used for calibration, else generated
    threads: int = 2                      # CPU threads in all
    jobs: int = 1                         # formats exported at once in worker processes
    verbose: bool = False                 # converter output on the console as well as in export.log

    def __post_init__(self):
        for name in ("formats", "precisions", "keep_float"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(dict.fromkeys(value)))
        for name in ("checkpoint", "out", "calib", "verify_data", "search_data"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def problems(self) -> list[str]:
        """Everything wrong with this request, one line each, without touching any file."""
        errs = []
        if not self.formats:
            errs.append("no format given")
        if not self.precisions:
            errs.append("no precision given")
        errs += [f"unknown format {f!r}; choose from {', '.join(FORMATS)}" for f in self.formats if f not in FORMATS]
        errs += [f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}" for p in self.precisions
                 if p not in PRECISIONS]
        if self.input_mode is not None and self.input_mode not in INPUT_MODES:
            errs.append(f"unknown --input {self.input_mode!r}; choose from {', '.join(INPUT_MODES)}")
        for name, low in (("calib_count", 1), ("zeroq_count", 1), ("threads", 1), ("jobs", 1)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                errs.append(f"--{name.replace('_', '-')} must be an integer >= {low}, got {getattr(self, name)!r}")
        m = self.min_agreement
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m <= 1:
            errs.append(f"--min-agreement must be a number in (0, 1], got {m!r}")
        if self.search_data is not None and "int8" not in self.precisions:
            errs.append("--search-data applies to int8 only")
        if (self.search_data is not None and self.verify_data is not None
                and folders_overlap(self.search_data, self.verify_data)):
            errs.append("--search-data and --verify-data share images: the int8 search must not see the "
                        "verification images")
        if self.calib_method is not None and "int8" not in self.precisions:
            errs.append("--calib-method applies to int8 only")
        keep = self.keep_float_list()
        if errs:
            return errs
        for fmt in self.formats:
            backend = get_backend(fmt)
            for p in self.precisions:
                errs += option_problems(backend, p, self.input_mode, self.calib_method, keep)
        return errs

    def check(self) -> "ExportRequest":
        """Raise ExportError naming the first problem (``problems``); return the request."""
        errs = self.problems()
        if errs:
            raise ExportError(errs[0] if len(errs) == 1 else f"{errs[0]} (and {len(errs) - 1} more problems)")
        return self

    def keep_float_list(self) -> tuple[str, ...]:
        """The keep-float names as given, with ``none`` (quantize everything) kept as the only item."""
        keep = tuple(k for k in self.keep_float if k)
        if any(k.lower() == KEEP_NOTHING_FLOAT for k in keep):
            return (KEEP_NOTHING_FLOAT,) if len(keep) == 1 else keep
        return keep

    def to_dict(self) -> dict:
        """JSON-ready form (paths as strings)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        return out


def folders_overlap(a: Path, b: Path) -> bool:
    """Whether folders ``a`` and ``b`` share images (one is the other or inside it)."""
    try:
        a, b = a.resolve(), b.resolve()
    except OSError:
        return False
    return a == b or b in a.parents or a in b.parents


def artifact_folder(out_dir, arch: str, precision: str, fmt: str) -> Path:
    """``out_dir/<arch>-<precision>-<format>``: where one artifact and its sidecars go."""
    return Path(out_dir) / f"{arch}-{precision}-{fmt}"


def artifact_name(fmt: str) -> str:
    """File name of a format's artifact inside its export folder: ``model.onnx``, ``model.tflite``, ..."""
    return f"model{get_backend(fmt).SUFFIX}"


@dataclass
class Stage:
    """One timed step of an export (for the progress line and the result's timings)."""

    name: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
