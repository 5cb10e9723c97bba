"""Simulated int8 in PyTorch: a PT2E-converted graph whose quantization points can be switched off.

``convert_pt2e`` writes each activation quantization as a quantize -> dequantize pair and each weight as
per-channel quantize -> dequantize. ``SimGraph`` replaces every such pair with a small module
(``ActPoint``: ``torch.fake_quantize_per_tensor_affine``; ``WeightPoint``: per-channel fake quantization
of a float weight it owns), so one converted graph answers, without re-exporting or re-calibrating,
what the model computes with some layers left float (``set_float``), with other activation ranges
(``ActPoint.set_range``) or with other weights (``WeightPoint.weight``: learned rounding, bias
correction). It runs batched, so a search evaluates hundreds of images in seconds.

A layer left float in a real export (``keep_float``: no annotation on its ops) runs float between the
int8 tensors around it: a quantization point disappears only when every op that reads or writes it
lies inside float layers. ``set_float`` applies exactly that rule, so the simulation and the exported
graph agree on which tensors are int8.
"""

from __future__ import annotations

import operator

import torch
from torch import nn

_QD = torch.ops.quantized_decomposed
_LAYER_OPS = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)
_FIXED_RANGE_OPS = (torch.ops.aten.sigmoid.default, torch.ops.aten._softmax.default)


def module_paths(node) -> list[str]:
    """Module paths (outermost first) an exported graph node was traced under."""
    return [v[0] for v in node.meta.get("nn_module_stack", {}).values() if isinstance(v, tuple) and v]


def under(path: str, name: str) -> bool:
    """``path`` is module ``name`` or inside it; export wrappers hold the model as ``.model``."""
    for p in (path, path[len("model.") :] if path.startswith("model.") else None):
        if p is not None and (p == name or p.startswith(name + ".")):
            return True
    return False


def node_in(node, names) -> bool:
    """Whether ``node`` was traced inside one of the modules ``names``."""
    paths = module_paths(node)
    return bool(paths) and any(under(paths[-1], n) for n in names)


class ActPoint(nn.Module):
    """One per-tensor activation quantization (affine int8), on or off."""

    def __init__(self, scale: float, zero_point: int, qmin: int, qmax: int, name: str = ""):
        super().__init__()
        self.scale, self.zero_point, self.qmin, self.qmax = float(scale), int(zero_point), int(qmin), int(qmax)
        self.calibrated = (self.scale, self.zero_point)
        self.enabled = True
        self.name = name
        # Module paths of the op writing the tensor when that op asks for a quantized output ("" for
        # the graph input), and of the ops reading it that ask for a quantized input. The point exists
        # in an export while one of them is quantized.
        self.producer: str | None = None
        self.consumers: list[str] = []
        self.fixed = False  # a fixed range the runtime requires (sigmoid output: 1/256, -128)
        self.requant = False  # requantizes another point (e.g. a sigmoid's fixed range to its reader's)
        self.op = ""  # the op writing the tensor ("input" for the graph input)

    def describe(self) -> str:
        """What this tensor is, for messages: ``cat in layer_3.1``, ``the graph input``."""
        if self.op == "input":
            return "the graph input"
        where = self.producer or (self.consumers[0] if self.consumers else "")
        return f"{self.op or 'a tensor'}{' in ' + where if where else ''}"

    def set_range(self, lo: float, hi: float) -> None:
        """Quantize [lo, hi] (widened to include 0) to qmin..qmax, as PT2E's affine observers do."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        scale = max((hi - lo) / (self.qmax - self.qmin), 2.0**-12)
        zp = int(round(self.qmin - lo / scale))
        self.scale, self.zero_point = scale, max(self.qmin, min(self.qmax, zp))

    def reset_range(self) -> None:
        """Back to the calibrated range."""
        self.scale, self.zero_point = self.calibrated

    @property
    def range(self) -> tuple[float, float]:
        """The real interval this point represents."""
        return ((self.qmin - self.zero_point) * self.scale, (self.qmax - self.zero_point) * self.scale)

    def forward(self, x):
        if not self.enabled:
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, self.qmin, self.qmax)


class WeightPoint(nn.Module):
    """A per-channel symmetric int8 weight and the bias beside it, on or off.

    ``weight`` and ``bias`` are the float model's; ``rounded`` (None: round to nearest) is an on-grid
    weight chosen by learned rounding and ``bias_delta`` a bias correction, both used only while the
    point is on, so switching it off always gives back the float layer.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        scale: torch.Tensor,
        zero_point: torch.Tensor,
        axis: int,
        qmin: int,
        qmax: int,
        bias: torch.Tensor | None = None,
        name: str = "",
    ):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("scale", scale.detach().clone().float())
        self.register_buffer("zero_point", zero_point.detach().clone().to(torch.int32))
        out = weight.shape[axis]
        self.register_buffer("bias", torch.zeros(out) if bias is None else bias.detach().clone())
        self.register_buffer("bias_delta", torch.zeros(out))
        self.rounded: torch.Tensor | None = None
        self.has_bias = bias is not None
        self.axis, self.qmin, self.qmax = int(axis), int(qmin), int(qmax)
        self.enabled = True
        self.name = name
        self.consumer: str = ""  # module path of the conv/linear that reads it

    def quantized(self) -> torch.Tensor:
        """The weight as the int8 artifact stores it (dequantized)."""
        w = self.weight if self.rounded is None else self.rounded
        return torch.fake_quantize_per_channel_affine(w, self.scale, self.zero_point, self.axis, self.qmin, self.qmax)

    def forward(self):
        if not self.enabled:
            return self.weight, self.bias
        return self.quantized(), self.bias + self.bias_delta


class SimGraph(nn.Module):
    """A converted PT2E graph with switchable quantization points (see the module docstring)."""

    def __init__(self, converted: torch.fx.GraphModule):
        super().__init__()
        self.gm = _rewrite(converted)
        self.acts: dict[str, ActPoint] = {n: m for n, m in self.gm.named_children() if isinstance(m, ActPoint)}
        self.weights: dict[str, WeightPoint] = {n: m for n, m in self.gm.named_children() if isinstance(m, WeightPoint)}

    def forward(self, x):
        return self.gm(x)

    def set_float(self, names=()) -> None:
        """Leave the modules ``names`` float, as ``keep_float`` does in an export; () quantizes all."""
        names = tuple(names)
        for p in self.weights.values():
            p.enabled = not (p.consumer and any(under(p.consumer, n) for n in names))
        for p in self.acts.values():
            wanted = [c for c in p.consumers if not any(under(c, n) for n in names)]
            if p.producer is not None and (p.producer == "" or not any(under(p.producer, n) for n in names)):
                wanted.append(p.producer)
            p.enabled = bool(wanted)

    def int8_tensors(self) -> list[str]:
        """The activations int8 now (``ActPoint.describe``), in graph order."""
        return [p.describe() for p in self.acts.values() if p.enabled and not p.requant]

    def switches(self) -> tuple[dict[str, bool], dict[str, bool]]:
        """Which activation and weight points are on now, for ``restore_switches``."""
        return {n: p.enabled for n, p in self.acts.items()}, {n: p.enabled for n, p in self.weights.items()}

    def restore_switches(self, state: tuple[dict[str, bool], dict[str, bool]]) -> None:
        """Switch every point as ``switches()`` found it."""
        for n, e in state[0].items():
            self.acts[n].enabled = e
        for n, e in state[1].items():
            self.weights[n].enabled = e

    def enable_all(self, acts: bool = True, weights: bool = True) -> None:
        """Switch every activation and/or weight quantization on (True) or off (False)."""
        for p in self.acts.values():
            p.enabled = acts
        for p in self.weights.values():
            p.enabled = weights

    @torch.no_grad()
    def run(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """Outputs for ``x`` in chunks of the graph's static ``batch`` (the last one padded)."""
        return run_batched(self.gm, x, batch)


@torch.no_grad()
def run_batched(fn, x: torch.Tensor, batch: int) -> torch.Tensor:
    """``fn`` over ``x`` in chunks of exactly ``batch`` rows (the last chunk padded, padding dropped)."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        n = len(chunk)
        if n < batch:
            chunk = torch.cat([chunk, chunk[-1:].expand(batch - n, *chunk.shape[1:])])
        outs.append(fn(chunk)[:n])
    return torch.cat(outs)


def _last_path(node) -> str:
    paths = module_paths(node)
    return paths[-1] if paths else ""


def _annotation(node):
    return node.meta.get("quantization_annotation")


def _is_q(node, per_channel=False) -> bool:
    target = _QD.quantize_per_channel.default if per_channel else _QD.quantize_per_tensor.default
    return node.op == "call_function" and node.target == target


def _is_dq(node) -> bool:
    return node.op == "call_function" and node.target == _QD.dequantize_per_tensor.default


def _drop_dropout(graph) -> None:
    for n in list(graph.nodes):
        if n.op == "call_function" and n.target in (torch.ops.aten.dropout.default, torch.ops.aten.clone.default):
            n.replace_all_uses_with(n.args[0])
            graph.erase_node(n)


def _rewrite(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    graph = gm.graph
    _drop_dropout(graph)
    n_act = n_w = 0
    for q in list(graph.nodes):
        if _is_q(q):
            x, scale, zp, qmin, qmax = q.args[:5]
            name = f"act_{n_act}"
            n_act += 1
            point = ActPoint(scale, zp, qmin, qmax, name)
            if _is_dq(x) or (x.op == "call_module" and str(x.target).startswith("act_")):
                # requantization of another point's output: this one exists for the readers' sake only
                point.requant = True
            elif x.op == "placeholder":
                point.producer, point.op = "", "input"
            elif x.op == "call_function":
                point.fixed = x.target in _FIXED_RANGE_OPS
                point.op = str(getattr(x.target, "__name__", x.target)).split(".")[0]
                ann = _annotation(x)
                if ann is not None and ann.output_qspec is not None:
                    point.producer = _last_path(x)
            for dq in q.users:
                for u in dq.users:
                    if _is_q(u):
                        continue  # the next point of a requantization chain serves this reader
                    ann = _annotation(u)
                    if ann is not None and ann.input_qspec_map:
                        point.consumers.append(_last_path(u))
            if point.producer is None and not point.consumers:
                point.producer = ""  # unknown origin: keep it, as the export would
            gm.add_module(name, point)
            with graph.inserting_after(q):
                new = graph.call_module(name, (x,))
            for dq in list(q.users):
                dq.replace_all_uses_with(new)
                graph.erase_node(dq)
            graph.erase_node(q)
        elif _is_q(q, per_channel=True):
            w, scale, zp, axis, qmin, qmax = q.args[:6]
            name = f"weight_{n_w}"
            n_w += 1
            dqs = list(q.users)
            layer = next((u for dq in dqs for u in dq.users if u.target in _LAYER_OPS), None)
            bias_node = layer.args[2] if layer is not None and len(layer.args) > 2 else None
            bias = _attr(gm, bias_node) if isinstance(bias_node, torch.fx.Node) and bias_node.op == "get_attr" else None
            point = WeightPoint(_attr(gm, w), _attr(gm, scale), _attr(gm, zp), axis, qmin, qmax, bias, name)
            point.consumer = _last_path(layer) if layer is not None else ""
            gm.add_module(name, point)
            with graph.inserting_before(q):
                new = graph.call_module(name, ())
                w_out = graph.call_function(operator.getitem, (new, 0))
                b_out = graph.call_function(operator.getitem, (new, 1))
            for dq in dqs:
                dq.replace_all_uses_with(w_out)
                graph.erase_node(dq)
            graph.erase_node(q)
            if layer is not None:
                args = list(layer.args) + [None] * max(0, 3 - len(layer.args))
                args[2] = b_out
                layer.args = tuple(args)
    for n in list(graph.nodes):  # orphaned weight / scale attributes
        if n.op == "get_attr" and not n.users:
            graph.erase_node(n)
    graph.lint()
    gm.recompile()
    return gm


def _attr(gm, node) -> torch.Tensor:
    obj = gm
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj
