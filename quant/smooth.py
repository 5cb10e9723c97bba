"""SmoothQuant-style scale migration (Xiao et al., ICML 2023) into linear layers, where it is exact.

A per-tensor int8 activation is as coarse as its widest channel. Dividing channel j of an activation by
s_j and multiplying the next layer's input column j by s_j leaves the function unchanged and trades
activation range for weight range; s_j = max|X_j|^alpha / max|W_:j|^(1 - alpha) (the paper's rule).
It is exact only where something before the activation can absorb 1/s for free:

- a LayerNorm that feeds the layer (pre-norm transformer linears, and MobileViT v1's block-final
  LayerNorm before ``conv_proj``): 1/s becomes the LayerNorm's per-channel scale. The LayerNorm stays
  float in every int8 runtime here (TFLite, onnxruntime, Core ML), so its scale costs nothing.
  alpha = 0 keeps the normalized activation as it is (the LayerNorm-affine fold: s = 1).
- attention's value projection -> output projection: attention mixes tokens, never channels, so
  scaling v's channel j by 1/s_j scales the attention output's channel j by 1/s_j.

Not across SiLU/GELU (not scale-equivariant) or residual sums (the other branch would need the same
scale). Statistics come from float forward passes over the calibration images.
"""
from __future__ import annotations

import torch
from torch import nn


def _linear_after_norm(model: nn.Module) -> list[tuple[nn.Module, str, nn.LayerNorm, nn.Module]]:
    """(parent, norm attribute, LayerNorm, layer) for each affine-free LayerNorm feeding a linear or 1x1 conv."""
    from mvit.model.mobilevit import MobileViTBlock, MultiHeadAttention

    found = []
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            norm, nxt = seq._modules[a], seq._modules[b]
            if not isinstance(norm, nn.LayerNorm) or len(norm.normalized_shape) != 1:
                continue
            proj = nxt.qkv_proj if isinstance(nxt, MultiHeadAttention) else nxt
            if isinstance(proj, nn.Linear):
                found.append((seq, a, norm, proj))
    for blk in model.modules():
        if isinstance(blk, MobileViTBlock) and isinstance(blk.global_rep[-1], nn.LayerNorm):
            found.append((blk.global_rep, str(len(blk.global_rep) - 1), blk.global_rep[-1], blk.conv_proj.block.conv))
    return found


@torch.no_grad()
def _input_ranges(model: nn.Module, layers: list[nn.Module], batches) -> list[torch.Tensor]:
    """Per-input-channel max |x| reaching each of ``layers`` over ``batches``."""
    out = [None] * len(layers)

    def hook(i, conv):
        def pre(_m, args):
            x = args[0].detach()
            r = x.abs().amax(dim=(0, 2, 3)) if conv else x.abs().flatten(0, -2).amax(0)
            out[i] = r if out[i] is None else torch.maximum(out[i], r)
        return pre

    handles = [m.register_forward_pre_hook(hook(i, isinstance(m, nn.Conv2d))) for i, m in enumerate(layers)]
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
    return out


def _scales(x_range: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    w_range = w.abs().amax(0) if w.dim() == 2 else w.abs().amax(dim=(0, 2, 3))
    s = x_range.clamp_min(1e-5).pow(alpha) / w_range.clamp_min(1e-5).pow(1 - alpha)
    return s


@torch.no_grad()
def smooth_layernorms_(model: nn.Module, batches, alpha: float = 0.5) -> int:
    """Migrate scale from each affine-free LayerNorm's output into the layer it feeds; returns how many.

    The LayerNorm regains a per-channel scale 1/s (no shift) and the layer's input columns are
    multiplied by s. Needs the LayerNorm affine already folded (``fold_layernorm_affine_``,
    ``mvit.quant.fold.fold_block_layernorm_``)."""
    if alpha == 0:
        return 0
    sites = [(p, a, n, l) for p, a, n, l in _linear_after_norm(model) if not n.elementwise_affine]
    ranges = _input_ranges(model, [l for *_, l in sites], batches)
    for (parent, attr, norm, layer), r in zip(sites, ranges):
        if r is None:
            continue
        w = layer.weight
        s = _scales(r, w, alpha)
        s = s / s.mean()  # only relative scale matters; keep magnitudes near 1
        new = nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=True)
        new.weight.copy_(1.0 / s)
        new.bias.zero_()
        parent._modules[attr] = new
        if w.dim() == 2:
            layer.weight.mul_(s.view(1, -1))
        else:
            layer.weight.mul_(s.view(1, -1, 1, 1))
    return len(sites)


@torch.no_grad()
def smooth_value_output_(model: nn.Module, batches, alpha: float = 0.5) -> int:
    """Migrate scale from attention's output (the input of ``out_proj``) into ``out_proj`` through the
    value rows of the fused qkv projection; returns how many attention layers changed."""
    from mvit.model.mobilevit import MultiHeadAttention

    mhas = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    ranges = _input_ranges(model, [m.out_proj for m in mhas], batches)
    for m, r in zip(mhas, ranges):
        if r is None:
            continue
        s = _scales(r, m.out_proj.weight, alpha)
        s = s / s.mean()
        c = m.out_proj.in_features
        m.qkv_proj.weight[2 * c :].div_(s.view(-1, 1))
        m.qkv_proj.bias[2 * c :].div_(s)
        m.out_proj.weight.mul_(s.view(1, -1))
    return len(mhas)
