"""Numerically equivalent rewrites of a trained model that make exported graphs simpler.

Folding the attention scale 1/sqrt(head_dim) into the query projection removes a scalar ``mul``
per attention layer. Besides saving an op, this sidesteps a coremltools 9.0 bug: PT2E quantizes
that scalar as an int8 constant whose (q - zero_point) overflows in the converted program, which
breaks the attention of every MobileViT v1 W8A8 Core ML export.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def fold_attention_scale_(model: nn.Module) -> nn.Module:
    """In place: scale the query rows of every fused qkv projection and drop the runtime scaling."""
    from model.mobilevit import MultiHeadAttention
    from model.vit import Attention

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, MultiHeadAttention):
                proj, scale = m.qkv_proj, m.scaling
            elif isinstance(m, Attention):
                proj, scale = m.qkv, m.scale
            else:
                continue
            if scale == 1.0:
                continue
            dim = proj.out_features // 3
            proj.weight[:dim] *= scale
            if proj.bias is not None:
                proj.bias[:dim] *= scale
            if isinstance(m, MultiHeadAttention):
                m.scaling = 1.0
            else:
                m.scale = 1.0
    return model


def prepare_for_export(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with export-friendly, numerically equivalent rewrites."""
    return fold_attention_scale_(copy.deepcopy(model).eval())
