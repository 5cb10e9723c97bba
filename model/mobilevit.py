"""MobileViT v1 (Mehta & Rastegari, ICLR 2022), parameter-for-parameter as apple/ml-cvnets.

Export-friendly by construction: every reshape/transpose is rank <= 4 and all shapes are Python
ints taken from static module configuration or ``Tensor.shape`` (never ``int()`` of a tensor), so
torch.export, ONNX, TFLite and Core ML see static shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .layers import ClassifierHead, ConvLayer, InvertedResidual, init_cvnets_
from .registry import register_model


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention over [B, N, C] with a fused qkv projection (ml-cvnets layout)."""

    def __init__(self, embed_dim: int, num_heads: int, attn_dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
        self.qkv_proj = nn.Linear(embed_dim, 3 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim**-0.5

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv_proj(x)
        q, k, v = qkv.split(c, dim=-1)
        # [B, N, C] -> [B, heads, N, head_dim]: rank 4 throughout
        q = q.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        if self.scaling != 1.0:  # folded into qkv_proj for export (model.export_prep)
            q = q * self.scaling
        k = k.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        attn = self.attn_dropout(torch.softmax(q @ k.transpose(-1, -2), dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.out_proj(out)


class TransformerEncoder(nn.Module):
    """Pre-norm transformer layer: x + MHA(LN(x)), then x + FFN(LN(x)) with SiLU."""

    def __init__(
        self,
        embed_dim: int,
        ffn_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        ffn_dropout: float = 0.0,
    ):
        super().__init__()
        self.pre_norm_mha = nn.Sequential(
            nn.LayerNorm(embed_dim), MultiHeadAttention(embed_dim, num_heads, attn_dropout), nn.Dropout(dropout)
        )
        self.pre_norm_ffn = nn.Sequential(
            nn.LayerNorm(embed_dim),
            nn.Linear(embed_dim, ffn_dim),
            nn.SiLU(),
            nn.Dropout(ffn_dropout),
            nn.Linear(ffn_dim, embed_dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pre_norm_mha(x)
        return x + self.pre_norm_ffn(x)


def unfold_patches(x: Tensor, patch_h: int, patch_w: int) -> Tensor:
    """[B, C, H, W] -> [B*P, N, C] (P pixels per patch, N patches), with rank <= 4 reshapes."""
    b, c, h, w = x.shape
    nh, nw = h // patch_h, w // patch_w
    x = x.reshape(b * c * nh, patch_h, nw, patch_w).transpose(1, 2)
    x = x.reshape(b, c, nh * nw, patch_h * patch_w).transpose(1, 3)
    return x.reshape(b * patch_h * patch_w, nh * nw, c)


def fold_patches(x: Tensor, batch: int, h: int, w: int, patch_h: int, patch_w: int) -> Tensor:
    """Inverse of ``unfold_patches``: [B*P, N, C] -> [B, C, H, W]."""
    _, n, c = x.shape
    nh, nw = h // patch_h, w // patch_w
    x = x.reshape(batch, patch_h * patch_w, n, c).transpose(1, 3)
    x = x.reshape(batch * c * nh, nw, patch_h, patch_w).transpose(1, 2)
    return x.reshape(batch, c, h, w)


class MobileViTBlock(nn.Module):
    """Local 3x3 + 1x1 convs, unfold to 2x2 patches, transformers, fold, 1x1 projection, fusion."""

    def __init__(
        self,
        in_channels: int,
        transformer_dim: int,
        ffn_dim: int,
        n_transformer_blocks: int,
        num_heads: int = 4,
        patch_size: int = 2,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        ffn_dropout: float = 0.0,
        conv_ksize: int = 3,
    ):
        super().__init__()
        self.local_rep = nn.Sequential()
        self.local_rep.add_module("conv_3x3", ConvLayer(in_channels, in_channels, conv_ksize))
        self.local_rep.add_module("conv_1x1", ConvLayer(in_channels, transformer_dim, 1, use_norm=False, act=None))
        self.global_rep = nn.Sequential(
            *[
                TransformerEncoder(transformer_dim, ffn_dim, num_heads, dropout, attn_dropout, ffn_dropout)
                for _ in range(n_transformer_blocks)
            ],
            nn.LayerNorm(transformer_dim),
        )
        self.conv_proj = ConvLayer(transformer_dim, in_channels, 1)
        self.fusion = ConvLayer(2 * in_channels, in_channels, conv_ksize)
        self.patch_size = patch_size

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"feature map {h}x{w} is not divisible by the {p}x{p} patch: use an input size divisible by 32"
            )
        fm = self.local_rep(x)
        patches = self.global_rep(unfold_patches(fm, p, p))
        fm = self.conv_proj(fold_patches(patches, b, h, w, p, p))
        return self.fusion(torch.cat((x, fm), dim=1))


@dataclass(frozen=True)
class MobileViTConfig:
    """Widths and depths of one MobileViT v1 variant (ml-cvnets ``get_configuration``)."""

    mv2_channels: tuple[int, int]  # layer_1, layer_2 output channels
    vit_channels: tuple[int, int, int]  # layer_3..5 output channels
    transformer_dims: tuple[int, int, int]
    ffn_dims: tuple[int, int, int]
    expand_ratio: int
    transformer_blocks: tuple[int, int, int] = (2, 4, 3)
    stem_channels: int = 16
    last_exp_factor: int = 4


CONFIGS = {
    "xx_small": MobileViTConfig((16, 24), (48, 64, 80), (64, 80, 96), (128, 160, 192), expand_ratio=2),
    "x_small": MobileViTConfig((32, 48), (64, 80, 96), (96, 120, 144), (192, 240, 288), expand_ratio=4),
    "small": MobileViTConfig((32, 64), (96, 128, 160), (144, 192, 240), (288, 384, 480), expand_ratio=4),
}


class MobileViT(nn.Module):
    """MobileViT v1 classifier. Module names follow ml-cvnets (``conv_1``, ``layer_1``..``layer_5``,
    ``conv_1x1_exp``, ``classifier.fc``) so its checkpoints load as they are."""

    def __init__(
        self,
        cfg: MobileViTConfig,
        num_classes: int = 1000,
        classifier_dropout: float = 0.1,
        num_heads: int = 4,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        ffn_dropout: float = 0.0,
    ):
        super().__init__()
        self.conv_1 = ConvLayer(3, cfg.stem_channels, 3, stride=2)
        c = cfg.stem_channels
        self.layer_1 = nn.Sequential(InvertedResidual(c, cfg.mv2_channels[0], 1, cfg.expand_ratio))
        c = cfg.mv2_channels[0]
        blocks = []
        for i in range(3):
            blocks.append(InvertedResidual(c, cfg.mv2_channels[1], 2 if i == 0 else 1, cfg.expand_ratio))
            c = cfg.mv2_channels[1]
        self.layer_2 = nn.Sequential(*blocks)
        for i, name in enumerate(("layer_3", "layer_4", "layer_5")):
            out = cfg.vit_channels[i]
            stage = nn.Sequential(
                InvertedResidual(c, out, 2, cfg.expand_ratio),
                MobileViTBlock(
                    out,
                    cfg.transformer_dims[i],
                    cfg.ffn_dims[i],
                    cfg.transformer_blocks[i],
                    num_heads,
                    dropout=dropout,
                    attn_dropout=attn_dropout,
                    ffn_dropout=ffn_dropout,
                ),
            )
            setattr(self, name, stage)
            c = out
        exp = min(cfg.last_exp_factor * c, 960)
        self.conv_1x1_exp = ConvLayer(c, exp, 1)
        self.classifier = ClassifierHead(exp, num_classes, classifier_dropout)
        self.num_classes = num_classes
        init_cvnets_(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature map before pooling: [B, exp_channels, H/32, W/32]."""
        x = self.layer_2(self.layer_1(self.conv_1(x)))
        x = self.layer_5(self.layer_4(self.layer_3(x)))
        return self.conv_1x1_exp(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_features(x))


@register_model
def mobilevit_xxs(num_classes: int = 1000, **kwargs) -> MobileViT:
    """MobileViT-XXS: 1,272,024 parameters with a 1000-class head; 69.0% ImageNet top-1."""
    return MobileViT(CONFIGS["xx_small"], num_classes, **kwargs)


@register_model
def mobilevit_xs(num_classes: int = 1000, **kwargs) -> MobileViT:
    """MobileViT-XS: 2,317,848 parameters with a 1000-class head; 74.8% ImageNet top-1."""
    return MobileViT(CONFIGS["x_small"], num_classes, **kwargs)


@register_model
def mobilevit_s(num_classes: int = 1000, **kwargs) -> MobileViT:
    """MobileViT-S: 5,578,632 parameters with a 1000-class head; 78.4% ImageNet top-1."""
    return MobileViT(CONFIGS["small"], num_classes, **kwargs)


@register_model
def mobilevit_test(num_classes: int = 1000, **kwargs) -> MobileViT:
    """A tiny MobileViT v1 (same structure, few channels) for fast tests of every code path."""
    cfg = MobileViTConfig(
        (8, 8),
        (16, 16, 16),
        (16, 16, 16),
        (32, 32, 32),
        expand_ratio=2,
        transformer_blocks=(1, 1, 1),
        stem_channels=8,
        last_exp_factor=2,
    )
    return MobileViT(cfg, num_classes, **kwargs)
