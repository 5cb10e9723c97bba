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
- attention's query and key rows of one fused projection (``balance_attention_``): the scores are sums
  of q_j k_j, so q_j * a_j and k_j / a_j leave them as they are.

Not across SiLU/GELU (not scale-equivariant) or residual sums (the other branch would need the same
scale). Statistics come from float forward passes over the calibration images.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model.export_prep import attention_layers, layernorm_linear_sites, set_module
from ..model.mobilevit import MobileViTBlock


def _sites(model: nn.Module, sample: torch.Tensor) -> list[tuple[str, nn.LayerNorm, list[nn.Module]]]:
    """(name, LayerNorm, the layers it feeds) for each LayerNorm whose output goes straight into linear
    layers (``layernorm_linear_sites``), and MobileViT v1's block-final LayerNorm before ``conv_proj``."""

    found = [
        (n, model.get_submodule(n), [model.get_submodule(l) for l in ls])
        for n, ls in layernorm_linear_sites(model, sample).items()
    ]
    names = {id(m): n for n, m in model.named_modules()}
    for blk in model.modules():
        if isinstance(blk, MobileViTBlock) and isinstance(blk.global_rep[-1], nn.LayerNorm):
            found.append((names[id(blk.global_rep[-1])], blk.global_rep[-1], [blk.conv_proj.block.conv]))
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


def _weight_range(w: torch.Tensor) -> torch.Tensor:
    """Per-input-channel max |w| of a linear or conv weight."""
    return w.abs().amax(0) if w.dim() == 2 else w.abs().amax(dim=(0, 2, 3))


def _scales(x_range: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    return x_range.clamp_min(1e-5).pow(alpha) / _weight_range(w).clamp_min(1e-5).pow(1 - alpha)


@torch.no_grad()
def smooth_layernorms_(model: nn.Module, batches, alpha: float = 0.5) -> int:
    """Migrate scale from each affine-free LayerNorm's output into the layer it feeds; returns how many.

    The LayerNorm regains a per-channel scale 1/s (no shift) and the layer's input columns are
    multiplied by s. Needs the LayerNorm affine already folded (``fold_layernorm_affine_``,
    ``mvit.quant.fold.fold_block_layernorm_``)."""
    if alpha == 0:
        return 0

    sites = [site for site in _sites(model, batches[0][:1]) if not site[1].elementwise_affine]
    ranges = _input_ranges(model, [layers[0] for *_, layers in sites], batches)
    for (name, norm, layers), r in zip(sites, ranges):
        if r is None:
            continue
        w_range = torch.stack([_weight_range(layer.weight) for layer in layers]).amax(0)
        s = r.clamp_min(1e-5).pow(alpha) / w_range.clamp_min(1e-5).pow(1 - alpha)
        s = s / s.mean()  # only relative scale matters; keep magnitudes near 1
        new = nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=True)
        new.weight.copy_(1.0 / s)
        new.bias.zero_()
        new.smoothquant_scale = True  # the int8 export's LayerNorm fold must leave this scale where it is
        set_module(model, name, new)
        for layer in layers:
            layer.weight.mul_(s.view(1, -1) if layer.weight.dim() == 2 else s.view(1, -1, 1, 1))
    return len(sites)


@torch.no_grad()
def smooth_value_output_(model: nn.Module, batches, alpha: float = 0.5) -> int:
    """Migrate scale from attention's output (the input of its output projection) into that projection
    through the value rows of the fused qkv projection; returns how many attention layers changed."""

    pairs = [(a.qkv, a.out) for a in attention_layers(model)]
    ranges = _input_ranges(model, [out for _, out in pairs], batches)
    for (qkv, out), r in zip(pairs, ranges):
        if r is None:
            continue
        s = _scales(r, out.weight, alpha)
        s = s / s.mean()
        c = out.in_features
        qkv.weight[2 * c :].div_(s.view(-1, 1))
        qkv.bias[2 * c :].div_(s)
        out.weight.mul_(s.view(1, -1))
    return len(pairs)


def balance_attention_(model: nn.Module) -> nn.Module:
    """In place: even out the ranges of each fused qkv projection's output, which int8 quantizes with
    one scale. Query channel i is multiplied by a_i and key channel i divided by it (the attention
    scores, sums of q_i k_i, do not change), a_i chosen so both rows have the same size; the value rows
    are multiplied by one factor g and the output projection's weight divided by it (attention mixes
    tokens, never channels), g matching the largest value row to the largest query/key row. A row's
    size is |bias| + 3 ||weight row||: the range of the output channel for an input of unit variance,
    as the LayerNorm before it gives. Exact in float; per-channel weight quantization sees the same
    rows, only scaled. The queries carry the folded 1/sqrt(head_dim) (``fold_attention_scale_``): on
    the article's ViT-Tiny their output range was a sixth to a twelfth of the keys'.

    Not part of the exports: measured (``mvit.quant.ptq.Recipe(balance_attention=True)``,
    ``int8_prefixes --balance-attention``; benchmarks/results/int8_article.md) it lowers ViT-Tiny's
    int8 error a little and leaves MobileViT-XXS's as it was."""

    with torch.no_grad():
        for a in attention_layers(model):
            w, b, d = a.qkv.weight, a.qkv.bias, a.qkv.out_features // 3
            size = 3 * w.norm(dim=1) + (b.abs() if b is not None else 0)
            size = size.clamp_min(1e-12)
            q, k, v = slice(0, d), slice(d, 2 * d), slice(2 * d, 3 * d)
            a_i = (size[k] / size[q]).sqrt()
            g = float((size[q] * size[k]).sqrt().max() / size[v].max())
            w[q] *= a_i[:, None]
            w[k] /= a_i[:, None]
            w[v] *= g
            a.out.weight /= g
            if b is not None:
                b[q] *= a_i
                b[k] /= a_i
                b[v] *= g
    return model
