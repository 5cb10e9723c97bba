"""``mvit-train``: train any zoo model on an image-folder dataset (see docs/training.md)."""
from __future__ import annotations

import argparse
import sys

from mvit.model.checkpoint import CheckpointError
from mvit.model.contract import INTERPOLATIONS
from mvit.model.data import DatasetError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mvit-train",
        description="Train a zoo model on DIR/train/<class>/* (and DIR/val/<class>/*, else a seeded split). "
                    "Writes best.safetensors, last.safetensors, metrics.jsonl and summary.json to --out. "
                    "Runs data-parallel under torchrun.")
    p.add_argument("--data", required=True, help="dataset folder (ImageFolder layout)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--model", default="mobilevit_xxs", help="zoo model name (see mvit-models / model.list_models())")
    p.add_argument("--img-size", type=int, default=256, help="training and input size (square)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=48, help="images per step per process")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=3.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an EMA of the weights with this decay (e.g. 0.999) and evaluate/save it; 0: off")
    p.add_argument("--min-crop", type=float, default=0.35, help="smallest random-resized-crop area fraction")
    p.add_argument("--jitter", type=float, default=0.2, help="brightness/contrast/saturation jitter strength")
    p.add_argument("--progressive", action="store_true",
                   help="progressive resizing: first 30%% of epochs at ~1/2 size, next 30%% at ~3/4")
    p.add_argument("--crop-fraction", type=float, default=1.0, help="contract: centre-crop fraction at eval")
    p.add_argument("--interpolation", default="bilinear", choices=INTERPOLATIONS, help="contract: resize filter")
    p.add_argument("--val-fraction", type=float, default=0.15, help="validation share when DIR has no val/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"),
                   help="bf16 autocast (auto: on CUDA and on CPUs with native bf16)")
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--workers", type=int, default=0, help="image-decoding processes (0: one per CPU, max 8)")
    p.add_argument("--no-train-eval", dest="eval_train", action="store_false",
                   help="skip the final clean-accuracy pass over the training images")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from mvit.model.train import TrainConfig, TrainError, command_line, train

    cfg = TrainConfig(**{k: v for k, v in vars(args).items()},
                      command=command_line() if argv is None else "mvit-train " + " ".join(argv))
    try:
        train(cfg)
    except (DatasetError, TrainError, CheckpointError) as e:
        print(f"mvit-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mvit-train: interrupted; continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
