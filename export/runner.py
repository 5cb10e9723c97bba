"""The runner every artifact gets: pixels in, scores out, through the artifact's own input contract.

Runners take what a phone has, decoded pixels after resize and centre crop (uint8 NHWC, RGB), and
apply the artifact's own input contract from its metadata, so parity checks and benchmarks exercise
exactly the conversion an app must do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model.contract import PreprocessContract
from ..model.preprocess import normalize_hwc_uint8
from .metadata import validate_meta


def quantize_array(x: np.ndarray, q: dict, dtype: str) -> np.ndarray:
    """Affine quantisation with round-half-even and clipping to the integer type's range."""
    info = np.iinfo(np.dtype(dtype))
    return np.clip(np.rint(x / q["scale"]) + q["zero_point"], info.min, info.max).astype(dtype)


def dequantize_array(x: np.ndarray, q: dict) -> np.ndarray:
    """Inverse of ``quantize_array``: real = (q - zero_point) * scale, as float32."""
    return ((x.astype(np.float32) - q["zero_point"]) * q["scale"]).astype(np.float32)


class Runner:
    """Runs one artifact. Subclasses implement ``invoke`` on native inputs (batch of 1 or more)."""

    max_verify: int | None = None  # a slow runner caps how many images the export parity check feeds it

    def __init__(self, path: Path, meta: dict):
        validate_meta(meta, f"{path}: mvit metadata")
        self.path = Path(path)
        self.meta = meta
        self.contract = PreprocessContract.from_dict(meta["preprocess"])
        self.input = meta["input"]
        self.output = meta["output"]

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC RGB pixels (already resized and cropped) -> the artifact's native input."""
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError(f"expected N,H,W,3 uint8 pixels, got {pixels.dtype} {pixels.shape}")
        if self.input.get("normalization_in_model"):
            x = pixels.astype(np.float32)  # raw RGB 0..255: the artifact normalises
            if self.input["layout"] == "NCHW":
                x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        else:
            x = normalize_hwc_uint8(pixels, self.contract)  # NCHW float32
            if self.input["layout"] == "NHWC":
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        q = self.input.get("quantization")
        if q and self.input["dtype"] in ("int8", "uint8"):
            return quantize_array(x, q, self.input["dtype"])
        return x.astype(self.input["dtype"])

    def invoke(self, native: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def finish(self, out: np.ndarray) -> np.ndarray:
        """Native output -> float32 logits (or probabilities, per ``output.kind``)."""
        q = self.output.get("quantization")
        if q and self.output["dtype"] in ("int8", "uint8"):
            return dequantize_array(out, q)
        return out.astype(np.float32)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels -> float32 scores [N, classes]."""
        return self.finish(self.invoke(self.prepare(pixels)))

    def reproducible(self) -> Runner:
        """A runner of the same artifact that computes the same numbers on every machine (app fixtures
        record them): this one, unless a subclass runs a platform's own engine where there is one."""
        return self

    def close(self) -> None:
        """Release the runtime (optional)."""
