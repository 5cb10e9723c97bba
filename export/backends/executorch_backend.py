"""ExecuTorch backend: a .pte program with the XNNPACK delegate, fp32 or int8 (PT2E), and its runner.

PyTorch's own on-device runtime. The float graph (or, for int8, the PT2E model of ``mvit.quant``: the
same calibration, keep-float list and quantizer the TFLite and Core ML int8 artifacts get) is
exported with ``torch.export`` and lowered with ``to_edge_transform_and_lower`` and
``XnnpackPartitioner``; whatever XNNPACK does not take runs on ExecuTorch's portable kernels, and
the export records which aten ops those are (``quantization_details.delegation``).

Metadata: the program carries a constant method ``mvit_meta`` that returns the model_meta JSON as a
string, so an app reads labels and the preprocessing contract from the .pte itself
(``module.execute("mvit_meta")``); the export folder has the usual sidecars as well.

Threads: ExecuTorch's threadpool is process-wide. Left alone it sizes itself from cpuinfo's count
of "performant" cores, which fails on x86 ("CPU info and manual query on # of cpus dont match"; it
reads ARM MIDR registers) and then falls back to every logical CPU, so the runner sets the count
explicitly and checks it.

ExecuTorch is an optional extra (``pip install 'mvit[executorch]'``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..base import Capabilities, ExportError, ExportJob, IOSpec, TensorSpec
from ..metadata import to_json_bytes
from ..runner import Runner
from ..wrappers import input_graph, pt2e_input_graph, quantize_input_graph

FORMAT = "executorch"
SUFFIX = ".pte"
RUNTIME = "ExecuTorch runtime (XNNPACK delegate)"
PRECISIONS = ("fp32", "int8")
INPUTS = ("float-nchw", "uint8-nhwc")
CALIB_METHODS = ("histogram", "min-max")  # mvit.quant.pt2e's observers, as for TFLite and Core ML
KEEP_FLOAT = {"int8": "module names or module types (conv_1, LayerNorm) whose ops stay float; none = all int8"}
INT8_ROUTE = "pt2e"
RUNTIME_MODULES = ("executorch.runtime",)  # imported before a benchmark times the model load
EXPORT_COST = 4  # lowering runs XNNPACK's graph passes: slower than litert-torch's conversion
CAPABILITIES = Capabilities(pt2e_calibration=True)
META_METHOD = "mvit_meta"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
VERSION = "1.5.1"
MISSING = f"ExecuTorch is not installed: pip install 'mvit[executorch]' (executorch=={VERSION})"


def unavailable() -> str | None:
    """Why this machine cannot export or run .pte files (one line), or None."""
    try:
        import executorch  # noqa: F401
    except ImportError:
        return MISSING
    return None


def _require() -> None:
    why = unavailable()
    if why:
        raise ExportError(why)


def calibration_graph(job: ExportJob):
    """The ``mvit.quant.pt2e.Pt2eGraph`` that ``export`` calibrates for an int8 ``job``."""
    return pt2e_input_graph(job, *input_graph(job, "ExecuTorch"))


def export(job: ExportJob, path: Path) -> IOSpec:
    """Lower ``job`` to an XNNPACK-delegated .pte program at ``path``."""
    _require()
    if job.precision not in PRECISIONS:
        raise ExportError(f"ExecuTorch has no precision {job.precision!r} (it takes {', '.join(PRECISIONS)})")
    module, sample, layout, in_model = input_graph(job, "ExecuTorch")
    details: dict = {}
    if job.precision == "int8":
        module, _, details = quantize_input_graph(job, module, sample, layout, in_model, fold_quantize=True)
        # XNNPACK's int8 concatenation needs one (scale, zero point) for its inputs and output; mvit's PT2E
        # quantizer already gives every cat one range (mvit.quant.pt2e._annotate_concatenations).
        details = dict(details, executorch="XNNPACK: int8 weights and activations where the delegate takes them")
    program, delegation = lower(module, sample)
    path.write_bytes(program)
    details["delegation"] = delegation
    h, w = job.contract.input_size
    shape = [1, h, w, 3] if layout == "NHWC" else [1, 3, h, w]
    return IOSpec(
        TensorSpec(INPUT_NAME, shape, "float32", layout),
        TensorSpec(OUTPUT_NAME, [1, job.meta.num_classes], "float32", "NC"),
        normalization_in_model=in_model,
        quantization_details=details,
    )


def lower(module: torch.nn.Module, sample: torch.Tensor) -> tuple[bytes, dict]:
    """``module`` -> (.pte bytes with an empty ``mvit_meta`` method, what XNNPACK took and what it left)."""
    from executorch.backends.xnnpack._passes.remove_noop_expand_copy_pass import (  # lazy: optional extra [executorch]
        RemoveNoopExpandCopyPass,
    )
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (  # lazy: optional extra [executorch]
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower  # lazy: optional extra [executorch]

    with torch.no_grad():
        exported = torch.export.export(module, (sample,)).run_decompositions(XNNPACK_DECOMPOSITIONS)
        edge = to_edge_transform_and_lower(
            exported,
            transform_passes=[RemoveNoopExpandCopyPass()],
            partitioner=[XnnpackPartitioner()],
            constant_methods={META_METHOD: "{}"},
        )
    delegation = delegation_summary(edge.exported_program().graph_module)
    return bytes(edge.to_executorch().buffer), delegation


# Ops ExecuTorch 1.5's XNNPACK partitioner does not take, rewritten into ops it does, so that the
# graph is not cut at every transformer layer (each cut is a hand-over to the portable kernels, and
# lowering time grows with the number of delegated subgraphs). All are exact up to float rounding.
aten = torch.ops.aten


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    """LayerNorm over the last dimension with XNNPACK's global average pooling as the mean (its
    ``mean.dim`` takes only dims (2, 3) of a 4D tensor with keepdim)."""
    if len(normalized_shape) != 1 or x.dim() < 2:
        return NotImplemented
    x4 = x.reshape(-1, x.shape[-2], x.shape[-1], 1)
    centred = x4 - aten.mean.dim(x4, [2, 3], True)
    var = aten.mean.dim(centred * centred, [2, 3], True)
    y = (centred * aten.rsqrt.default(var + eps)).reshape(x.shape)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def _mean_dim(x, dims, keepdim=False, dtype=None):
    """The classifier's global average pool: mean over H, W with keepdim, then a reshape."""
    if keepdim or dtype is not None or x.dim() != 4 or sorted(d % 4 for d in dims) != [2, 3]:
        return NotImplemented
    return aten.mean.dim(x, [2, 3], True).reshape(x.shape[0], x.shape[1])


def _split(x, split_size, dim=0):
    """``split`` (the attention's q, k, v) as slices."""
    size = x.shape[dim]
    return [aten.slice.Tensor(x, dim, start, min(start + split_size, size)) for start in range(0, size, split_size)]


XNNPACK_DECOMPOSITIONS = {aten.layer_norm.default: _layer_norm, aten.mean.dim: _mean_dim, aten.split.Tensor: _split}


def delegation_summary(graph_module) -> dict:
    """Delegated subgraphs, and the aten ops XNNPACK took and left, by name (counts)."""
    from executorch.devtools.backend_debug import get_delegation_info  # lazy: optional extra [executorch]

    info = get_delegation_info(graph_module)
    taken, left = {}, {}
    for op, b in sorted(info.delegation_by_operator.items()):
        name = op.replace("aten_", "").replace("_default", "")
        if b.delegated:
            taken[name] = b.delegated
        if b.non_delegated:
            left[name] = b.non_delegated
    return {
        "delegate": "XnnpackBackend",
        "subgraphs": info.num_delegated_subgraphs,
        "delegated_nodes": info.num_delegated_nodes,
        "non_delegated_nodes": info.num_non_delegated_nodes,
        "delegated_ops": taken,
        "non_delegated_ops": left,
    }


def check_artifact(path: Path, meta: dict) -> list[str]:
    """Kernels or delegates the program needs that this runtime lacks, and the input shape against
    the metadata (ops XNNPACK left to the portable kernels run, slower: the metadata lists them)."""
    problems = [f"needs {m}, which this ExecuTorch runtime lacks" for m in missing_ops(path)]
    shape = io_details(path)["input"]["shape"]
    if shape != meta["input"]["shape"]:
        problems.append(f"input shape {shape} != metadata {meta['input']['shape']}")
    return problems


def can_time() -> tuple[bool, str]:
    """ExecuTorch's runtime (pybindings, XNNPACK) runs on this machine when the extra is installed."""
    why = unavailable()
    return (why is None), (f"no latency: {why}" if why else "")


# ------------------------------------------------------------------------------------------ metadata


def _program(path: Path):
    _require()
    from executorch.exir._serialize._program import deserialize_pte_binary  # lazy: optional extra [executorch]

    data = Path(path).read_bytes()
    if data[4:6] != b"ET":  # flatbuffer file identifier "ET" + version digits at bytes 4..8
        raise ValueError(f"{path}: not an ExecuTorch .pte file")
    try:
        return deserialize_pte_binary(data)
    except Exception as e:  # flatbuffer decoding raises assorted errors on foreign bytes
        raise ValueError(f"{path}: not a readable .pte file ({type(e).__name__})") from None


def embed_metadata(path: Path, meta: dict) -> None:
    """Set the string the ``mvit_meta`` constant method returns (adding the method if missing)."""
    from executorch.exir._serialize._program import serialize_pte_binary  # lazy: optional extra [executorch]
    from executorch.exir.schema import (  # lazy: optional extra [executorch]
        Chain,
        ContainerMetadata,
        EValue,
        ExecutionPlan,
        String,
    )

    pte = _program(path)
    value = EValue(String(to_json_bytes(meta).decode()))
    plans = [p for p in pte.program.execution_plan if p.name == META_METHOD]
    if plans:
        plans[0].values = [value]
    else:  # the layout the emitter gives a constant method returning one string
        pte.program.execution_plan.append(
            ExecutionPlan(
                name=META_METHOD,
                container_meta_type=ContainerMetadata("", '[1, {"type": null, "context": null, "children_spec": []}]'),
                values=[value],
                inputs=[],
                outputs=[0],
                chains=[Chain([], [], [], None)],
                operators=[],
                delegates=[],
                non_const_buffer_sizes=[0],
            )
        )
    data = bytes(serialize_pte_binary(pte, extract_delegate_segments=True, segment_alignment=128))
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_metadata(path: Path) -> dict:
    """The model_meta the ``mvit_meta`` method of a .pte file returns."""
    pte = _program(path)
    for p in pte.program.execution_plan:
        if p.name == META_METHOD and p.values and hasattr(p.values[0].val, "string_val"):
            return json.loads(p.values[0].val.string_val)
    raise ValueError(f"{path}: no mvit metadata in this .pte file")


# ------------------------------------------------------------------------------------------ runner


def set_threads(threads: int) -> int:
    """Size ExecuTorch's process-wide threadpool; returns the count it reports afterwards."""
    from executorch.extension.pybindings import portable_lib  # lazy: optional extra [executorch]

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)
    return portable_lib._threadpool_get_thread_count()


def open_method(path: Path, threads: int):
    """(loaded ``forward`` method, threads in use) of a .pte file."""
    _require()
    from executorch.runtime import Runtime  # lazy: optional extra [executorch]

    used = set_threads(threads)
    if used != threads:
        raise RuntimeError(f"ExecuTorch threadpool has {used} threads, {threads} asked for")
    program = Runtime.get().load_program(Path(path))
    method = program.load_method("forward")
    if method is None:
        raise ValueError(f"{path}: the program has no 'forward' method")
    return method, used


class ExecuTorchRunner(Runner):
    """ExecuTorch runtime (XNNPACK delegate, portable kernels for the rest), batch 1 per execute."""

    def __init__(self, path: Path, meta: dict, threads: int = 2):
        super().__init__(path, meta)
        self.method, self.threads = open_method(path, threads)

    def invoke(self, native: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(native.shape[0]):
            x = torch.from_numpy(np.ascontiguousarray(native[i : i + 1]))
            outs.append(self.method.execute([x])[0].numpy().copy())
        return np.concatenate(outs)


def load_runner(path: Path, threads: int = 2, meta: dict | None = None) -> Runner:
    """A runner for a .pte file: its mvit metadata, or ``meta`` describing a file without any."""
    return ExecuTorchRunner(Path(path), meta if meta is not None else read_metadata(path), threads)


# ------------------------------------------------------------------------------------------ any .pte file

_SCALAR_TYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 15: "bfloat16"}  # c10


def io_details(path: Path) -> dict:
    """Input and output tensors of the ``forward`` method of any .pte file."""
    _require()
    from executorch.runtime import Runtime  # lazy: optional extra [executorch]

    meta = Runtime.get().load_program(Path(path)).metadata("forward")
    out = {}
    for key, t in (("input", meta.input_tensor_meta(0)), ("output", meta.output_tensor_meta(0))):
        out[key] = {
            "name": f"{key}_0",
            "shape": [int(v) for v in t.sizes()],
            "dtype": _SCALAR_TYPES.get(int(t.dtype()), f"ScalarType {int(t.dtype())}"),
            "quantization": None,
        }
    return out


def _forward_plan(path: Path):
    pte = _program(path)
    plans = [p for p in pte.program.execution_plan if p.name == "forward"]
    if not plans:
        raise ValueError(f"{path}: the program has no 'forward' method")
    return pte.program, plans[0]


def missing_ops(path: Path) -> list[str]:
    """Kernels and delegates the ``forward`` method needs that this ExecuTorch runtime lacks, named."""
    from executorch.runtime import Runtime  # lazy: optional extra [executorch]

    program, plan = _forward_plan(path)
    rt = Runtime.get()
    have = rt.operator_registry.operator_names
    missing = [
        f"{o.name}.{o.overload} (kernel)" if o.overload else f"{o.name} (kernel)"
        for o in plan.operators
        if (f"{o.name}.{o.overload}" if o.overload else o.name) not in have and o.name not in have
    ]
    missing += [f"{d.id} (delegate)" for d in plan.delegates if not rt.backend_registry.is_available(d.id)]
    return sorted(set(missing))


_XNN_DTYPES = {
    "xnn_datatype_fp32": "float32",
    "xnn_datatype_fp16": "float16",
    "xnn_datatype_qint8": "int8",
    "xnn_datatype_quint8": "uint8",
    "xnn_datatype_qcint8": "int8 per-channel",
    "xnn_datatype_qint32": "int32",
    "xnn_datatype_qcint32": "int32 per-channel",
    "xnn_datatype_qdint8": "int8 dynamic",
    "xnn_datatype_int32": "int32",
}


def xnnpack_nodes(blob: bytes) -> list[tuple[str, str]]:
    """(XNNPACK node type, dtype of its first input) per node of one XNNPACK delegate payload
    (decoded with the flatbuffer schema ExecuTorch ships, by its bundled flatc)."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import (  # lazy: optional extra [executorch]
        XNNHeader,
        _get_schema_bytes,
    )
    from executorch.exir._serialize._flatbuffer import _flatc_decompile  # lazy: optional extra [executorch]

    header = XNNHeader.from_bytes(blob[: XNNHeader.EXPECTED_LENGTH])
    flat = blob[header.flatbuffer_offset : header.flatbuffer_offset + header.flatbuffer_size]
    with tempfile.TemporaryDirectory() as d:
        Path(d, "schema.fbs").write_bytes(_get_schema_bytes())
        Path(d, "graph.bin").write_bytes(flat)
        _flatc_decompile(d, str(Path(d, "schema.fbs")), str(Path(d, "graph.bin")), ["--raw-binary"])
        # flatc writes unbounded clamps (a ReLU's output_max) as bare inf/nan, which JSON lacks
        text = re.sub(r"(?<=[\s:\[,])(-?)inf\b", r"\1Infinity", Path(d, "graph.json").read_text())
        graph = json.loads(re.sub(r"(?<=[\s:\[,])-?nan\b", "NaN", text))
    dtypes = {}
    for v in graph.get("xvalues", []):
        t = v.get("xvalue_union", {})
        inner = t.get("tensor_value", t)
        dtypes[inner.get("id_out")] = _XNN_DTYPES.get(inner.get("datatype"), inner.get("datatype", "?"))
    nodes = []
    for n in graph.get("xnodes", []):
        body = n.get("xnode_union", {})
        first = next((body[k] for k in ("input1_id", "input_id", "input_ids") if k in body), None)
        first = first[0] if isinstance(first, list) and first else first
        nodes.append((n.get("xnode_union_type", "?").removeprefix("XNN"), dtypes.get(first, "-")))
    return nodes


def op_census(path: Path, threads: int = 2) -> dict:
    """What the ``forward`` method runs: XNNPACK nodes inside each delegate (type and input dtype)
    and the kernels outside any delegate (ExecuTorch's portable/optimized kernels)."""
    program, plan = _forward_plan(path)
    rows: dict = {}
    kernels, delegate_calls = 0, 0
    for chain in plan.chains:
        for ins in chain.instructions:
            args = ins.instr_args
            if hasattr(args, "op_index"):
                o = plan.operators[args.op_index]
                key = (f"{o.name}.{o.overload}" if o.overload else o.name, "-")
                r = rows.setdefault(key, {"op": key[0], "dtype": "-", "count": 0, "delegated": 0})
                r["count"] += 1
                kernels += 1
            elif hasattr(args, "delegate_index"):
                delegate_calls += 1
                d = plan.delegates[args.delegate_index]
                if d.id != "XnnpackBackend":
                    continue
                blob = program.backend_delegate_data[d.processed.index].data
                for op, dtype in xnnpack_nodes(bytes(blob)):
                    r = rows.setdefault((op, dtype), {"op": op, "dtype": dtype, "count": 0, "delegated": 0})
                    r["count"] += 1
                    r["delegated"] += 1
    delegated = sum(r["delegated"] for r in rows.values())
    return {
        "runtime": "ExecuTorch runtime (pybindings)",
        "delegate": "XNNPACK",
        "ops_total": delegated + kernels,
        "ops_delegated": delegated,
        "delegate_partitions": delegate_calls,
        "ops": sorted(rows.values(), key=lambda r: (-r["count"], r["op"])),
        "fallback": {r["op"]: r["count"] for r in rows.values() if not r["delegated"]},
        "dtype_note": "inside XNNPACK: node type and first input's datatype; outside: ExecuTorch kernels",
    }
