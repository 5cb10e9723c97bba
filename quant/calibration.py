"""Calibration and verification images: from folders, or synthesised from BatchNorm statistics."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mvit.model.contract import PreprocessContract
from mvit.model.preprocess import ImageLoadError, list_images, pixels_uint8


class CalibrationError(ValueError):
    """Calibration or verification images that cannot be used."""


def image_files(folder, seed: int = 0) -> list[Path]:
    """All image files under ``folder`` (a class tree or flat), in a seeded random order."""
    root = Path(folder)
    if not root.exists():
        raise CalibrationError(f"{root}: no such folder")
    if not root.is_dir():
        raise CalibrationError(f"{root}: not a folder")
    files = list_images(root)
    if not files:
        raise CalibrationError(f"{root}: no image files (.jpg, .png, ...) found")
    random.Random(seed).shuffle(files)
    return files


def load_pixels(files, contract: PreprocessContract, limit: int | None = None, warn=None):
    """Decode up to ``limit`` readable images to N,H,W,3 uint8 (resized and cropped per contract).

    Unreadable files are skipped and reported through ``warn``; returns (pixels, used_files).
    """
    pixels, used = [], []
    for f in files:
        if limit is not None and len(pixels) >= limit:
            break
        try:
            pixels.append(pixels_uint8(f, contract))
            used.append(Path(f))
        except ImageLoadError as e:
            (warn or _stderr)(f"skipping {e}")
    h, w = contract.input_size
    return (np.stack(pixels) if pixels else np.zeros((0, h, w, 3), np.uint8)), used


def labelled_indices(files, root, labels: list[str]) -> np.ndarray | None:
    """Class index per file when ``root`` is a class-folder tree whose names are ``labels``, else None."""
    idx = {l: i for i, l in enumerate(labels)}
    out = []
    for f in files:
        parts = Path(f).relative_to(root).parts
        if len(parts) < 2 or parts[-2] not in idx:
            return None
        out.append(idx[parts[-2]])
    return np.asarray(out)


def generated_pixels(contract: PreprocessContract, n: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random colour images (for parity checks when no real images are given)."""
    g = torch.Generator().manual_seed(seed)
    h, w = contract.input_size
    low = torch.rand(n, 3, max(2, h // 16), max(2, w // 16), generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)
    img = img + 0.08 * torch.randn(n, 3, h, w, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def synthesize_zeroq(model: nn.Module, contract: PreprocessContract, n: int = 32, iters: int = 60,
                     seed: int = 0, progress=None) -> np.ndarray:
    """Data-free calibration images (ZeroQ, Cai et al. 2020): optimise pixels so that every
    BatchNorm layer sees the batch mean and standard deviation it recorded in training.

    Pixels are parameterised as 255 * sigmoid(z), so they are always valid images, and pass through
    the contract's normalisation, so the model sees exactly what an app would feed.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        raise CalibrationError("data-free calibration needs BatchNorm layers; give --calib images")
    stats: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(mod, inp, _out):
        x = inp[0]
        stats.append((x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)))

    handles = [m.register_forward_hook(hook) for m in bns]
    g = torch.Generator().manual_seed(seed)
    h, w = contract.input_size
    z = torch.randn(n, 3, h, w, generator=g).mul_(0.5).requires_grad_(True)
    mean = torch.tensor(contract.mean).view(1, 3, 1, 1)
    std = torch.tensor(contract.std).view(1, 3, 1, 1)
    opt = torch.optim.Adam([z], lr=0.2)
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for step in range(iters):
            stats.clear()
            x = (torch.sigmoid(z) - mean) / std
            if contract.channel_order == "BGR":
                x = x.flip(1)
            model(x)
            loss = sum(torch.norm(mu - bn.running_mean) + torch.norm(var.add(bn.eps).sqrt() - bn.running_var.add(bn.eps).sqrt())
                       for (mu, var), bn in zip(stats, bns))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress and (step % 10 == 0 or step == iters - 1):
                progress(step + 1, iters, float(loss.detach()))
    finally:
        for hd in handles:
            hd.remove()
        for p in model.parameters():
            p.requires_grad_(True)
        model.train(was_training)
    with torch.no_grad():
        px = (torch.sigmoid(z) * 255).round().to(torch.uint8)
    return px.permute(0, 2, 3, 1).numpy()


def _stderr(msg: str) -> None:
    print(f"mvit: warning: {msg}", file=sys.stderr)
