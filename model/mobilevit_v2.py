"""MobileViT v2 (Mehta & Rastegari, 2022): separable self-attention, as in apple/ml-cvnets.

Patches stay in [B, C, P, N] layout (P pixels per patch, N patches) so the attention is 1x1
convolutions and reductions; unfold/fold are rank <= 4 reshapes instead of im2col.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import ClassifierHead, ConvLayer, InvertedResidual, init_cvnets_, make_divisible
from .registry import register_model


class LinearSelfAttention(nn.Module):
    """Separable self-attention: context scores from a 1-channel query, softmax over patches."""

    def __init__(self, embed_dim: int, attn_dropout: float = 0.0):
        super().__init__()
        self.qkv_proj = ConvLayer(embed_dim, 1 + 2 * embed_dim, 1, use_norm=False, act=None, bias=True)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.out_proj = ConvLayer(embed_dim, embed_dim, 1, use_norm=False, act=None, bias=True)
        self.embed_dim = embed_dim

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_proj(x).split([1, self.embed_dim, self.embed_dim], dim=1)
        scores = self.attn_dropout(torch.softmax(q, dim=-1))
        context = (k * scores).sum(dim=-1, keepdim=True)
        return self.out_proj(torch.relu(v) * context)


class LinearAttnFFN(nn.Module):
    """Pre-norm (GroupNorm with one group) separable attention and 1x1-conv FFN, with residuals."""

    def __init__(
        self, embed_dim: int, ffn_dim: int, dropout: float = 0.0, attn_dropout: float = 0.0, ffn_dropout: float = 0.0
    ):
        super().__init__()
        self.pre_norm_attn = nn.Sequential(
            nn.GroupNorm(1, embed_dim), LinearSelfAttention(embed_dim, attn_dropout), nn.Dropout(dropout)
        )
        self.pre_norm_ffn = nn.Sequential(
            nn.GroupNorm(1, embed_dim),
            ConvLayer(embed_dim, ffn_dim, 1, use_norm=False, bias=True),
            nn.Dropout(ffn_dropout),
            ConvLayer(ffn_dim, embed_dim, 1, use_norm=False, act=None, bias=True),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pre_norm_attn(x)
        return x + self.pre_norm_ffn(x)


def unfold_patches_v2(x: Tensor, patch_h: int, patch_w: int) -> Tensor:
    """[B, C, H, W] -> [B, C, P, N], the layout of ``F.unfold`` with stride = kernel = patch."""
    b, c, h, w = x.shape
    nh, nw = h // patch_h, w // patch_w
    x = x.reshape(b * c * nh, patch_h, nw, patch_w).transpose(2, 3)  # [BCnh, ph, pw, nw]
    x = x.reshape(b * c, nh, patch_h * patch_w, nw).transpose(1, 2)  # [BC, P, nh, nw]
    return x.reshape(b, c, patch_h * patch_w, nh * nw)


def fold_patches_v2(x: Tensor, h: int, w: int, patch_h: int, patch_w: int) -> Tensor:
    """Inverse of ``unfold_patches_v2``: [B, C, P, N] -> [B, C, H, W]."""
    b, c, p, _ = x.shape
    nh, nw = h // patch_h, w // patch_w
    x = x.reshape(b * c, p, nh, nw).transpose(1, 2)  # [BC, nh, P, nw]
    x = x.reshape(b * c * nh, patch_h, patch_w, nw).transpose(2, 3)  # [BCnh, ph, nw, pw]
    return x.reshape(b, c, h, w)


class MobileViTBlockV2(nn.Module):
    """Depthwise 3x3 + 1x1 local convs, separable-attention layers on patches, 1x1 projection."""

    def __init__(
        self,
        in_channels: int,
        attn_unit_dim: int,
        n_attn_blocks: int,
        ffn_multiplier: float = 2.0,
        patch_size: int = 2,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        ffn_dropout: float = 0.0,
    ):
        super().__init__()
        self.local_rep = nn.Sequential(
            ConvLayer(in_channels, in_channels, 3, groups=in_channels),
            ConvLayer(in_channels, attn_unit_dim, 1, use_norm=False, act=None),
        )
        ffn_dim = int((ffn_multiplier * attn_unit_dim) // 16 * 16)
        self.global_rep = nn.Sequential(
            *[LinearAttnFFN(attn_unit_dim, ffn_dim, dropout, attn_dropout, ffn_dropout) for _ in range(n_attn_blocks)],
            nn.GroupNorm(1, attn_unit_dim),
        )
        self.conv_proj = ConvLayer(attn_unit_dim, in_channels, 1, act=None)
        self.patch_size = patch_size

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"feature map {h}x{w} is not divisible by the {p}x{p} patch: use an input size divisible by 32"
            )
        patches = self.global_rep(unfold_patches_v2(self.local_rep(x), p, p))
        return self.conv_proj(fold_patches_v2(patches, h, w, p, p))


class MobileViTV2(nn.Module):
    """MobileViT v2 classifier at a width multiplier (0.5 .. 2.0), ml-cvnets module names."""

    def __init__(
        self,
        width: float,
        num_classes: int = 1000,
        classifier_dropout: float = 0.1,
        n_attn_blocks: tuple[int, int, int] = (2, 4, 3),
        attn_dims: tuple[int, int, int] = (128, 192, 256),
        stage_dims: tuple[int, ...] = (64, 128, 256, 384, 512),
        mv2_blocks: tuple[int, int] = (1, 2),
        expand_ratio: float = 2.0,
        **kwargs,
    ):
        super().__init__()
        stem = make_divisible(max(16, min(64, 32 * width)), 8, 16)
        dims = [make_divisible(stage_dims[0] * width, 16)] + [make_divisible(d * width, 8) for d in stage_dims[1:]]
        self.conv_1 = ConvLayer(3, stem, 3, stride=2)
        c = stem
        for i, name in enumerate(("layer_1", "layer_2")):
            blocks = []
            for j in range(mv2_blocks[i]):
                blocks.append(InvertedResidual(c, dims[i], 2 if (i == 1 and j == 0) else 1, expand_ratio))
                c = dims[i]
            setattr(self, name, nn.Sequential(*blocks))
        for i, name in enumerate(("layer_3", "layer_4", "layer_5")):
            out = dims[i + 2]
            stage = nn.Sequential(
                InvertedResidual(c, out, 2, expand_ratio),
                MobileViTBlockV2(out, make_divisible(attn_dims[i] * width, 8), n_attn_blocks[i], **kwargs),
            )
            setattr(self, name, stage)
            c = out
        self.classifier = ClassifierHead(c, num_classes, classifier_dropout)
        self.num_classes = num_classes
        init_cvnets_(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature map before pooling: [B, C, H/32, W/32]."""
        x = self.layer_2(self.layer_1(self.conv_1(x)))
        return self.layer_5(self.layer_4(self.layer_3(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_features(x))


def _v2(width: float):
    def builder(num_classes: int = 1000, **kwargs) -> MobileViTV2:
        return MobileViTV2(width, num_classes, **kwargs)

    name = f"mobilevitv2_{int(round(width * 100)):03d}"
    builder.__name__ = name
    builder.__doc__ = f"MobileViT v2 at width multiplier {width}."
    return register_model(builder)


mobilevitv2_050 = _v2(0.5)
mobilevitv2_075 = _v2(0.75)
mobilevitv2_100 = _v2(1.0)
mobilevitv2_125 = _v2(1.25)
mobilevitv2_150 = _v2(1.5)
mobilevitv2_175 = _v2(1.75)
mobilevitv2_200 = _v2(2.0)


@register_model
def mobilevitv2_test(num_classes: int = 1000, **kwargs) -> MobileViTV2:
    """A tiny MobileViT v2 for fast tests of every code path."""
    return MobileViTV2(0.25, num_classes, n_attn_blocks=(1, 1, 1), **kwargs)
