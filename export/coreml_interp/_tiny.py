"""Tiny torch modules with the op mix of each zoo family, and a Core ML conversion helper.

Used by the interpreter's tests (and handy for checking the interpreter by hand); not part of the
public API. Each model has the structure, not the size, of its family: a conversion takes ~1 s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cbr(cin, cout, k=3, s=1, groups=1, act=nn.SiLU):
    layers = [nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvRes(nn.Module):
    def __init__(self, cin, cout, stride, exp=2, act=nn.SiLU):
        super().__init__()
        h = cin * exp
        self.block = nn.Sequential(
            _cbr(cin, h, 1, act=act), _cbr(h, h, 3, stride, groups=h, act=act), _cbr(h, cout, 1, act=None)
        )
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.res else self.block(x)


class MHA(nn.Module):
    """ml-cvnets style attention: fused qkv linear, reshape/transpose to heads, matmul, softmax."""

    def __init__(self, d, heads):
        super().__init__()
        self.qkv, self.out, self.h = nn.Linear(d, 3 * d), nn.Linear(d, d), heads

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        hd = c // self.h
        q = q.reshape(b, n, self.h, hd).transpose(1, 2) * hd**-0.5
        k = k.reshape(b, n, self.h, hd).transpose(1, 2)
        v = v.reshape(b, n, self.h, hd).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        return self.out((a @ v).transpose(1, 2).reshape(b, n, c))


class TinyMobileViTv1(nn.Module):
    """Stem (strided conv, BN, SiLU), MV2 block, MobileViT block (unfold, pre-norm transformer,
    fold, concat, fusion conv), 1x1 expansion, mean pool, linear."""

    def __init__(self, num_classes=5, c=8, d=16, p=2):
        super().__init__()
        self.stem = _cbr(3, c, 3, 2)
        self.mv2 = InvRes(c, c, 1)
        self.local = nn.Sequential(_cbr(c, c, 3), nn.Conv2d(c, d, 1, bias=False))
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(d), MHA(d, 2), nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))
        self.ln3 = nn.LayerNorm(d)
        self.proj, self.fusion = _cbr(d, c, 1), _cbr(2 * c, c, 3)
        self.exp = _cbr(c, 2 * c, 1)
        self.fc = nn.Linear(2 * c, num_classes)
        self.p = p

    def forward(self, x):
        x = self.mv2(self.stem(x))
        fm = self.local(x)
        b, d, h, w = fm.shape
        p, nh, nw = self.p, h // self.p, w // self.p
        t = fm.reshape(b * d * nh, p, nw, p).transpose(1, 2)
        t = t.reshape(b, d, nh * nw, p * p).transpose(1, 3).reshape(b * p * p, nh * nw, d)
        t = t + self.attn(self.ln1(t))
        t = self.ln3(t + self.ffn(self.ln2(t)))
        t = t.reshape(b, p * p, nh * nw, d).transpose(1, 3)
        t = t.reshape(b * d * nh, nw, p, p).transpose(1, 2).reshape(b, d, h, w)
        x = self.fusion(torch.cat((x, self.proj(t)), dim=1))
        return self.fc(self.exp(x).mean(dim=(2, 3)))


class TinyMobileViTv2(nn.Module):
    """MobileViT v2 style: GroupNorm(1) as layer norm over C,H,W, separable (linear) attention:
    softmax over patches, broadcast mul, reduce_sum, relu; 1x1 convs as linears."""

    def __init__(self, num_classes=5, c=8, d=16, p=2):
        super().__init__()
        self.stem = _cbr(3, c, 3, 2)
        self.mv2 = InvRes(c, c, 2)
        self.local = nn.Sequential(_cbr(c, c, 3, groups=c), nn.Conv2d(c, d, 1, bias=False))
        self.gn1, self.gn2, self.gn3 = nn.GroupNorm(1, d), nn.GroupNorm(1, d), nn.GroupNorm(1, d)
        self.qkv, self.out = nn.Conv2d(d, 1 + 2 * d, 1), nn.Conv2d(d, d, 1)
        self.ffn = nn.Sequential(nn.Conv2d(d, 2 * d, 1), nn.SiLU(), nn.Conv2d(2 * d, d, 1))
        self.proj = _cbr(d, c, 1, act=None)
        self.fc = nn.Linear(c, num_classes)
        self.p, self.d = p, d

    def forward(self, x):
        x = self.mv2(self.stem(x))
        fm = self.local(x)
        b, d, h, w = fm.shape
        p = self.p
        # unfold to [B, d, P, N] (P pixels per patch, N patches)
        t = fm.reshape(b, d, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4).reshape(b, d, p * p, -1)
        y = self.gn1(t)
        q, k, v = torch.split(self.qkv(y), [1, d, d], dim=1)
        scores = torch.softmax(q, dim=-1)
        ctx = (k * scores).sum(dim=-1, keepdim=True)
        t = t + self.out(F.relu(v) * ctx.expand_as(v))
        t = t + self.ffn(self.gn2(t))
        t = self.gn3(t)
        t = t.reshape(b, d, p, p, h // p, w // p).permute(0, 1, 4, 2, 5, 3).reshape(b, d, h, w)
        return self.fc(self.proj(t).mean(dim=(2, 3)))


class TinyMobileNetV2(nn.Module):
    """Conv-BN-ReLU6 stem, inverted residuals with ReLU6 (-> clip), 1x1 expansion, pool, linear."""

    def __init__(self, num_classes=5, c=8):
        super().__init__()
        self.features = nn.Sequential(
            _cbr(3, c, 3, 2, act=nn.ReLU6),
            InvRes(c, c, 1, act=nn.ReLU6),
            InvRes(c, 2 * c, 2, act=nn.ReLU6),
            InvRes(2 * c, 2 * c, 1, act=nn.ReLU6),
            _cbr(2 * c, 4 * c, 1, act=nn.ReLU6),
        )
        self.fc = nn.Linear(4 * c, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


class TinyViT(nn.Module):
    """Patch embedding conv, cls token concat, position embedding add, pre-norm transformer with
    GELU MLP and F.scaled_dot_product_attention, cls token slice, head."""

    def __init__(self, num_classes=5, d=16, patch=4, img=16, heads=2):
        super().__init__()
        n = (img // patch) ** 2
        self.embed = nn.Conv2d(3, d, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        self.ln1, self.ln2, self.ln = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head, self.h = nn.Linear(d, num_classes), heads

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        b, n, d = t.shape
        t = torch.cat([self.cls.expand(b, -1, -1), t], dim=1) + self.pos
        qkv = self.qkv(self.ln1(t)).reshape(b, n + 1, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        t = t + self.proj(a.transpose(1, 2).reshape(b, n + 1, d))
        t = t + self.mlp(self.ln2(t))
        return self.head(self.ln(t)[:, 0])


TINY_MODELS = {
    "mobilevit_v1": TinyMobileViTv1,
    "mobilevit_v2": TinyMobileViTv2,
    "mobilenet_v2": TinyMobileNetV2,
    "vit": TinyViT,
}


def make_tiny(name: str, seed: int = 0) -> nn.Module:
    """A tiny model in eval mode with non-trivial BatchNorm statistics (so folding is exercised)."""
    torch.manual_seed(seed)
    m = TINY_MODELS[name]()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
        elif isinstance(mod, (nn.LayerNorm, nn.GroupNorm)):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def convert(
    model: nn.Module,
    example: torch.Tensor,
    precision: str = "fp32",
    image_input: dict | None = None,
    labels: list[str] | None = None,
    input_name: str = "image",
    quantized_torch: bool = False,
):
    """torch -> Core ML ML Program (iOS17), the route the export backend takes.

    ``precision`` is "fp32" or "fp16" (compute precision); ``image_input`` holds ``ct.ImageType``
    keyword arguments (scale, bias, color_layout) to make the input an image; ``labels`` adds a
    classifier config.
    """
    import coremltools as ct  # lazy: heavy converter

    with torch.no_grad():
        ep = torch.export.export(model, (example,)).run_decompositions({})
    if image_input is not None:
        inp = ct.ImageType(name=input_name, shape=tuple(example.shape), **image_input)
    else:
        inp = ct.TensorType(name=input_name, shape=tuple(example.shape))
    cp = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    kw = {}
    if labels is not None:
        kw["classifier_config"] = ct.ClassifierConfig(list(labels))
    return ct.convert(
        ep, inputs=[inp], minimum_deployment_target=ct.target.iOS17, compute_precision=cp, convert_to="mlprogram", **kw
    )
