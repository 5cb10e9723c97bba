"""``mvit-train``: train any zoo model on an image-folder dataset, or fine-tune a checkpoint
quantization-aware (``--qat --init CKPT``); see docs/training.md.

It lives in ``mvit.quant``, the lowest package that holds everything it drives: the float training
loop (``mvit.model.train``, which knows nothing of quantization) and, with ``--qat``, the
quantization engine (``mvit.quant.qat``) that drives that loop. ``mvit.model`` imports nothing of
``mvit.quant``.
"""

from __future__ import annotations

import argparse
import sys

from ..model.checkpoint import CheckpointError
from ..model.contract import INTERPOLATIONS
from ..model.data import DatasetError
from ..model.train import TrainConfig, TrainError, command_line, train
from . import QuantError
from .qat import train_qat

# Defaults that differ between training from scratch and QAT fine-tuning (None in the parser: unset).
FLOAT_DEFAULTS = {
    "model": "mobilevit_xxs",
    "img_size": 256,
    "epochs": 30,
    "batch_size": 48,
    "lr": 2e-3,
    "weight_decay": 0.05,
    "warmup_epochs": 3.0,
    "crop_fraction": 1.0,
    "interpolation": "bilinear",
}
QAT_DEFAULTS = {"epochs": 2, "batch_size": 16, "lr": 1e-4, "weight_decay": 0.0, "warmup_epochs": 0.0}
FROM_INIT = ("model", "img_size", "crop_fraction", "interpolation")  # QAT takes these from the checkpoint


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mvit-train",
        description="Train a zoo model on DIR/train/<class>/* (and DIR/val/<class>/*, else a seeded split). "
        "Writes best.safetensors, last.safetensors, metrics.jsonl and summary.json to --out. "
        "Runs data-parallel under torchrun. With --qat --init CKPT: quantization-aware fine-tuning "
        "of CKPT, whose checkpoints carry the learned int8 ranges for mvit-export --quantize int8.",
    )
    p.add_argument("--data", required=True, help="dataset folder (ImageFolder layout)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--model", default=None, help="zoo model name (see model.list_models()); default mobilevit_xxs")
    p.add_argument("--img-size", type=int, default=None, help="training and input size (square); default 256")
    p.add_argument("--epochs", type=int, default=None, help="default 30 (--qat: 2)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step per process; default 48 (--qat: 16)")
    p.add_argument("--lr", type=float, default=None, help="peak AdamW learning rate; default 2e-3 (--qat: 1e-4)")
    p.add_argument("--weight-decay", type=float, default=None, help="default 0.05 (--qat: 0)")
    p.add_argument("--warmup-epochs", type=float, default=None, help="default 3 (--qat: 0)")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="keep an EMA of the weights with this decay (e.g. 0.999) and evaluate/save it; 0: off",
    )
    p.add_argument("--min-crop", type=float, default=0.35, help="smallest random-resized-crop area fraction")
    p.add_argument("--jitter", type=float, default=0.2, help="brightness/contrast/saturation jitter strength")
    p.add_argument(
        "--progressive",
        action="store_true",
        help="progressive resizing: first 30%% of epochs at ~1/2 size, next 30%% at ~3/4",
    )
    p.add_argument("--crop-fraction", type=float, default=None, help="contract: centre-crop fraction at eval (1.0)")
    p.add_argument("--interpolation", default=None, choices=INTERPOLATIONS, help="contract: resize filter (bilinear)")
    p.add_argument("--val-fraction", type=float, default=0.15, help="validation share when DIR has no val/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--amp",
        default="auto",
        choices=("auto", "bf16", "off"),
        help="bf16 autocast (auto: on CUDA and on CPUs with native bf16; --qat: off)",
    )
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--workers", type=int, default=0, help="image-decoding processes (0: one per CPU, max 8)")
    p.add_argument(
        "--no-train-eval",
        dest="eval_train",
        action="store_false",
        help="skip the final clean-accuracy pass over the training images",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    q = p.add_argument_group("quantization-aware fine-tuning")
    q.add_argument(
        "--qat",
        action="store_true",
        help="fine-tune --init through int8 fake quantization (the int8 export's quantizer); model, "
        "input size and preprocessing come from the checkpoint",
    )
    q.add_argument("--init", metavar="CKPT", help="the float checkpoint to fine-tune (with --qat)")
    q.add_argument(
        "--distill",
        type=float,
        default=1.0,
        metavar="W",
        help="--qat loss: W x KL to --init's float predictions + (1-W) x cross-entropy with the labels",
    )
    p.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)
    return p


def resolve_options(args) -> dict:
    """TrainConfig fields from parsed arguments: the kind of run's defaults for options left unset;
    conflicting or out-of-range values raise ``ValueError`` with one line."""
    opts = dict(vars(args))
    if not args.qat:
        if args.init is not None:
            raise ValueError("--init is for --qat fine-tuning (training from scratch starts from a fresh model)")
        return {k: (FLOAT_DEFAULTS[k] if v is None and k in FLOAT_DEFAULTS else v) for k, v in opts.items()}
    given = [k for k in FROM_INIT if opts[k] is not None]
    if given:
        raise ValueError(
            f"--qat takes {', '.join('--' + k.replace('_', '-') for k in given)} from the --init "
            f"checkpoint; leave it out"
        )
    if args.amp == "bf16" or args.channels_last == "on":
        raise ValueError(
            "--qat trains in float32 and the default memory format: leave out --amp bf16 and --channels-last on"
        )
    for k, v in QAT_DEFAULTS.items():
        if opts[k] is None:
            opts[k] = v
    return {k: (FLOAT_DEFAULTS[k] if v is None and k in FLOAT_DEFAULTS else v) for k, v in opts.items()}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    try:
        opts = resolve_options(args)
    except ValueError as e:
        print(f"mvit-train: error: {e}", file=sys.stderr)
        return 2
    cfg = TrainConfig(**opts, command=command_line() if argv is None else "mvit-train " + " ".join(argv))
    try:
        if cfg.qat:
            try:
                train_qat(cfg)
            except QuantError as e:
                raise TrainError(str(e)) from None
        else:
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
