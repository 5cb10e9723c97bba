"""Command line and inputs shared by the measurement scripts: the ONNX ones (onnx_int8_variants,
onnx_simplifier) and the per-op profiles (tflite_op_profile, onnx_op_profile)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def onnx_bench_parser(doc: str, rounds: int) -> argparse.ArgumentParser:
    """A parser titled by ``doc``'s first line with the options both scripts take (``rounds``: its default).

    --weights, --calib, --calib-count, --verify-data, --threads, --rounds, --per-round, --repeats;
    each script adds its own (--out, ...).
    """
    from mvit.model.checkpoint import DEFAULT_CHECKPOINT

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--weights", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--calib", required=True, help="image folder for int8 calibration")
    ap.add_argument("--calib-count", type=int, default=256)
    ap.add_argument("--verify-data", required=True, help="image folder: outputs compared on these")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--per-round", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timings; ratios reported per repeat")
    return ap


@dataclass
class BenchInputs:
    """What both scripts measure with: the checkpoint, its export-ready network and the images."""

    ckpt: Any
    net: Any
    calib: np.ndarray
    val: np.ndarray
    val_files: list[Path]
    x_val: np.ndarray


def load_bench_inputs(args: argparse.Namespace) -> BenchInputs:
    """Set torch's threads to ``--threads``; load ``--weights``, ``--calib-count`` calibration images of
    ``--calib`` and every image of ``--verify-data`` (uint8, and normalised as the model's input)."""
    import torch

    from mvit.model.images import image_files, load_pixels
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.export_prep import prepare_for_export
    from mvit.model.preprocess import normalize_hwc_uint8

    torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.weights)
    contract = ck.meta.contract
    calib, _ = load_pixels(image_files(args.calib), contract, args.calib_count)
    val, used = load_pixels(image_files(args.verify_data), contract, None)
    return BenchInputs(ck, prepare_for_export(ck.model), calib, val, used, normalize_hwc_uint8(val, contract))


def op_profile_parser(doc: str, files: str, runs: int) -> argparse.ArgumentParser:
    """A parser titled by ``doc``'s first line: model files (``files`` says which), --threads, --runs
    (default ``runs``), --top, --out; ``op_profile_args`` parses and checks it."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("models", nargs="+", help=files)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=runs, help="timed runs per op (per model for onnx_op_profile)")
    ap.add_argument("--top", type=int, default=10, help="slowest rows listed per model")
    ap.add_argument("--out", help="also write the report here")
    return ap


def op_profile_args(ap: argparse.ArgumentParser, prog: str, argv=None) -> argparse.Namespace:
    """Parsed arguments; a count out of range or a missing model file exits with one line naming it."""
    args = ap.parse_args(argv)
    for name, low in (("threads", 1), ("runs", 1), ("top", 0), ("span", 1)):
        value = getattr(args, name, low)
        if value < low:
            fail(prog, f"--{name} must be at least {low}, got {value}")
    for m in args.models:
        if not Path(m).is_file():
            fail(prog, f"no such file: {m}")
    return args


def fail(prog: str, message: str) -> None:
    """Exit with status 2 after one line on stderr: ``prog: message``."""
    import sys

    sys.stderr.write(f"{prog}: {message}\n")
    raise SystemExit(2)


def emit_report(text: str, out: str | None) -> None:
    """Print ``text``; with ``out``, also write it there (whole or not at all)."""
    if out:
        from mvit.model.checkpoint import atomic_write

        atomic_write(out, lambda tmp: Path(tmp).write_text(text))
    print(text)
