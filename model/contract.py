"""The preprocessing contract: the one description of how pixels become a model input.

It is stored in every checkpoint (``meta.json``) and every exported artifact (``model_meta.json``,
ONNX ``metadata_props``, TFLite metadata, Core ML user metadata). Training, calibration, parity
checks, ``mvit-predict`` and the demo apps all read it; nobody re-implements it.

Pipeline for one image file (see ``model.preprocess``):
  1. decode, apply the EXIF orientation, convert to RGB (greyscale, CMYK, alpha are flattened);
  2. resize so that the short side is ``resize_short`` pixels (``interpolation``);
  3. centre-crop ``input_size`` (H, W);
  4. scale to [0, 1] (divide by 255), then ``(x - mean) / std`` per channel, in RGB order;
  5. reorder channels to ``channel_order`` (``BGR`` swaps R and B after normalisation, the
     Hugging Face MobileViT convention) and lay out as NCHW float32.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import cast

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class PreprocessContract:
    """How an image becomes the model input (see the module docstring for the exact pipeline)."""

    input_size: tuple[int, int] = (256, 256)
    crop_fraction: float = 1.0
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"

    def __post_init__(self):
        h, w = self.input_size
        if h <= 0 or w <= 0:
            raise ValueError(f"input_size must be positive, got {self.input_size}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError("mean and std need three values each, std > 0")

    @property
    def resize_short(self) -> int:
        """Short side, in pixels, that an image is resized to before the centre crop."""
        return int(math.floor(min(self.input_size) / self.crop_fraction + 0.5))

    @property
    def is_plain_scale(self) -> bool:
        """True when normalisation is just /255 (mean 0, std 1): uint8 inputs then map exactly."""
        return all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)

    def to_dict(self) -> dict:
        """JSON-ready form, including the derived ``resize_short`` for readers in other languages."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["resize_short"] = self.resize_short
        d["scale"] = 1.0 / 255.0
        d["layout"] = "NCHW"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessContract:
        """Inverse of ``to_dict``; unknown or derived keys are ignored."""
        try:
            return cls(
                input_size=cast(tuple[int, int], tuple(int(v) for v in d["input_size"])),  # checked on init
                crop_fraction=float(d.get("crop_fraction", 1.0)),
                interpolation=str(d.get("interpolation", "bilinear")),
                mean=cast(tuple[float, float, float], tuple(float(v) for v in d.get("mean", (0.0, 0.0, 0.0)))),
                std=cast(tuple[float, float, float], tuple(float(v) for v in d.get("std", (1.0, 1.0, 1.0)))),
                channel_order=str(d.get("channel_order", "RGB")),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"invalid preprocessing contract: {e}") from None


# Conventions of the places users bring weights from.
MVIT_DEFAULT = PreprocessContract()  # ml-cvnets trains MobileViT on RGB /255, no mean/std
TIMM_MOBILEVIT = PreprocessContract(crop_fraction=0.9, interpolation="bicubic")
HF_MOBILEVIT = PreprocessContract(crop_fraction=256 / 288, interpolation="bilinear", channel_order="BGR")
IMAGENET_MEAN_STD = PreprocessContract(
    input_size=(224, 224),
    crop_fraction=0.875,
    interpolation="bilinear",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)
