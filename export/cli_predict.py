"""mvit-predict: top-k labels for images, from any artifact or checkpoint, using its own metadata."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from ..model.contract import PreprocessContract
from ..model.preprocess import ImageLoadError, pixels_uint8
from .api import load_artifact_runner
from .base import ExportError
from .parity import torch_logits


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mvit-predict", description=__doc__)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument(
        "--model",
        help="artifact (.onnx, .tflite, .mlpackage or its folder) or checkpoint "
        "(.safetensors); default: the shipped checkpoint",
    )
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    return p


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def predict(model_path, images, top: int = 3, threads: int = 2) -> list[list[tuple[str, float]]]:
    """Top-k (label, probability) per image."""

    path = Path(model_path) if model_path else DEFAULT_CHECKPOINT
    if path.suffix == ".safetensors":
        ck = load_checkpoint(path)
        contract, labels, kind = ck.meta.contract, ck.meta.labels, "logits"
        torch.set_num_threads(threads)
        run = lambda px: torch_logits(ck.model, px, contract)  # noqa: E731
    else:
        runner = load_artifact_runner(path, threads)
        contract = PreprocessContract.from_dict(runner.meta["preprocess"])
        labels, kind, run = runner.meta["labels"], runner.output.get("kind", "logits"), runner.run
    results = []
    for img in images:
        scores = run(pixels_uint8(img, contract)[None])
        probs = scores if kind == "probabilities" else _softmax(scores)
        order = np.argsort(-probs[0])[:top]
        results.append([(labels[i], float(probs[0, i])) for i in order])
    return results


def main(argv=None) -> int:
    """Entry point of ``mvit-predict``."""
    args = build_parser().parse_args(argv)

    try:
        results = predict(args.model, args.images, args.top, args.threads)
    except (ExportError, CheckpointError, ImageLoadError, ValueError, OSError) as e:
        print(f"mvit-predict: error: {e}", file=sys.stderr)
        return 2
    for img, top in zip(args.images, results):
        print(f"{img}: " + ", ".join(f"{label} {p:.3f}" for label, p in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
