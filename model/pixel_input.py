"""The preprocessing contract's arithmetic inside a graph: modules that wrap a model so that it takes pixels
(``PixelInput``) or does its own normalisation (``NormalizeOnly``). The export backends and the int8
routes put them in front of the model when an artifact takes uint8 pixels or images."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .contract import PreprocessContract


class PixelInput(nn.Module):
    """Takes raw RGB pixels 0..255 (NHWC or NCHW, any float dtype), applies the contract's
    /255, mean/std and channel order, then runs the classifier. Lets apps feed camera bytes."""

    def __init__(self, model: nn.Module, contract: PreprocessContract, layout: str = "NHWC"):
        super().__init__()
        self.model = model
        self.layout = layout
        std = torch.tensor(contract.std, dtype=torch.float32)
        mean = torch.tensor(contract.mean, dtype=torch.float32)
        scale = 1.0 / (255.0 * std)
        shift = -mean / std
        if contract.channel_order == "BGR":
            scale, shift = scale.flip(0), shift.flip(0)
        self.bgr = contract.channel_order == "BGR"
        self.register_buffer("scale", scale.view(1, 3, 1, 1))
        self.register_buffer("shift", shift.view(1, 3, 1, 1))

    def forward(self, pixels: Tensor) -> Tensor:
        x = pixels.float()
        if self.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        if self.bgr:
            x = x.flip(1)
        return self.model(x * self.scale + self.shift)


class NormalizeOnly(nn.Module):
    """(x - mean) / std inside the model, for Core ML image inputs already scaled by 1/255 (Core ML's
    image scale is one scalar, so per-channel std has to live in the graph)."""

    def __init__(self, model: nn.Module, contract: PreprocessContract):
        super().__init__()
        self.model = model
        std = torch.tensor(contract.std, dtype=torch.float32)
        mean = torch.tensor(contract.mean, dtype=torch.float32)
        if contract.channel_order == "BGR":  # Core ML already delivers channels in BGR order
            std, mean = std.flip(0), mean.flip(0)
        self.register_buffer("inv_std", (1.0 / std).view(1, 3, 1, 1))
        self.register_buffer("shift", (-mean / std).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x * self.inv_std + self.shift)
