"""The inputs of every convolution and linear layer of a ``SimGraph``, as the quantized and the float
model compute them: what learned rounding and bias correction fit against."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .sim import _LAYER_OPS, SimGraph, WeightPoint


@dataclass
class Layer:
    """One conv or linear op of a simulated graph."""

    node: torch.fx.Node
    point: WeightPoint  # its int8 weight and bias
    path: str  # module path (``WeightPoint.consumer``)

    @property
    def is_conv(self) -> bool:
        return self.node.target == torch.ops.aten.conv2d.default

    def conv_args(self) -> tuple:
        """(stride, padding, dilation, groups) with the defaults aten.conv2d fills in."""
        a = list(self.node.args) + [None] * (7 - len(self.node.args))
        return (a[3] or [1, 1], a[4] or [0, 0], a[5] or [1, 1], a[6] or 1)


def layers(sim: SimGraph) -> list[Layer]:
    """Conv/linear ops whose weight is a ``WeightPoint``, in graph order."""
    out = []
    for n in sim.gm.graph.nodes:
        if n.op != "call_function" or n.target not in _LAYER_OPS or len(n.args) < 2:
            continue
        w = n.args[1]
        if (
            isinstance(w, torch.fx.Node)
            and w.op == "call_function"
            and isinstance(w.args[0], torch.fx.Node)
            and w.args[0].op == "call_module"
        ):
            point = sim.gm.get_submodule(w.args[0].target)
            if isinstance(point, WeightPoint):
                out.append(Layer(n, point, point.consumer))
    return out


class _Capture(torch.fx.Interpreter):
    def __init__(self, gm, wanted: dict, reduce):
        super().__init__(gm)
        self.wanted, self.reduce, self.out = wanted, reduce, {}

    def run_node(self, n):
        result = super().run_node(n)
        if n in self.wanted:
            self.out[self.wanted[n]] = self.reduce(self.wanted[n], n, self.env, result)
        return result


@torch.no_grad()
def capture(sim: SimGraph, x: torch.Tensor, nodes: dict, reduce, batch: int) -> dict:
    """Run ``sim`` on ``x`` (chunks of the graph's batch) and collect, for each node in ``nodes``
    (node -> key), ``reduce(key, node, env, output)`` per chunk; returns key -> list of results."""
    results: dict = {k: [] for k in nodes.values()}
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        if len(chunk) < batch:
            break  # static batch: a partial chunk would need padding that biases statistics
        cap = _Capture(sim.gm, nodes, reduce)
        cap.run(chunk)
        for k, v in cap.out.items():
            results[k].append(v)
    return results


def sample_rows(layer: Layer, inp: torch.Tensor, count: int | None, gen: torch.Generator | None = None) -> torch.Tensor:
    """Input rows of the layer as a matrix problem: [rows, in_features] for linear and plain conv
    (im2col patches), [rows, channels, k*k] for depthwise conv. ``count`` rows at random positions
    (with ``gen``), or all of them when ``count`` is None or not smaller than the number of rows."""
    if not layer.is_conv:
        flat = inp.reshape(-1, inp.shape[-1])
        if count is None or count >= len(flat):
            return flat
        return flat[torch.randperm(len(flat), generator=gen)[:count]]
    w = layer.point.weight
    (sh, sw), (ph, pw), (dh, dw), groups = [tuple(v) if isinstance(v, (list, tuple)) else v for v in layer.conv_args()]
    kh, kw = w.shape[2:]
    n, c, h, wd = inp.shape
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    total = n * oh * ow
    if count is None or count >= total:
        idx = torch.arange(total)
    else:
        idx = torch.randint(0, total, (count,), generator=gen)
    b, rest = idx // (oh * ow), idx % (oh * ow)
    oy, ox = rest // ow, rest % ow
    ky, kx = torch.meshgrid(torch.arange(kh), torch.arange(kw), indexing="ij")
    iy = oy[:, None] * sh + ky.reshape(1, -1) * dh  # in padded coordinates
    ix = ox[:, None] * sw + kx.reshape(1, -1) * dw
    padded = torch.nn.functional.pad(inp, (pw, pw, ph, ph))
    rows = padded[b[:, None], :, iy, ix]  # [R, k*k, C]
    rows = rows.permute(0, 2, 1)  # [R, C, k*k]: the weight's (in channel, kh, kw) order
    return rows.reshape(len(idx), -1) if groups == 1 else rows
