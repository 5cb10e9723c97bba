"""The benchmark matrix: export (or reuse) every format x precision, then measure each row.

Per checkpoint: the PyTorch eager fp32 baseline row, then one row per artifact with status, size,
accuracy and agreement with the float model on the labelled data, interleaved latency at a fixed
thread count (one worker process per row), peak memory, and a per-layer int8 error report.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from ..export.api import export_model, load_artifact_runner
from ..export.backends import FORMATS, get_backend
from ..export.base import PRECISIONS, ExportCache, ExportJob
from ..export.console import captured
from ..export.parity import compare, torch_logits
from ..export.request import ExportRequest, artifact_folder, artifact_name
from ..model.checkpoint import load_checkpoint
from ..model.images import generated_pixels, image_files, labelled_indices, load_pixels
from ..model.preprocess import normalize_hwc_uint8
from ..quant.options import Int8Options
from ..quant.pt2e import Pt2eGraph, calibrate_pt2e, pixels_to_tensor, quantize_pt2e
from .latency import Worker, measure
from .layers import pt2e_layer_error, suggest

EAGER_RUNTIME = "PyTorch eager (CPU)"
ARTICLE_CHECKPOINTS = Path(__file__).resolve().parent / "article" / "checkpoints"


class BenchError(ValueError):
    """Bad input to the benchmark: one line saying what."""


@dataclass
class BenchConfig:
    weights: list[Path]
    data: Path
    calib: Path | None = None
    calib_count: int = 128
    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = PRECISIONS
    threads: int = 2
    runs: int = 30
    min_time: float = 3.0
    out: Path = Path("runs/bench")
    artifacts: Path | None = None  # default: out/artifacts (also holds bench.log and scratch files)
    reuse: bool = False
    max_images: int | None = None
    coreml_max_images: int | None = 32
    layer_report: bool = True
    layer_images: int = 16
    keep_float_top: int = 3
    calib_method: str | None = None


class Progress:
    """Progress lines on the terminal (a dup of stderr taken before converters are silenced)."""

    def __init__(self, stream=None):
        self.t0 = time.perf_counter()
        self.stream = stream or os.fdopen(os.dup(2), "w", buffering=1)

    def __call__(self, msg: str) -> None:
        el = int(time.perf_counter() - self.t0)
        self.stream.write(f"[{el // 60:02d}:{el % 60:02d}] {msg}\n")
        self.stream.flush()


def quiet(log: Path):
    """Everything written to fd 1 and 2 inside the block (converters' progress bars, warnings) goes to ``log``."""
    return captured(log)


def resolve_checkpoint(item: str) -> Path:
    """A checkpoint path, or a zoo name trained by the article work (benchmarks/article/checkpoints)."""
    p = Path(item)
    if p.suffix == ".safetensors" or p.exists():
        if not p.exists():
            raise BenchError(f"{p}: no such checkpoint")
        return p
    found = sorted(ARTICLE_CHECKPOINTS.glob(f"{item}*.safetensors")) if ARTICLE_CHECKPOINTS.is_dir() else []
    if not found:
        raise BenchError(f"--models {item}: not a checkpoint file, and no {ARTICLE_CHECKPOINTS}/{item}*.safetensors")
    return found[0]


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


# ------------------------------------------------------------------------------------------ export


@dataclass
class Artifact:
    fmt: str
    precision: str
    folder: Path | None = None
    artifact: Path | None = None
    size_bytes: int | None = None
    export_s: float | None = None
    meta: dict = field(default_factory=dict)
    reused: bool = False
    error: str | None = None

    @classmethod
    def from_result(cls, r) -> Artifact:
        """An artifact this run exported (an ``mvit.export.api.ExportResult``)."""
        return cls(r.format, r.precision, r.folder, r.artifact, r.size_bytes, r.seconds, r.meta)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _reusable(folder: Path, sha: str) -> Artifact | None:
    meta_file = folder / "model_meta.json"
    if not meta_file.exists():
        return None
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("source_checkpoint_sha256") != sha:
        return None

    if meta.get("format") not in FORMATS:
        return None
    art = folder / artifact_name(meta["format"])
    if not art.exists():
        return None
    return Artifact(meta["format"], meta["precision"], folder, art, _size(art), None, meta, reused=True)


def export_all(cfg: BenchConfig, ckpt, weights: Path, art_dir: Path, log: Path, say, cache: ExportCache) -> dict:
    """(format, precision) -> Artifact, exporting what cannot be reused; failures are recorded, not raised."""

    arch = ckpt.meta.architecture
    arts: dict = {}  # ``cache`` is shared: fp32 graphs per format, one PT2E calibration for TFLite and Core ML
    for fmt in cfg.formats:
        todo = []
        for p in (p for p in cfg.precisions if p in get_backend(fmt).PRECISIONS):  # ExecuTorch: fp32, int8
            folder = artifact_folder(art_dir, arch, p, fmt)
            a = _reusable(folder, ckpt.sha256) if cfg.reuse else None
            if a is not None:
                arts[(fmt, p)] = a
                say(f"{arch} {fmt} {p}: reusing {folder} (same checkpoint sha256)")
            else:
                todo.append(p)
        if not todo:
            continue
        groups = [tuple(todo)]
        while groups:
            group = groups.pop(0)
            say(f"{arch}: exporting {fmt} {', '.join(group)} ...")
            t0 = time.perf_counter()
            try:
                int8 = Int8Options(calib=cfg.calib, calib_count=cfg.calib_count, calib_method=cfg.calib_method)
                request = ExportRequest(
                    checkpoint=weights,
                    formats=(fmt,),
                    precisions=group,
                    out=art_dir,
                    force=True,
                    int8=int8,
                    verify=False,
                    threads=cfg.threads,
                )
                with quiet(log):
                    results = export_model(request, cache=cache, say=lambda m: print(m, file=sys.stderr))
            except Exception as e:  # noqa: BLE001 - a converter failure becomes a row's status
                if len(group) > 1:  # find which precision failed
                    groups = [(p,) for p in group] + groups
                    continue
                arts[(fmt, group[0])] = Artifact(fmt, group[0], error=f"export failed: {first_line(e)}")
                say(f"{arch} {fmt} {group[0]}: export FAILED ({first_line(e)}); details in {log}")
                continue
            for r in results:
                arts[(fmt, r.precision)] = Artifact.from_result(r)
            say(f"{arch}: exported {fmt} {', '.join(group)} in {time.perf_counter() - t0:.0f} s")
    return arts


# ------------------------------------------------------------------------------------------ metrics


def accuracy_metrics(
    scores: np.ndarray, ref: np.ndarray, labels, precision: str, kind: str, data: str, numerics: str = ""
) -> dict:

    rep = compare(ref, scores, kind, labels, precision, data, numerics)
    k = min(5, scores.shape[1])
    m = {
        "n_images": rep.n,
        "agreement": rep.top1_agreement,
        "kl_mean": rep.kl_mean,
        "cosine": rep.cosine,
        "cosine_space": rep.space,
        "top5_overlap": rep.top5_overlap,
        "max_abs_diff": rep.max_abs_diff,
        "parity_thresholds": rep.thresholds,
        "parity_failures": rep.failures,
    }
    if labels is not None:
        top = np.argsort(-scores, axis=1)[:, :k]
        m["top1"] = float(np.mean(top[:, 0] == labels))
        m["top5"] = float(np.mean([l in t for l, t in zip(labels, top)]))
    return m


def reference_metrics(ref: np.ndarray, labels) -> dict:
    k = min(5, ref.shape[1])
    m = {
        "n_images": len(ref),
        "agreement": 1.0,
        "kl_mean": 0.0,
        "cosine": 1.0,
        "cosine_space": "logits",
        "top5_overlap": 1.0,
        "max_abs_diff": 0.0,
        "parity_failures": [],
    }
    if labels is not None:
        top = np.argsort(-ref, axis=1)[:, :k]
        m["top1"] = float(np.mean(top[:, 0] == labels))
        m["top5"] = float(np.mean([l in t for l, t in zip(labels, top)]))
    return m


# ------------------------------------------------------------------------------------------ layers


def layer_reports(
    cfg: BenchConfig, ckpt, arts: dict, calib_pixels: np.ndarray, log: Path, say, cache: ExportCache
) -> list[dict]:
    """Per-layer int8 error of each int8 artifact whose backend reports one (``Backend.layer_error``
    against its fp32 sibling, ``Backend.tensor_error`` against the float model), and of the PT2E model
    that the int8 artifacts of every PT2E format are converted from."""
    reports = []
    px = calib_pixels[: cfg.layer_images]
    int8 = {fmt: a for (fmt, p), a in arts.items() if p == "int8" and a.error is None}
    caps = {fmt: get_backend(fmt).CAPABILITIES for fmt in int8}
    for fmt in (f for f in int8 if caps[f].layer_error):
        fp32 = arts.get((fmt, "fp32"))
        if fp32 is None or fp32.error is not None:
            continue
        say(f"per-layer error: {fmt} int8 ...")
        make = lambda f=fmt, a=fp32: get_backend(f).layer_error(a.artifact, int8[f].artifact, px, cfg.threads)  # noqa: E731
        reports.append(_report(f"{fmt} int8", px, cfg.keep_float_top, log, make))
        if "error" in reports[-1]:
            say(f"per-layer error for {fmt} failed: {reports[-1]['error']}")
    pt2e_fmts = [f for f in int8 if caps[f].pt2e_calibration]
    if pt2e_fmts:
        names = " and ".join(f"{f} int8" for f in pt2e_fmts)
        say(f"per-layer error: PT2E int8 ({names}) ...")
        reports.append(
            _report(
                names,
                px,
                cfg.keep_float_top,
                log,
                lambda: _pt2e_report(cfg, ckpt, arts, calib_pixels, px, pt2e_fmts, cache),
            )
        )
        if "error" in reports[-1]:
            say(f"per-layer error for PT2E failed: {reports[-1]['error']}")
    for fmt in (f for f in int8 if caps[f].tensor_error):
        say(f"per-tensor error: the {fmt} int8 file ...")
        reports.append(
            file_tensor_report(get_backend(fmt), int8[fmt].artifact, ckpt.model, px, cfg.keep_float_top, log)
        )
        if "error" in reports[-1]:
            say(f"per-tensor error for the {fmt} file failed: {reports[-1]['error']}")
    return reports


def _report(artifact: str, px: np.ndarray, top: int, log: Path, make) -> dict:
    """One layer report: ``make()``'s method and rows (converter output to ``log``), the images it
    used and the names to try keeping float; a failure is the report's ``error``."""

    try:
        with quiet(log):
            rep = make()
    except Exception as e:  # noqa: BLE001 - a report section, not a gate
        return {"artifact": artifact, "error": first_line(e)}
    return dict(rep, artifact=artifact, images=int(len(px)), suggested_keep_float=suggest(rep["layers"], top))


def file_tensor_report(backend, path: Path, model, pixels: np.ndarray, top: int, log: Path) -> dict:
    """The per-tensor report of an int8 file against its float model (``Backend.tensor_error``); a
    failure is the report's ``error``."""
    name = f"{backend.FORMAT} int8 file {Path(path).name}"
    return _report(name, pixels, top, log, lambda: backend.tensor_error(path, model, pixels))


def _pt2e_report(cfg, ckpt, arts, calib_pixels, px, fmts: list[str], cache: ExportCache) -> dict:
    """The PT2E float graph against the converted int8 graph of the first of ``fmts`` (all PT2E formats
    convert the same model), calibrated as that artifact's export was."""
    c = ckpt.meta.contract
    details = arts[(fmts[0], "int8")].meta.get("quantization_details", {})
    method = details.get("observer") or cfg.calib_method or "histogram"
    keep = tuple(details.get("keep_float", ()))
    h, w = c.input_size
    # The export's calibrated model when this run exported it (same cache key), else calibrate again.
    job = ExportJob(ckpt.model, ckpt.meta, "int8", "float-nchw", calib_pixels, method, keep, cache)
    to_input = lambda p: pixels_to_tensor(p, "NCHW", lambda x: normalize_hwc_uint8(x, c))  # noqa: E731
    graph = Pt2eGraph(ckpt.model, ckpt.model, torch.zeros(1, 3, h, w), to_input, "normalized-nchw")
    prepared = cache.calibrations[calibrate_pt2e(graph, job.pt2e_settings(), cache)].prepared
    converted, _, _ = quantize_pt2e(graph, job.pt2e_settings(), cache=cache)
    names = {n for n, _ in ckpt.model.named_modules() if n}
    rows = pt2e_layer_error(prepared, converted, [to_input(px[i : i + 1]) for i in range(len(px))], names)
    return {
        "method": "PT2E float graph vs converted int8 graph (the model the PT2E formats' int8 artifacts are "
        "converted from), calibrated by this run's export (recalibrated with the same settings when "
        "artifacts were reused)",
        "keep_float_names": f"module paths (mvit-export --format {'|'.join(fmts)} --keep-float NAME)",
        "layers": rows,
    }


# ------------------------------------------------------------------------------------------ one model


def bench_model(cfg: BenchConfig, weights: Path, say) -> dict:
    torch.set_flush_denormal(True)  # converter speed (FIELD_NOTES); the eager baseline runs in its own process
    # One thread in this process (reference logits, conversion, calibration): a 2-thread OpenMP team is
    # many times slower whenever another process wants the cores. Timed rows use cfg.threads in workers.
    torch.set_num_threads(1)
    ckpt = load_checkpoint(weights)
    arch = ckpt.meta.architecture
    out = Path(cfg.out)
    art_dir = Path(cfg.artifacts) if cfg.artifacts else out / "artifacts"
    work = art_dir / ".work" / f"{arch}-{ckpt.sha256[:8]}"
    work.mkdir(parents=True, exist_ok=True)
    log = art_dir / "bench.log"

    files = image_files(cfg.data)
    pixels, used = load_pixels(files, ckpt.meta.contract, cfg.max_images, warn=lambda m: say(f"warning: {m}"))
    if len(pixels) == 0:
        raise BenchError(f"--data {cfg.data}: none of the image files could be read")
    labels = labelled_indices(used, cfg.data, ckpt.meta.labels)
    if labels is None:
        say(
            f"warning: {cfg.data} is not a class-folder tree with the checkpoint's labels "
            f"({', '.join(ckpt.meta.labels[:6])}...): no accuracy, agreement only"
        )
    say(f"{arch}: {len(pixels)} evaluation images from {cfg.data}; computing float reference ...")
    ref = torch_logits(ckpt.model, pixels, ckpt.meta.contract)
    np.save(work / "pixels.npy", pixels)
    np.save(work / "latency_pixel.npy", pixels[:1])
    data_desc = f"{len(pixels)} images of {cfg.data}"

    cache = ExportCache()
    arts = export_all(cfg, ckpt, weights, art_dir, log, say, cache)

    # Latency (and evaluation) workers: PyTorch baseline + every artifact with a runtime here.
    timeable = {fmt: get_backend(fmt).can_time() for fmt in cfg.formats}
    workers = [
        Worker(
            "torch-fp32",
            {
                "kind": "torch",
                "weights": str(weights),
                "threads": cfg.threads,
                "pixels": str(work / "latency_pixel.npy"),
            },
            log,
        )
    ]
    for (fmt, p), a in arts.items():
        if a.error is None and timeable[fmt][0]:
            workers.append(
                Worker(
                    f"{fmt}-{p}",
                    {
                        "kind": "artifact",
                        "path": str(a.artifact),
                        "threads": cfg.threads,
                        "pixels": str(work / "latency_pixel.npy"),
                    },
                    log,
                )
            )
    say(
        f"{arch}: timing {len(workers)} rows interleaved at {cfg.threads} threads "
        f"(>= {cfg.runs} runs and >= {cfg.min_time:g} s each) ..."
    )
    measure(workers, cfg.runs, cfg.min_time, eval_pixels=work / "pixels.npy", eval_dir=work, progress=say)
    by_key = {w.key: w for w in workers}

    base = by_key["torch-fp32"]
    base_median = base.info.get("latency", {}).get("median_ms")
    rows = [
        _row(
            arch,
            weights,
            "torch",
            "fp32",
            base,
            None,
            reference_metrics(ref, labels),
            base_median,
            status="baseline" if base.error is None else "failed",
            reason=base.error,
        )
    ]
    rows[0]["size_mb"] = sum(v.numel() * v.element_size() for v in ckpt.model.state_dict().values()) / 1e6
    rows[0]["size_note"] = "parameters and buffers in memory (fp32)"
    for fmt in cfg.formats:
        for p in cfg.precisions:
            a = arts.get((fmt, p))
            if a is None:
                continue
            w = by_key.get(f"{fmt}-{p}")
            if a.error:
                rows.append(_row(arch, weights, fmt, p, None, a, {}, base_median, status="failed", reason=a.error))
                continue
            metrics, reason, numerics = {}, None, ""
            if not timeable[fmt][0]:
                metrics, reason, numerics = _untimed_eval(cfg, a, pixels, ref, labels, p, data_desc, log, say)
            elif w is not None and w.error is None and "scores" in w.info:
                scores = np.load(w.info["scores"])
                kind = a.meta.get("output", {}).get("kind", "logits")
                metrics = accuracy_metrics(scores, ref, labels, p, kind, data_desc)
            else:
                reason = w.error if w is not None else "not measured"
            if reason and not metrics:
                status = "failed"
            elif metrics.get("parity_failures"):
                status = "exported, failed parity"
            else:
                status = "exported"
            row = _row(arch, weights, fmt, p, w, a, metrics, base_median, status=status, reason=reason)
            if not timeable[fmt][0]:
                row["latency_note"] = timeable[fmt][1]
                row["numerics"] = numerics
            rows.append(row)
    float_top1 = rows[0].get("top1")
    for r in rows:
        if r.get("top1") is not None and float_top1 is not None:
            r["top1_drop_points"] = 100.0 * (float_top1 - r["top1"])
        fp32 = next((x for x in rows if x["format"] == r["format"] and x["precision"] == "fp32"), None)
        if fp32 and fp32.get("size_mb") and r.get("size_mb") and r["format"] != "torch":
            r["size_vs_fp32"] = r["size_mb"] / fp32["size_mb"]

    layers = []
    if cfg.layer_report and "int8" in cfg.precisions:
        calib_pixels = None
        if cfg.calib is not None:
            calib_pixels, _ = load_pixels(image_files(cfg.calib), ckpt.meta.contract, cfg.calib_count)
        if calib_pixels is None or len(calib_pixels) == 0:
            calib_pixels = generated_pixels(ckpt.meta.contract, max(cfg.layer_images, 8))
        layers = layer_reports(cfg, ckpt, arts, calib_pixels, log, say, cache)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "architecture": arch,
        "checkpoint": str(weights),
        "checkpoint_sha256": ckpt.sha256,
        "labels": list(ckpt.meta.labels),
        "input_size": list(ckpt.meta.contract.input_size),
        "evaluation": data_desc,
        "labelled": labels is not None,
        "rows": rows,
        "layer_reports": layers,
    }


def _row(arch, weights, fmt, precision, worker, art, metrics, base_median, status, reason=None) -> dict:
    row = {
        "model": arch,
        "format": fmt,
        "precision": precision,
        "runtime": EAGER_RUNTIME if fmt == "torch" else get_backend(fmt).RUNTIME,
        "status": status,
        "reason": reason,
    }
    if art is not None:
        row.update(
            {
                "artifact": str(art.artifact) if art.artifact else None,
                "reused": art.reused,
                "export_s": art.export_s,
                "size_mb": art.size_bytes / 1e6 if art.size_bytes is not None else None,
                "quantization": art.meta.get("quantization_details") or None,
                "input": {k: art.meta.get("input", {}).get(k) for k in ("dtype", "layout", "shape")}
                if art.meta
                else None,
            }
        )
    row.update(metrics)
    if worker is not None and worker.error is None and "latency" in worker.info:
        info = worker.info
        lat = dict(info["latency"])
        lat.update(load_ms=info.get("load_ms"), first_ms=info.get("first_ms"), prepare_ms=info.get("prepare_ms"))
        row["latency"] = lat
        if base_median:
            row["latency_vs_eager"] = lat["median_ms"] / base_median
        row["memory"] = {
            "peak_rss_mb": info.get("peak_rss_mb"),
            "rss_before_load_mb": info.get("rss_before_mb"),
            "peak_over_start_mb": (info["peak_rss_mb"] - info["rss_before_mb"])
            if info.get("peak_rss_mb") is not None and info.get("rss_before_mb") is not None
            else None,
        }
    elif worker is not None and worker.error and not reason:
        row["reason"] = worker.error
    return row


def _untimed_eval(cfg, a: Artifact, pixels, ref, labels, precision, data_desc, log, say):
    """Numerics of a format this machine cannot time (Core ML off macOS: mvit's reference interpreter),
    in this process, on at most ``cfg.coreml_max_images`` images."""

    n = len(pixels) if cfg.coreml_max_images is None else min(len(pixels), cfg.coreml_max_images)
    say(f"{a.fmt} {precision}: evaluating on {n} images without a native runtime ...")
    t0 = time.perf_counter()
    try:
        with quiet(log):
            runner = load_artifact_runner(a.artifact, cfg.threads)
            scores = np.concatenate([runner.run(pixels[i : i + 1]) for i in range(n)])
    except Exception as e:  # noqa: BLE001
        return {}, f"reference interpreter failed: {first_line(e)}", ""
    numerics = getattr(runner, "numerics", "")
    desc = data_desc if n == len(pixels) else f"first {n} of {data_desc}"
    m = accuracy_metrics(
        scores,
        ref[:n],
        labels[:n] if labels is not None else None,
        precision,
        a.meta.get("output", {}).get("kind", "probabilities"),
        desc,
        numerics,
    )
    m["eval_seconds"] = time.perf_counter() - t0
    return m, None, numerics


# ------------------------------------------------------------------------------------------ all

# int8 dot-product extensions (x86 VNNI, ARM dotprod) decide whether int8 kernels beat fp32 ones
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimddp")


def cpu_info() -> tuple[str, list[str]]:
    """The CPU's model name and which of ``ISA_FLAGS`` it has (from /proc/cpuinfo; ARM lists them
    under ``Features``)."""
    cpu, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu == (platform.processor() or platform.machine()):
                cpu = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = value.split()
    except OSError:
        pass
    return cpu, [f for f in ISA_FLAGS if f in flags]


def cpu_line(threads: int) -> str:
    """``CPU model, N cores, ISA a, b; T threads`` for a report's header."""
    cpu, isa = cpu_info()
    return f"{cpu}, {os.cpu_count()} cores, ISA {', '.join(isa) or 'none of ' + '/'.join(ISA_FLAGS)}; {threads} threads"


def machine_info(threads: int) -> dict:
    cpu, isa = cpu_info()
    libs = {}
    for pkg in (
        "mvit",
        "torch",
        "onnxruntime",
        "onnx",
        "ai-edge-litert",
        "litert-torch",
        "ai-edge-quantizer",
        "torchao",
        "coremltools",
        "numpy",
        "matplotlib",
    ):
        try:
            libs[pkg] = version(pkg)
        except PackageNotFoundError:
            libs[pkg] = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = None
    return {
        "cpu": cpu,
        "isa": isa,
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(mem, 1) if mem else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "threads": threads,
        "libraries": libs,
    }


def run(cfg: BenchConfig, say=None) -> dict:
    """Run the whole benchmark; returns the report dictionary (also what bench.json holds)."""
    say = say or Progress()
    cfg.out = Path(cfg.out)
    cfg.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    models = []
    for w in cfg.weights:
        models.append(bench_model(cfg, Path(w), say))
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "schema": "mvit.bench/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - t0, 1),
        "machine": machine_info(cfg.threads),
        "load_average_start_end": [load0, load1],
        "settings": {
            "data": str(cfg.data),
            "calibration": str(cfg.calib) if cfg.calib else "data-free (ZeroQ)",
            "calibration_images": cfg.calib_count,
            "formats": list(cfg.formats),
            "precisions": list(cfg.precisions),
            "threads": cfg.threads,
            "min_runs": cfg.runs,
            "min_time_s": cfg.min_time,
            "batch": 1,
            "latency": "runner.invoke on a prepared batch-1 input (preprocessing excluded, reported as "
            "prepare_ms), rows interleaved round-robin in bursts of 0.25 s, one process per row",
            "memory": "peak resident set (ru_maxrss) of the row's own process after the timing runs; "
            "rss_before_load_mb is the same process with the runtime imported, before the model loads",
        },
        "models": models,
    }
