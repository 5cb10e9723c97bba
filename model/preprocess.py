"""The one implementation of the preprocessing contract: PIL/numpy for files, torch for batches."""

from __future__ import annotations

import io
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .contract import PreprocessContract

_PIL_INTERP = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageLoadError(ValueError):
    """An image file that is missing, truncated, or not an image."""


def load_rgb(source) -> Image.Image:
    """Open an image file (path, bytes or file object) as upright 8-bit RGB.

    EXIF orientation is applied; greyscale (8 or 16 bit), palette, CMYK and alpha images are converted
    (alpha is composited on white, what a phone camera would never produce but a PNG often has).
    Images over PIL's decompression-bomb limit are refused, not decoded.
    """
    name = str(source) if isinstance(source, (str, Path)) else "<image>"
    try:
        if isinstance(source, bytes):
            source = io.BytesIO(source)
        with Image.open(source) as opened:
            opened.load()
            im: Image.Image = ImageOps.exif_transpose(opened)
            if im.mode.startswith("I;16") or (im.mode == "I" and cast(tuple[int, int], im.getextrema())[1] > 255):
                im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")  # 16-bit grey: the top 8 bits
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            return im.convert("RGB")
    except Image.DecompressionBombError:
        raise ImageLoadError(f"{name}: refused, too many pixels to decode safely (decompression bomb?)") from None
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"{name}: unreadable image ({e})") from None


def skipped_summary(errors: list[str], first: int = 3) -> str:
    """One line for images that could not be read: how many, and the first few reasons."""
    shown = "; ".join(errors[:first])
    more = f"; and {len(errors) - first} more" if len(errors) > first else ""
    return f"skipped {len(errors)} unreadable image{'s' if len(errors) != 1 else ''}: {shown}{more}"


def resize_and_crop(img: Image.Image, contract: PreprocessContract) -> Image.Image:
    """Resize the short side to ``contract.resize_short`` and centre-crop ``contract.input_size``."""
    h_out, w_out = contract.input_size
    w, h = img.size
    short = contract.resize_short
    scale = short / min(w, h)
    # At least the crop size, so non-square inputs always cover the crop.
    new_w = max(w_out, int(round(w * scale)))
    new_h = max(h_out, int(round(h * scale)))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), _PIL_INTERP[contract.interpolation])
    left = (new_w - w_out) // 2
    top = (new_h - h_out) // 2
    return img.crop((left, top, left + w_out, top + h_out))


def pixels_uint8(source, contract: PreprocessContract) -> np.ndarray:
    """Decoded, resized and cropped pixels: HWC uint8 in RGB order (before normalisation)."""
    img = source if isinstance(source, Image.Image) else load_rgb(source)
    return np.asarray(resize_and_crop(img.convert("RGB"), contract), dtype=np.uint8)


def normalize_hwc_uint8(pixels: np.ndarray, contract: PreprocessContract) -> np.ndarray:
    """HWC (or NHWC) uint8 RGB pixels -> CHW (or NCHW) float32 model input per the contract."""
    scaled = pixels.astype(np.float32) * np.float32(1.0 / 255.0)
    x = (scaled - np.asarray(contract.mean, np.float32)) / np.asarray(contract.std, np.float32)
    if contract.channel_order == "BGR":
        x = x[..., ::-1]
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def preprocess_file(source, contract: PreprocessContract) -> np.ndarray:
    """One image file -> CHW float32 model input."""
    return normalize_hwc_uint8(pixels_uint8(source, contract), contract)


def preprocess_batch(sources, contract: PreprocessContract) -> np.ndarray:
    """Several image files -> NCHW float32 batch."""
    return np.stack([preprocess_file(s, contract) for s in sources])


def normalize_tensor(batch, contract: PreprocessContract):
    """Torch version of ``normalize_hwc_uint8`` for NCHW batches already scaled to [0, 1] RGB.

    Used on augmented training batches so training sees exactly what export and the apps see.
    """
    mean = torch.tensor(contract.mean, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(contract.std, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    x = (batch - mean) / std
    if contract.channel_order == "BGR":
        x = x.flip(1)
    return x


def list_images(folder) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, by suffix."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
