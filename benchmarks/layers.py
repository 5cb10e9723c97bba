"""Where int8 error comes from: per-tensor SQNR between the float and the quantized model.

Two metrics per quantized activation, both as SQNR in dB (``mvit.quant.sqnr``; higher is better):

* ``local_sqnr_db``: the tensor against its own quantize-dequantize, inside the quantized model: how
  well this one tensor's int8 scale represents it (the error this layer adds).
* ``model_sqnr_db``: the float model's tensor against the quantized model's (dequantized) tensor at
  the same point: the error accumulated up to here.

Layers are ranked by local SQNR, worst first; the worst few are the ones to try keeping in float.
Names are what ``mvit-export --keep-float`` accepts.

* A format's own int8 artifact: through its backend (``Backend.layer_error``, e.g. onnxruntime's QDQ
  debugging helpers; ``Backend.tensor_error``, e.g. each int8 tensor of a .tflite file), where its
  ``CAPABILITIES`` say it has one.
* PT2E (every format whose int8 calibrates a PT2E graph): the calibrated PT2E graph (observers
  bypassed: float values) against the converted graph (quantize/dequantize ops in place), matched by
  graph node name; module paths from each node's ``nn_module_stack``. The artifacts run the same
  quantization parameters with integer kernels, so small kernel differences are not in this report.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch.fx import Interpreter

from ..quant.sqnr import Energy


def _run_graph(gm, x, skip_observers: bool) -> dict:
    """Every call_function node's tensor output of an exported GraphModule, by node name."""
    values: dict = {}

    class Capture(Interpreter):
        def call_module(self, target, args, kwargs):
            if skip_observers and "activation_post_process" in str(target):
                return args[0]
            return super().call_module(target, args, kwargs)

        def run_node(self, n):
            out = super().run_node(n)
            if n.op == "call_function" and isinstance(out, torch.Tensor) and out.is_floating_point():
                values[n.name] = out.detach()
            return out

    with torch.no_grad():
        Capture(gm).run(x)
    return values


def _stack_path(node) -> tuple[str | None, str | None]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None, None
    path, typ = list(stack.values())[-1]
    return str(path), (typ.__name__ if isinstance(typ, type) else str(typ).rsplit(".", 1)[-1])


def pt2e_layer_error(prepared, converted, inputs, module_names: set[str]) -> list[dict]:
    """Per-op error of the PT2E int8 model (``converted``) against the calibrated float graph
    (``prepared``), on ``inputs`` (a list of input tensors, batch 1 each)."""
    q_ops = {"quantize_per_tensor", "quantize_per_tensor.default", "quantize_per_tensor.tensor"}
    conv_nodes = {n.name: n for n in converted.graph.nodes}
    prep_nodes = {n.name: n for n in prepared.graph.nodes}
    local = defaultdict(Energy)
    model = defaultdict(Energy)
    deq_of: dict[str, str] = {}
    for name, n in conv_nodes.items():
        if name not in prep_nodes or n.op != "call_function":
            continue
        for u in n.users:  # op -> quantize -> dequantize: the op's output as int8 represents it
            if any(q in str(u.target) for q in q_ops):
                d = next(iter(u.users), None)
                if d is not None and "dequantize" in str(d.target):
                    deq_of[name] = d.name
    for x in inputs:
        fvals = _run_graph(prepared, x, skip_observers=True)
        qvals = _run_graph(converted, x, skip_observers=False)
        for name, dname in deq_of.items():
            if name in qvals and dname in qvals:
                local[name].add(qvals[name].numpy(), qvals[dname].numpy())
                if name in fvals and fvals[name].shape == qvals[dname].shape:
                    model[name].add(fvals[name].numpy(), qvals[dname].numpy())
    rows = []
    for name in deq_of:
        if name not in local:
            continue
        path, typ = _stack_path(prep_nodes[name])
        keep = path if path in module_names else None
        rows.append(
            {
                "tensor": name,
                "keep_float_name": keep,
                "op": str(prep_nodes[name].target).replace("aten.", ""),
                "module": path,
                "module_type": typ,
                "module_exact": keep is not None,
                "local_sqnr_db": local[name].db,
                "model_sqnr_db": model[name].db if name in model else None,
            }
        )
    by_name = {r["tensor"]: r for r in rows}

    def sources(node, seen=0):  # op nodes feeding ``node``, looking through observers and view ops
        out = []
        for a in node.all_input_nodes:
            if a.name in by_name:
                out.append(a.name)
            elif seen < 8 and (a.op == "call_module" or a.name not in deq_of):
                out += sources(a, seen + 1)
        return out

    for r in rows:
        ins = [
            by_name[i]["model_sqnr_db"]
            for i in sources(prep_nodes[r["tensor"]])
            if by_name[i]["model_sqnr_db"] is not None
        ]
        r["drop_db"] = (min(ins) - r["model_sqnr_db"]) if ins and r["model_sqnr_db"] is not None else None
    rows.sort(key=lambda r: r["local_sqnr_db"])
    return rows


def worst_drops(rows: list[dict], n: int) -> list[dict]:
    """Rows where the accumulated error grows most (model SQNR of the inputs minus of the output)."""
    return sorted((r for r in rows if r.get("drop_db") is not None), key=lambda r: -r["drop_db"])[:n]


def suggest(rows: list[dict], top: int) -> list[str]:
    """``top`` distinct keep-float names, alternating the worst local SQNR (rows sorted worst first:
    layers int8 represents worst) and the largest jumps in accumulated error (layers that amplify it)."""
    out: list[str] = []
    drops = worst_drops(rows, len(rows))
    for pair in zip(rows, drops + [None] * (len(rows) - len(drops))):
        for r in pair:
            name = r.get("keep_float_name") if r else None
            if name and name not in out and len(out) < top:
                out.append(name)
        if len(out) >= top:
            break
    return out
