"""``export_model(request)``: one checkpoint -> artifacts in several formats and precisions, each verified.

Each artifact goes to ``out/<arch>-<precision>-<format>/`` with ``labels.txt``, ``model_meta.json`` and
``export.log`` (what the converters printed); the folder appears only when complete, built under a
temporary name that a killed run leaves behind and the next run into the same folder removes.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing as mp
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..model.checkpoint import DEFAULT_CHECKPOINT, Checkpoint, load_checkpoint
from ..model.export_prep import prepare_for_export
from ..model.images import ImageFolderError, generated_pixels, image_files, labelled_indices, load_pixels
from ..model.preprocess import normalize_hwc_uint8
from ..quant import QuantError
from ..quant.calibration import data_free_pixels
from ..quant.plan import HELDOUT_IMAGES, Plan, SearchInputs, describe, int8_plan, needs_search, search_samples
from ..quant.pt2e import calibrate_pt2e, calibration_key, calibration_states, model_input_range, seed_calibrations
from ..quant.qat import read_ranges
from .backends import FORMATS, format_of, get_backend
from .base import ExportCache, ExportError, ExportJob
from .console import CapturedOutput, Console
from .metadata import build_meta, timings, write_sidecars
from .parity import ParityReport, check_runner, torch_logits
from .request import ExportRequest, artifact_folder, artifact_name, folders_overlap

if TYPE_CHECKING:  # the QAT module imports the training loop: only its type here
    from ..quant.qat import LearnedRanges

MAX_VERIFY = 200  # spare --calib images used for the parity check
GENERATED_COUNT = 32  # generated images for the parity check when no real ones are given
LOG_FILE = "export.log"
_TMP_TAG = ".tmp-"  # temporary artifact folders: .<name>.tmp-<pid>-<random>


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
    log: Path | None = None

    @property
    def status(self) -> str:
        if self.parity is None:
            return "exported (not verified)"
        return "exported, parity passed" if self.parity.passed else "exported, FAILED parity"


@dataclass
class _Data:
    """Calibration and verification images of one run (picklable: crosses to worker processes)."""

    calib_pixels: np.ndarray | None = None  # N,H,W,3 uint8, for int8
    calib_source: str = ""
    verify_pixels: np.ndarray | None = None
    verify_labels: np.ndarray | None = None
    verify_names: list[str] | None = None  # the verification images' file names (parity lists changed top-1s)
    verify_source: str = ""
    heldout_pixels: np.ndarray | None = None  # calibration-folder images the int8 search measures on
    generated: bool = False  # verification images are generated, not real
    ref_logits: np.ndarray | None = None  # the float model on verify_pixels
    learned_ranges: LearnedRanges | None = None  # a QAT checkpoint's int8 activation ranges


@dataclass
class _Run:
    """One export run, as every step of it reads it: the request, its checkpoint (``export_net``: the
    model prepared for export; parity compares against ``ckpt.model`` as is), its images, where progress
    lines go, what its formats share and the int8 plan of each route."""

    request: ExportRequest
    ckpt: Checkpoint
    data: _Data
    export_net: nn.Module
    say: Callable[[str], None]
    cache: ExportCache
    plans: dict[str, Plan] = field(default_factory=dict)

    @property
    def weights(self) -> Path:
        """The checkpoint file (the shipped one unless the request names one)."""
        return self.request.checkpoint or DEFAULT_CHECKPOINT

    def plan(self, backend, precision: str) -> Plan | None:
        """The int8 plan a backend's ``precision`` export takes (None unless int8)."""
        return self.plans.get(backend.INT8_ROUTE) if precision == "int8" else None

    def target(self, fmt: str, precision: str) -> Path:
        """The artifact folder of ``fmt`` at ``precision``."""
        return artifact_folder(self.request.out, self.ckpt.meta.architecture, precision, fmt)


def export_model(
    request: ExportRequest | None = None, *, say=None, cache: ExportCache | None = None, **kwargs
) -> list[ExportResult]:
    """Export per ``request`` (or ``ExportRequest.of(**kwargs)``: flat keywords, the int8 ones included);
    one ``ExportResult`` per artifact.

    ``say`` receives progress lines (default: the terminal). ``cache`` (one ``ExportCache`` shared between
    calls) keeps fp32 artifacts, PT2E calibrations and int8 plans, so a caller exporting format after format converts once.
    """
    request = (request or ExportRequest.of(**kwargs)).check()
    say = say or Console()
    weights = request.checkpoint or DEFAULT_CHECKPOINT
    ckpt = load_checkpoint(weights)
    arch = ckpt.meta.architecture
    targets = [artifact_folder(request.out, arch, p, f) for f in request.formats for p in request.precisions]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not request.force:
        raise ExportError(f"{existing[0]} exists; pass --force to replace it")
    _prepare_out(request.out)
    say(
        f"exporting {arch} ({weights.name}) to {', '.join(request.formats)} x {', '.join(request.precisions)} "
        f"in {request.out}"
    )
    learned = None
    if "int8" in request.precisions:
        learned = read_ranges(weights)
    routes = _int8_routes(request)
    searching = learned is None and any(needs_search(r, request.int8, weights, ckpt.sha256) for r in routes)
    data = _load_data(request, ckpt, weights, say, heldout=searching)
    data.learned_ranges = learned
    if learned is not None:
        say(
            f"int8 takes the {len(learned.ranges)} activation ranges learned by quantization-aware "
            f"training (mvit-train --qat) from {weights.name}"
        )
    if request.verify:
        assert data.verify_pixels is not None  # _load_data generates images when none are given
        data.ref_logits = torch_logits(ckpt.model, data.verify_pixels, ckpt.meta.contract)
    run = _Run(request, ckpt, data, prepare_for_export(ckpt.model), say, ExportCache() if cache is None else cache)
    run.plans = {r: _int8_plan(run, r, fmt) for r, fmt in routes.items()}
    jobs = max(1, min(request.jobs, len(request.formats)))
    if jobs > 1:
        return _export_parallel(run, jobs)
    return [r for fmt in request.formats for r in _export_format(run, fmt)]


def _int8_routes(request: ExportRequest) -> dict[str, str]:
    """int8 route -> the first requested format taking it (none unless int8 is asked for)."""
    if "int8" not in request.precisions:
        return {}
    routes: dict[str, str] = {}
    for fmt in request.formats:
        routes.setdefault(get_backend(fmt).INT8_ROUTE, fmt)
    return routes


def _int8_plan(run: _Run, route: str, fmt: str) -> Plan:
    """The float layers of ``route``'s int8 (``mvit.quant.plan.int8_plan``), printed in one line; an
    unmet budget is an ExportError before anything is written."""
    request, data, ckpt, export_net, say = run.request, run.data, run.ckpt, run.export_net, run.say
    backend, c = get_backend(fmt), ckpt.meta.contract
    options, search = request.int8, None
    if data.heldout_pixels is not None and len(data.heldout_pixels) and data.calib_pixels is not None:
        # calibration-folder images are likely training images: searched on unseen-like views of them
        samples = search_samples(data.heldout_pixels, unseen_like=options.search_data is None)
        search = SearchInputs(
            torch.from_numpy(normalize_hwc_uint8(data.calib_pixels, c)),
            torch.from_numpy(normalize_hwc_uint8(samples, c)),
            input_range=model_input_range(c),
        )
        if backend.CAPABILITIES.int8_search:  # measured in the format's own runtime
            job = ExportJob(
                export_net,
                ckpt.meta,
                "int8",
                backend.INPUTS[0],
                data.calib_pixels,
                options.calib_method or backend.CALIB_METHODS[0],
                (),
                run.cache,
            )
            search.evaluate = backend.int8_search_evaluator(job, samples, torch_logits(export_net, samples, c))
    try:
        if (
            data.learned_ranges is not None and options.searches
        ):  # a QAT checkpoint: the float layers it was trained with
            plan = Plan(list(data.learned_ranges.keep_float), "quantization-aware training", options.min_agreement)
        else:
            plan = int8_plan(
                route, export_net, options, search, checkpoint=run.weights, sha256=ckpt.sha256, cache=run.cache, say=say
            )
    except QuantError as e:
        raise ExportError(str(e)) from None
    say(describe(plan, route))
    for n in plan.notes:
        say(f"note: {n}")
    return plan


def _names(files: list[Path], folder: Path) -> list[str]:
    """Image paths relative to the folder they were listed from (``class/file.jpg``)."""
    out = []
    for f in files:
        try:
            out.append(str(Path(f).relative_to(folder)))
        except ValueError:
            out.append(Path(f).name)
    return out


def _prepare_out(out: Path) -> None:
    """Create ``out``, check it is writable, and remove temporary folders of runs that were killed."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-")
        probe.close()
    except OSError as e:
        raise ExportError(f"{out}: cannot write there ({e.strerror})") from None
    for stale in out.glob(f".*{_TMP_TAG}*"):
        m = re.search(re.escape(_TMP_TAG) + r"(\d+)-", stale.name)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load_data(request: ExportRequest, ckpt, weights: Path, say, heldout: bool = False) -> _Data:
    """Calibration images (int8 only); when ``heldout``, up to ``HELDOUT_IMAGES`` for the int8 search
    (from --search-data, else calibration-folder images not used to calibrate, never verification
    images); verification images with labels where the folders have them."""
    contract, data, opts = ckpt.meta.contract, _Data(), request.int8
    warn = lambda m: say(f"warning: {m}")  # noqa: E731
    needs_calib = "int8" in request.precisions
    if opts.calib is not None:
        files = image_files(opts.calib)
        bad: list[Path] = []
        data.calib_pixels, used = load_pixels(
            files, contract, opts.calib_count if needs_calib else 0, warn=warn, unreadable=bad
        )
        if needs_calib and len(data.calib_pixels) == 0:
            raise ImageFolderError(f"{opts.calib}: none of the image files could be read")
        if needs_calib and len(data.calib_pixels) < min(100, opts.calib_count):
            warn(f"only {len(data.calib_pixels)} calibration images; 100 or more give steadier int8 results")
        data.calib_source = f"{len(data.calib_pixels)} images of {opts.calib}"
        taken = set(used) | set(bad)
        verifies_calib = request.verify_data is not None and folders_overlap(request.verify_data, opts.calib)
        if needs_calib and heldout and opts.search_data is None and not verifies_calib:
            rest = [f for f in files if f not in taken]
            # the verification images come from the same folder: leave them at least half of the rest
            share = HELDOUT_IMAGES if request.verify_data is not None or not request.verify else len(rest) // 2
            data.heldout_pixels, hused = load_pixels(
                rest, contract, min(HELDOUT_IMAGES, share), warn=warn, unreadable=bad
            )
            taken |= set(hused) | set(bad)
        if request.verify and request.verify_data is None:
            rest = [f for f in files if f not in taken]
            if rest:
                px, vused = load_pixels(rest, contract, MAX_VERIFY, warn=warn)
                if len(px):
                    data.verify_pixels, data.verify_labels = px, labelled_indices(vused, opts.calib, ckpt.meta.labels)
                    data.verify_names = _names(vused, opts.calib)
                    data.verify_source = f"{len(px)} images of {opts.calib} not used for calibration"
    elif needs_calib:
        data.calib_pixels, data.calib_source = data_free_pixels(ckpt, weights, opts.zeroq_count, say)
        warn(f"no --calib images: int8 calibrated on {data.calib_source}; real images calibrate better (--calib DIR)")
    if needs_calib and heldout and opts.search_data is not None:
        data.heldout_pixels, _ = load_pixels(image_files(opts.search_data), contract, HELDOUT_IMAGES, warn=warn)
        if len(data.heldout_pixels) == 0:
            raise ImageFolderError(f"{opts.search_data}: none of the image files could be read")
    if request.verify and request.verify_data is not None:
        px, vused = load_pixels(image_files(request.verify_data), contract, None, warn=warn)
        if len(px) == 0:
            raise ImageFolderError(f"{request.verify_data}: none of the image files could be read")
        data.verify_pixels, data.verify_labels = px, labelled_indices(vused, request.verify_data, ckpt.meta.labels)
        data.verify_names = _names(vused, request.verify_data)
        data.verify_source = f"{len(px)} images of {request.verify_data}"
    if request.verify and data.verify_pixels is None:
        data.verify_pixels, data.verify_labels = generated_pixels(contract, GENERATED_COUNT), None
        data.verify_source, data.generated = f"{GENERATED_COUNT} generated images", True
    return data


def _jobs(run: _Run, fmt: str, cache: ExportCache | None = None) -> list[ExportJob]:
    """The export jobs of one format, one per requested precision (sharing ``cache``, default the run's)."""
    request, backend = run.request, get_backend(fmt)
    jobs = []
    for precision in request.precisions:
        plan = run.plan(backend, precision)
        if plan is not None:
            precision_keep, source = tuple(plan.float_units), plan.source
        else:
            precision_keep, source = request.int8.keep_float, "user"
        int8 = precision == "int8"
        jobs.append(
            ExportJob(
                run.export_net,
                run.ckpt.meta,
                precision,
                request.input_mode or backend.INPUTS[0],
                run.data.calib_pixels if int8 else None,
                request.int8.calib_method or backend.CALIB_METHODS[0],
                precision_keep,
                run.cache if cache is None else cache,
                learned_ranges=run.data.learned_ranges if int8 else None,
                keep_float_source=source,
            )
        )
    return jobs


def _export_format(run: _Run, fmt: str) -> list[ExportResult]:
    backend = get_backend(fmt)
    return [_export_one(run, backend, job) for job in _jobs(run, fmt)]


def _export_parallel(run: _Run, jobs: int) -> list[ExportResult]:
    """One worker process per format (at most ``jobs`` at once), threads split between them; the
    slowest exports start first. A PT2E calibration that several formats take (TFLite, Core ML,
    ExecuTorch int8) is made once, here, while the formats that need none start; its observer states go
    to the workers that wait for it (``mvit.quant.pt2e.calibration_states``)."""
    request = dataclasses.replace(run.request, threads=max(1, run.request.threads // jobs), jobs=1)
    data, plans = run.data, run.plans
    order = sorted(request.formats, key=lambda f: -get_backend(f).EXPORT_COST)
    shared = _shared_calibrations(run)
    waiting = {fmt for graphs in shared.values() for fmt, _ in graphs}
    with _thread_env(request.threads), cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {
            fmt: pool.submit(_format_worker, request, data, fmt, plans, {}) for fmt in order if fmt not in waiting
        }
        try:
            if waiting:
                threads = torch.get_num_threads()
                torch.set_num_threads(request.threads)  # beside the workers already running
                try:
                    states = _calibrate_once(shared, run.say)
                finally:
                    torch.set_num_threads(threads)
                futures |= {
                    fmt: pool.submit(_format_worker, request, data, fmt, plans, states)
                    for fmt in order
                    if fmt in waiting
                }
            done = {fmt: futures[fmt].result() for fmt in order}
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return [r for fmt in request.formats for r in done[fmt]]


def _shared_calibrations(run: _Run) -> dict:
    """``CalibrationKey`` -> [(format, (graph, job))] for the PT2E calibrations two or more formats take."""

    groups: dict = {}
    for fmt in run.request.formats:
        backend = get_backend(fmt)
        if not backend.CAPABILITIES.pt2e_calibration:
            continue
        for job in _jobs(run, fmt, ExportCache()):
            if job.precision != "int8" or job.learned_ranges is not None or job.calib_pixels is None:
                continue
            try:
                graph = backend.calibration_graph(job)
            except ExportError:  # an input mode the format refuses: its worker says so
                continue
            if graph is not None:
                key = calibration_key(graph.graph_input, job.calib_method, job.keep_float)
                groups.setdefault(key, []).append((fmt, (graph, job)))
    return {k: v for k, v in groups.items() if len({fmt for fmt, _ in v}) > 1}


def _calibrate_once(shared: dict, say) -> dict:
    """Each shared calibration made once; its observer states, or {} when one fails (the workers then
    calibrate themselves and report the failure where it belongs)."""

    cache = ExportCache()
    for graphs in shared.values():
        graph, job = graphs[0][1]
        t0 = time.perf_counter()
        try:
            calibrate_pt2e(graph, job.pt2e_settings(), cache)
        except Exception as e:  # noqa: BLE001
            say(f"warning: the shared int8 calibration failed ({type(e).__name__}); each format calibrates its own")
            return {}
        say(
            f"int8 calibration for {', '.join(fmt for fmt, _ in graphs)}: made once, in "
            f"{time.perf_counter() - t0:.0f} s"
        )
    return calibration_states(cache)


def _format_worker(
    request: ExportRequest, data: _Data, fmt: str, plans: dict[str, Plan], calibrations: dict
) -> list[ExportResult]:
    """One format's exports in a worker process: the checkpoint loaded again, the shared calibrations'
    observer states (``calibrations``) seeded into its cache."""
    torch.set_num_threads(request.threads)
    ckpt = load_checkpoint(request.checkpoint or DEFAULT_CHECKPOINT)
    cache = ExportCache()
    seed_calibrations(cache, calibrations)
    return _export_format(_Run(request, ckpt, data, prepare_for_export(ckpt.model), Console(), cache, plans), fmt)


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


def _export_one(run: _Run, backend, job: ExportJob) -> ExportResult:
    """Convert, check and verify one artifact in a temporary folder, then rename it into place."""
    request, ckpt, data, say = run.request, run.ckpt, run.data, run.say
    target, plan = run.target(backend.FORMAT, job.precision), run.plan(backend, job.precision)
    t0 = time.perf_counter()
    label = f"{backend.FORMAT} {job.precision}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_TAG}{os.getpid()}-", dir=target.parent))
    log = CapturedOutput(tmp / LOG_FILE, echo=request.verbose)
    try:
        with log.capture():
            artifact = tmp / artifact_name(backend.FORMAT)
            io = backend.export(job, artifact)
            for key, seconds in timings(
                dict(io.quantization_details, int8_plan=plan.to_dict() if plan else {})
            ).items():
                print(f"{label}: {key} {seconds} s")
            meta = build_meta(
                ckpt.meta, io, backend.FORMAT, job.precision, ckpt.sha256, plan.to_dict() if plan is not None else None
            )
            meta["quantization_details"] = dict(meta["quantization_details"], input_mode=job.input_mode)
            if job.precision == "int8":
                meta["quantization_details"]["calibration_source"] = data.calib_source
            backend.embed_metadata(artifact, meta)
            problems = backend.check_artifact(artifact, meta)
            if problems:
                raise ExportError(f"{label}: the written artifact failed its checks: {'; '.join(problems)}")
            t_export = time.perf_counter() - t0
            say(f"{label}: converted in {t_export:.0f} s")
            parity, notes = None, list[str]()
            if request.verify:
                parity, notes = _verify(run, backend, artifact, job)
                meta["parity"] = parity.to_dict()
                if not parity.passed:
                    meta["status"] = "failed-parity"
                backend.embed_metadata(artifact, meta)
                say(f"{label}: parity checked on {parity.data} in {time.perf_counter() - t0 - t_export:.0f} s")
            write_sidecars(tmp, meta)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the finished folder is an ordinary one
        os.chmod(tmp / LOG_FILE, 0o644)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(tmp, target)
    except BaseException as e:
        kept = _keep_log(tmp, target)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, QuantError):  # the int8 engine's one-line refusal, named for this artifact
            raise ExportError(f"{label}: {e}" + (f"; converter output in {kept}" if kept else "")) from e
        if isinstance(e, Exception) and not isinstance(e, ExportError):
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise ExportError(
                f"{label}: conversion failed ({type(e).__name__}: {first})"
                + (f"; converter output in {kept}" if kept else "")
            ) from e
        if isinstance(e, ExportError) and kept:
            raise ExportError(f"{e}; converter output in {kept}") from e
        raise
    final = target / artifact_name(backend.FORMAT)
    return ExportResult(
        backend.FORMAT,
        job.precision,
        target,
        final,
        _size(final),
        time.perf_counter() - t0,
        meta,
        parity,
        notes,
        target / LOG_FILE,
    )


def _keep_log(tmp: Path, target: Path) -> Path | None:
    """Keep a failed export's converter output beside the folder it was meant for."""
    log = tmp / LOG_FILE
    if not log.exists() or log.stat().st_size == 0:
        return None
    kept = target.parent / f"{target.name}.{LOG_FILE}"
    try:
        shutil.move(str(log), kept)
    except OSError:
        return None
    return kept


def _verify(run: _Run, backend, artifact: Path, job: ExportJob) -> tuple[ParityReport, list[str]]:
    """The artifact's parity report on the run's verification images (a slow runner gets a subset);
    int8 agreement is gated at ``request.int8.min_agreement``."""
    request, data = run.request, run.data
    runner = backend.load_runner(artifact, request.threads)
    px, lab, src, ref = data.verify_pixels, data.verify_labels, data.verify_source, data.ref_logits
    names = data.verify_names
    notes: list[str] = []
    assert px is not None and ref is not None  # set with request.verify, the only caller's condition
    if runner.max_verify is not None and len(px) > runner.max_verify:
        k = runner.max_verify
        px, lab, ref = px[:k], None if lab is None else lab[:k], ref[:k]
        names = None if names is None else names[:k]
        src = f"the first {k} of {src}"
        notes.append(f"{backend.RUNTIME} is slow here: parity checked on {k} images")
    try:
        # generated images: near-tie top-1s make agreement meaningless, so only logit metrics gate
        floors = {"top1_agreement": request.int8.min_agreement} if job.precision == "int8" else None
        parity = check_runner(
            runner,
            run.ckpt.model,
            px,
            job.precision,
            lab,
            src,
            ref,
            gate_agreement=not data.generated,
            floors=floors,
            names=names,
        )
    finally:
        runner.close()
    return parity, notes


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def load_artifact_runner(path, threads: int = 2):
    """A runner for any artifact file (or its export folder), by suffix."""

    path = Path(path)
    if path.is_dir() and format_of_or_none(path) is None:
        names = [artifact_name(f) for f in FORMATS]
        found = [path / n for n in names if (path / n).exists()]
        if not found:
            raise ExportError(f"{path}: folder holds no {', '.join(names)}")
        path = found[0]
    if not path.exists():
        raise ExportError(f"{path}: no such file")
    return get_backend(format_of(path)).load_runner(path, threads)


def format_of_or_none(path) -> str | None:
    """The format whose suffix ``path`` has, or None."""

    try:
        return format_of(path)
    except ValueError:
        return None
