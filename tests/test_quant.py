"""int8 quantization details: default mixed precision, batched PT2E calibration, ONNX QDQ layout."""
import numpy as np
import pytest
import torch

from mvit import model
from mvit.export.api import export_model
from mvit.export.base import ExportJob
from mvit.quant.defaults import DEFAULT_KEEP_FLOAT, resolve_keep_float
from export_fixtures import train_tiny_checkpoint


def test_default_keep_float_for_mobilevit_is_overridable():
    net = model.create("mobilevit_test", num_classes=3)
    keep, source = resolve_keep_float(net, (), "pt2e")
    assert keep == DEFAULT_KEEP_FLOAT["mobilevit"]["pt2e"] and source == "default for mobilevit"
    assert all(k in dict(net.named_modules()) for k in keep)
    onnx_keep, _ = resolve_keep_float(net, (), "onnx")
    assert "layer_3.1.conv_proj" in onnx_keep and all(k in dict(net.named_modules()) for k in onnx_keep)
    assert resolve_keep_float(net, ("layer_3",), "pt2e") == (("layer_3",), "user")
    assert resolve_keep_float(net, ("none",), "onnx") == ((), "user: none")
    other = model.create("mobilenet_v2_test", num_classes=3)
    assert resolve_keep_float(other, (), "onnx") == ((), "default: none")


def _observer_ranges(prepared):
    from mvit.quant.pt2e import _observers

    return {k: (float(o.min_val.min()), float(o.max_val.max())) for k, o in _observers(prepared).items()
            if hasattr(o, "min_val")}


def test_batched_pt2e_calibration_matches_batch_one():
    """Min-max observers are order-free: batches of 16 plus a batch-1 remainder give the same ranges."""
    from mvit.quant import pt2e
    from mvit.quant.pt2e import _calibrate, quantizer_for

    torch.manual_seed(0)
    net = model.create("mobilevit_test", num_classes=3).eval()
    x = torch.rand(20, 3, 64, 64)
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


def test_pt2e_details_name_the_default_keep_float(small_ckpt, small_data_dir):
    from mvit.model.images import image_files, load_pixels
    from mvit.quant.pt2e import pixels_to_tensor, quantize_pt2e
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.preprocess import normalize_hwc_uint8

    ck = load_checkpoint(small_ckpt)
    px, _ = load_pixels(image_files(small_data_dir), ck.meta.contract, 18)
    job = ExportJob(ck.model, ck.meta, "int8", "float-nchw", px, "histogram")
    to_input = lambda p: pixels_to_tensor(p, "NCHW", lambda x: normalize_hwc_uint8(x, ck.meta.contract))  # noqa: E731
    converted, _, details = quantize_pt2e(ck.model, ck.model, torch.zeros(1, 3, 64, 64), to_input, "normalized-nchw",
                                          **job.quant_args())
    assert details["keep_float"] == list(DEFAULT_KEEP_FLOAT["mobilevit"]["pt2e"])
    assert details["keep_float_source"] == "default for mobilevit"
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


def _producers(g):
    return {o: n for n in g.node for o in n.output}


def _decoded_weight(producers, name, inits):
    """The int8 initializer behind a weight decoded by Mul(Cast(int8), scale), or None."""
    mul = producers.get(name)
    if mul is None or mul.op_type != "Mul":
        return None
    cast = producers.get(mul.input[0])
    if cast is None or cast.op_type != "Cast" or cast.input[0] not in inits:
        return None
    return inits[cast.input[0]]


@pytest.fixture(scope="module")
def onnx_int8_fp32(small_ckpt, small_data_dir, tmp_path_factory):
    """The tiny MobileViT as ONNX int8 and fp32 (one export run: the fp32 graph is shared)."""
    return export_model(checkpoint=small_ckpt, formats=("onnx",), precisions=("int8", "fp32"), out=tmp_path_factory.mktemp("onnx"), calib=small_data_dir,
                        calib_count=16, verify=False)


def test_onnx_int8_mobilevit_quantizes_convs_outside_the_stem(onnx_int8_fp32):
    import onnx
    from onnx import numpy_helper

    res = onnx_int8_fp32
    details = res[0].meta["quantization_details"]
    keep = details["keep_float"]
    assert keep[:3] == ["conv_1", "layer_1", "layer_2"] and "layer_3.1.conv_proj" in keep and "layer_3.0" in keep
    assert "layer_3.1.local_rep.conv_1x1" in keep and not any("*" in k for k in keep)
    assert details["keep_float_source"] == "default for mobilevit" and details["quantized_ops"] == ["Conv"]
    assert details["float_weights"] == ["conv_1", "layer_1", "layer_2"] and details["weight_only_int8"] > 0
    g = onnx.load(str(res[0].artifact)).graph
    producers = _producers(g)
    inits = {i.name: i for i in g.initializer}
    # LayerNorm, Softmax and the linears run float (no quantized output, no QDQ weight) but their
    # weights are stored int8 and decoded by Cast + Mul.
    quantized_inputs = {n.input[0] for n in g.node if n.op_type == "QuantizeLinear"}
    linears = 0
    for n in g.node:
        if n.op_type in ("LayerNormalization", "Softmax", "Gemm", "MatMul"):
            assert not quantized_inputs & set(n.output), n.name
            assert not any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear"
                           and producers[i].input[0] in inits for i in n.input), n.name
        if n.op_type in ("Gemm", "MatMul") and _decoded_weight(producers, n.input[1], inits) is not None:
            linears += 1
            assert _decoded_weight(producers, n.input[1], inits).data_type == onnx.TensorProto.INT8
    assert linears >= 4
    kinds = set()
    for n in g.node:
        if n.op_type != "Conv":
            continue
        dq = producers.get(n.input[1])
        if dq is not None and dq.op_type == "DequantizeLinear":
            kind, weight = "qdq", dq.input[0]
            # MobileViT's measured layout keeps 8-bit weights (reduce_range off): channels reach +-127
            assert np.abs(numpy_helper.to_array(inits[weight]).astype(np.int16)).max() == 127, n.name
        elif n.input[1] in inits:
            kind, weight = "float", n.input[1]
        else:
            packed = _decoded_weight(producers, n.input[1], inits)
            assert packed is not None and packed.data_type == onnx.TensorProto.INT8, n.name
            kind, weight = "weight-only", n.input[1]
        kept = weight.startswith(tuple(k + "." for k in keep))
        stem = weight.startswith(("conv_1.", "layer_1.", "layer_2."))
        assert (kind == "qdq") != kept and (kind == "float") == stem, (n.name, weight, kind)
        kinds.add(kind)
    assert kinds == {"qdq", "float", "weight-only"}


def test_onnx_int8_weight_only_layers_run_as_float_after_session_load(onnx_int8_fp32, tmp_path):
    """onnxruntime folds the Cast + Mul weight decoding at load: no decoding op is left to run, and the
    kept-float layers get the same kernels as in the fp32 model."""
    import onnx
    import onnxruntime as ort

    int8, fp32 = onnx_int8_fp32[0].artifact, onnx_int8_fp32[1].artifact

    def optimized(path):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(tmp_path / (path.parent.name + ".opt.onnx"))
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return onnx.load(opts.optimized_model_filepath).graph

    g = optimized(int8)
    assert not [n.name for n in g.node if n.op_type == "Cast" or n.name.endswith("_Mul")]
    count = lambda graph, op: sum(n.op_type == op for n in graph.node)
    f = optimized(fp32)
    assert count(g, "Gemm") + count(g, "FusedGemm") == count(f, "Gemm") + count(f, "FusedGemm") > 0
    assert count(g, "MatMulNBits") == 0
    # the tiny model's graph is a large share of its file; the shipped model's int8 file is 0.29x fp32
    assert int8.stat().st_size < 0.7 * fp32.stat().st_size


def test_onnx_compress_float_weights_per_output_channel():
    """Gemm (both transB), MatMul and Conv weights get a scale per output channel; float_weights and
    initializers that another op also reads stay float; outputs stay within int8 rounding."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from mvit.export.backends.onnx_backend import compress_float_weights

    rng = np.random.default_rng(0)
    spread = lambda n: np.linspace(0.01, 3, n, dtype=np.float32)  # very different channel ranges
    weights = {"a.w": rng.normal(size=(16, 24)) * spread(24)[None, :],           # Gemm B [K, N]: axis 1
               "b.w": rng.normal(size=(12, 24)) * spread(12)[:, None],           # Gemm transB [N, K]: axis 0
               "keep.w": rng.normal(size=(12, 12)),                              # under a float module
               "shared.w": rng.normal(size=(12, 12)),                            # also read by an Add
               "conv.w": rng.normal(size=(6, 3, 3, 3)) * spread(6)[:, None, None, None]}
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "a.w"], ["h1"]),
         helper.make_node("Gemm", ["h1", "b.w"], ["h2"], transB=1),
         helper.make_node("MatMul", ["h2", "keep.w"], ["y"]),
         helper.make_node("MatMul", ["h2", "shared.w"], ["h3"]),
         helper.make_node("Add", ["shared.w", "shared.w"], ["z"]),
         helper.make_node("Conv", ["img", "conv.w"], ["conv"], pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
         for n, shape in (("y", [2, 12]), ("h3", [2, 12]), ("z", [12, 12]), ("conv", [1, 6, 8, 8]))],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
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
        [helper.make_node("Add", ["c1", "c2"], ["c"]), helper.make_node("Identity", ["x"], ["xi"]),
         helper.make_node("Add", ["xi", "c"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.ones((1, 4), np.float32), "c1"),
         numpy_helper.from_array(np.ones((1, 4), np.float32), "c2")])
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
    """Other families quantize Conv, Gemm and MatMul; a [in, out] weight gets one scale per output."""
    import onnx
    from onnx import numpy_helper

    ckpt = train_tiny_checkpoint(small_data_dir, tmp_path / "vit.safetensors", arch="vit_test", steps=5)
    res = export_model(checkpoint=ckpt, formats=("onnx",), precisions=("int8",), out=tmp_path, calib=small_data_dir, calib_count=8, verify=False)
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
