"""Per-layer int8 error of an ONNX QDQ artifact (``onnx_backend.layer_error``): onnxruntime's QDQ debugging
helpers (``qdq_loss_debug``) on the int8 artifact and the pre-processed float graph it was quantized from.
Names are ONNX node names, as ``mvit-export --format onnx --keep-float`` resolves them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ...quant.sqnr import Energy, module_of_param


def qdq_layer_error(fp32_path, int8_path, inputs: np.ndarray) -> list[dict]:
    """Per-tensor error of an ONNX QDQ int8 artifact against its fp32 sibling.

    ``inputs``: the int8 artifact's native inputs (N, ...), fed one at a time. The float graph is
    re-derived the way the ONNX backend quantizes (``quant_pre_process``), so tensor and node names
    match the QDQ model's and the node names are those ``--keep-float`` resolves.
    """
    import onnx  # lazy: loaded only for layer-error reports
    from onnxruntime.quantization import qdq_loss_debug as dbg  # lazy: loaded only for layer-error reports
    from onnxruntime.quantization.shape_inference import quant_pre_process  # lazy: loaded only for layer-error reports

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
        mod = next((m for m in (module_of_param(i) for i in n.input if i in inits) if m), None)
        if mod is None:
            mod = next((module_of_node.get(producer[i].name) for i in n.input if i in producer), None)
        module_of_node[n.name] = mod
    rows = []
    for tensor, m in match.items():
        if tensor not in producer:
            continue  # the graph input: quantized, but no layer of ours produced it
        node = producer[tensor]
        local, model = Energy(), Energy()
        for pre_q, post_q in zip(m["pre_qdq"], m["post_qdq"]):
            local.add(pre_q, post_q)
        if m.get("float"):
            for f, post_q in zip(m["float"], m["post_qdq"]):
                model.add(f, post_q)
        has_param = any(i in inits for i in node.input)
        rows.append(
            {
                "tensor": tensor,
                "keep_float_name": node.name,
                "op": node.op_type,
                "module": module_of_node.get(node.name),
                "module_exact": has_param,
                "local_sqnr_db": local.db,
                "model_sqnr_db": model.db if m.get("float") else None,
            }
        )
    by_tensor = {r["tensor"]: r for r in rows}
    for r in rows:
        node = producer[r["tensor"]]
        ins = [
            by_tensor[i]["model_sqnr_db"]
            for i in node.input
            if i in by_tensor and by_tensor[i]["model_sqnr_db"] is not None
        ]
        r["drop_db"] = (min(ins) - r["model_sqnr_db"]) if ins and r["model_sqnr_db"] is not None else None
    rows.sort(key=lambda r: r["local_sqnr_db"])
    return rows
