"""Command line and inputs shared by the ONNX studies (onnx_int8_variants, onnx_simplifier)."""

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

    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.export_prep import prepare_for_export
    from mvit.model.images import image_files, load_pixels
    from mvit.model.preprocess import normalize_hwc_uint8

    torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.weights)
    contract = ck.meta.contract
    calib, _ = load_pixels(image_files(args.calib), contract, args.calib_count)
    val, used = load_pixels(image_files(args.verify_data), contract, None)
    return BenchInputs(ck, prepare_for_export(ck.model), calib, val, used, normalize_hwc_uint8(val, contract))
