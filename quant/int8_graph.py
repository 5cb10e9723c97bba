"""PT2E annotations that keep an int8 graph int8 where XNNPACK can run it (TFLite and ExecuTorch).

litert-torch's quantizer annotates convolutions, linears, concatenations and pools; on ``torch.export``
graphs its add annotator never fires (it matches source partitions, which those graphs lack), and it
shares ranges through ``view``/``permute`` but not ``reshape``/``transpose``/``slice``/``dropout``.
Every unannotated op between two int8 ops becomes DEQUANTIZE -> float op -> QUANTIZE in the .tflite
file: MobileViT's unfold/fold reshapes, the attention's head reshapes, the residual adds. This module adds:

- ``split_to_slices``: ``split`` + ``getitem`` (the attention's q, k, v) as single-output slices, so
  each piece can share its source's range (a multi-output op cannot carry one output annotation).
- ``annotate_attention_xnnpack``: the attention matmuls in int8 the way XNNPACK's delegate takes them.
  ``VisitBatchMatMulNode`` (LiteRT ``tflite/delegates/xnnpack/xnnpack_delegate.cc``) refuses an int8
  BATCH_MATMUL whose right-hand input has a non-zero zero point, and one whose two inputs have different
  XNNPACK datatypes (a per-channel right-hand input is ``qcint8``, a per-tensor left-hand one ``qint8``);
  XNNPACK's ``batch-matrix-multiply.c`` takes ``qint8 x qint8 -> qint8`` only with ``input_b`` zero point
  0. So both right-hand operands (keys and values) are per-tensor symmetric (zero point 0); the
  left-hand ones (queries, softmax output) and the outputs stay affine. Softmax stays float: XNNPACK
  has no int8 softmax, and TFLite's int8 SOFTMAX would run outside the delegate.
- ``annotate_residual_adds``: every add of two activations int8 (XNNPACK's int8 ADD takes a scale per
  input and output) where at least one comes from an int8 op; an add between layers kept float stays
  float with them, and so does a matmul of two float operands.
- ``share_through_moves``: ops that only move or view values share the range of the op that made them,
  so no DEQUANTIZE/QUANTIZE pair sits where no float op does.

The sources and the measurements behind these choices: benchmarks/results/int8_xnnpack.md.
"""

from __future__ import annotations

import operator
from dataclasses import replace

import torch

aten = torch.ops.aten

# Ops that only move, view or pass values (eval-mode dropout included): TFLite and XNNPACK run them in
# int8 with their input's scale and zero point.
MOVE_OPS = frozenset(
    {
        aten.view.default,
        aten._unsafe_view.default,
        aten.reshape.default,
        aten.transpose.int,
        aten.permute.default,
        aten.slice.Tensor,
        aten.unsqueeze.default,
        aten.squeeze.dim,
        aten.squeeze.default,
        aten.flatten.using_ints,
        aten.contiguous.default,
        aten.clone.default,
        aten.dropout.default,
        aten.expand.default,
    }
)
_SPLITS = (aten.split.Tensor, aten.split_with_sizes.default)
_MATMULS = (aten.matmul.default, aten.bmm.default)


def _annotation(n: torch.fx.Node):
    return n.meta.get("quantization_annotation")


def _quantized_output(n: torch.fx.Node) -> bool:
    ann = _annotation(n)
    return ann is not None and ann.output_qspec is not None


def split_to_slices(gm: torch.fx.GraphModule, where) -> int:
    """Rewrite ``split`` whose pieces are read only through ``getitem`` as one ``slice`` per piece, for
    the nodes ``where(node)`` accepts; returns how many splits. Exact: a slice is the same view."""
    graph, count = gm.graph, 0
    for n in list(graph.nodes):
        if n.op != "call_function" or n.target not in _SPLITS or not where(n):
            continue
        if not all(u.op == "call_function" and u.target is operator.getitem for u in n.users):
            continue
        x, sizes = n.args[0], n.args[1]
        dim = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", 0)
        length = x.meta["val"].shape[dim]
        if isinstance(sizes, int):
            sizes = [min(sizes, length - s) for s in range(0, length, sizes)]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        for u in list(n.users):
            i = u.args[1]
            with graph.inserting_before(u):
                s = graph.call_function(aten.slice.Tensor, (x, dim, starts[i], starts[i] + sizes[i]))
            s.meta = dict(u.meta)
            u.replace_all_uses_with(s)
            graph.erase_node(u)
        graph.erase_node(n)
        count += 1
    return _recompiled(gm, count)


def _recompiled(gm: torch.fx.GraphModule, count: int) -> int:
    """Check and recompile ``gm`` after ``count`` rewrites (none: untouched); returns ``count``."""
    if count:
        gm.graph.lint()
        gm.recompile()
    return count


def _value_source(n: torch.fx.Node) -> torch.fx.Node:
    """The node whose values ``n`` carries through ops that only move them."""
    while n.op == "call_function" and n.target in MOVE_OPS and isinstance(n.args[0], torch.fx.Node):
        n = n.args[0]
    return n


def symmetric_qspec(qspec):
    """``qspec`` (an affine per-tensor int8 activation spec) with zero point 0: its observer computes a
    symmetric range, so the tensor takes XNNPACK's int8 BATCH_MATMUL right-hand requirement."""
    ctr = qspec.observer_or_fake_quant_ctr  # a _PartialWrapper: the observer class and its arguments
    observer = ctr.p.func.with_args(**{**ctr.p.keywords, "qscheme": torch.per_tensor_symmetric})
    return replace(qspec, qscheme=torch.per_tensor_symmetric, observer_or_fake_quant_ctr=observer)


def annotate_attention_xnnpack(model: torch.fx.GraphModule, qspec, keep_quantized, symmetric_rhs: bool = True) -> int:
    """Annotate every matmul of two activations (query x key, attention weights x value) for XNNPACK's
    int8 BATCH_MATMUL: right-hand operand per-tensor symmetric, left-hand and output affine (``qspec``).

    An operand carried from an annotated op (the qkv projection, through slices, reshapes and
    transposes) shares that op's range; when it is a right-hand operand, that op's output becomes
    symmetric (one range for q, k and v: TFLite's SLICE keeps its input's scale); so does a graph input.
    An operand from a float op (the softmax) gets its own observer on the edge. ``symmetric_rhs=False`` leaves the right-hand
    operands affine (what XNNPACK refuses; for measurements). Returns how many matmuls."""
    from torchao.quantization.pt2e.quantizer import (  # lazy: slow import, loaded only to quantize
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )

    sym, count = (symmetric_qspec(qspec) if symmetric_rhs else qspec), 0
    for n in model.graph.nodes:
        if n.op != "call_function" or n.target not in _MATMULS or _annotation(n) is not None or not keep_quantized(n):
            continue
        operands = [a for a in n.args[:2] if isinstance(a, torch.fx.Node)]
        sources = [_value_source(a) for a in operands]
        if len(operands) != 2 or any(s.op == "get_attr" for s in sources):
            continue  # a weight: a linear layer's business
        if not any(_quantized_output(s) for s in sources):
            continue  # both operands from float ops (layers kept float): int8 here would only add conversions
        specs = {}
        for k, (a, src) in enumerate(zip(operands, sources)):
            if src.op == "placeholder" and _annotation(src) is None:  # a graph input: quantized here, once
                src.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=qspec, _annotated=True)
            if _quantized_output(src):
                if k == 1 and symmetric_rhs and _annotation(src).output_qspec is not sym:
                    _annotation(src).output_qspec = sym
                specs[a] = SharedQuantizationSpec(src)
            else:
                specs[a] = sym if k == 1 else qspec
        n.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map=specs, output_qspec=qspec, _annotated=True
        )
        count += 1
    return count


def annotate_residual_adds(model: torch.fx.GraphModule, qspec, keep_quantized) -> int:
    """Annotate ``add`` of two activations (residual connections) int8 where one of them is int8 already
    (a per-tensor range over a residual stream between float layers would round small tokens away, as
    ViT's class token); an add of something computed from parameters alone stays as litert-torch leaves
    it. Returns how many."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation  # lazy: slow import, loaded only to quantize

    count, activations = 0, set()  # the nodes computed from the graph input
    for n in model.graph.nodes:
        if n.op == "placeholder" or any(a in activations for a in n.all_input_nodes):
            activations.add(n)
        if (
            n.op != "call_function"
            or n.target != aten.add.Tensor
            or _annotation(n) is not None
            or not keep_quantized(n)
        ):
            continue
        args = n.args[:2]
        if len(args) != 2 or not all(
            isinstance(a, torch.fx.Node)
            and isinstance(a.meta.get("val"), torch.Tensor)
            and a.meta["val"].is_floating_point()
            for a in args
        ):
            continue
        if not all(a in activations for a in args):
            continue  # a learned constant (ViT's class token, position embedding) keeps its own precision
        if not any(_quantized_output(_value_source(a)) for a in args):
            continue  # joins an int8 chain only: between float layers the residual stream stays float
        if n.kwargs.get("alpha", 1) != 1:
            continue
        n.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={a: qspec for a in args}, output_qspec=qspec, _annotated=True
        )
        count += 1
    return count


def share_through_moves(model: torch.fx.GraphModule, keep_quantized) -> int:
    """Give every op that only moves values (``MOVE_OPS``) the quantization of its input's producer when
    that producer's output is int8, in graph order so chains of moves share one range; returns how many."""
    from torchao.quantization.pt2e.quantizer import (  # lazy: slow import, loaded only to quantize
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )

    count = 0
    for n in model.graph.nodes:
        if n.op != "call_function" or n.target not in MOVE_OPS or not keep_quantized(n):
            continue
        prev = n.args[0]
        if not isinstance(prev, torch.fx.Node) or not _quantized_output(prev):
            continue
        ann = _annotation(n)
        if ann is not None and ann._annotated:
            continue
        shared = SharedQuantizationSpec(prev)
        n.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={prev: shared}, output_qspec=shared, _annotated=True
        )
        count += 1
    return count
