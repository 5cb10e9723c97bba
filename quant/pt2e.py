"""Post-training int8 quantisation in PyTorch (PT2E), shared by the TFLite and Core ML backends.

One calibrated model serves every PT2E format of an export run (one ``mvit.quant.cache.QuantCache``;
across worker processes as observer states, ``calibration_states``), so W8A8 TFLite, Core ML and ExecuTorch artifacts
carry the same quantisation parameters.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..model.export_prep import fold_layernorm_affine_
from ..model.preprocess import normalize_hwc_uint8
from . import QuantError, int8_graph
from .cache import Calibration, CalibrationKey, CalibrationState, QuantCache
from .sim import module_paths, under

CALIB_METHODS = ("min-max", "histogram")


def split_silu(gm: torch.fx.GraphModule, where) -> int:
    """Rewrite ``aten.silu(x)`` as ``x * sigmoid(x)`` for the nodes ``where(node)`` accepts; returns how many.

    TFLite has no SiLU kernel: litert-torch lowers it to LOGISTIC + MUL, and a quantized conv or linear
    followed by an unannotated SiLU runs both in float between a DEQUANTIZE and a QUANTIZE. Split, the
    sigmoid takes TFLite's fixed int8 output parameters (scale 1/256, zero point -128; litert-torch's
    ``fixed_qparams`` annotator) and the product is annotated like any activation, so the whole
    activation runs in int8 (XNNPACK: a lookup table and an int8 multiply), as it would fused into the
    conv on a phone's int8 path (measured in benchmarks/results/tflite_int8_speed.md).
    """
    aten = torch.ops.aten
    graph, count = gm.graph, 0
    for n in list(graph.nodes):
        if n.op != "call_function" or n.target not in (aten.silu.default, aten.silu_.default) or not where(n):
            continue
        with graph.inserting_after(n):
            sig = graph.call_function(aten.sigmoid.default, (n.args[0],))
        with graph.inserting_after(sig):
            mul = graph.call_function(aten.mul.Tensor, (n.args[0], sig))
        sig.meta, mul.meta = dict(n.meta), dict(n.meta)
        n.replace_all_uses_with(mul)
        graph.erase_node(n)
        count += 1
    if count:
        graph.lint()
        gm.recompile()
    return count


def _annotate_silu_products(model: torch.fx.GraphModule, qspec, keep_quantized) -> None:
    """Annotate ``x * sigmoid(x)`` (from ``split_silu``) where the sigmoid is quantized."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation  # lazy: slow import, loaded only to quantize

    for n in model.graph.nodes:
        if n.op != "call_function" or n.target != torch.ops.aten.mul.Tensor or len(n.args) != 2:
            continue
        x, sig = n.args
        if (
            not isinstance(sig, torch.fx.Node)
            or sig.target != torch.ops.aten.sigmoid.default
            or sig.args[0] is not x
            or "quantization_annotation" in n.meta
            or not keep_quantized(n)
        ):
            continue
        if sig.meta.get("quantization_annotation") is None:
            continue
        n.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={x: qspec, sig: qspec}, output_qspec=qspec, _annotated=True
        )


def _annotate_concatenations(model: torch.fx.GraphModule, qspec, keep_quantized) -> None:
    """Give every ``aten.cat`` that reads or writes int8 one quantization shared by its inputs and output.

    TFLite's int8 CONCATENATION has a single scale for all its inputs and its output, and litert-torch's
    converter makes one out of any cat that reads a dequantized tensor, quantizing its other inputs
    with that scale, whatever their range. litert-torch's own cat annotator never fires on
    ``torch.export`` graphs (it matches ``source_fn_stack``, which they lack), so the PyTorch graph ran
    a float cat the .tflite file did not: MobileViT-XS with its residual branch float and ``conv_proj``
    int8 clipped the residual to ``conv_proj``'s SiLU range in TFLite and failed its parity check
    while the PT2E simulation agreed with float (benchmarks/results/int8_search.md). Annotated here, one observer sees every input, and the
    simulation, the search and every PT2E artifact compute the concatenation the runtime computes.
    A cat inside a ``--keep-float`` module is annotated too when one of its inputs comes from outside
    (int8 there): the runtime would run it in int8 anyway, and a shared range is the one that does not clip.
    """
    from torchao.quantization.pt2e.quantizer import (  # lazy: slow import, loaded only to quantize
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )

    for n in model.graph.nodes:
        if n.op != "call_function" or n.target != torch.ops.aten.cat.default or "quantization_annotation" in n.meta:
            continue
        inputs = [a for a in n.args[0] if isinstance(a, torch.fx.Node)]
        # A cat inside a float module still becomes int8 in TFLite when an input arrives in int8.
        if not inputs or not (keep_quantized(n) or any(keep_quantized(a) for a in inputs)):
            continue
        shared = SharedQuantizationSpec((inputs[0], n))
        n.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={a: (qspec if k == 0 else shared) for k, a in enumerate(inputs)},
            output_qspec=shared,
            _annotated=True,
        )


def graph_input_range(to_input) -> tuple[float, float] | None:
    """The value range of the graph input ``to_input`` makes from uint8 NHWC pixels: its values at
    pixels 0 and 255 (the contract's mapping is affine per channel); None for a non-float input."""
    px = np.zeros((2, 2, 2, 3), np.uint8)
    px[1] = 255
    x = to_input(px)
    if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
        return None
    lo, hi = float(x.min()), float(x.max())
    return (lo, hi) if hi > lo else None


def model_input_range(contract) -> tuple[float, float]:
    """The value range of the model's own input (normalized NCHW) under a preprocessing contract."""
    return graph_input_range(lambda px: torch.from_numpy(normalize_hwc_uint8(px, contract)))


def input_qspec(input_range: tuple[float, float]):
    """The int8 quantization of a graph input spanning ``input_range``: fixed, 256 steps from its
    minimum to its maximum. An image in [0, 1] (or 0..255) gets scale 1/255 (or 1) and zero point
    -128, so every pixel value is exact; a calibrated observer clipped white and missed the pixel grid
    (histogram on ViT-Tiny's [0, 1] input: (0, 0.9956), scale 0.0039043, which alone flipped 4 of 410
    search samples with every layer float)."""
    from torchao.quantization.pt2e.quantizer import (  # lazy: slow import, loaded only to quantize
        FixedQParamsQuantizationSpec,
    )

    lo, hi = input_range
    scale = (hi - lo) / 255.0
    zero_point = int(min(127, max(-128, round(-128 - lo / scale))))
    return FixedQParamsQuantizationSpec(
        dtype=torch.int8,
        scale=scale,
        zero_point=zero_point,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
    )


def _annotate_graph_inputs(model: torch.fx.GraphModule, qspec, edges: bool) -> None:
    """Quantize every float graph input with ``qspec``: on each annotated op reading it (``edges``;
    a concatenation keeps its one shared range), or on the input itself when nothing annotated reads it
    (a float stem: int8 artifacts keep their int8 input)."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation  # lazy: slow import, loaded only to quantize

    for n in model.graph.nodes:
        val = n.meta.get("val")
        if n.op != "placeholder" or not (isinstance(val, torch.Tensor) and val.is_floating_point()):
            continue
        readers = [u for u in n.users if n in getattr(u.meta.get("quantization_annotation"), "input_qspec_map", {})]
        for u in readers if edges else ():
            if u.target != torch.ops.aten.cat.default:
                u.meta["quantization_annotation"].input_qspec_map[n] = qspec
        if not readers and "quantization_annotation" not in n.meta:
            n.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=qspec, _annotated=True)


def _keep_float_quantizer(
    keep_names: tuple[str, ...],
    quantize_silu: bool = True,
    input_range: tuple[float, float] | None = None,
    quantize_attention: bool | str = True,
    int8_chain: bool = True,
):
    """litert-torch's PT2EQuantizer, leaving every op under the named modules unannotated (float),
    with SiLU quantized too (``split_silu``) and the graph input quantized exactly over
    ``input_range`` (``input_qspec``; None: calibrated like any activation).

    Its own ``set_module_name(name, None)`` asserts, and its module-name filter rebuilds names from
    dynamo-style ``nn_module_stack`` keys (``L__self___a_b`` -> ``a.b``), which never matches names
    with underscores (``conv_1``) or torch.export's keys: it would silently quantize everything.
    """
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer  # lazy: slow import, loaded only to quantize

    def outside_kept(n) -> bool:
        return not any(under(p, k) for p in module_paths(n) for k in keep_names)

    class KeepFloatPT2EQuantizer(PT2EQuantizer):
        def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
            def keep_quantized(n) -> bool:
                if filter_fn is not None and not filter_fn(n):
                    return False
                return outside_kept(n)

            return super()._annotate_all_static_patterns(model, quantization_config, keep_quantized)

        def transform_for_annotation(self, model):
            model = super().transform_for_annotation(model)
            if quantize_silu:
                split_silu(model, outside_kept)  # float regions keep aten.silu (one op for Core ML)
            if quantize_attention or int8_chain:
                int8_graph.split_to_slices(model, outside_kept)
            return model

        def annotate(self, model):
            model = super().annotate(model)
            if self.global_config is not None:
                _annotate_silu_products(model, self.global_config.output_activation, outside_kept)
                _annotate_concatenations(model, self.global_config.input_activation, outside_kept)
                act = self.global_config.input_activation
                if quantize_attention:
                    int8_graph.annotate_attention_xnnpack(
                        model, act, outside_kept, symmetric_rhs=quantize_attention != "affine-rhs"
                    )
                if int8_chain:
                    int8_graph.annotate_residual_adds(model, act, outside_kept)
            if input_range is not None:
                _annotate_graph_inputs(model, input_qspec(input_range), edges=True)
            elif self.global_config is not None:
                _annotate_graph_inputs(model, self.global_config.input_activation, edges=False)
            if int8_chain:
                int8_graph.share_through_moves(model, outside_kept)
            return model

    return KeepFloatPT2EQuantizer()


# The graph quantization-aware training learns its ranges in, and so the graph a QAT checkpoint's learned
# ranges are exported in: litert-torch's annotations. The XNNPACK graph (mvit.quant.int8_graph) shares and
# symmetrises ranges that QAT does not train yet, so its learned ranges would not map onto them.
QAT_GRAPH = {"quantize_attention": False, "int8_chain": False}


def quantizer_for(
    model: nn.Module,
    method: str,
    keep_float: tuple[str, ...] = (),
    quantize_silu: bool = True,
    input_range: tuple[float, float] | None = None,
    quantize_attention: bool | str = True,
    int8_chain: bool = True,
):
    """litert-torch's PT2E quantizer: int8 per-channel symmetric weights, int8 affine activations.

    ``keep_float``: module names (every op inside stays float) or module type names (e.g. LayerNorm).
    ``quantize_silu=False`` leaves SiLU in float as litert-torch does (for comparisons; see split_silu).
    ``input_range``: the graph input's value range (``graph_input_range``), quantized exactly.
    ``quantize_attention``: the attention matmuls int8 with symmetric right-hand operands, as XNNPACK
    delegates them (``mvit.quant.int8_graph.annotate_attention_xnnpack``; softmax stays float);
    ``"affine-rhs"``: the same with affine right-hand operands, which XNNPACK refuses (for measurements).
    ``int8_chain``: residual adds int8 and ranges shared through ops that only move values
    (``mvit.quant.int8_graph``), so DEQUANTIZE/QUANTIZE sit only around float ops.
    ``False`` for either: the graph of litert-torch's annotators (for comparisons).
    """
    from litert_torch.quantize.pt2e_quantizer import (  # lazy: slow import, loaded only to quantize
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True)
    if method == "min-max":
        from torchao.quantization.pt2e.observer import MinMaxObserver  # lazy: slow import, loaded only to quantize

        act = replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        config = replace(config, input_activation=act, output_activation=act)
    elif method != "histogram":
        raise QuantError(f"calibration method {method!r} is not available for PT2E; use {' or '.join(CALIB_METHODS)}")
    names = dict(model.named_modules())
    types = {type(m).__name__: type(m) for m in model.modules()}
    keep_names = []
    for item in keep_float:
        if item not in names and item not in types:
            raise QuantError(
                f"--keep-float {item!r}: no module or module type of that name in the model "
                f"(e.g. {next(iter(n for n in names if n), '')!r} or 'LayerNorm')"
            )
        if item in names:
            keep_names.append(item)
    quantizer = _keep_float_quantizer(
        tuple(keep_names), quantize_silu, input_range, quantize_attention, int8_chain
    ).set_global(config)
    for item in keep_float:
        if item not in names:
            quantizer.set_module_type(types[item], None)
    return quantizer


CALIB_BATCH = 16  # calibration batch: one observer pass per 16 images instead of per image
# Below this many images the batched graph's own export and prepare (~3 s for mobilevit_xxs) cost more
# than they save (32 images: ~6.7 s at batch 1, ~5.3 s at batch 16; one thread, 2026-12-02).
BATCHED_FROM = 64


def _observers(module: nn.Module) -> dict[str, nn.Module]:
    from torchao.quantization.pt2e.observer import ObserverBase  # lazy: slow import, loaded only to quantize

    return {n: m for n, m in module.named_modules() if isinstance(m, ObserverBase)}


def prepare(wrapped: nn.Module, sample: torch.Tensor, quantizer) -> torch.fx.GraphModule:
    """``wrapped`` (a copy, LayerNorm affine folded) exported at ``sample``'s shape with observers inserted.

    Dropout is off and BatchNorm on running statistics in the exported graph (see quantize_pt2e); the
    LayerNorms' affine parameters are folded into the linears they feed, so int8 sees normalized
    activations (model/export_prep.py; its effect on agreement: benchmarks/results/int8_search.md).
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e  # lazy: slow import, loaded only to quantize

    wrapped = fold_layernorm_affine_(copy.deepcopy(wrapped).eval(), sample)
    return prepare_pt2e(torch.export.export(wrapped, (sample,)).module(), quantizer)


def copy_observers(src: nn.Module, dst: nn.Module) -> bool:
    """Load ``src``'s observer states into ``dst`` (the same graph at another batch size); False when
    the two graphs' observers differ."""
    a, b = _observers(src), _observers(dst)
    if a.keys() != b.keys() or any(type(a[k]) is not type(b[k]) for k in a):
        return False
    for k, obs in a.items():
        b[k].load_state_dict(obs.state_dict())
    return True


def _calibrate(wrapped: nn.Module, sample: torch.Tensor, quantizer, inputs, n: int) -> nn.Module:
    """A batch-1 prepared graph of ``wrapped`` (see ``prepare``) calibrated on ``n`` images
    (``inputs(i, j)``: images i..j-1 as a tensor).

    Observers cost per call as well as per value (HistogramObserver: a histc and a rebin per tensor),
    so from BATCHED_FROM images on, full batches of CALIB_BATCH go through a copy of the graph exported
    at that batch size; its observer states are copied into the batch-1 graph (same graph, same observer names),
    which then sees the remaining images. If the model does not export at a larger batch, or the
    graphs differ, every image goes through the batch-1 graph as before.
    """
    prepared = prepare(wrapped, sample, quantizer)
    bs, start = min(CALIB_BATCH, n), 0
    if bs > 1 and n >= max(bs, BATCHED_FROM):
        try:
            batched = prepare(wrapped, sample.expand(bs, *sample.shape[1:]).contiguous(), quantizer)
        except Exception:  # noqa: BLE001 - data-dependent shapes etc.: fall back to batch 1
            batched = None
        if batched is not None and _observers(batched).keys() == _observers(prepared).keys():
            start = n - n % bs
            for i in range(0, start, bs):
                batched(inputs(i, i + bs))
            copy_observers(batched, prepared)
    for i in range(start, n):
        prepared(inputs(i, i + 1))
    return prepared


class Pt2eGraph(NamedTuple):
    """What a backend's PT2E int8 calibrates: ``wrapped`` (``model``, possibly inside an input wrapper) at
    ``sample``'s shape; ``to_input(pixels_uint8_nhwc) -> tensor`` maps calibration pixels to its input;
    ``graph_input`` names that input's kind (e.g. "normalized-nchw"), part of the calibration's cache key."""

    model: nn.Module
    wrapped: nn.Module
    sample: torch.Tensor
    to_input: Callable
    graph_input: str


@dataclass(frozen=True)
class Pt2eSettings:
    """How a PT2E graph is calibrated: on ``calib_pixels`` (N,H,W,3 uint8, resized and cropped; None when
    the cache holds the calibration or its observer states) with the ``method`` observers
    (``CALIB_METHODS``), the ``keep_float`` modules or module types left float (an export's
    ``mvit.quant.plan.Plan``), ``keep_float_source`` saying where that list came from. ``ranges``: a QAT
    checkpoint's learned activation ranges (``mvit.quant.qat.LearnedRanges``), which replace the
    calibrated ones they cover; without a keep-float list its own is used."""

    calib_pixels: np.ndarray | None
    method: str
    keep_float: tuple[str, ...] = ()
    keep_float_source: str = "user"
    ranges: Any = None


def calibration_key(graph_input: str, method: str, keep_float: tuple[str, ...], ranges=None) -> CalibrationKey:
    """The cache key of one PT2E calibration (``calibrate_pt2e``)."""
    return CalibrationKey(graph_input, method, tuple(keep_float), None if ranges is None else id(ranges))


def calibrate_pt2e(graph: Pt2eGraph, settings: Pt2eSettings, cache: QuantCache) -> CalibrationKey:
    """Export and calibrate ``graph`` into ``cache`` unless it holds that calibration already (or its
    observer states from ``seed_calibrations``); returns its key in ``cache.calibrations``."""
    model, wrapped, sample, to_input, graph_input = graph
    calib_pixels, method, keep_float, keep_float_source, ranges = (
        settings.calib_pixels,
        settings.method,
        tuple(settings.keep_float),
        settings.keep_float_source,
        settings.ranges,
    )
    if ranges is not None and not keep_float:
        keep_float, keep_float_source = tuple(ranges.keep_float), "quantization-aware training"
    key = calibration_key(graph_input, method, keep_float, ranges)
    if key in cache.calibrations:
        return key
    px, seeded = calib_pixels, cache.seeded.get(key)
    # the input range depends on the graph alone; None only for float calibration images (tests)
    domain = graph_input_range(to_input) if px is None or px.dtype == np.uint8 else None
    quantizer = quantizer_for(
        model, method, keep_float, input_range=domain, **(QAT_GRAPH if ranges is not None else {})
    )
    prepared = _restore(seeded, wrapped, sample, quantizer)
    if prepared is not None:
        details = dict(seeded.details)
    else:
        if px is None or len(px) == 0:
            raise QuantError("int8 export needs calibration images")
        t0 = time.perf_counter()
        with torch.no_grad():
            prepared = _calibrate(wrapped, sample, quantizer, lambda i, j: to_input(px[i:j]), len(px))
        details = {
            "method": "pt2e",
            "observer": method,
            "weights": "int8 per-channel symmetric",
            "activations": "int8 per-tensor affine",
            "calibration_images": int(len(px)),
            "keep_float": list(keep_float),
            "keep_float_source": keep_float_source,
            "input_range": None if domain is None else [round(v, 6) for v in domain],
            "calibration_seconds": round(time.perf_counter() - t0, 1),
        }
        if seeded is not None:
            details["shared_calibration"] = "not used: this process's graph has other observers"
    if ranges is not None:
        inner = next(name for name, m in wrapped.named_modules() if m is model)
        details |= ranges.apply(prepared, inner + "." if inner else "")
    cache.calibrations[key] = Calibration(prepared, quantizer, details)
    return key


def calibration_states(cache: QuantCache) -> dict[CalibrationKey, CalibrationState]:
    """The observers (signature and states) and details of every PT2E calibration in ``cache`` (learned
    QAT ranges excepted), picklable: a parent process calibrates once and hands them to workers
    (``seed_calibrations``), which rebuild the graph (export + prepare: seconds) instead of calibrating."""
    out = {}
    for key, c in cache.calibrations.items():
        if key.shareable:
            states = {name: o.state_dict() for name, o in _observers(c.prepared).items()}
            out[key] = CalibrationState(_observer_signature(c.prepared), states, c.details)
    return out


def seed_calibrations(cache: QuantCache, states: dict[CalibrationKey, CalibrationState]) -> None:
    """Put ``calibration_states`` of another process into ``cache``; ``calibrate_pt2e`` restores a
    calibration from them when its rebuilt graph has the same observers on the same tensors, and
    calibrates otherwise (saying so in the details)."""
    cache.seeded.update(states)


def _observer_signature(prepared: nn.Module) -> dict[str, tuple[str, str | None]]:
    """Observer name -> (its type name, the graph node it observes)."""
    observed = {
        n.target: n.args[0].name
        for n in prepared.graph.nodes
        if n.op == "call_module" and n.args and isinstance(n.args[0], torch.fx.Node)
    }
    return {name: (type(o).__name__, observed.get(name)) for name, o in _observers(prepared).items()}


def _restore(seeded: CalibrationState | None, wrapped: nn.Module, sample: torch.Tensor, quantizer) -> nn.Module | None:
    """The prepared graph with ``seeded`` observer states loaded, or None when there are none or the
    graph's observers (names, types, observed nodes) differ from theirs."""
    if seeded is None:
        return None
    prepared = prepare(wrapped, sample, quantizer)
    if _observer_signature(prepared) != seeded.signature:
        return None
    observers = _observers(prepared)
    for name, state in seeded.states.items():
        observers[name].load_state_dict(state)
    return prepared


def quantize_pt2e(
    graph: Pt2eGraph, settings: Pt2eSettings, *, cache: QuantCache | None = None, fold_quantize: bool = False
) -> tuple[nn.Module, object, dict]:
    """Export, calibrate (``calibrate_pt2e``) and convert ``graph.wrapped`` (``graph.model``, possibly
    inside an input wrapper); returns (converted module, quantizer, details).

    Calibration is cached in ``cache`` per graph input kind (``graph.graph_input``: e.g.
    "normalized-nchw"), method and keep-float list, so TFLite (``fold_quantize=False``) and Core ML
    (``True``: int8 weight constants) share one calibration.
    """
    from torchao.quantization.pt2e import allow_exported_model_train_eval  # lazy: slow import, loaded only to quantize
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e  # lazy: slow import, loaded only to quantize

    cache = QuantCache() if cache is None else cache
    key = calibrate_pt2e(Pt2eGraph(*graph), settings, cache)
    calibration = cache.calibrations[key]
    with torch.no_grad():
        converted = convert_pt2e(copy.deepcopy(calibration.prepared), fold_quantize=fold_quantize)
    # The graph was exported from an eval-mode model (dropout already train=False, BatchNorm on running
    # statistics), so torchao's move_exported_model_to_eval (a pattern rewrite costing ~5 s) changes nothing.
    converted = allow_exported_model_train_eval(converted)
    return converted, calibration.quantizer, dict(calibration.details)


def pixels_to_tensor(pixels: np.ndarray, layout: str, normalize_fn=None) -> torch.Tensor:
    """uint8 NHWC pixels -> the float tensor a wrapped model takes."""
    if normalize_fn is not None:
        x = normalize_fn(pixels)  # NCHW float32
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 3, 1) if layout == "NHWC" else x))
    x = pixels.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x if layout == "NHWC" else x.transpose(0, 3, 1, 2)))
