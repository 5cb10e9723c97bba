"""Signal-to-quantization-noise ratio (SQNR, dB) of int8 tensors against float ones: what the per-layer
error reports of every format rank layers by (higher is better, 20 log10 |x| / |x - y|)."""

from __future__ import annotations

import math

import numpy as np


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    """20 log10(|x| / |x - y|), capped at 200 dB for identical tensors."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    signal, noise = np.linalg.norm(x), np.linalg.norm(x - y)
    if noise == 0:
        return 200.0
    if signal == 0:
        return -200.0
    return float(min(200.0, 20 * math.log10(signal / noise)))


class Energy:
    """Accumulates signal and noise energy over images, for one SQNR per tensor."""

    def __init__(self):
        self.s = 0.0
        self.n = 0.0

    def add(self, x, y) -> None:
        x = np.asarray(x, np.float64).ravel()
        y = np.asarray(y, np.float64).ravel()
        self.s += float(x @ x)
        d = x - y
        self.n += float(d @ d)

    @property
    def db(self) -> float | None:
        if self.n == 0:
            return 200.0
        if self.s == 0:
            return -200.0
        return float(min(200.0, 10 * math.log10(self.s / self.n)))


def module_of_param(name: str) -> str | None:
    """The module path of a parameter name (``a.b.weight`` -> ``a.b``), or None for other names."""
    for suffix in (".weight_bias", ".weight", ".bias"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None
