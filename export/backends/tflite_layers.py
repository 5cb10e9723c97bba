"""Per-tensor int8 error of a .tflite file against the float model it was exported from
(``tflite_backend.tensor_error``): each int8 tensor the file computes, run on the reference kernels,
against the float model's output of the module it is named after. This catches what the converter changed."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from ...model.preprocess import normalize_hwc_uint8
from ...quant.qat import fold_for_qat
from ...quant.sqnr import Energy
from .tflite_backend import load_runner


def _as_layout(x: np.ndarray, shape) -> np.ndarray | None:
    """``x`` (a PyTorch tensor's values, NCHW for 4-D) in the layout of a .tflite tensor of ``shape``."""
    shape = tuple(int(v) for v in shape)
    if x.ndim == 4 and x.transpose(0, 2, 3, 1).shape == shape:
        return x.transpose(0, 2, 3, 1)
    return x if x.shape == shape else None


def file_tensor_error(path, model, pixels: np.ndarray) -> list[dict]:
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
    quantized = {
        m: i
        for i, m in innermost.items()
        if tensors[i]["dtype"] in (np.int8, np.uint8, np.int16) and tensors[i]["quantization"][0] > 0
    }
    float_model, _ = fold_for_qat(model, torch.from_numpy(normalize_hwc_uint8(pixels[:1], runner.contract)))
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        mod.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
        for name, mod in float_model.named_modules()
        if name in quantized
    ]
    local, whole = defaultdict(Energy), defaultdict(Energy)
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
    rows = [
        {
            "tensor": tensors[i]["name"],
            "keep_float_name": m,
            "op": producer[i]["op_name"],
            "module": m,
            "module_exact": True,
            "scale": float(tensors[i]["quantization"][0]),
            "zero_point": int(tensors[i]["quantization"][1]),
            "clipped_pct": 100.0 * clipped[m] / seen[m],
            "local_sqnr_db": local[m].db,
            "model_sqnr_db": whole[m].db,
        }
        for i, m in module_of.items()
    ]
    by_index = {i: r for (i, _), r in zip(module_of.items(), rows)}

    def sources(tensor: int, depth: int = 0) -> list[int]:  # nearest reported tensors feeding ``tensor``
        op = producer.get(tensor)
        found = []
        for i in op["inputs"] if op is not None else ():
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
