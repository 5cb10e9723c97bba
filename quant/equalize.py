"""Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", ICCV 2019) for conv -> activation -> conv chains.

For a pair where conv1's output channel i feeds conv2's input channel i only, dividing conv1's row i
(and bias) by s_i and multiplying conv2's column i by s_i leaves the function unchanged when the
activation between them commutes with positive scaling: act(x / s) = act(x) / s. That holds for
identity and ReLU. It does not hold for SiLU (x * sigmoid(x)), ReLU6 (the clip at 6 moves), GELU or
Hardswish: SiLU(x / s) * s = x * sigmoid(x / s), a different function unless s = 1. So by default only
pairs joined by identity or ReLU are equalized (``approximate=False``: the float model is unchanged);
``approximate=True`` equalizes across those activations too, treating them as ReLU, which changes the
float model's function (what that costs on a full model is not measured yet; see
benchmarks/results/int8_search.md).

s_i = sqrt(r1_i / r2_i) with r1_i the range of conv1's row i and r2_i that of conv2's column i, which
makes both ranges sqrt(r1_i * r2_i) (Nagel et al., eq. 9). Depthwise convs take part on either side.
"""

from __future__ import annotations

import torch
from torch import nn

from .sim import module_paths

HOMOGENEOUS = ("relu",)  # act(x / s) == act(x) / s for s > 0
NOT_HOMOGENEOUS = ("silu", "hardtanh", "relu6", "gelu", "hardswish", "sigmoid", "mul")


def _kind(node) -> str | None:
    if node.op != "call_function":
        return None
    name = str(node.target).split(".")[-2] if "." in str(node.target) else str(node.target)
    return name.rstrip("_")


def _single_user(node):
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def conv_pairs(model: nn.Module, sample: torch.Tensor, approximate: bool = False) -> list[tuple[str, str, str]]:
    """(conv1 path, activation kind or "identity", conv2 path) for every chain conv1 -> [act] -> conv2 in
    which conv1's output has no other reader, found in ``model``'s exported graph (BatchNorm folded)."""
    graph = torch.export.export(model, (sample,)).graph
    modules = dict(model.named_modules())
    pairs = []
    for n in graph.nodes:
        if _kind(n) != "conv2d":
            continue
        nxt = _single_user(n)
        act = "identity"
        if nxt is not None and _kind(nxt) in HOMOGENEOUS + NOT_HOMOGENEOUS and _kind(nxt) != "mul":
            act = _kind(nxt)
            if act not in HOMOGENEOUS and not approximate:
                continue
            nxt = _single_user(nxt)
        if nxt is None or _kind(nxt) != "conv2d" or nxt.args[0] is n and act != "identity":
            continue
        p1, p2 = module_paths(n), module_paths(nxt)
        if not p1 or not p2:
            continue
        c1, c2 = modules.get(p1[-1]), modules.get(p2[-1])
        if isinstance(c1, nn.Conv2d) and isinstance(c2, nn.Conv2d) and _pairable(c1, c2):
            pairs.append((p1[-1], act, p2[-1]))
    return pairs


def _pairable(c1: nn.Conv2d, c2: nn.Conv2d) -> bool:
    depthwise2 = c2.groups == c2.in_channels == c2.out_channels
    return (
        c1.out_channels == c2.in_channels
        and (c2.groups == 1 or depthwise2)
        and (c1.groups == 1 or c1.groups == c1.in_channels == c1.out_channels)
    )


@torch.no_grad()
def equalize_pair_(c1: nn.Conv2d, c2: nn.Conv2d, max_scale: float = 1e4) -> torch.Tensor:
    """Rescale one pair in place; returns the per-channel scales s (conv1 row i / s_i, conv2 column i * s_i)."""
    r1 = c1.weight.abs().flatten(1).amax(1)
    w2 = c2.weight
    if c2.groups == 1:
        r2 = w2.abs().transpose(0, 1).flatten(1).amax(1)
    else:  # depthwise: channel i's kernel is its column
        r2 = w2.abs().flatten(1).amax(1)
    s = torch.sqrt(r1 / r2.clamp_min(1e-12)).clamp(1.0 / max_scale, max_scale)
    s = torch.where((r1 > 0) & (r2 > 0), s, torch.ones_like(s))
    c1.weight.div_(s.view(-1, 1, 1, 1))
    if c1.bias is not None:
        c1.bias.div_(s)
    if c2.groups == 1:
        c2.weight.mul_(s.view(1, -1, 1, 1))
    else:
        c2.weight.mul_(s.view(-1, 1, 1, 1))
    return s


@torch.no_grad()
def equalize_(model: nn.Module, sample: torch.Tensor, approximate: bool = False, iterations: int = 4) -> list:
    """Equalize every pair ``conv_pairs`` finds, ``iterations`` sweeps (chains share convs);
    returns the pairs. BatchNorm must be folded first (``mvit.quant.fold.fold_batchnorm_``)."""
    pairs = conv_pairs(model, sample, approximate)
    modules = dict(model.named_modules())
    for _ in range(iterations):
        for a, _act, b in pairs:
            equalize_pair_(modules[a], modules[b])
    return pairs
