"""Numerically equivalent rewrites of a trained model that make exported graphs simpler.

Folding the attention scale 1/sqrt(head_dim) into the query projection removes a scalar ``mul``
per attention layer. Besides saving an op, this sidesteps a coremltools 9.0 bug: PT2E quantizes
that scalar as an int8 constant whose (q - zero_point) overflows in the converted program, which
breaks the attention of every MobileViT v1 W8A8 Core ML export.

``fold_layernorm_affine_`` is for int8 (PT2E: TFLite, Core ML W8A8 and ExecuTorch; quant/pt2e.py applies
it). It finds its sites by following the tensors of one forward pass (a LayerNorm whose output goes
straight into linear layers), so it needs no list of architectures: MobileViT's ``Sequential(LayerNorm,
Linear)`` and a ViT block's ``attn.qkv(norm1(x))`` alike.
Folding each pre-norm LayerNorm's scale and shift into the linear layer it feeds leaves int8 graphs
two float elementwise ops fewer per LayerNorm (a float converter folds them anyway; an int8 one cannot
fold across the quantized linear) and, more important, quantizes the normalized activations rather than
the rescaled ones, whose per-channel gains spread the range a single int8 scale has to cover. It raised
the shipped model's TFLite int8 agreement with the float model (benchmarks/results/int8_search.md).
Where the int8 route keeps the transformer float with int8 weights only, the fold only spreads each
weight row's range and lowered agreement: it is not part of ``prepare_for_export``.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn

from .mobilevit import MultiHeadAttention
from .vit import Attention


class AttentionLayer(NamedTuple):
    """One attention layer of the zoo's transformers and the parts the rewrites touch."""

    module: nn.Module
    qkv: nn.Linear  # fused query/key/value projection
    out: nn.Linear  # output projection
    scale_attr: str  # the module's query-scale attribute


def attention_layers(model: nn.Module):
    """Every attention layer of ``model`` (MobileViT's MultiHeadAttention, ViT's Attention)."""

    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            yield AttentionLayer(m, m.qkv_proj, m.out_proj, "scaling")
        elif isinstance(m, Attention):
            yield AttentionLayer(m, m.qkv, m.proj, "scale")


def scale_queries_(proj: nn.Linear, factor: float) -> None:
    """In place: multiply the query rows (the first third) of a fused qkv projection by ``factor``."""
    dim = proj.out_features // 3
    with torch.no_grad():
        proj.weight[:dim] *= factor
        if proj.bias is not None:
            proj.bias[:dim] *= factor


def fold_attention_scale_(model: nn.Module) -> nn.Module:
    """In place: scale the query rows of every fused qkv projection and drop the runtime scaling."""
    for a in attention_layers(model):
        if getattr(a.module, a.scale_attr) != 1.0:
            scale_queries_(a.qkv, getattr(a.module, a.scale_attr))
            setattr(a.module, a.scale_attr, 1.0)
    return model


def layernorm_linear_sites(model: nn.Module, sample: torch.Tensor) -> dict[str, list[str]]:
    """LayerNorm name -> names of the linear layers its output goes straight into, for every LayerNorm
    over the last dimension, found by running ``sample`` through ``model`` (any architecture: a
    ``Sequential(LayerNorm, Linear)``, a pre-norm block's ``attn.qkv(norm1(x))``, ...)."""
    names = {id(m): n for n, m in model.named_modules()}
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    sites: dict[str, list[str]] = {}

    def norm_out(mod, _args, out):
        outputs[id(out)] = (names[id(mod)], out)  # the reference keeps the id unique while hooks run

    def linear_in(mod, args):
        hit = outputs.get(id(args[0])) if args else None
        if hit is not None and hit[1] is args[0] and names[id(mod)] not in sites.setdefault(hit[0], []):
            sites[hit[0]].append(names[id(mod)])

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
            hooks.append(m.register_forward_hook(norm_out))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_pre_hook(linear_in))
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
    return {k: v for k, v in sites.items() if v}


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted path) by ``module``."""
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def _probe(sample: torch.Tensor) -> torch.Tensor:
    """Seeded random input shaped and typed like ``sample`` (an all-zero sample would hide a change)."""
    g = torch.Generator().manual_seed(0)
    if sample.dtype.is_floating_point:
        return torch.randn(sample.shape, generator=g, dtype=sample.dtype)
    return torch.randint(0, 256, sample.shape, generator=g).to(sample.dtype)


def fold_layernorm_affine_(model: nn.Module, sample: torch.Tensor) -> nn.Module:
    """In place: fold the scale and shift of each LayerNorm whose output feeds only linear layers
    (``layernorm_linear_sites``; ``sample`` gives the input's shape and dtype) into those linears,
    leaving LayerNorms without affine parameters. A LayerNorm whose output is used elsewhere too (the
    model's output on a random input changes) is left as it was."""
    model.eval()
    sample = _probe(sample[:1])
    with torch.no_grad():
        ref = model(sample)
        tol = 1e-4 * max(float(ref.abs().max()), 1.0)
        for norm_name, linear_names in layernorm_linear_sites(model, sample).items():
            norm = model.get_submodule(norm_name)
            if not norm.elementwise_affine or getattr(norm, "smoothquant_scale", False):
                continue
            linears = [model.get_submodule(n) for n in linear_names]
            saved = [(lin.weight.clone(), None if lin.bias is None else lin.bias.clone()) for lin in linears]
            for lin in linears:
                # W (g * n + b) + c = (W diag(g)) n + (W b + c)
                shift = lin.weight @ norm.bias if norm.bias is not None else torch.zeros(lin.out_features)
                if lin.bias is None:
                    lin.bias = nn.Parameter(torch.zeros(lin.out_features, dtype=lin.weight.dtype))
                lin.bias += shift
                lin.weight *= norm.weight
            set_module(model, norm_name, nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=False))
            if (model(sample) - ref).abs().max() > tol:  # the normalized output has another consumer
                set_module(model, norm_name, norm)
                for lin, (w, b) in zip(linears, saved):
                    lin.weight.copy_(w)
                    if b is None:
                        lin.bias = None
                    else:
                        lin.bias.copy_(b)
    return model


def prepare_for_export(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with export-friendly, numerically equivalent rewrites."""
    return fold_attention_scale_(copy.deepcopy(model).eval())
