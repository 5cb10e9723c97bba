"""int8 quantization details: explicit float lists, batched PT2E calibration, ONNX QDQ layout."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from export_fixtures import export_int8, train_tiny_checkpoint

from mvit import model
from mvit.export.base import ExportJob
from mvit.quant import Int8Options, int8_plan, needs_search

STEM = ("conv_1", "layer_1", "layer_2")


def test_an_explicit_keep_float_list_wins_over_search_and_cache(tmp_path):
    net = model.create("mobilevit_test", num_classes=3)
    plan = int8_plan(
        "pt2e", net, Int8Options(keep_float=("layer_3",)), checkpoint=tmp_path / "x.safetensors", sha256="0" * 64
    )
    assert (plan.float_units, plan.source, plan.search) == (["layer_3"], "user", None)
    plan = int8_plan("onnxruntime-qdq", net, Int8Options(all_int8=True))
    assert (plan.float_units, plan.source) == ([], "user: none")
    assert not needs_search("pt2e", Int8Options(all_int8=True), None, None)
    assert needs_search("pt2e", Int8Options(), None, None)


def test_the_cli_word_none_is_the_all_int8_flag_and_nothing_else():
    """``--keep-float none`` (any case) sets ``Int8Options.all_int8``; no layer named "none" travels on,
    and "none" beside layer names is refused rather than half-honoured."""
    from mvit.export.cli import build_parser, request_from_args
    from mvit.export.request import ExportRequest
    from mvit.quant import KEEP_NOTHING_FLOAT

    def request(*keep):
        args = ["--format", "tflite", "--quantize", "int8"] + [a for k in keep for a in ("--keep-float", k)]
        return request_from_args(build_parser().parse_args(args))

    for word in ("none", "None"):
        opts = request(word).int8
        assert opts.all_int8 and opts.keep_float == () and opts.words() == (KEEP_NOTHING_FLOAT,)
        assert request(word).problems() == []
    opts = request("conv_1", "LayerNorm").int8
    assert not opts.all_int8 and opts.keep_float == ("conv_1", "LayerNorm") and not opts.searches
    assert request().int8.searches and not request().int8.all_int8
    [err] = request("none", "conv_1").problems()
    assert "--keep-float none" in err and "conv_1" in err
    # the flat keywords of export_model(...) take the same word
    flat = ExportRequest.of(formats=("onnx",), precisions=("int8",), keep_float=("none",), calib_count=8)
    assert flat.int8 == Int8Options(calib_count=8, all_int8=True)
    # an option a format refuses is still refused for the flag: TFLite fp16 keeps nothing float
    assert any(
        "cannot keep layers float" in e
        for e in ExportRequest(precisions=("fp16",), int8=Int8Options(all_int8=True)).problems()
    )


def _observer_ranges(prepared):
    from mvit.quant.pt2e import _observers

    return {
        k: (float(o.min_val.min()), float(o.max_val.max()))
        for k, o in _observers(prepared).items()
        if hasattr(o, "min_val")
    }


def test_batched_pt2e_calibration_matches_batch_one():
    """Min-max observers are order-free: batches of 16 plus a batch-1 remainder give the same ranges."""
    from mvit.quant import pt2e
    from mvit.quant.pt2e import _calibrate, quantizer_for

    torch.manual_seed(0)
    net = model.create("mobilevit_test", num_classes=3).eval()
    x = torch.rand(pt2e.BATCHED_FROM + 6, 3, 64, 64)
    with torch.no_grad():
        batched = _calibrate(net, x[:1], quantizer_for(net, "min-max"), lambda i, j: x[i:j], len(x))
        old = pt2e.CALIB_BATCH
        pt2e.CALIB_BATCH = 1
        try:
            single = _calibrate(net, x[:1], quantizer_for(net, "min-max"), lambda i, j: x[i:j], len(x))
        finally:
            pt2e.CALIB_BATCH = old
    a, b = _observer_ranges(batched), _observer_ranges(single)
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
    assert batched(x[:1]).shape == (1, 3)  # the batch-1 graph is the one returned


def test_pt2e_keeps_the_named_modules_float(small_ckpt, small_data_dir):
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.images import image_files, load_pixels
    from mvit.model.preprocess import normalize_hwc_uint8
    from mvit.quant.pt2e import Pt2eGraph, pixels_to_tensor, quantize_pt2e

    ck = load_checkpoint(small_ckpt)
    px, _ = load_pixels(image_files(small_data_dir), ck.meta.contract, 18)
    job = ExportJob(ck.model, ck.meta, "int8", "float-nchw", px, "histogram", STEM, keep_float_source="search")
    to_input = lambda p: pixels_to_tensor(p, "NCHW", lambda x: normalize_hwc_uint8(x, ck.meta.contract))  # noqa: E731
    graph = Pt2eGraph(ck.model, ck.model, torch.zeros(1, 3, 64, 64), to_input, "normalized-nchw")
    converted, _, details = quantize_pt2e(graph, job.pt2e_settings(), cache=job.cache)
    assert details["keep_float"] == list(STEM) and details["keep_float_source"] == "search"
    # the stem's conv runs in float: no quantize op feeds its weight
    graph = converted.graph
    convs = [n for n in graph.nodes if n.target == torch.ops.aten.conv2d.default]
    first = convs[0]
    assert "dequantize" not in str(first.args[1].target if hasattr(first.args[1], "target") else "")
    assert any("dequantize" in str(getattr(c.args[1], "target", "")) for c in convs[1:])
    with torch.no_grad():
        ref = ck.model(to_input(px[:1]))
        out = converted(to_input(px[:1]))
    assert torch.nn.functional.cosine_similarity(ref, out).item() > 0.95


def test_a_concatenation_reading_a_float_branch_shares_one_int8_range_with_its_other_inputs(small_ckpt, small_data_dir):
    """TFLite's int8 CONCATENATION has one scale for every input, and the converter makes one of any cat
    reading an int8 tensor: the PyTorch graph must compute the same, or the search and the parity
    check disagree (MobileViT-XS: a float residual clipped to conv_proj's range, 88% agreement)."""
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.images import image_files, load_pixels
    from mvit.model.preprocess import normalize_hwc_uint8
    from mvit.quant.pt2e import Pt2eGraph, Pt2eSettings, pixels_to_tensor, quantize_pt2e

    ck = load_checkpoint(small_ckpt)
    px, _ = load_pixels(image_files(small_data_dir), ck.meta.contract, 16)
    to_input = lambda p: pixels_to_tensor(p, "NCHW", lambda x: normalize_hwc_uint8(x, ck.meta.contract))  # noqa: E731
    residual = {}
    hook = ck.model.layer_3[0].register_forward_hook(lambda m, i, o: residual.setdefault("x", o.detach()))
    with torch.no_grad():
        ck.model(to_input(px))
    hook.remove()
    # the MobileViT block's residual input (layer_3.0, kept float) and its conv_proj output (int8) meet in a cat
    converted, _, _ = quantize_pt2e(
        Pt2eGraph(ck.model, ck.model, torch.zeros(1, 3, 64, 64), to_input, "normalized-nchw"),
        Pt2eSettings(px, "histogram", ("layer_3.0",)),
    )
    dq = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    cats = [n for n in converted.graph.nodes if n.target == torch.ops.aten.cat.default]
    assert cats
    for cat in cats:
        assert all(a.target == dq for a in cat.args[0]), cat.name
        params = {tuple(a.args[1:]) for a in cat.args[0]}
        assert len(params) == 1, (cat.name, params)
    scale, zp, qmin, qmax = next(iter({tuple(a.args[1:5]) for a in cats[0].args[0]}))
    lo, hi = (qmin - zp) * scale, (qmax - zp) * scale
    x = residual["x"]
    # calibrated on the float residual too: its range is inside the shared one (histogram: nearly all)
    assert lo <= x.min().item() + 0.1 * (hi - lo) and x.max().item() - 0.1 * (hi - lo) <= hi


def _producers(g):
    return {o: n for n in g.node for o in n.output}


@pytest.fixture(scope="module")
def onnx_int8_stem_float(small_ckpt, small_data_dir, tmp_path_factory):
    """The tiny MobileViT as ONNX int8 with the stem float."""
    return export_int8(
        small_ckpt, "onnx", tmp_path_factory.mktemp("onnx"), small_data_dir, 16, verify=False, keep_float=STEM
    )


def test_onnx_int8_quantizes_every_conv_and_linear_outside_the_float_layers(onnx_int8_stem_float):
    import onnx
    from onnx import numpy_helper

    res = onnx_int8_stem_float
    details = res[0].meta["quantization_details"]
    assert details["keep_float"] == list(STEM) and details["keep_float_source"] == "user"
    assert details["quantized_ops"] == ["Conv", "Gemm", "MatMul"] and "7-bit" in details["weights"]
    assert details["int8_plan"]["source"] == "user" and details["int8_plan"]["float_units"] == list(STEM)
    g = onnx.load(str(res[0].artifact)).graph
    producers = _producers(g)
    inits = {i.name: i for i in g.initializer}
    kinds = {}
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        dq = producers.get(n.input[1])
        if dq is not None and dq.op_type == "DequantizeLinear":
            kind, weight = "qdq", dq.input[0]
            # 7-bit weights (REDUCE_RANGE): per-channel scales use [-64, 63]
            assert np.abs(numpy_helper.to_array(inits[weight]).astype(np.int16)).max() <= 64, n.name
        else:
            assert n.input[1] in inits, n.name
            kind, weight = "float", n.input[1]
        kept = weight.startswith(tuple(k + "." for k in STEM))
        assert (kind == "float") == kept, (n.name, weight, kind)
        kinds[kind, n.op_type] = kinds.get((kind, n.op_type), 0) + 1
    assert {("qdq", "Conv"), ("float", "Conv"), ("qdq", "Gemm")} <= set(kinds), kinds


def test_onnx_compress_float_weights_per_output_channel():
    """Gemm (both transB), MatMul and Conv weights get a scale per output channel; float_weights and
    initializers that another op also reads stay float; outputs stay within int8 rounding."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from mvit.quant.onnx_qdq import compress_float_weights

    rng = np.random.default_rng(0)
    spread = lambda n: np.linspace(0.01, 3, n, dtype=np.float32)  # very different channel ranges
    weights = {
        "a.w": rng.normal(size=(16, 24)) * spread(24)[None, :],  # Gemm B [K, N]: axis 1
        "b.w": rng.normal(size=(12, 24)) * spread(12)[:, None],  # Gemm transB [N, K]: axis 0
        "keep.w": rng.normal(size=(12, 12)),  # under a float module
        "shared.w": rng.normal(size=(12, 12)),  # also read by an Add
        "conv.w": rng.normal(size=(6, 3, 3, 3)) * spread(6)[:, None, None, None],
    }
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "a.w"], ["h1"]),
            helper.make_node("Gemm", ["h1", "b.w"], ["h2"], transB=1),
            helper.make_node("MatMul", ["h2", "keep.w"], ["y"]),
            helper.make_node("MatMul", ["h2", "shared.w"], ["h3"]),
            helper.make_node("Add", ["shared.w", "shared.w"], ["z"]),
            helper.make_node("Conv", ["img", "conv.w"], ["conv"], pads=[1, 1, 1, 1]),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16]),
            helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 8, 8]),
        ],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
            for n, shape in (("y", [2, 12]), ("h3", [2, 12]), ("z", [12, 12]), ("conv", [1, 6, 8, 8]))
        ],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ref = model.SerializeToString()
    packed = compress_float_weights(model, ("keep",), min_size=16)
    onnx.checker.check_model(model)
    assert sorted(packed) == ["a.w", "b.w", "conv.w"]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits["a.w_int8"].dtype == np.int8 and inits["a.w_scale"].shape == (1, 24)
    assert inits["b.w_scale"].shape == (12, 1) and inits["conv.w_scale"].shape == (6, 1, 1, 1)
    assert {"keep.w", "shared.w"} <= set(inits) and "a.w" not in inits
    for name in packed:  # per-channel scales: every channel uses the full int8 range
        q = inits[name + "_int8"].astype(np.int32)
        axis = int(np.argmax(inits[name + "_scale"].shape))
        assert (np.abs(q).max(axis=tuple(a for a in range(q.ndim) if a != axis)) == 127).all(), name
    feeds = {"x": rng.normal(size=(2, 16)).astype(np.float32), "img": rng.normal(size=(1, 3, 8, 8)).astype(np.float32)}
    run = lambda m: ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    for got, want in zip(run(model.SerializeToString()), run(ref)):
        assert np.abs(got - want).max() < 0.02 * np.abs(want).max()


def test_onnx_simplifier_falls_back_to_the_next_tool_then_to_the_exported_graph(monkeypatch, caplog):
    from onnx import TensorProto, helper, numpy_helper

    from mvit.export.backends import onnx_backend

    # Identity + a constant-foldable Add: both simplifiers shrink this graph to one node
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["c1", "c2"], ["c"]),
            helper.make_node("Identity", ["x"], ["xi"]),
            helper.make_node("Add", ["xi", "c"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [
            numpy_helper.from_array(np.ones((1, 4), np.float32), "c1"),
            numpy_helper.from_array(np.ones((1, 4), np.float32), "c2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    out, tool = onnx_backend.simplify(model)
    assert tool == onnx_backend.SIMPLIFIERS[0] and len(out.graph.node) < 3 and len(model.graph.node) == 3

    def broken(m):
        raise RuntimeError("simplifier crashed")

    monkeypatch.setitem(onnx_backend.SIMPLIFIER_FUNCS, "onnxsim", broken)
    out, tool = onnx_backend.simplify(model)
    assert tool == "onnxslim" and len(out.graph.node) < 3
    assert "onnxsim failed (RuntimeError: simplifier crashed)" in caplog.text
    monkeypatch.setitem(onnx_backend.SIMPLIFIER_FUNCS, "onnxslim", broken)
    out, tool = onnx_backend.simplify(model)
    assert tool is None and out.SerializeToString() == model.SerializeToString()


def test_onnx_int8_linear_weights_are_per_output_channel(small_data_dir, tmp_path):
    """Conv, Gemm and MatMul are quantized; a [in, out] weight gets one scale per output."""
    import onnx
    from onnx import numpy_helper

    ckpt = train_tiny_checkpoint(small_data_dir, tmp_path / "vit.safetensors", arch="vit_test", steps=5)
    res = export_int8(ckpt, "onnx", tmp_path, small_data_dir, 8, verify=False, keep_float=("none",))
    assert res[0].meta["quantization_details"]["keep_float"] == []
    g = onnx.load(str(res[0].artifact)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producers = _producers(g)
    checked = 0
    for n in g.node:
        if n.op_type not in ("MatMul", "Gemm"):
            continue
        dq = producers.get(n.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        w, scale = inits[dq.input[0]], inits[dq.input[1]]
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        out_axis = 0 if next((a.i for a in n.attribute if a.name == "transB"), 0) else 1
        assert w.dtype == np.int8 and axis == out_axis and scale.shape == (w.shape[out_axis],), n.name
        # families without a measured layout use 7-bit weights (no u8s8 saturation on AVX2 without VNNI)
        assert np.abs(w.astype(np.int16)).max() <= 64, n.name
        checked += 1
    assert checked >= 4
    assert "7-bit" in res[0].meta["quantization_details"]["weights"]


def test_a_search_result_replaces_the_same_route_and_gate_under_an_older_rule(tmp_path):
    from mvit.quant.plan import search_cache_key
    from mvit.quant.search import SearchResult, cache_path, load_cached, store

    ckpt, sha = tmp_path / "m.safetensors", "a" * 64
    old = search_cache_key("pt2e", 0.995).rsplit("|", 1)[0]  # the key before the latest rule change
    kept = search_cache_key("pt2e", 0.99)  # another gate: still valid, stays
    onnx = search_cache_key("onnxruntime-qdq", 0.995)  # another route: stays
    for key, units in ((old, ["a"]), (kept, ["b"]), (onnx, ["c"])):
        store(ckpt, sha, key, SearchResult(units, 1.0, 0.995, True, 4), {})
    new = search_cache_key("pt2e", 0.995)
    assert new != old and load_cached(ckpt, sha, new) is None  # the older rule's result is not read
    store(ckpt, sha, new, SearchResult(["d"], 1.0, 0.995, True, 4), {})
    entries = json.loads(cache_path(ckpt).read_text())["entries"]
    assert sorted(entries) == sorted([new, kept, onnx])
    assert load_cached(ckpt, sha, new).float_units == ["d"] and load_cached(ckpt, sha, kept).float_units == ["b"]
    assert load_cached(tmp_path / "m.safetensors", "b" * 64, new) is None  # another checkpoint's weights


def test_vit_class_token_keeps_its_precision_under_int8():
    """ViT prepends its class token as an added constant, not by concatenation: an int8 cat would give it
    the patch tokens' range (ViT-Tiny: steps of 0.15 for a token within +-0.15, 89% agreement even with
    every layer float). The sequence is [cls; patches] + pos_embed bit for bit, and the PT2E graph has no cat."""
    import torch.nn.functional as F

    from mvit.quant.pt2e import Pt2eGraph, Pt2eSettings, quantize_pt2e

    torch.manual_seed(0)
    net = model.create("vit_test", num_classes=3).eval()
    with torch.no_grad():
        net.cls_token.normal_(std=0.05)
        net.patch_embed.proj.weight.mul_(40)  # patch tokens far larger than the class token, as in ViT-Tiny
    x = torch.rand(8, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        t = net.patch_embed(x)
        cat = torch.cat((net.cls_token.expand(len(x), -1, -1), t), dim=1) + net.pos_embed
        ref = net(x)
        assert torch.equal(net.head(net.norm(net.blocks(cat))[:, 0]), ref)
    weighted = tuple(n for n, m in net.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    converted, _, _ = quantize_pt2e(
        Pt2eGraph(net, net, x[:1], lambda px: torch.from_numpy(px), "raw"),
        Pt2eSettings(x.numpy(), "histogram", weighted),
    )
    assert not [n for n in converted.graph.nodes if n.target == torch.ops.aten.cat.default]
    with torch.no_grad():
        out = torch.cat([converted(x[i : i + 1]) for i in range(len(x))])
    # every layer float: only the input image is quantized, so the logits stay close to float
    assert F.cosine_similarity(out, ref).min() > 0.999


def test_the_graph_input_is_quantized_exactly_whatever_the_calibration_images_span():
    """An image input in [0, 1] gets scale 1/255 and zero point -128 in every PT2E artifact and in the
    search's simulation: pixels darker or brighter than any calibration image are not clipped, and
    with every layer float the int8 model computes the float model (ViT-Tiny: a calibrated input
    range alone flipped 4 of 410 search samples)."""
    from mvit.model.contract import PreprocessContract
    from mvit.model.preprocess import normalize_hwc_uint8
    from mvit.quant.plan import search_simulation
    from mvit.quant.pt2e import Pt2eGraph, Pt2eSettings, model_input_range, pixels_to_tensor, quantize_pt2e

    torch.manual_seed(0)
    net = model.create("mobilevit_test", num_classes=3).eval()
    contract = PreprocessContract(input_size=(64, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    everything = tuple(n for n, _ in net.named_children())
    rng = np.random.default_rng(0)
    calib = rng.integers(40, 200, (8, 64, 64, 3), dtype=np.uint8)  # no dark or bright pixels
    test = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    to_input = lambda p: pixels_to_tensor(p, "NCHW", lambda x: normalize_hwc_uint8(x, contract))  # noqa: E731
    converted, _, details = quantize_pt2e(
        Pt2eGraph(net, net, torch.zeros(1, 3, 64, 64), to_input, "normalized-nchw"),
        Pt2eSettings(calib, "histogram", tuple(everything)),
    )
    assert details["input_range"] == [0.0, 1.0] and model_input_range(contract) == (0.0, 1.0)
    q = next(n for n in converted.graph.nodes if n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default)
    assert q.args[0].op == "placeholder" and q.args[1:3] == (pytest.approx(1 / 255), -128)
    x = to_input(test)
    sim = search_simulation(net, to_input(calib), model_input_range(contract))
    sim.set_float(everything)
    with torch.no_grad():
        ref = net(x)
        out = torch.cat([converted(x[i : i + 1]) for i in range(len(x))])
        simulated = sim.run(x, 8)
    assert (out - ref).abs().max().item() < 1e-5 and (simulated - ref).abs().max().item() < 1e-5


def test_a_calibration_moves_to_another_process_as_observer_states():
    """A parallel export calibrates once and hands the observer states to the format workers: seeded
    with them, a fresh cache converts the same int8 model without any calibration image; a graph whose
    observers differ (another model under the same key) is calibrated as usual, and says so."""
    import pickle
    from dataclasses import replace

    from mvit.export.base import ExportCache
    from mvit.quant import QuantError
    from mvit.quant.cache import CalibrationKey, CalibrationState
    from mvit.quant.pt2e import (
        Pt2eGraph,
        Pt2eSettings,
        calibration_states,
        pixels_to_tensor,
        quantize_pt2e,
        seed_calibrations,
    )

    torch.manual_seed(0)
    net = model.create("mobilevit_test", num_classes=3).eval()
    px = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    to_input = lambda p: pixels_to_tensor(p, "NCHW", lambda x: x.transpose(0, 3, 1, 2) / np.float32(255))  # noqa: E731
    graph = Pt2eGraph(net, net, torch.zeros(1, 3, 64, 64), to_input, "unit-nchw")
    settings = Pt2eSettings(px, "histogram", ("LayerNorm",))
    seeded_only = replace(settings, calib_pixels=None)
    here = ExportCache()
    converted, _, details = quantize_pt2e(graph, settings, cache=here)
    sent = calibration_states(here)
    states = pickle.loads(pickle.dumps(sent))  # what crosses to a worker process
    assert list(states) == list(sent) == [CalibrationKey("unit-nchw", "histogram", ("LayerNorm",))]
    assert all(isinstance(k, CalibrationKey) and isinstance(v, CalibrationState) for k, v in states.items())
    there = ExportCache()
    seed_calibrations(there, states)
    assert not there.calibrations  # nothing calibrated yet: rebuilt from the states on first use
    restored, _, restored_details = quantize_pt2e(graph, seeded_only, cache=there)
    x = to_input(px)
    with torch.no_grad():
        assert torch.equal(restored(x[:1]), converted(x[:1]))
    assert restored_details == details and details["input_range"] == [0.0, 1.0]

    other = model.create("vit_test", num_classes=3).eval()
    elsewhere = ExportCache()
    seed_calibrations(elsewhere, states)
    with pytest.raises(QuantError, match="needs calibration images"):
        quantize_pt2e(graph._replace(model=other, wrapped=other), seeded_only, cache=elsewhere)
    _, _, own = quantize_pt2e(graph._replace(model=other, wrapped=other), settings, cache=elsewhere)
    assert own["shared_calibration"].startswith("not used") and own["input_range"] == [0.0, 1.0]


class _TinyTransformerBlock(torch.nn.Module):
    """MobileViT's global path in small: conv, unfold, one pre-norm transformer layer (LayerNorm, attention,
    residual adds, SiLU FFN), fold, conv, pool."""

    def __init__(self):
        super().__init__()
        from mvit.model.mobilevit import TransformerEncoder

        self.conv = torch.nn.Conv2d(3, 8, 1)
        self.block = TransformerEncoder(8, 16, 2)
        self.proj = torch.nn.Conv2d(8, 4, 1)
        with torch.no_grad():  # q, k, v off centre: an affine range of them has a non-zero zero point
            self.block.pre_norm_mha[1].qkv_proj.bias += 1.0

    def forward(self, x):
        from mvit.model.mobilevit import fold_patches, unfold_patches

        t = self.block(unfold_patches(self.conv(x), 2, 2))
        return self.proj(fold_patches(t, x.shape[0], 8, 8, 2, 2)).mean((2, 3))


@pytest.fixture(scope="module")
def tiny_block_tflite(tmp_path_factory):
    """The tiny block, its calibration images and two int8 .tflite files of it: mvit's graph
    (``quantizer_for`` defaults) and litert-torch's with the attention int8 on affine operands
    (``int8_chain=False, quantize_attention="affine-rhs"``), the contrast both tests must tell apart."""
    from tflite_int8_speed import int8_tflite

    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    net, x = _TinyTransformerBlock().eval(), torch.randn(16, 3, 8, 8)
    tmp = tmp_path_factory.mktemp("tiny_block")
    int8_tflite(net, x, tmp / "mvit.tflite")
    int8_tflite(net, x, tmp / "plain.tflite", quantize_attention="affine-rhs", int8_chain=False)
    return net, x, tmp / "mvit.tflite", tmp / "plain.tflite"


def _ops(path):
    """(op name, input tensor details) of every op of a .tflite file, in the interpreter's node order."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(path))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    return [
        (d["op_name"], [tensors[int(i)] for i in d["inputs"] if int(i) >= 0])
        for d in it._get_ops_details()
        if d["op_name"] != "DELEGATE"
    ]


def _tflite_cosine(net, x, path) -> float:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(path), num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for img in x[:4].numpy():
        s, z = i["quantization"]
        it.set_tensor(i["index"], np.clip(np.round(img[None] / s + z), -128, 127).astype(np.int8))
        it.invoke()
        os_, oz = o["quantization"]
        outs.append((it.get_tensor(o["index"]).astype(np.float32) - oz) * os_)
    with torch.no_grad():
        ref = net(x[:4]).numpy().ravel()
    out = np.concatenate(outs).ravel()
    return float(out @ ref / (np.linalg.norm(out) * np.linalg.norm(ref)))


def test_attention_matmuls_are_int8_with_zero_point_0_right_hand_operands_and_run_in_xnnpack(tiny_block_tflite):
    """XNNPACK's delegate takes an int8 BATCH_MATMUL only when its right-hand input is per-tensor with
    zero point 0 (LiteRT xnnpack_delegate.cc, VisitBatchMatMulNode); the same graph with affine
    right-hand operands must stay outside the delegate, which shows the census tells the two apart."""
    from mvit.export.backends.tflite_backend import op_census

    net, x, path, affine = tiny_block_tflite
    matmuls = [inputs for name, inputs in _ops(path) if name == "BATCH_MATMUL"]
    assert len(matmuls) == 2  # query x key, weights x value
    for lhs, rhs in matmuls:
        assert lhs["dtype"] == rhs["dtype"] == np.int8
        assert list(rhs["quantization_parameters"]["zero_points"]) == [0], rhs["name"]
        assert len(rhs["quantization_parameters"]["scales"]) == 1  # per-tensor, as the left-hand input
    row = {(r["op"], r["dtype"]): r for r in op_census(path)["ops"]}[("BATCH_MATMUL", "int8")]
    assert row["count"] == row["delegated"] == 2
    assert _tflite_cosine(net, x, path) > 0.95

    assert any(
        inputs[1]["quantization_parameters"]["zero_points"][0] != 0
        for name, inputs in _ops(affine)
        if name == "BATCH_MATMUL"
    )
    row = {(r["op"], r["dtype"]): r for r in op_census(affine)["ops"]}[("BATCH_MATMUL", "int8")]
    assert row["count"] == 2 and row["delegated"] == 0


def test_the_int8_chain_runs_through_reshapes_and_residual_adds(tiny_block_tflite):
    """Conversions only where a float op sits: one DEQUANTIZE/QUANTIZE pair around each LayerNorm and
    around the softmax; the unfold/fold reshapes, the attention's head reshapes and both residual adds
    int8. litert-torch's annotations (``int8_chain=False``) dequantize more, which this test catches."""
    from mvit.benchmarks.census import int8_headline
    from mvit.export.backends.tflite_backend import conversions_around_moves, op_census

    net, x, path, plain = tiny_block_tflite
    head = int8_headline(op_census(path))
    float_islands = 2 + 1  # two LayerNorms, one softmax
    assert head["dequantize"] == head["quantize"] == float_islands, head
    adds = [inputs for name, inputs in _ops(path) if name == "ADD" and all(t["dtype"] == np.int8 for t in inputs)]
    assert len(adds) == 2  # x + attention(LN(x)), x + FFN(LN(x))
    assert conversions_around_moves(path) == []
    assert head["mac_int8"] == head["mac_ops"] and head["float_logistic"] == 0
    assert _tflite_cosine(net, x, path) > 0.95

    assert int8_headline(op_census(plain))["dequantize"] > float_islands


def test_mvit_bench_file_reports_the_int8_headline(tiny_block_tflite, tmp_path):
    """``mvit-bench FILE`` puts the int8 figures (multiply-accumulates in int8, BATCH_MATMULs int8 and in
    XNNPACK, float LOGISTIC, DEQUANTIZE) in bench.json's census and in bench.md, and they differ between the
    two tiny files as their graphs do."""
    from mvit.benchmarks.cli import main as bench_main

    _, _, path, plain = tiny_block_tflite
    out = tmp_path / "out"
    assert bench_main([str(path), str(plain), "--out", str(out), "--no-plot", "--runs", "3", "--min-time", "0.05"]) == 0
    rows = {Path(r["file"]).name: r for r in json.loads((out / "bench.json").read_text())["models"][0]["rows"]}
    mine, theirs = rows["mvit.tflite"]["census"]["int8"], rows["plain.tflite"]["census"]["int8"]
    assert (mine["batch_matmul_int8"], mine["batch_matmul_int8_delegated"]) == (2, 2)
    assert (theirs["batch_matmul_int8"], theirs["batch_matmul_int8_delegated"]) == (2, 0)
    assert mine["dequantize"] < theirs["dequantize"]
    md = (out / "bench.md").read_text()
    assert "**int8:** int8 multiply-accumulate ops 8/8 (100%); BATCH_MATMUL int8 2/2, 2 of them in XNNPACK" in md


def test_onnx_min_max_calibration_in_slices_gives_the_same_ranges(tmp_path):
    """Strided calibration (memory bounded by the slice) merges to the ranges of one pass over all images."""
    import json
    from types import SimpleNamespace

    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from mvit.quant.onnx_qdq import _Reader, calib_stride

    assert [calib_stride(n) for n in (256, 24, 100, 13, 1)] == [32, 24, 25, 13, 1]
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w"], ["c"]),
            helper.make_node("Sigmoid", ["c"], ["s"]),
            helper.make_node("Mul", ["c", "s"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    x = (rng.normal(size=(8, 3, 8, 8)) * np.arange(1, 9)[:, None, None, None]).astype(np.float32)  # growing ranges
    job = SimpleNamespace(input_mode="float-nchw", calib_inputs=lambda: x)
    ranges = {}
    for stride in (None, 2):
        extra = {"CalibMovingAverage": False} | ({"CalibStridedMinMax": stride} if stride else {})
        quantize_static(
            str(tmp_path / "m.onnx"),
            str(tmp_path / "q.onnx"),
            _Reader(job, "image"),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "Sigmoid", "Mul"],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=extra,
            calibration_cache_path=tmp_path / f"r{stride}.json",
        )
        ranges[stride] = json.loads((tmp_path / f"r{stride}.json").read_text())["data"]
    assert ranges[None] == ranges[2] and set(ranges[2]) >= {"c", "s", "y"}


def test_search_samples_are_unseen_like_views_of_calibration_folder_images():
    from mvit.quant.plan import UNSEEN_LIKE_VIEWS, search_samples

    px = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    plain = search_samples(px)  # --search-data images: as they are, then mirrored
    assert np.array_equal(plain[:4], px) and np.array_equal(plain[4:], px[:, :, ::-1])
    views = search_samples(px, unseen_like=True)
    assert views.shape == (UNSEEN_LIKE_VIEWS * 4, 16, 16, 3) and views.dtype == np.uint8
    assert np.array_equal(views, search_samples(px, unseen_like=True))  # the same samples for the same images
    assert not any(np.array_equal(v, p) for v in views for p in px)
