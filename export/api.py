"""``export_model``: one checkpoint -> artifacts in several formats and precisions, each verified."""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mvit.export.backends import FORMATS, get_backend
from mvit.export.base import INPUT_MODES, PRECISIONS, ExportError, ExportJob
from mvit.quant.calibration import (CalibrationError, generated_pixels, image_files, labelled_indices, load_pixels,
                                synthesize_zeroq)
from mvit.export.metadata import build_meta, write_sidecars
from mvit.export.parity import ParityReport, check_runner, torch_logits
from mvit.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from mvit.model.export_prep import prepare_for_export

MAX_VERIFY = 200
GENERATED = "32 generated images"


@dataclass
class ExportResult:
    """One artifact: where it is, what it is, and how it compares with the float model."""

    format: str
    precision: str
    folder: Path
    artifact: Path
    size_bytes: int
    seconds: float
    meta: dict
    parity: ParityReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.parity is None:
            return "exported (not verified)"
        return "exported, parity passed" if self.parity.passed else "exported, FAILED parity"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_options(formats, precisions, input_mode: str | None) -> None:
    """Reject unknown or unsupported format/precision/input combinations before any work."""
    for fmt in formats:
        if fmt not in FORMATS:
            raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        backend = get_backend(fmt)
        why = getattr(backend, "unavailable", lambda: None)()
        if why:
            raise ExportError(why)
        for p in precisions:
            if p not in PRECISIONS:
                raise ExportError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
            if p not in backend.PRECISIONS:
                raise ExportError(f"{fmt} does not support --quantize {p}")
        if input_mode is not None:
            if input_mode not in INPUT_MODES:
                raise ExportError(f"unknown --input {input_mode!r}; choose from {', '.join(INPUT_MODES)}")
            if input_mode not in backend.INPUTS:
                raise ExportError(f"{fmt} does not support --input {input_mode} (it takes {', '.join(backend.INPUTS)})")


def export_model(weights=None, formats=("tflite",), precisions=("fp32",), out_dir="out", calib=None,
                 calib_count: int = 256, calib_method: str | None = None, input_mode: str | None = None,
                 keep_float=(), verify: bool = True, verify_data=None, force: bool = False, threads: int = 2,
                 zeroq_count: int = 32, say=_say, cache: dict | None = None, jobs: int = 1) -> list[ExportResult]:
    """Export a checkpoint (default: the shipped model) to every format x precision asked for.

    Each artifact goes to ``out_dir/<arch>-<precision>-<format>/`` with ``labels.txt`` and
    ``model_meta.json``; the folder appears only when complete (built under a temporary name).
    ``jobs`` > 1 exports formats in that many worker processes at once (``threads`` split between
    them; worker messages go to stderr, and ``cache`` is not used).
    """
    formats, precisions = tuple(formats), tuple(precisions)
    check_options(formats, precisions, input_mode)
    weights = Path(weights) if weights else DEFAULT_CHECKPOINT
    if calib_count < 1:
        raise ExportError("--calib-count must be at least 1")
    ckpt = load_checkpoint(weights)
    export_net = prepare_for_export(ckpt.model)  # parity still compares against the checkpoint as is
    arch = ckpt.meta.architecture
    out_dir = Path(out_dir)
    targets = {(f, p): artifact_folder(out_dir, arch, p, f) for f in formats for p in precisions}
    existing = [str(t) for t in targets.values() if t.exists()]
    if existing and not force:
        raise ExportError(f"{existing[0]} exists; pass --force to replace it")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-")
        probe.close()
    except OSError as e:
        raise ExportError(f"{out_dir}: cannot write there ({e.strerror})") from None

    contract = ckpt.meta.contract
    calib_pixels = verify_pixels = verify_labels = None
    verify_source = ""
    needs_calib = "int8" in precisions
    if calib is not None:
        files = image_files(calib)
        calib_pixels, used = load_pixels(files, contract, calib_count if needs_calib else 0,
                                         warn=lambda m: say(f"warning: {m}"))
        if needs_calib and len(calib_pixels) == 0:
            raise CalibrationError(f"{calib}: none of the image files could be read")
        if needs_calib and len(calib_pixels) < min(100, calib_count):
            say(f"warning: only {len(calib_pixels)} calibration images; 100 or more give steadier int8 results")
        if verify and verify_data is None:
            used_set = set(used) if needs_calib else set()
            rest = [f for f in files if f not in used_set]
            if rest:
                verify_pixels, vused = load_pixels(rest, contract, MAX_VERIFY, warn=lambda m: say(f"warning: {m}"))
                verify_labels = labelled_indices(vused, calib, ckpt.meta.labels)
                verify_source = f"{len(verify_pixels)} images of {calib} not used for calibration"
    elif needs_calib:
        calib_pixels = _data_free(ckpt, weights, zeroq_count, say)
    if verify and verify_data is not None:
        vfiles = image_files(verify_data)
        verify_pixels, vused = load_pixels(vfiles, contract, None, warn=lambda m: say(f"warning: {m}"))
        verify_labels = labelled_indices(vused, verify_data, ckpt.meta.labels)
        verify_source = f"{len(verify_pixels)} images of {verify_data}"
    if verify and (verify_pixels is None or len(verify_pixels) == 0):
        verify_pixels = generated_pixels(contract, 32)
        verify_source = f"{GENERATED} (no --verify-data or spare --calib images: weak evidence, agreement not gated)"
        say(f"parity check on {verify_source}")

    plan = _Plan(weights, out_dir, precisions, calib_pixels, calib_method, input_mode, tuple(keep_float), verify,
                 verify_pixels, verify_labels, verify_source, threads,
                 torch_logits(ckpt.model, verify_pixels, contract) if verify else None)
    jobs = max(1, min(jobs, len(formats)))
    if jobs > 1:
        return _export_parallel(plan, formats, jobs)
    cache = {} if cache is None else cache  # pass one dict to share fp32 graphs and PT2E calibration across calls
    return [r for fmt in formats for r in _export_format(plan, ckpt, export_net, fmt, say, cache)]


@dataclass
class _Plan:
    """Everything one format's exports need besides the model (picklable: crosses to worker processes)."""

    weights: Path
    out_dir: Path
    precisions: tuple
    calib_pixels: np.ndarray | None
    calib_method: str | None
    input_mode: str | None
    keep_float: tuple
    verify: bool
    verify_pixels: np.ndarray | None
    verify_labels: np.ndarray | None
    verify_source: str
    threads: int
    ref_logits: np.ndarray | None


def _export_format(plan: _Plan, ckpt, export_net, fmt: str, say, cache: dict) -> list[ExportResult]:
    backend = get_backend(fmt)
    results = []
    for precision in plan.precisions:
        job = ExportJob(export_net, ckpt.meta, precision, plan.input_mode or backend.INPUTS[0], plan.calib_pixels,
                        plan.calib_method or ("histogram" if fmt in ("tflite", "coreml", "executorch") else "min-max"),
                        plan.keep_float, cache)
        target = artifact_folder(plan.out_dir, ckpt.meta.architecture, precision, fmt)
        say(f"exporting {ckpt.meta.architecture} to {fmt} {precision} ...")
        results.append(_export_one(backend, job, ckpt, target, plan.verify, plan.verify_pixels, plan.verify_labels,
                                   plan.verify_source, plan.threads, say, plan.ref_logits))
    return results


# Slowest first, so that with fewer workers than formats the short ONNX export fills the gap:
# litert-torch's conversion dominates TFLite, the reference interpreter's parity check Core ML.
_HEAVIEST_FIRST = ("executorch", "tflite", "coreml", "onnx")


def _export_parallel(plan: _Plan, formats: tuple, jobs: int) -> list[ExportResult]:
    """One worker process per format (at most ``jobs`` at once), threads split between them.

    Workers share nothing in memory: TFLite and Core ML int8 each calibrate their own PT2E graph, which
    costs less than running after one another on a multi-core machine.
    """
    import concurrent.futures as cf
    import multiprocessing as mp

    plan = dataclasses.replace(plan, threads=max(1, plan.threads // jobs))
    order = sorted(formats, key=lambda f: _HEAVIEST_FIRST.index(f) if f in _HEAVIEST_FIRST else len(_HEAVIEST_FIRST))
    with _thread_env(plan.threads), cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {fmt: pool.submit(_format_worker, plan, fmt) for fmt in order}
        try:
            done = {fmt: futures[fmt].result() for fmt in order}
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return [r for fmt in formats for r in done[fmt]]


def _format_worker(plan: _Plan, fmt: str) -> list[ExportResult]:
    import torch

    torch.set_num_threads(plan.threads)
    ckpt = load_checkpoint(plan.weights)
    return _export_format(plan, ckpt, prepare_for_export(ckpt.model), fmt, lambda m: _say(f"[{fmt}] {m}"), {})


@contextmanager
def _thread_env(threads: int):
    """Thread-count variables that native libraries (OpenMP, OpenBLAS, MKL) read when a worker starts."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: str(threads) for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _data_free(ckpt, weights: Path, n: int, say) -> np.ndarray:
    shipped = Path(str(weights).replace(".safetensors", ".zeroq.npz"))
    if shipped.exists():
        data = np.load(shipped)
        if str(data["sha256"]) == ckpt.sha256:
            say(f"warning: no --calib images: using {len(data['pixels'])} data-free (ZeroQ) calibration images "
                f"shipped with the model; real images calibrate better")
            return data["pixels"]
    say(f"warning: no --calib images: synthesising {n} data-free (ZeroQ) calibration images from the "
        f"model's BatchNorm statistics; real images calibrate better")
    t0 = time.perf_counter()
    px = synthesize_zeroq(ckpt.model, ckpt.meta.contract, n=n,
                          progress=lambda s, total, loss: say(f"  ZeroQ step {s}/{total}  loss {loss:.3f}"))
    say(f"  synthesised in {time.perf_counter() - t0:.0f} s")
    return px


def _export_one(backend, job, ckpt, target: Path, verify, verify_pixels, verify_labels, verify_source,
                threads, say, ref_logits=None) -> ExportResult:
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        artifact = tmp / artifact_name(backend)
        io = backend.export(job, artifact)
        meta = build_meta(ckpt.meta, io, backend.FORMAT, job.precision, ckpt.sha256)
        meta["quantization_details"] = dict(meta["quantization_details"], input_mode=job.input_mode)
        backend.embed_metadata(artifact, meta)
        notes, parity = [], None
        if backend.FORMAT == "coreml":
            problems = backend.check_spec(artifact, meta)
            if problems:
                raise ExportError(f"Core ML spec check failed: {'; '.join(problems)}")
            notes.append("Core ML spec checked: inputs, outputs, labels, tensor ranks <= 5, quantization ops")
        if verify:
            try:
                runner = backend.load_runner(artifact, threads)
            except ImportError as e:
                runner = None
                notes.append(f"numerics not checked: {e}")
            if runner is not None:
                px, lab, src, ref = verify_pixels, verify_labels, verify_source, ref_logits
                if runner.max_verify is not None and len(px) > runner.max_verify:
                    # a slow runner (Core ML's reference interpreter) checks a fixed subset
                    k = runner.max_verify
                    px, lab, ref = px[:k], None if lab is None else lab[:k], None if ref is None else ref[:k]
                    src = f"first {k} of {verify_source}"
                # generated images: near-tie top-1s make agreement meaningless, so only logit metrics gate
                parity = check_runner(runner, ckpt.model, px, job.precision, lab, src, ref,
                                      gate_agreement=not src.startswith(GENERATED))
                runner.close()
                meta["parity"] = parity.to_dict()
                if not parity.passed:
                    meta["status"] = "failed-parity"
                backend.embed_metadata(artifact, meta)
        write_sidecars(tmp, meta)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the finished folder is an ordinary one
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = target / artifact_name(backend)
    return ExportResult(backend.FORMAT, job.precision, target, final, _size(final), time.perf_counter() - t0,
                        meta, parity, notes)


def artifact_folder(out_dir: Path, arch: str, precision: str, fmt: str) -> Path:
    """``out_dir/<arch>-<precision>-<format>``: where one artifact and its sidecars go."""
    return Path(out_dir) / f"{arch}-{precision}-{fmt}"


def artifact_name(backend) -> str:
    """File name of a backend's artifact inside its export folder: ``model.onnx``, ``model.tflite``, ..."""
    return f"model{backend.SUFFIX}"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def load_artifact_runner(path, threads: int = 2):
    """A runner for any artifact file (or its folder), by suffix."""
    from mvit.export.backends import format_of

    path = Path(path)
    if path.is_dir() and not path.name.endswith(".mlpackage"):
        names = [artifact_name(get_backend(f)) for f in FORMATS]
        found = [path / n for n in names if (path / n).exists()]
        if not found:
            raise ExportError(f"{path}: folder holds no {', '.join(names)}")
        path = found[0]
    if not path.exists():
        raise ExportError(f"{path}: no such file")
    return get_backend(format_of(path)).load_runner(path, threads)
