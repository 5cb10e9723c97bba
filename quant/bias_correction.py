"""Bias correction (Nagel et al. 2019, section 4.2): shift each conv/linear bias so that its output
mean, per channel, is the float layer's.

Two ways, both measured on calibration images:

- ``weights``: only the error of the int8 weights, E[(W_int8 - W) x] = (W_int8 - W) E[x] with E[x] the
  float input's mean (per im2col patch position for convs). Layers are independent: one float pass.
- ``sequential`` (empirical): the quantized model's own output mean, which also carries the error of
  every quantized activation upstream, layer after layer in graph order, each layer measured with the
  corrections upstream already in place. Correcting all layers from one pass instead over-corrects
  (a layer also undoes upstream error that the upstream layer's own correction then removes) and
  diverged on MobileViT-XXS, so every layer gets a pass of its own that stops at that layer.

The corrections are kept in ``WeightPoint.bias_delta`` (the float model is unchanged until they are
written into it), since every int8 runtime here keeps the bias in int32 and the shift is free.
"""

from __future__ import annotations

import torch

from .layer_io import Layer, capture, layers, sample_rows
from .sim import SimGraph

MODES = ("weights", "sequential")


class _Stop(Exception):
    pass


class _Until(torch.fx.Interpreter):
    """Runs a graph until ``node`` and returns its output (the rest is not computed)."""

    def __init__(self, gm, node):
        super().__init__(gm)
        self.node, self.value = node, None

    def run_node(self, n):
        result = super().run_node(n)
        if n is self.node:
            self.value = result
            raise _Stop
        return result


def _until(sim: SimGraph, node, x: torch.Tensor) -> torch.Tensor:
    it = _Until(sim.gm, node)
    try:
        it.run(x)
    except _Stop:
        pass
    return it.value


def _channel_sums(layer: Layer, out: torch.Tensor) -> tuple[torch.Tensor, int]:
    dims = [0, 2, 3] if layer.is_conv else list(range(out.dim() - 1))
    n = out.numel() // out.shape[1 if layer.is_conv else -1]
    return out.double().sum(dim=dims), n


@torch.no_grad()
def _output_means(sim: SimGraph, layer: Layer, x: torch.Tensor, batch: int) -> torch.Tensor:
    total, count = 0, 0
    for i in range(0, len(x) - batch + 1, batch):
        s, n = _channel_sums(layer, _until(sim, layer.node, x[i : i + batch]))
        total, count = total + s, count + n
    return (total / max(count, 1)).float()


@torch.no_grad()
def _float_output_means(sim: SimGraph, ls: list[Layer], x: torch.Tensor, batch: int) -> list[torch.Tensor]:

    keys = {l.node: i for i, l in enumerate(ls)}
    got = capture(sim, x, keys, lambda k, _n, _env, out: _channel_sums(ls[k], out), batch)
    return [(sum(s for s, _ in got[i]) / max(sum(n for _, n in got[i]), 1)).float() for i in range(len(ls))]


@torch.no_grad()
def _input_means(sim: SimGraph, ls: list[Layer], x: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """Mean float input row of every layer (im2col patch for convs; per channel for depthwise)."""

    keys = {l.node: i for i, l in enumerate(ls)}
    gen = torch.Generator().manual_seed(0)

    def reduce(k, node, env, _out):
        rows = sample_rows(ls[k], env[node.args[0]], 16384, gen)
        return rows.double().sum(0), len(rows)

    got = capture(sim, x, keys, reduce, batch)
    return [(sum(s for s, _ in got[i]) / max(sum(n for _, n in got[i]), 1)).float() for i in range(len(ls))]


@torch.no_grad()
def correct_bias(
    sim: SimGraph, x: torch.Tensor, batch: int, mode: str = "sequential", only=None, progress=None
) -> dict[str, torch.Tensor]:
    """Correct the biases of every conv/linear of ``sim`` (or those ``only`` accepts): sets each
    ``WeightPoint.bias_delta``; returns the corrected biases by module path (for the float model)."""
    if mode not in MODES:
        raise ValueError(f"bias correction {mode!r}: use one of {', '.join(MODES)}")
    ls = [l for l in layers(sim) if only is None or only(l.path)]
    state = sim.switches()
    sim.enable_all(False, False)
    try:
        if mode == "weights":
            means = _input_means(sim, ls, x, batch)
        else:
            ref = _float_output_means(sim, ls, x, batch)
    finally:
        sim.restore_switches(state)
    out = {}
    for i, layer in enumerate(ls):
        p = layer.point
        if not p.enabled:
            continue
        if mode == "weights":
            dw = (p.quantized() - p.weight).flatten(1)
            m = means[i]
            delta = -(dw * m).sum(1) if m.dim() == 2 else -(dw @ m)
        else:
            delta = ref[i] - _output_means(sim, layer, x, batch)
            if progress:
                progress(f"{layer.path}: mean shift {float(delta.abs().max()):.3g}")
        p.bias_delta.add_(delta)
        out[layer.path] = p.bias + p.bias_delta
    return out
