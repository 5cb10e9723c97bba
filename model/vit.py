"""A plain ViT (Dosovitskiy et al. 2021) in the DeiT-Ti shape, timm module names.

Position embeddings are fixed to the input grid at construction (static shapes for export); a
checkpoint trained at another size needs its ``pos_embed`` interpolated (``resize_pos_embed``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import register_model


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm names ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        q = q.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        if self.scale != 1.0:  # folded into qkv for export (model.export_prep)
            q = q * self.scale
        k = k.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        attn = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Two linears with GELU."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection with a strided conv."""

    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT classifier with a class token."""

    def __init__(
        self,
        num_classes: int = 1000,
        img_size: int = 224,
        patch_size: int = 16,
        dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // patch_size) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        self.num_classes = num_classes
        self.img_size = img_size
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Token sequence after the final norm: [B, 1 + N, dim]."""
        x = self.patch_embed(x)
        # [cls; patches] + pos_embed, written without concatenating the class token to activations (the
        # same numbers, bit for bit): an int8 concatenation has one range for all its inputs, and the
        # patch tokens' (about +-20 here) rounds the class token (+-0.15) to -1, 0 or 1 step.
        n = self.pos_embed.shape[1] - 1
        return self.norm(self.blocks(F.pad(x, (0, 0, 1, 0)) + self.pos_embed + F.pad(self.cls_token, (0, 0, 0, n))))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x)[:, 0])


def resize_pos_embed(pos_embed: Tensor, new_grid: int) -> Tensor:
    """Bicubically resize a [1, 1 + g*g, dim] position embedding to a new grid size."""
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
    old = int(round(grid.shape[1] ** 0.5))
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    return torch.cat((cls, grid.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, -1)), dim=1)


@register_model
def vit_tiny(num_classes: int = 1000, img_size: int = 256, **kwargs) -> VisionTransformer:
    """DeiT-Ti shape (patch 16, dim 192, depth 12, 3 heads): 5.7M parameters; default 256x256 input."""
    return VisionTransformer(num_classes, img_size=img_size, **kwargs)


@register_model
def vit_test(num_classes: int = 1000, img_size: int = 64, **kwargs) -> VisionTransformer:
    """A two-block ViT for fast tests."""
    return VisionTransformer(num_classes, img_size=img_size, patch_size=16, dim=32, depth=2, num_heads=2, **kwargs)
