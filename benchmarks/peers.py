"""Speed floor per format: mvit's artifacts beside the plain peer path of the same format, timed in one run.

On one checkpoint (default: the shipped model) this builds what a user without mvit would build, and
mvit's own artifacts (``mvit.export``, as ``mvit-export`` makes them), from the same calibration images:

| format | peer fp32 | peer int8 |
|---|---|---|
| ONNX | ``torch.onnx.export(model, (x,), path)`` (its defaults) + onnxruntime | onnxruntime ``quant_pre_process`` + ``quantize_static`` (QDQ, per-channel weights, MinMax; defaults otherwise) |
| TFLite | ``litert_torch.convert(model, (x,))`` | litert-torch PT2E: ``get_symmetric_quantization_config(is_per_channel=True)``, ``prepare_pt2e``, calibrate, ``convert_pt2e``, ``litert_torch.convert`` |
| ExecuTorch | ``to_edge_transform_and_lower(torch.export.export(model, (x,)), partitioner=[XnnpackPartitioner()])`` | ExecuTorch's ``XNNPACKQuantizer`` with ``get_symmetric_quantization_config(is_per_channel=True)``, ``prepare_pt2e``, calibrate, ``convert_pt2e``, then the same lowering |

(ExecuTorch rows only where it is installed: ``pip install 'mvit[executorch]'``; Core ML has no runtime off
macOS.) Each peer file gets mvit's
model_meta entry so that the same runners feed every row (the input each file declares: float NCHW,
or int8 quantized with the file's own scale and zero point); its graph is not touched.

Timing is ``mvit.benchmarks.latency.measure``: one worker process per row (onnxruntime's spinning threads
cannot slow another runtime: only one process runs at a time), driven round-robin in rotating order
until every row has ``--runs`` runs and ``--min-time`` seconds; medians at ``--threads`` threads. Then
every row predicts every ``--val`` image: agreement = same top-1 as the float model (PyTorch eager).
The op census (``mvit-bench FILE``'s: op type and input dtype of what the runtime runs, ONNX after
onnxruntime's graph optimisation; QUANTIZE/DEQUANTIZE counts) does not depend on the CPU; the latencies do (int8 pays only where the CPU has int8 dot products: VNNI, ARM dotprod).

    python -m mvit.benchmarks.peers --calib ../shared/data/trashnet6/train --val ../shared/data/trashnet6/val \\
        --out benchmarks/results

writes ``peers.md`` and ``peers.json`` to ``--out``; ``--work DIR --reuse`` times artifacts built earlier.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..export.api import export_model
from ..export.backends import get_backend
from ..export.base import IOSpec, TensorSpec
from ..export.metadata import build_meta
from ..export.parity import torch_logits
from ..export.request import ExportRequest
from ..model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from ..model.images import image_files, labelled_indices, load_pixels
from ..model.preprocess import normalize_hwc_uint8
from ..quant.options import Int8Options
from .census import census, heavy_ops
from .latency import Worker, measure
from .matrix import accuracy_metrics, machine_info, reference_metrics

PEER = "peer"
MVIT = "mvit"
# each format and precision: the peer's row, then mvit's
ROWS = tuple(
    (who, fmt, p) for fmt in ("onnx", "tflite", "executorch") for p in ("fp32", "int8") for who in (PEER, MVIT)
)
HOW = {
    (PEER, "onnx", "fp32"): "torch.onnx.export (defaults) + onnxruntime",
    (PEER, "onnx", "int8"): "onnxruntime quantize_static QDQ, per-channel, MinMax (stock)",
    (PEER, "tflite", "fp32"): "litert_torch.convert (stock)",
    (PEER, "tflite", "int8"): "litert-torch PT2E, symmetric per-channel (stock)",
    (MVIT, "onnx", "fp32"): "mvit-export --format onnx --quantize fp32",
    (MVIT, "onnx", "int8"): "mvit-export --format onnx --quantize int8",
    (MVIT, "tflite", "fp32"): "mvit-export --format tflite --quantize fp32",
    (MVIT, "tflite", "int8"): "mvit-export --format tflite --quantize int8",
    (PEER, "executorch", "fp32"): "ExecuTorch to_edge_transform_and_lower + XnnpackPartitioner (stock)",
    (PEER, "executorch", "int8"): "ExecuTorch XNNPACKQuantizer, symmetric per-channel (stock)",
    (MVIT, "executorch", "fp32"): "mvit-export --format executorch --quantize fp32",
    (MVIT, "executorch", "int8"): "mvit-export --format executorch --quantize int8",
}


class PeersError(RuntimeError):
    """The comparison cannot run as asked: one line."""


@dataclass
class Built:
    """One artifact of the comparison."""

    maker: str
    fmt: str
    precision: str
    path: Path
    build_s: float | None = None
    census: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.maker}-{self.fmt}-{self.precision}"


# ------------------------------------------------------------------------------------------ peers


def onnx_fp32_peer(model, sample, path: Path) -> None:
    """What the PyTorch docs show: ``torch.onnx.export(model, (x,), path)``."""
    torch.onnx.export(model, (sample,), str(path), input_names=["image"], output_names=["logits"])


def onnx_int8_peer(fp32_path: Path, path: Path, calib: np.ndarray) -> None:
    """onnxruntime's documented static quantization: shape pre-processing, then ``quantize_static``
    (QDQ, signed int8 activations and weights, MinMax) with per-channel weights."""
    from onnxruntime.quantization import (  # lazy: loaded only to build the peers (not on --reuse)
        CalibrationDataReader,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import (  # lazy: loaded only to build the peers (not on --reuse)
        quant_pre_process,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"image": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    pre = path.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(pre))
    # onnxruntime keeps every intermediate tensor of every image unless told to flush (FIELD_NOTES:
    # 128 images exhausted 24 GB); it fails when the image count is a multiple of the flush size
    flush = next(n for n in range(64, 1, -1) if len(calib) % n)
    quantize_static(
        str(pre), str(path), Reader(), per_channel=True, extra_options={"CalibMaxIntermediateOutputs": flush}
    )
    pre.unlink()


def tflite_fp32_peer(model, sample, path: Path) -> None:
    """litert-torch's conversion with its defaults."""
    import litert_torch  # lazy: loaded only to build the peers (not on --reuse)

    litert_torch.convert(model, (sample,)).export(str(path))


def tflite_int8_peer(model, sample, path: Path, calib: np.ndarray) -> None:
    """litert-torch's documented PT2E recipe with symmetric per-channel int8, one image per call."""
    import litert_torch  # lazy: loaded only to build the peers (not on --reuse)
    from litert_torch.quantize.pt2e_quantizer import (  # lazy: loaded only to build the peers (not on --reuse)
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.quant_config import QuantConfig  # lazy: loaded only to build the peers (not on --reuse)
    from torchao.quantization.pt2e.quantize_pt2e import (  # lazy: loaded only to build the peers (not on --reuse)
        convert_pt2e,
        prepare_pt2e,
    )

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (sample,)).module(), quantizer)
    with torch.no_grad():
        for i in range(len(calib)):
            prepared(torch.from_numpy(calib[i : i + 1]))
        converted = convert_pt2e(prepared, fold_quantize=False)
    litert_torch.convert(converted, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))


def executorch_fp32_peer(model, sample, path: Path) -> None:
    """ExecuTorch's documented XNNPACK lowering with its defaults."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (  # lazy: optional extra [executorch]
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower  # lazy: optional extra [executorch]

    with torch.no_grad():
        edge = to_edge_transform_and_lower(torch.export.export(model, (sample,)), partitioner=[XnnpackPartitioner()])
    path.write_bytes(edge.to_executorch().buffer)


def executorch_int8_peer(model, sample, path: Path, calib: np.ndarray) -> None:
    """ExecuTorch's documented int8 recipe: XNNPACKQuantizer (symmetric, per-channel), PT2E calibration
    one image per call, then the XNNPACK lowering."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (  # lazy: optional extra [executorch]
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import (  # lazy: loaded only to build the peers (not on --reuse)
        convert_pt2e,
        prepare_pt2e,
    )

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (sample,)).module(), quantizer)
    with torch.no_grad():
        for i in range(len(calib)):
            prepared(torch.from_numpy(calib[i : i + 1]))
        converted = convert_pt2e(prepared)
    executorch_fp32_peer(converted, sample, path)


def executorch_ready() -> bool:
    """Whether ExecuTorch is installed here (its rows are built only then)."""

    return get_backend("executorch").unavailable() is None


def _io_spec(path: Path, fmt: str):
    """The input/output tensors a file declares, read through its runtime (for its model_meta)."""

    io = get_backend(fmt).io_details(path)
    return IOSpec(
        *(
            TensorSpec(d["name"], d["shape"], d["dtype"], layout, d["quantization"])
            for d, layout in ((io["input"], "NCHW"), (io["output"], "NC"))
        )
    )


def label_peer(ckpt, path: Path, fmt: str, precision: str) -> None:
    """Add mvit's model_meta to a peer file (the runners read its input contract from it)."""

    io = _io_spec(path, fmt)
    io.quantization_details = {"method": HOW[(PEER, fmt, precision)]}
    get_backend(fmt).embed_metadata(path, build_meta(ckpt.meta, io, fmt, precision, ckpt.sha256))
    data = path.with_name(path.name + ".data")  # the exporter's external weights, now inside the file
    if data.exists():
        data.unlink()


def build_peers(ckpt, calib: np.ndarray, work: Path, say) -> list[Built]:
    """The peer artifacts in ``work/peer`` (float model as the checkpoint holds it): ONNX and TFLite,
    and ExecuTorch where it is installed."""
    folder = work / PEER
    folder.mkdir(parents=True, exist_ok=True)
    h, w = ckpt.meta.contract.input_size
    sample = torch.zeros(1, 3, h, w)
    x = normalize_hwc_uint8(calib, ckpt.meta.contract)
    model = ckpt.model.eval()
    out = []
    steps = (
        ("onnx", "fp32", lambda p: onnx_fp32_peer(model, sample, p)),
        ("onnx", "int8", lambda p: onnx_int8_peer(folder / "model-fp32.onnx", p, x)),
        ("tflite", "fp32", lambda p: tflite_fp32_peer(model, sample, p)),
        ("tflite", "int8", lambda p: tflite_int8_peer(model, sample, p, x)),
    )
    if executorch_ready():
        steps += (
            ("executorch", "fp32", lambda p: executorch_fp32_peer(model, sample, p)),
            ("executorch", "int8", lambda p: executorch_int8_peer(model, sample, p, x)),
        )
    for fmt, precision, make in steps:
        path = folder / f"model-{precision}{get_backend(fmt).SUFFIX}"
        say(f"building the peer {fmt} {precision}: {HOW[(PEER, fmt, precision)]} ...")
        t0 = time.perf_counter()
        make(path)
        seconds = time.perf_counter() - t0
        out.append(Built(PEER, fmt, precision, path, seconds))
    for b in out:
        label_peer(ckpt, b.path, b.fmt, b.precision)
    return out


def build_mvit(weights: Path, calib_dir: Path, calib_count: int, work: Path, threads: int, say) -> list[Built]:
    """mvit's ONNX, TFLite (and, where installed, ExecuTorch) artifacts, fp32 and int8, exactly as
    ``mvit-export`` makes them."""

    formats = ("onnx", "tflite") + (("executorch",) if executorch_ready() else ())
    request = ExportRequest(
        checkpoint=weights,
        formats=formats,
        precisions=("fp32", "int8"),
        out=work / MVIT,
        force=True,
        int8=Int8Options(calib=calib_dir, calib_count=calib_count),
        verify=False,
        threads=threads,
    )
    t0 = time.perf_counter()
    results = export_model(request, say=say)
    say(f"mvit-export: {len(results)} artifacts in {time.perf_counter() - t0:.0f} s")
    return [Built(MVIT, r.format, r.precision, r.artifact, r.seconds) for r in results]


# ------------------------------------------------------------------------------------------ run


def run(args, say=print) -> dict:
    """Build (or reuse), time, evaluate and census every row; returns the report dictionary."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)  # this process builds and evaluates; the timed rows run in their own processes
    weights = Path(args.weights) if args.weights else DEFAULT_CHECKPOINT
    ckpt = load_checkpoint(weights)
    contract = ckpt.meta.contract
    work = Path(args.work)
    load_start = os.getloadavg()
    if args.reuse and (work / "built.json").exists():
        built = [
            Built(d["maker"], d["fmt"], d["precision"], Path(d["path"]), d["build_s"])
            for d in json.loads((work / "built.json").read_text())
        ]
        say(f"reusing the artifacts in {work}")
    else:
        calib, _ = load_pixels(image_files(args.calib), contract, args.calib_count)
        if len(calib) == 0:
            raise PeersError(f"--calib {args.calib}: no readable images")
        built = build_mvit(weights, Path(args.calib), args.calib_count, work, args.threads, say)
        built += build_peers(ckpt, calib, work, say)
        (work / "built.json").write_text(
            json.dumps(
                [
                    {
                        "maker": b.maker,
                        "fmt": b.fmt,
                        "precision": b.precision,
                        "path": str(b.path),
                        "build_s": b.build_s,
                    }
                    for b in built
                ]
            )
        )
    by_key = {(b.maker, b.fmt, b.precision): b for b in built}
    for b in built:
        b.census = census(b.path, b.fmt)

    val, used = load_pixels(image_files(args.val), contract, args.max_images)
    if len(val) == 0:
        raise PeersError(f"--val {args.val}: no readable images")
    labels = labelled_indices(used, args.val, ckpt.meta.labels)
    say(f"float reference on {len(val)} images of {args.val} ...")
    ref = torch_logits(ckpt.model, val, contract)
    np.save(work / "val.npy", val)
    np.save(work / "one.npy", val[:1])
    log = work / "workers.log"
    workers = [
        Worker(
            "torch-fp32",
            {"kind": "torch", "weights": str(weights), "threads": args.threads, "pixels": str(work / "one.npy")},
            log,
        )
    ]
    workers += [
        Worker(
            by_key[r].key,
            {"kind": "artifact", "path": str(by_key[r].path), "threads": args.threads, "pixels": str(work / "one.npy")},
            log,
        )
        for r in ROWS
        if r in by_key
    ]
    load_timing = os.getloadavg()
    say(f"timing {len(workers)} rows interleaved at {args.threads} threads (load average {load_timing[0]:.2f}) ...")
    t0 = time.perf_counter()
    measure(workers, args.runs, args.min_time, eval_pixels=work / "val.npy", eval_dir=work, progress=say)
    load_end = os.getloadavg()
    rows = []
    eager = workers[0]
    base = {
        "maker": "pytorch",
        "format": "torch",
        "precision": "fp32",
        "how": "PyTorch eager (the float reference)",
        **reference_metrics(ref, labels),
    }
    if eager.error is None:
        base["latency"] = eager.info["latency"]
    rows.append(base)
    for w, r in zip(workers[1:], [r for r in ROWS if r in by_key]):
        b = by_key[r]
        row = {
            "maker": b.maker,
            "format": b.fmt,
            "precision": b.precision,
            "how": HOW[r],
            "artifact": str(b.path),
            "size_mb": b.path.stat().st_size / 1e6,
            "build_s": b.build_s,
            "census": b.census,
        }
        if w.error is not None:
            row["error"] = w.error
        else:
            row["latency"] = w.info["latency"]
            row.update(
                accuracy_metrics(
                    np.load(w.info["scores"]), ref, labels, b.precision, "logits", f"{len(val)} images of {args.val}"
                )
            )
        rows.append(row)
    return {
        "checkpoint": str(weights),
        "checkpoint_sha256": ckpt.sha256,
        "machine": machine_info(args.threads),
        "threads": args.threads,
        "calibration": f"{args.calib_count} images of {args.calib}",
        "evaluation": f"{len(val)} images of {args.val}",
        "timing_seconds": round(time.perf_counter() - t0, 1),
        "load_average": {"start": load_start, "timing_start": load_timing, "timing_end": load_end},
        "command": "python -m mvit.benchmarks.peers " + " ".join(sys.argv[1:]),
        "rows": rows,
    }


def _ms(row: dict) -> float | None:
    return row.get("latency", {}).get("median_ms")


def render(report: dict) -> str:
    """The markdown table of a report."""
    rows = report["rows"]
    m = report["machine"]
    la = report["load_average"]
    # The timed rows' own threads pull the 1-min load average towards report["threads"], and the builds
    # before the timing raise it too: another process shows as load before the run or beyond its threads.
    loaded = la["start"][0] > 0.5 or la["timing_end"][0] > report["threads"] + 0.5
    lines = [
        "# mvit vs the plain peer path of each format",
        "",
        f"Checkpoint `{Path(report['checkpoint']).name}` (sha256 {report['checkpoint_sha256'][:12]}); int8 calibrated on "
        f"{report['calibration']}; agreement and top-1 on {report['evaluation']}.",
        f"Machine: {m['cpu']}, {m['cores']} cores, ISA {', '.join(m['isa'])}; {report['threads']} threads per row "
        f"(onnxruntime intra-op, XNNPACK, PyTorch); batch 1; one worker process per row, interleaved, medians.",
        f"Load average (1 min) before the run / at timing start / end: {la['start'][0]:.2f} / "
        f"{la['timing_start'][0]:.2f} / {la['timing_end'][0]:.2f} (the timed rows' own threads raise it towards "
        f"{report['threads']})"
        + (
            " -- **measured while other processes loaded the machine: ratios side by side hold, absolute "
            "milliseconds do not**"
            if loaded
            else " (quiet)."
        ),
        "",
        f"Command: `{report['command']}`",
        "",
        "| row | how | median ms | p90 ms | vs peer | int8 vs fp32 (same maker) | agreement | top-1 | MB | convs / matmuls (input dtype) | Q / DQ |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    find = {(r["maker"], r["format"], r["precision"]): r for r in rows}
    for r in rows:
        ms = _ms(r)
        peer = find.get((PEER, r["format"], r["precision"]))
        vs_peer = f"{ms / _ms(peer):.2f}" if r["maker"] == MVIT and peer and ms and _ms(peer) else ""
        fp = find.get((r["maker"], r["format"], "fp32"))
        vs_fp = f"{ms / _ms(fp):.2f}" if r["precision"] == "int8" and fp and ms and _ms(fp) else ""
        c = r.get("census")
        lines.append(
            f"| {r['maker']} {r['format']} {r['precision']} | {r['how']} | {ms:.2f} | {r['latency']['p90_ms']:.2f} | "
            f"{vs_peer} | {vs_fp} | {100 * r['agreement']:.2f}% | "
            + (f"{100 * r['top1']:.2f}%" if r.get("top1") is not None else "")
            + f" | {r.get('size_mb', 0):.2f} | {heavy_ops(c) if c else ''} | "
            + (f"{c['quantize']} / {c['dequantize']}" if c else "")
            + " |"
            if ms is not None
            else f"| {r['maker']} {r['format']} {r['precision']} | {r['how']} | failed: {r.get('error')} |"
        )
    lines += ["", "Full op census per artifact (op(first input dtype): count) is in peers.json.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="mvit checkpoint; default: the shipped model")
    p.add_argument("--calib", required=True, help="calibration images (class folders or flat)")
    p.add_argument("--calib-count", type=int, default=256)
    p.add_argument("--val", required=True, help="labelled images for agreement and top-1")
    p.add_argument("--max-images", type=int, default=None, help="at most this many --val images")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=100, help="timed runs per row, at least")
    p.add_argument("--min-time", type=float, default=10.0, help="seconds of timed runs per row, at least")
    p.add_argument("--work", default="peers-work", help="where the artifacts are built")
    p.add_argument("--reuse", action="store_true", help="time the artifacts already in --work")
    p.add_argument("--out", default="benchmarks/results", help="folder for peers.md and peers.json")
    args = p.parse_args(argv)
    for name in ("calib_count", "threads", "runs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.min_time < 0 or (args.max_images is not None and args.max_images < 1):
        p.error("--min-time must be >= 0 and --max-images >= 1")
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        report = run(args, say)
    except (PeersError, CheckpointError, OSError) as e:
        print(f"peers: error: {e}", file=sys.stderr)
        return 2
    print(write_report(Path(args.out), "peers", report, render))
    return 0


def write_report(out: Path, name: str, report: dict, render) -> str:
    """``out/name.json`` (the report) and ``out/name.md`` (``render(report)``); returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = render(report)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{name}.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
