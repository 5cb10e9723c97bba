"""Exact rewrites of a float model before int8: BatchNorm into convolutions, LayerNorm affine into the
layer it feeds.

Each returns the model it changed (in place) and leaves its function unchanged up to float rounding.
They make the weights that the int8 artifact quantizes the weights of the model itself, so the
algorithms that adjust weights (learned rounding, bias correction) see exactly what PT2E and
onnxruntime will quantize.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model.mobilevit import MobileViTBlock


@torch.no_grad()
def fold_batchnorm_(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d in an ``nn.Sequential`` into that conv
    (the conv gains a bias; the BatchNorm becomes ``nn.Identity``, so module names stay)."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d) or not bn.track_running_stats:
                continue
            scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
            shift = (bn.bias if bn.affine else torch.zeros_like(bn.running_mean)) - bn.running_mean * scale
            bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bias * scale + shift)
            seq._modules[b] = nn.Identity()
    return model


@torch.no_grad()
def fold_layernorm_into_conv_(norm: nn.LayerNorm, conv: nn.Conv2d) -> None:
    """Move ``norm``'s scale and shift into the input channels of the 1x1 ``conv`` it feeds:
    W (g * n + b) + c = (W diag(g)) n + (W b + c)."""
    if conv.kernel_size != (1, 1) or conv.groups != 1 or not norm.elementwise_affine:
        raise ValueError("only a LayerNorm with affine parameters feeding a plain 1x1 conv folds")
    w = conv.weight[:, :, 0, 0]
    shift = w @ norm.bias if norm.bias is not None else torch.zeros(conv.out_channels)
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    conv.bias = nn.Parameter(bias + shift)
    conv.weight.mul_(norm.weight.view(1, -1, 1, 1))
    norm.weight = None
    norm.bias = None
    norm.elementwise_affine = False


@torch.no_grad()
def fold_block_layernorm_(model: nn.Module) -> nn.Module:
    """MobileViT v1: fold each block's final LayerNorm (end of ``global_rep``) into ``conv_proj``.

    The fold back to a feature map between them only moves tokens, never channels, so the LayerNorm's
    per-channel affine commutes with it. Needs BatchNorm folded first (``conv_proj`` then has a bias).
    """

    for blk in model.modules():
        if not isinstance(blk, MobileViTBlock):
            continue
        norm, conv = blk.global_rep[-1], blk.conv_proj.block.conv
        if isinstance(norm, nn.LayerNorm) and norm.elementwise_affine and conv.bias is not None:
            fold_layernorm_into_conv_(norm, conv)
    return model
