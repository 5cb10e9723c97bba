"""Where int8 error comes from: per-tensor SQNR between the float and the quantized model.

Two metrics per quantized activation, both as SQNR in dB (higher is better, 20 log10 |x| / |x - y|):

* ``local_sqnr_db``: the tensor against its own quantize-dequantize, inside the quantized model: how
  well this one tensor's int8 scale represents it (the error this layer adds).
* ``model_sqnr_db``: the float model's tensor against the quantized model's (dequantized) tensor at
  the same point: the error accumulated up to here.

Layers are ranked by local SQNR, worst first; the worst few are the ones to try keeping in float.
Names are what ``mvit-export --keep-float`` accepts: ONNX node names for ONNX, module paths
(``named_modules()``) for the PT2E model that becomes the TFLite and Core ML int8 artifacts.

* ONNX: onnxruntime's QDQ debugging helpers (``qdq_loss_debug``) on the int8 artifact and the
  pre-processed float graph it was quantized from.
* PT2E (TFLite/Core ML int8): the calibrated PT2E graph (observers bypassed: float values) against
  the converted graph (quantize/dequantize ops in place), matched by graph node name; module paths
  from each node's ``nn_module_stack``. The .tflite runs the same quantization parameters with
  integer kernels, so small kernel differences are not in this report.
* The .tflite file itself (``tflite_layer_error``): each int8 tensor the file computes against the
  float model's output of the module it is named after; this catches what the converter changed.
"""
from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    """20 log10(|x| / |x - y|), capped at 200 dB for identical tensors."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    signal, noise = np.linalg.norm(x), np.linalg.norm(x - y)
    if noise == 0:
        return 200.0
    if signal == 0:
        return -200.0
    return float(min(200.0, 20 * math.log10(signal / noise)))


class _Energy:
    """Accumulates signal and noise energy over images, for one SQNR per tensor."""

    def __init__(self):
        self.s = 0.0
        self.n = 0.0

    def add(self, x, y) -> None:
        x = np.asarray(x, np.float64).ravel()
        y = np.asarray(y, np.float64).ravel()
        self.s += float(x @ x)
        d = x - y
        self.n += float(d @ d)

    @property
    def db(self) -> float | None:
        if self.n == 0:
            return 200.0
        if self.s == 0:
            return -200.0
        return float(min(200.0, 10 * math.log10(self.s / self.n)))


def _module_of_param(name: str) -> str | None:
    for suffix in (".weight_bias", ".weight", ".bias"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


# --------------------------------------------------------------------------------------------- ONNX

def onnx_layer_error(fp32_path, int8_path, inputs: np.ndarray) -> list[dict]:
    """Per-tensor error of an ONNX QDQ int8 artifact against its fp32 sibling.

    ``inputs``: the int8 artifact's native inputs (N, ...), fed one at a time. The float graph is
    re-derived the way the ONNX backend quantizes (``quant_pre_process``), so tensor and node names
    match the QDQ model's and the node names are those ``--keep-float`` resolves.
    """
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pre = tmp / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        float_aug, q_aug = tmp / "float_aug.onnx", tmp / "q_aug.onnx"
        dbg.modify_model_output_intermediate_tensors(str(pre), str(float_aug))
        dbg.modify_model_output_intermediate_tensors(str(int8_path), str(q_aug))
        name = onnx.load(str(pre), load_external_data=False).graph.input[0].name

        class Reader:
            def __init__(self):
                self.items = iter([{name: inputs[i : i + 1]} for i in range(len(inputs))])

            def get_next(self):
                return next(self.items, None)

            def __iter__(self):
                return iter(self.get_next, None)

        float_acts = dbg.collect_activations(str(float_aug), Reader())
        q_acts = dbg.collect_activations(str(q_aug), Reader())
        match = dbg.create_activation_matching(q_acts, float_acts)
        graph = onnx.load(str(pre), load_external_data=False).graph

    producer = {o: n for n in graph.node for o in n.output}
    inits = {i.name for i in graph.initializer}
    module_of_node: dict[str, str | None] = {}
    for n in graph.node:  # parameter-bearing nodes name their module; others inherit their producer's
        mod = next((m for m in (_module_of_param(i) for i in n.input if i in inits) if m), None)
        if mod is None:
            mod = next((module_of_node.get(producer[i].name) for i in n.input if i in producer), None)
        module_of_node[n.name] = mod
    rows = []
    for tensor, m in match.items():
        if tensor not in producer:
            continue  # the graph input: quantized, but no layer of ours produced it
        node = producer[tensor]
        local, model = _Energy(), _Energy()
        for pre_q, post_q in zip(m["pre_qdq"], m["post_qdq"]):
            local.add(pre_q, post_q)
        if m.get("float"):
            for f, post_q in zip(m["float"], m["post_qdq"]):
                model.add(f, post_q)
        has_param = any(i in inits for i in node.input)
        rows.append({"tensor": tensor, "keep_float_name": node.name, "op": node.op_type,
                     "module": module_of_node.get(node.name), "module_exact": has_param,
                     "local_sqnr_db": local.db, "model_sqnr_db": model.db if m.get("float") else None})
    by_tensor = {r["tensor"]: r for r in rows}
    for r in rows:
        node = producer[r["tensor"]]
        ins = [by_tensor[i]["model_sqnr_db"] for i in node.input if i in by_tensor and by_tensor[i]["model_sqnr_db"] is not None]
        r["drop_db"] = (min(ins) - r["model_sqnr_db"]) if ins and r["model_sqnr_db"] is not None else None
    rows.sort(key=lambda r: r["local_sqnr_db"])
    return rows


# --------------------------------------------------------------------------------------------- PT2E

def _run_graph(gm, x, skip_observers: bool) -> dict:
    """Every call_function node's tensor output of an exported GraphModule, by node name."""
    import torch
    from torch.fx import Interpreter

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
    local = defaultdict(_Energy)
    model = defaultdict(_Energy)
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
        rows.append({"tensor": name, "keep_float_name": keep, "op": str(prep_nodes[name].target).replace("aten.", ""),
                     "module": path, "module_type": typ, "module_exact": keep is not None,
                     "local_sqnr_db": local[name].db, "model_sqnr_db": model[name].db if name in model else None})
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
        ins = [by_name[i]["model_sqnr_db"] for i in sources(prep_nodes[r["tensor"]])
               if by_name[i]["model_sqnr_db"] is not None]
        r["drop_db"] = (min(ins) - r["model_sqnr_db"]) if ins and r["model_sqnr_db"] is not None else None
    rows.sort(key=lambda r: r["local_sqnr_db"])
    return rows


# --------------------------------------------------------------------------------------------- .tflite

def _as_layout(x: np.ndarray, shape) -> np.ndarray | None:
    """``x`` (a PyTorch tensor's values, NCHW for 4-D) in the layout of a .tflite tensor of ``shape``."""
    shape = tuple(int(v) for v in shape)
    if x.ndim == 4 and x.transpose(0, 2, 3, 1).shape == shape:
        return x.transpose(0, 2, 3, 1)
    return x if x.shape == shape else None


def tflite_layer_error(path, model, pixels: np.ndarray) -> list[dict]:
    """Per-tensor error of an int8 .tflite file against the float model it was exported from.

    litert-torch names each tensor after the module that wrote it (``layer_3.1.fusion.block.conv;2``;
    mvit keeps those names). The tensor of the last op writing under a module's path (or a child's) is
    that module's output; each such int8 tensor is compared with the module's output in the float model as the int8
    export sees it (``mvit.quant.qat.fold_for_qat``: BatchNorm folded into its conv, as the file's
    convolutions are). The file runs on the reference kernels with every tensor kept. Rows, worst local
    SQNR first: the tensor's int8 parameters applied to the float values (``local_sqnr_db``; the share
    of values outside its range, ``clipped_pct``), the file's tensor against the float one
    (``model_sqnr_db``), and ``drop_db`` as in the other reports. Unlike the PT2E report, this is the
    file: it shows what the converter made of the quantized graph (a concatenation run at one scale,
    clipping a float branch, was found this way).
    """
    import torch

    from ..export.backends.tflite_backend import load_runner
    from ..model.preprocess import normalize_hwc_uint8
    from ..quant.qat import fold_for_qat

    runner = load_runner(Path(path), threads=1, keep_tensors=True)
    it = runner.interpreter
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    names = {n for n, _ in model.named_modules() if n}
    producer: dict[int, dict] = {}
    output_of: dict[str, int] = {}  # module path -> the tensor of the last op writing under it (or a child)
    for op in it._get_ops_details():
        for i in op["outputs"]:
            producer[i] = op
            parts = tensors[i]["name"].split(";")[0].split(".")
            for k in range(1, len(parts) + 1):
                if ".".join(parts[:k]) in names:
                    output_of[".".join(parts[:k])] = i
    innermost: dict[int, str] = {}  # a tensor several modules end with is reported once, by the innermost
    for m, i in output_of.items():
        if len(m) > len(innermost.get(i, "")):
            innermost[i] = m
    quantized = {m: i for i, m in innermost.items()
                 if tensors[i]["dtype"] in (np.int8, np.uint8, np.int16) and tensors[i]["quantization"][0] > 0}
    float_model, _ = fold_for_qat(model, torch.from_numpy(normalize_hwc_uint8(pixels[:1], runner.contract)))
    captured: dict[str, torch.Tensor] = {}
    hooks = [mod.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
             for name, mod in float_model.named_modules() if name in quantized]
    local, whole = defaultdict(_Energy), defaultdict(_Energy)
    clipped, seen = defaultdict(int), defaultdict(int)
    try:
        for k in range(len(pixels)):
            captured.clear()
            with torch.no_grad():
                float_model(torch.from_numpy(normalize_hwc_uint8(pixels[k : k + 1], runner.contract)))
            runner.invoke(runner.prepare(pixels[k : k + 1]))
            for m, i in quantized.items():
                out = captured.get(m)
                f = _as_layout(out.numpy(), tensors[i]["shape"]) if isinstance(out, torch.Tensor) else None
                if f is None:
                    continue
                q = it.get_tensor(i)
                scale, zp = tensors[i]["quantization"]
                info = np.iinfo(q.dtype)
                f = f.astype(np.float64)
                steps = np.round(f / scale) + zp
                local[m].add(f, (np.clip(steps, info.min, info.max) - zp) * scale)
                whole[m].add(f, (q.astype(np.float64) - zp) * scale)
                clipped[m] += int(np.count_nonzero((steps < info.min) | (steps > info.max)))
                seen[m] += f.size
    finally:
        for h in hooks:
            h.remove()
    module_of = {i: m for m, i in quantized.items() if seen[m]}
    rows = [{"tensor": tensors[i]["name"], "keep_float_name": m, "op": producer[i]["op_name"], "module": m,
             "module_exact": True, "scale": float(tensors[i]["quantization"][0]),
             "zero_point": int(tensors[i]["quantization"][1]), "clipped_pct": 100.0 * clipped[m] / seen[m],
             "local_sqnr_db": local[m].db, "model_sqnr_db": whole[m].db} for i, m in module_of.items()]
    by_index = {i: r for (i, _), r in zip(module_of.items(), rows)}

    def sources(tensor: int, depth: int = 0) -> list[int]:  # nearest reported tensors feeding ``tensor``
        op = producer.get(tensor)
        found = []
        for i in (op["inputs"] if op is not None else ()):
            if i in by_index:
                found.append(i)
            elif depth < 8 and i in producer:
                found += sources(i, depth + 1)
        return found

    for i, r in by_index.items():
        ins = [by_index[j]["model_sqnr_db"] for j in sources(i)]
        r["drop_db"] = min(ins) - r["model_sqnr_db"] if ins else None
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
