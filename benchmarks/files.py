"""Benchmark model files as they are: any .tflite, .onnx, .pte, .mlpackage or .aimodel, with or without mvit metadata.

For every file: size, an op census (op types with dtypes; for TFLite and ExecuTorch what the XNNPACK
delegate took; for ONNX the graph after onnxruntime's optimisation), and latency (load, first run,
warm median/p90/min) and peak memory from one worker process per file, timed interleaved like the
matrix. A file's preprocessing and labels come from its mvit metadata, or from the options
(``FileOptions``) for files made elsewhere; with labelled images that gives accuracy, and with a
reference model (checkpoint or model file) agreement, KL and cosine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..export.backends import format_of, get_backend
from ..export.metadata import SCHEMA, meta_problems
from ..export.parity import torch_logits
from ..model.checkpoint import CheckpointError, load_checkpoint
from ..model.contract import PreprocessContract
from ..model.images import ImageFolderError, generated_pixels, image_files, labelled_indices, load_pixels
from .census import headline_line, with_int8_headline
from .latency import Worker, measure
from .matrix import BenchError, Progress, accuracy_metrics, file_tensor_report, first_line, machine_info, quiet
from .untimed import untimed_scores


class UnsupportedOps(BenchError):
    """A model file that needs ops this machine's runtime does not have."""


@dataclass
class FileOptions:
    """What a file without mvit metadata needs to be fed images: labels and the preprocessing."""

    labels: list[str] | None = None
    size: tuple[int, int] | None = None  # default: the file's input shape
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bgr: bool = False
    resize_short: int | None = None  # short side before the centre crop (default: no crop)
    crop: float | None = None  # or: the crop fraction
    interpolation: str = "bilinear"

    def given(self) -> bool:
        return self.labels is not None


@dataclass
class FilesConfig:
    files: list[Path]
    options: FileOptions = field(default_factory=FileOptions)
    data: Path | None = None
    reference: Path | None = None
    max_images: int | None = None
    threads: int = 2
    runs: int = 30
    min_time: float = 3.0
    out: Path = Path("runs/bench")
    layer_report: bool = True  # int8 .tflite files with a checkpoint --reference: per-tensor error
    layer_images: int = 16
    keep_float_top: int = 3


@dataclass
class FileEntry:
    """One file on its way to a report row."""

    path: Path
    fmt: str
    backend: object
    meta: dict | None = None  # labels and preprocessing: the file's mvit metadata or the options
    meta_source: str = "none"  # "mvit metadata" | "options" | "none"
    run_meta: dict | None = None  # what its runner is built with (placeholder labels when ``meta`` is None)
    census: dict | None = None
    io: dict | None = None
    notes: list[str] = field(default_factory=list)
    untimed: dict | None = None  # {"scores": path} of a format evaluated without timing (Core AI)

    @property
    def name(self) -> str:
        return self.path.name


def read_labels(path: Path) -> list[str]:
    """One label per line (blank lines ignored), as mvit's labels.txt."""
    try:
        labels = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise BenchError(
            f"--labels {path}: cannot read it ({getattr(e, 'strerror', None) or type(e).__name__})"
        ) from None
    if not labels:
        raise BenchError(f"--labels {path}: no labels in the file")
    if len(set(labels)) != len(labels):
        raise BenchError(f"--labels {path}: repeated labels")
    return labels


def open_entries(files, options: FileOptions, threads: int) -> list[FileEntry]:
    """Check every file (exists, known format, readable, runnable here) and work out its metadata.

    Raises ``BenchError`` (``UnsupportedOps`` for ops the runtime lacks) with one line naming the
    file and the problem, before anything is measured.
    """
    entries = []
    for f in files:
        path = Path(f)
        if not path.exists():
            raise BenchError(f"{path}: no such file")
        try:
            fmt = format_of(path)
        except ValueError:
            raise BenchError(f"{path}: not a .tflite, .onnx, .pte, .mlpackage or .aimodel file") from None
        backend = get_backend(fmt)
        why = backend.unavailable()
        if why:
            raise BenchError(f"{path}: {why}")
        try:
            missing = backend.missing_ops(path)
        except ValueError as e:  # unreadable: the backend says so in one line
            raise BenchError(f"{path}: {_strip(str(e).splitlines()[0], path)}") from None
        except RuntimeError as e:
            raise BenchError(f"{path}: {_strip(first_line(e), path)}") from None
        if missing:
            raise UnsupportedOps(f"{path}: needs ops this runtime does not have: {', '.join(missing)}")
        entry = FileEntry(path, fmt, backend)
        try:
            entry.meta, entry.meta_source = backend.read_metadata(path), "mvit metadata"
        except ValueError:
            pass
        try:
            entry.io = backend.io_details(path)
        except Exception as e:  # noqa: BLE001 - a runtime refusing the file is the user's problem to see
            raise BenchError(f"{path}: the runtime cannot load it ({_strip(first_line(e), path)})") from None
        if entry.meta is None and options.given():
            entry.meta, entry.meta_source = synthesize_meta(entry, options), "options"
        elif entry.meta is not None and options.given():
            entry.notes.append("has mvit metadata: --labels and the preprocessing options were not used")
        entry.run_meta = entry.meta
        if entry.meta is None:  # latency only: a generated image through a plain /255 contract
            n_out = int(np.prod(entry.io["output"]["shape"]))
            entry.run_meta = synthesize_meta(entry, FileOptions(labels=[f"class_{i}" for i in range(n_out)]))
            entry.notes.append(
                "no mvit metadata and no --labels: latency (on a generated image), memory and op census only"
            )
        entries.append(entry)
    return entries


def _strip(text: str, path: Path) -> str:
    return text.replace(f"{path}: ", "")


def input_layout(shape: list[int]) -> tuple[str, tuple[int, int]]:
    """(layout, (H, W)) of an image input tensor shape, N x 3 x H x W or N x H x W x 3."""
    if len(shape) == 4 and shape[1] == 3 and shape[3] != 3:
        return "NCHW", (shape[2], shape[3])
    if len(shape) == 4 and shape[3] == 3:
        return "NHWC", (shape[1], shape[2])
    if len(shape) == 4 and shape[1] == 3:
        return "NCHW", (shape[2], shape[3])
    raise BenchError(f"input shape {shape} is not an image (N,3,H,W or N,H,W,3)")


def synthesize_meta(entry: FileEntry, o: FileOptions) -> dict:
    """model_meta for a file made elsewhere: its own I/O tensors, the given labels and preprocessing."""
    inp, out = entry.io["input"], entry.io["output"]
    try:
        layout, (h, w) = input_layout(inp["shape"])
    except BenchError as e:
        raise BenchError(f"{entry.path}: {e}") from None
    size = o.size or (h, w)
    if tuple(size) != (h, w):
        raise BenchError(f"{entry.path}: --size {size[0]}x{size[1]} but the file's input is {h}x{w}")
    crop = o.crop if o.crop is not None else (min(size) / o.resize_short if o.resize_short else 1.0)
    try:
        contract = PreprocessContract(
            input_size=tuple(size),
            crop_fraction=crop,
            interpolation=o.interpolation,
            mean=tuple(o.mean),
            std=tuple(o.std),
            channel_order="BGR" if o.bgr else "RGB",
        )
    except ValueError as e:
        raise BenchError(f"preprocessing options: {e}") from None
    n_out = int(np.prod(out["shape"]))
    if n_out != len(o.labels):
        raise BenchError(f"{entry.path}: the output has {n_out} values but --labels has {len(o.labels)} labels")
    meta = {
        "schema": SCHEMA,
        "architecture": entry.path.stem,
        "num_classes": len(o.labels),
        "labels": list(o.labels),
        "preprocess": contract.to_dict(),
        "input": dict(inp, layout=layout, normalization_in_model=False),
        "output": dict(out, layout="NC", kind="logits"),
        "format": entry.fmt,
        "precision": None,
    }
    problems = meta_problems(meta)
    if problems:
        raise BenchError(f"{entry.path}: {problems[0]}")
    return meta


def precision_of(entry: FileEntry) -> str:
    """The metadata's precision, else what the op census shows: int8 if any compute op takes int8."""
    if entry.meta and entry.meta.get("precision"):
        return entry.meta["precision"]
    dtypes = {r["dtype"] for r in (entry.census or {}).get("ops", [])}
    if any(d.startswith(("int8", "uint8")) for d in dtypes):
        return "int8"
    return "fp16" if "float16" in dtypes else "fp32"


def display_names(paths: list[Path]) -> list[str]:
    """File names, with as many parent folders as it takes to tell apart files of the same name."""
    for depth in range(1, 6):
        names = [str(Path(*Path(p).resolve().parts[-depth:])) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def file_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def sha256(path: Path) -> str:
    """sha256 of a file, or of a package folder's files (relative paths and contents, sorted)."""
    h = hashlib.sha256()
    if Path(path).is_dir():
        for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
    else:
        h.update(Path(path).read_bytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ reference


def reference_scores(ref: Path, pixels_for, threads: int, options: FileOptions) -> tuple[np.ndarray, list[str], str]:
    """Scores of the reference model (a checkpoint or a model file) on the evaluation images, as
    logits or log-probabilities; returns (scores, its labels, description)."""
    ref = Path(ref)
    if not ref.exists():
        raise BenchError(f"--reference {ref}: no such file")
    if ref.suffix == ".safetensors":
        try:
            ckpt = load_checkpoint(ref)
        except CheckpointError as e:
            raise BenchError(f"--reference {e}") from None
        return (
            torch_logits(ckpt.model, pixels_for(ckpt.meta.contract), ckpt.meta.contract),
            list(ckpt.meta.labels),
            f"PyTorch checkpoint {ref.name}",
        )
    entry = open_entries([ref], options, threads)[0]
    if entry.meta is None:
        raise BenchError(f"--reference {ref}: no mvit metadata and no --labels to feed it images")
    runner = entry.backend.load_runner(ref, threads, entry.meta)
    scores = runner.run(pixels_for(PreprocessContract.from_dict(entry.meta["preprocess"])))
    runner.close()
    if entry.meta["output"].get("kind") == "probabilities":
        scores = np.log(np.clip(scores, 1e-12, None))
    return scores, list(entry.meta["labels"]), f"{entry.fmt} file {ref.name}"


# ------------------------------------------------------------------------------------------ run


def bench_files(cfg: FilesConfig, say=None) -> dict:
    """Measure every file of ``cfg``; returns the report (the matrix's report schema, one section
    of file rows)."""
    say = say or Progress()
    t0 = time.time()
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    if cfg.reference is not None and cfg.data is None:
        raise BenchError("--reference needs --data (the images to compare the models on)")
    try:
        files = image_files(cfg.data) if cfg.data is not None else []
    except ImageFolderError as e:
        raise BenchError(str(e)) from None
    entries = open_entries(cfg.files, cfg.options, cfg.threads)  # every file checked before anything is written
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".work-files"
    work.mkdir(exist_ok=True)
    log = out / "bench.log"
    try:
        for e in entries:
            with quiet(log):
                try:
                    e.census = with_int8_headline(e.backend.op_census(e.path, cfg.threads))
                except Exception as err:  # noqa: BLE001 - the census is a report section, not a gate
                    e.census = {"error": first_line(err)}
            head = (e.census or {}).get("integer")
            say(
                f"{e.name}: {e.fmt}, {e.meta_source if e.meta else 'no labels or preprocessing'}, "
                f"{(e.census or {}).get('ops_total', '?')} ops"
                + (f"; {headline_line(e.census['int8'])}" if "int8" in (e.census or {}) else "")
                + (
                    f", integer {head['integer_mac_ops']}/{head['mac_ops']} multiply-accumulate ops, "
                    f"{sum(head['conversions'].values())} conversions"
                    if head
                    else ""
                )
            )

        pixel_cache: dict = {}

        def pixels_for(contract: PreprocessContract):
            key = repr(contract)
            if key not in pixel_cache:
                px, used = load_pixels(files, contract, cfg.max_images, warn=lambda m: say(f"warning: {m}"))
                if len(px) == 0:
                    raise BenchError(f"--data {cfg.data}: none of the image files could be read")
                pixel_cache[key] = (px, used)
            return pixel_cache[key][0]

        workers = []
        for i, e in enumerate(entries):
            contract = PreprocessContract.from_dict(e.run_meta["preprocess"])
            one = work / f"latency_{i}.npy"
            np.save(one, (pixels_for(contract)[:1] if files and e.meta else generated_pixels(contract, 1)))
            spec = {"kind": "file", "path": str(e.path), "threads": cfg.threads, "meta": e.run_meta, "pixels": str(one)}
            if e.meta is not None and files:
                ev = work / f"eval_{i}.npy"
                np.save(ev, pixels_for(contract))
                spec["eval_pixels"] = str(ev)
            timeable, why = e.backend.can_time()
            if not timeable:
                e.notes.append(why)
                if e.backend.CAPABILITIES.untimed_numerics and "eval_pixels" in spec:
                    e.untimed = untimed_scores(e, Path(spec["eval_pixels"]), cfg.threads, log, say)
                continue
            workers.append(Worker(f"{i}:{e.name}", spec, log))
        ref = None
        if cfg.reference is not None:
            ref = reference_scores(cfg.reference, pixels_for, cfg.threads, cfg.options)
        say(
            f"timing {len(workers)} file(s) interleaved at {cfg.threads} threads "
            f"(>= {cfg.runs} runs and >= {cfg.min_time:g} s each) ..."
        )
        measure(workers, cfg.runs, cfg.min_time, eval_pixels=None, eval_dir=work, progress=say)
        by_key = {w.key: w for w in workers}

        rows = []
        names = display_names([e.path for e in entries])
        for i, e in enumerate(entries):
            w = by_key.get(f"{i}:{e.name}")
            rows.append(_row(e, w, pixel_cache, ref, cfg))
            rows[-1]["name"] = names[i]
        layer_reports = _layer_reports(cfg, entries, pixels_for, log, say)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "schema": "mvit.bench/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - t0, 1),
        "machine": machine_info(cfg.threads),
        "load_average_start_end": [load0, os.getloadavg() if hasattr(os, "getloadavg") else None],
        "settings": {
            "files": [str(f) for f in cfg.files],
            "data": str(cfg.data) if cfg.data else None,
            "reference": str(cfg.reference) if cfg.reference else None,
            "threads": cfg.threads,
            "min_runs": cfg.runs,
            "min_time_s": cfg.min_time,
            "batch": 1,
            "latency": "the runtime's invoke on a prepared batch-1 input, files interleaved round-robin "
            "in bursts of 0.25 s, one process per file",
            "memory": "peak resident set of the file's own process",
        },
        "models": [
            {
                "kind": "files",
                "architecture": "model files",
                "evaluation": _evaluation(cfg, pixel_cache),
                "labelled": any(r.get("top1") is not None for r in rows),
                "rows": rows,
                "layer_reports": layer_reports,
            }
        ],
    }


def _layer_reports(cfg: FilesConfig, entries: list[FileEntry], pixels_for, log: Path, say) -> list[dict]:
    """Per-tensor error of each int8 file whose backend reports one (``Backend.tensor_error``) against a
    checkpoint ``--reference`` (its float model)."""
    picked = [e for e in entries if e.backend.CAPABILITIES.tensor_error and precision_of(e) == "int8"]
    if not (cfg.layer_report and picked and cfg.reference is not None and Path(cfg.reference).suffix == ".safetensors"):
        return []
    ckpt = load_checkpoint(cfg.reference)  # read once already by reference_scores
    px = pixels_for(ckpt.meta.contract)[: cfg.layer_images]
    reports = []
    for e in picked:
        say(f"per-tensor error: {e.name} against {Path(cfg.reference).name} ...")
        reports.append(file_tensor_report(e.backend, e.path, ckpt.model, px, cfg.keep_float_top, log))
        if "error" in reports[-1]:
            say(f"per-tensor error for {e.name} failed: {reports[-1]['error']}")
    return reports


def _evaluation(cfg: FilesConfig, pixel_cache: dict) -> str:
    if cfg.data is None:
        return "no --data: latency, memory and op census only"
    n = max((len(px) for px, _ in pixel_cache.values()), default=0)
    return f"{n} images of {cfg.data}"


def _row(e: FileEntry, w, pixel_cache: dict, ref, cfg: FilesConfig) -> dict:
    """The report row of one file: what it is, its census, and what its worker measured."""
    row = {
        "model": (e.meta or {}).get("architecture") or e.path.stem,
        "file": str(e.path),
        "artifact": str(e.path),
        "format": e.fmt,
        "precision": precision_of(e),
        "runtime": (e.census or {}).get("runtime"),
        "metadata": e.meta_source,
        "size_mb": file_size(e.path) / 1e6,
        "census": e.census,
        "input": {k: (e.io or {}).get("input", {}).get(k) for k in ("dtype", "shape")},
        "notes": list(e.notes),
    }
    if w is None:
        row.update(status="not timed", reason="; ".join(e.notes) or "no runtime here")
        if not e.untimed:
            return row
        info = e.untimed
        row["numerics"] = info.get("numerics")
        if "error" in info:
            row["notes"].append(info["error"])
            return row
    elif w.error:
        row.update(status="failed", reason=w.error)
        return row
    else:
        info = w.info
        lat = dict(
            info["latency"],
            load_ms=info.get("load_ms"),
            first_ms=info.get("first_ms"),
            prepare_ms=info.get("prepare_ms"),
        )
        row.update(
            status="measured",
            latency=lat,
            memory={"peak_rss_mb": info.get("peak_rss_mb"), "rss_before_load_mb": info.get("rss_before_mb")},
        )
    if e.meta is None or "scores" not in info:
        return row
    scores = np.load(info["scores"])
    contract = PreprocessContract.from_dict(e.meta["preprocess"])
    _, used = pixel_cache[repr(contract)]
    labels = labelled_indices(used, cfg.data, e.meta["labels"])
    kind = e.meta["output"].get("kind", "logits")
    if ref is not None:
        ref_scores, ref_labels, ref_desc = ref
        if list(ref_labels) != list(e.meta["labels"]):
            row["notes"].append(f"reference {ref_desc} has other labels: no agreement")
        elif len(ref_scores) != len(scores):
            row["notes"].append(
                f"reference {ref_desc} read {len(ref_scores)} images, this file {len(scores)}: no agreement"
            )
        else:
            row.update(
                accuracy_metrics(
                    scores, ref_scores, labels, row["precision"] or "fp32", kind, f"{len(scores)} images of {cfg.data}"
                )
            )
            row["reference"] = ref_desc
            return row
    if labels is not None:
        k = min(5, scores.shape[1])
        top = np.argsort(-scores, axis=1)[:, :k]
        row.update(
            n_images=len(scores),
            top1=float(np.mean(top[:, 0] == labels)),
            top5=float(np.mean([l in t for l, t in zip(labels, top)])),
        )
    else:
        row["notes"].append(f"{cfg.data} has no class folders named like the labels: no accuracy")
    return row
