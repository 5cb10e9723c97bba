"""Image-folder datasets for training: scan, split, decode once into a uint8 cache, augment batches.

Layout: ``DIR/train/<class>/*`` and ``DIR/val/<class>/*``. Without ``val/``, a fixed seeded,
per-class split of ``DIR/train`` (or of ``DIR`` itself when it holds the class folders) is used.

Every image is decoded once with ``model.preprocess`` (EXIF rotation, greyscale, CMYK, alpha all
handled there) and kept as a square uint8 array: validation images exactly as the preprocessing
contract crops them, training images at a slightly larger size for random-resized-crop. Augmentation
then runs on whole batches as tensor ops (on the GPU when training there), so no per-image Python
work happens inside the training loop.
"""

from __future__ import annotations

import math
import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .contract import PreprocessContract
from .preprocess import IMAGE_SUFFIXES, ImageLoadError, normalize_tensor, pixels_uint8, skipped_summary


class DatasetError(ValueError):
    """A dataset that cannot be trained on; the message is one line saying why."""


@dataclass
class Split:
    """One split: image paths, their integer labels, and the class names (index = label)."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]


@dataclass
class DatasetSplits:
    train: Split
    val: Split
    classes: list[str]
    layout: str  # "train/val folders" or "seeded split (val_fraction=...)"
    root: Path = field(default_factory=Path)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def scan_class_folders(root: Path, classes: list[str] | None = None) -> Split:
    """Read ``root/<class>/**`` (classes sorted by name). With ``classes`` given (validation), the
    folder may lack some of them but must not hold a class that training does not know."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        if not found:
            raise DatasetError(f"{root}: no class folders (expected {root}/<class>/<image files>)")
        if len(found) == 1:
            raise DatasetError(f"{root}: only one class folder ({found[0]!r}); a classifier needs at least two")
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DatasetError(f"{root}: class folder(s) {', '.join(extra)} not in the training classes")
    paths, labels = [], []
    for i, c in enumerate(classes):
        d = root / c
        files = sorted(p for p in d.rglob("*") if _is_image(p)) if d.is_dir() else []
        if not files and d.is_dir():
            raise DatasetError(f"{d}: class {c!r} has no images ({'/'.join(IMAGE_SUFFIXES)})")
        paths += files
        labels += [i] * len(files)
    return Split(paths, labels, list(classes))


def find_splits(data_dir, val_fraction: float = 0.15, seed: int = 0) -> DatasetSplits:
    """Locate the training and validation images of an image-folder dataset."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir() and val_dir.is_dir():
        train = scan_class_folders(train_dir)
        val = scan_class_folders(val_dir, train.classes)
        if not val.paths:
            raise DatasetError(f"{val_dir}: no validation images")
        return DatasetSplits(train, val, train.classes, "train/val folders", root)
    full = scan_class_folders(train_dir if train_dir.is_dir() else root)
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val fraction must be in (0, 1), got {val_fraction}")
    rng = random.Random(seed)
    tr_p, tr_l, va_p, va_l = [], [], [], []
    for i in range(len(full.classes)):
        items = [p for p, lab in zip(full.paths, full.labels) if lab == i]
        rng.shuffle(items)
        n_val = min(len(items) - 1, max(1, round(len(items) * val_fraction))) if len(items) > 1 else 0
        va_p += items[:n_val]
        va_l += [i] * n_val
        tr_p += items[n_val:]
        tr_l += [i] * (len(items) - n_val)
    if not va_p:
        raise DatasetError(f"{root}: too few images for a validation split")
    return DatasetSplits(
        Split(tr_p, tr_l, full.classes),
        Split(va_p, va_l, full.classes),
        full.classes,
        f"seeded split (val_fraction={val_fraction}, seed={seed})",
        root,
    )


def _decode(job):
    path, size = job
    try:
        return pixels_uint8(path, PreprocessContract(input_size=(size, size))), None
    except ImageLoadError as e:
        return None, str(e)
    except Exception as e:  # a decoder crash on one file must not end the run
        return None, f"{path}: unreadable image ({type(e).__name__}: {e})"


@dataclass
class DecodedImages:
    """Images decoded once: ``pixels`` is uint8 [N, 3, S, S] (RGB), ``labels`` int64 [N]."""

    pixels: torch.Tensor
    labels: torch.Tensor
    skipped: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device) -> DecodedImages:
        return DecodedImages(self.pixels.to(device), self.labels.to(device), self.skipped)


def decode_split(
    split: Split, size: int, contract: PreprocessContract | None = None, workers: int = 0, log=None
) -> DecodedImages:
    """Decode every image of ``split`` once, in ``workers`` processes (0: one per CPU, at most 8).

    With ``contract`` the images are exactly what the contract feeds the model (resize, centre crop at
    ``contract.input_size``); otherwise the short side is resized to ``size`` and the centre square kept.
    Unreadable files are skipped and reported in one line (how many, the first few).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if contract is not None:
        fn = _decode_contract
        args = [(p, contract) for p in split.paths]
    else:
        fn = _decode
        args = [(p, size) for p in split.paths]
    workers = workers or min(8, os.cpu_count() or 1)
    if workers > 1 and len(args) > 64:
        with ProcessPoolExecutor(workers) as ex:
            results = list(ex.map(fn, args, chunksize=16))
    else:
        results = [fn(a) for a in args]
    arrays, labels, skipped = [], [], []
    for (arr, err), lab in zip(results, split.labels):
        if err is not None:
            skipped.append(err)
            continue
        arrays.append(arr)
        labels.append(lab)
    if skipped:
        log(f"warning: {skipped_summary(skipped)}")
    if not arrays:
        raise DatasetError("no readable images")
    counts = np.bincount(labels, minlength=len(split.classes))
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    out = DecodedImages(pixels, torch.tensor(labels, dtype=torch.int64), skipped)
    out.class_counts = counts.tolist()
    return out


def _decode_contract(job):
    path, contract = job
    try:
        return pixels_uint8(path, contract), None
    except ImageLoadError as e:
        return None, str(e)
    except Exception as e:
        return None, f"{path}: unreadable image ({type(e).__name__}: {e})"


@dataclass(frozen=True)
class AugmentConfig:
    """Random-resized-crop (area ``scale``, aspect ``ratio``), horizontal flip, colour jitter."""

    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


def augment_batch(
    pixels: torch.Tensor,
    out_size: int,
    contract: PreprocessContract,
    cfg: AugmentConfig,
    generator: torch.Generator,
    dtype=torch.float32,
) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> normalised float [B, 3, out, out], augmented.

    All random numbers come from ``generator`` (a CPU generator), so the result is the same on any
    device and a resumed run sees exactly the crops an uninterrupted one would.
    """
    return normalize_tensor(_augment_unit(pixels, (out_size, out_size), cfg, generator), contract).to(dtype)


def augment_pixels(pixels: np.ndarray, cfg: AugmentConfig, generator: torch.Generator) -> np.ndarray:
    """uint8 N,H,W,3 -> uint8 N,H,W,3, augmented as ``augment_batch`` augments training batches."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
    out = _augment_unit(x, (pixels.shape[1], pixels.shape[2]), cfg, generator)
    return out.mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _augment_unit(
    pixels: torch.Tensor, out_hw: tuple[int, int], cfg: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float [B, 3, *out_hw] in [0, 1], cropped, flipped and jittered per ``cfg``."""
    b = pixels.shape[0]
    dev = pixels.device
    u = torch.rand(b, 7, generator=generator, dtype=torch.float64)
    area = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[:, 0]
    log_r = math.log(cfg.ratio[0]) + (math.log(cfg.ratio[1]) - math.log(cfg.ratio[0])) * u[:, 1]
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)  # crop width / image width
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1.0 - w) * (2 * u[:, 2] - 1)  # crop centre in [-1, 1] coordinates
    cy = (1.0 - h) * (2 * u[:, 3] - 1)
    sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(b, dtype=torch.float64)
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    theta = theta.to(device=dev, dtype=torch.float32)
    x = pixels.to(torch.float32).mul_(1.0 / 255.0)
    grid = F.affine_grid(theta, [b, 3, *out_hw], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    j = (2 * u[:, 5:7] - 1).to(device=dev, dtype=torch.float32)
    grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    if cfg.saturation:
        s = (1 + cfg.saturation * j[:, 1]).view(b, 1, 1, 1)
        x = grey + (x - grey) * s
    if cfg.contrast:
        c = (1 + cfg.contrast * j[:, 1].flip(0)).view(b, 1, 1, 1)  # decorrelated from saturation
        m = grey.mean(dim=(2, 3), keepdim=True)
        x = m + (x - m) * c
    if cfg.brightness:
        x = x * (1 + cfg.brightness * j[:, 0]).view(b, 1, 1, 1)
    return x.clamp_(0.0, 1.0)


def eval_batch(pixels: torch.Tensor, contract: PreprocessContract, dtype=torch.float32) -> torch.Tensor:
    """uint8 [B, 3, H, W] already cropped per the contract -> the model input the contract defines."""
    return normalize_tensor(pixels.to(torch.float32).mul_(1.0 / 255.0), contract).to(dtype)
