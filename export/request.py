"""``ExportRequest``: everything one export run is asked to do, checked before any work starts.

The CLI builds one from its options, ``mvit-bench`` builds one per format, Python users build one
directly; ``mvit.export.api.export_model(request)`` is the only way into export. Its int8 options are
one ``mvit.quant.options.Int8Options`` (``request.int8``). Formats come from the backend registry,
precisions and input modes from ``mvit.export.base``, and artifact folders are named here, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from ..quant.options import Int8Options
from .backends import FORMATS, get_backend
from .base import INPUT_MODES, PRECISIONS, ExportError, option_problems

INT8_FIELDS = tuple(f.name for f in fields(Int8Options) if f.name != "all_int8")  # flat names ``of`` takes


@dataclass(frozen=True)
class ExportRequest:
    """One export run: which checkpoint, to which formats and precisions, calibrated and verified how."""

    checkpoint: Path | None = None  # mvit .safetensors; None = the shipped model
    formats: tuple[str, ...] = ("tflite",)
    precisions: tuple[str, ...] = ("fp32",)
    out: Path = Path("out")  # one subfolder per artifact (``artifact_folder``)
    force: bool = False  # replace existing artifact folders
    int8: Int8Options = Int8Options()  # calibration, float set and search of int8 (--calib images verify too)
    input_mode: str | None = None  # None = each backend's default input
    verify: bool = True
    verify_data: Path | None = None  # None = --calib images not used for calibration, else generated
    threads: int = 2  # CPU threads in all
    jobs: int = 1  # formats exported at once in worker processes
    verbose: bool = False  # converter output on the console as well as in export.log

    @classmethod
    def of(cls, **kwargs) -> ExportRequest:
        """A request from flat keywords: the ``Int8Options`` ones (``INT8_FIELDS``; ``keep_float``
        as command-line words, ``none`` = every layer int8) go into ``int8``, the rest as they are."""
        int8 = {k: kwargs.pop(k) for k in INT8_FIELDS if k in kwargs}
        if int8:
            kwargs["int8"] = Int8Options.from_words(**int8)
        return cls(**kwargs)

    def __post_init__(self):
        for name in ("formats", "precisions"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(dict.fromkeys(value)))
        for name in ("checkpoint", "out", "verify_data"):
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
        errs += [
            f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}"
            for p in self.precisions
            if p not in PRECISIONS
        ]
        if self.input_mode is not None and self.input_mode not in INPUT_MODES:
            errs.append(f"unknown --input {self.input_mode!r}; choose from {', '.join(INPUT_MODES)}")
        for name, low in (("threads", 1), ("jobs", 1)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                errs.append(f"--{name.replace('_', '-')} must be an integer >= {low}, got {getattr(self, name)!r}")
        int8 = self.int8
        errs += int8.problems("int8" in self.precisions)
        if (
            int8.search_data is not None
            and self.verify_data is not None
            and folders_overlap(int8.search_data, self.verify_data)
        ):
            errs.append(
                "--search-data and --verify-data share images: the int8 search must not see the verification images"
            )
        if errs:
            return errs
        for fmt in self.formats:
            backend = get_backend(fmt)
            for p in self.precisions:
                errs += option_problems(backend, p, self.input_mode, int8.calib_method, int8.words())
        return errs

    def check(self) -> ExportRequest:
        """Raise ExportError naming the first problem (``problems``); return the request."""
        errs = self.problems()
        if errs:
            raise ExportError(errs[0] if len(errs) == 1 else f"{errs[0]} (and {len(errs) - 1} more problems)")
        return self

    def to_dict(self) -> dict:
        """JSON-ready form (paths as strings, ``int8`` as a nested dict)."""
        return _json(self)


def _json(value):
    """``value`` with dataclasses as dicts, paths as strings and tuples as lists."""
    if is_dataclass(value):
        return {f.name: _json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return str(value) if isinstance(value, Path) else value


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
