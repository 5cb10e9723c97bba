"""Folders of images for calibration, verification and evaluation: listing, decoding per the
preprocessing contract, class labels from folder names, and generated stand-ins when none are given."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch

from .contract import PreprocessContract
from .preprocess import ImageLoadError, list_images, pixels_uint8, skipped_summary


class ImageFolderError(ValueError):
    """A folder of images that cannot be used (missing, not a folder, no readable image)."""


def image_files(folder, seed: int = 0) -> list[Path]:
    """All image files under ``folder`` (a class tree or flat), in a seeded random order."""
    root = Path(folder)
    if not root.exists():
        raise ImageFolderError(f"{root}: no such folder")
    if not root.is_dir():
        raise ImageFolderError(f"{root}: not a folder")
    files = list_images(root)
    if not files:
        raise ImageFolderError(f"{root}: no image files (.jpg, .png, ...) found")
    random.Random(seed).shuffle(files)
    return files


def load_pixels(
    files, contract: PreprocessContract, limit: int | None = None, warn=None, unreadable: list | None = None
):
    """Decode up to ``limit`` readable images to N,H,W,3 uint8 (resized and cropped per contract).

    Unreadable files are skipped; ``warn`` gets one line saying how many and which (the first few), and
    ``unreadable`` (a list, if given) their paths. Returns (pixels, used_files).
    """
    pixels, used, skipped = [], [], []
    for f in files:
        if limit is not None and len(pixels) >= limit:
            break
        try:
            pixels.append(pixels_uint8(f, contract))
            used.append(Path(f))
        except ImageLoadError as e:
            skipped.append(str(e))
            if unreadable is not None:
                unreadable.append(Path(f))
    if skipped:
        (warn or _stderr)(skipped_summary(skipped))
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


def _stderr(msg: str) -> None:
    print(f"mvit: warning: {msg}", file=sys.stderr)
