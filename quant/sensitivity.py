"""Per-layer int8 sensitivity from one forward and backward pass (a Fisher-style estimate).

For every quantization point p the float graph is run with hooks that compute, without applying it,
the error e_p that int8 would add there (activations: fake_quant(x) - x; weights: the layer's output
change conv(x, W_int8 - W)), and the gradient g_p of the float model's log-probability of its own
top-1 class with respect to that tensor. The first-order change of that log-probability is g_p . e_p;
its square, summed over images, estimates how much p moves the prediction (Fisher information of the
output along the quantization error: HAWQ-v2 / FIT style). A layer's sensitivity is the sum over the
points that disappear when the layer is left float (``SimGraph.set_float``'s rule), so the ranking
matches what a float layer actually removes.
"""

from __future__ import annotations

import torch
from torch import nn

from .layer_io import layers
from .sim import SimGraph


def point_sensitivity(sim: SimGraph, x: torch.Tensor, batch: int) -> dict[str, float]:
    """Fisher-style sensitivity of every activation point (by name) and weight point (by name)."""
    ls = {l.point.name: l for l in layers(sim)}
    state = sim.switches()
    calibrated = {n: p.enabled for n, p in sim.acts.items()}
    out: dict[str, float] = {}
    taps: dict[str, tuple] = {}

    def act_hook(name, point):
        def fwd(_mod, args, result):
            if not calibrated[name]:
                return result
            with torch.no_grad():
                err = (
                    torch.fake_quantize_per_tensor_affine(
                        args[0], point.scale, point.zero_point, point.qmin, point.qmax
                    )
                    - args[0]
                )
            result = result + 0 * err  # a fresh tensor whose gradient we keep
            result.retain_grad()
            taps[name] = (result, err)
            return result

        return fwd

    def conv_err(layer):
        p = layer.point
        dw = (p.quantized() - p.weight).detach()

        def fwd(inp):
            if layer.is_conv:
                stride, padding, dilation, groups = layer.conv_args()
                return nn.functional.conv2d(inp, dw, None, stride, padding, dilation, groups)
            return nn.functional.linear(inp, dw)

        return fwd

    handles = [p.register_forward_hook(act_hook(n, p)) for n, p in sim.acts.items()]
    layer_out = {}

    class _Tap(torch.fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if n in node_layer:
                lay = node_layer[n]
                with torch.no_grad():
                    err = conv_err(lay)(self.env[n.args[0]].detach())
                result = result + 0 * err
                result.retain_grad()
                layer_out[lay.point.name] = (result, err)
            return result

    node_layer = {l.node: l for l in ls.values()}
    sim.enable_all(False, False)
    try:
        for i in range(0, len(x) - batch + 1, batch):
            taps.clear()
            layer_out.clear()
            chunk = x[i : i + batch].clone().requires_grad_(True)
            logits = _Tap(sim.gm).run(chunk)
            logits = logits[0] if isinstance(logits, (tuple, list)) else logits
            logp = torch.log_softmax(logits, -1)
            logp.gather(1, logp.argmax(1, keepdim=True)).sum().backward()
            for name, (t, e) in list(taps.items()) + list(layer_out.items()):
                if t.grad is None:
                    continue
                per_image = (
                    (t.grad * e).flatten(1).sum(1)
                    if t.dim() > 1 and t.shape[0] == batch
                    else (t.grad * e).reshape(batch, -1).sum(1)
                )
                out[name] = out.get(name, 0.0) + float(per_image.pow(2).sum())
    finally:
        for h in handles:
            h.remove()
        sim.restore_switches(state)
    return out


def unit_sensitivity(sim: SimGraph, units: list[str], points: dict[str, float]) -> dict[str, float]:
    """Sensitivity of leaving each unit float: the sum over the points that float unit removes."""
    out = {}
    for u in units:
        sim.set_float((u,))
        out[u] = sum(points.get(n, 0.0) for n, p in list(sim.acts.items()) + list(sim.weights.items()) if not p.enabled)
    sim.set_float(())
    return out
