"""int8 quantization details: default mixed precision, batched PT2E calibration, ONNX QDQ layout."""
import numpy as np
import pytest
import torch

import model
from conftest import make_image_folder
from export.api import export_model
from export.base import ExportJob
from export.quant_defaults import DEFAULT_KEEP_FLOAT, resolve_keep_float
from export_fixtures import CLASSES, train_tiny_checkpoint


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("qdata"), classes=CLASSES, per_class=8, size=(72, 72))


@pytest.fixture(scope="module")
def tiny_ckpt(data_dir, tmp_path_factory):
    return train_tiny_checkpoint(data_dir, tmp_path_factory.mktemp("qckpt") / "tiny.safetensors", steps=30)


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
    from export.pt2e import _observers

    return {k: (float(o.min_val.min()), float(o.max_val.max())) for k, o in _observers(prepared).items()
            if hasattr(o, "min_val")}


def test_batched_pt2e_calibration_matches_batch_one():
    """Min-max observers are order-free: batches of 16 plus a batch-1 remainder give the same ranges."""
    from export import pt2e
    from export.pt2e import _calibrate, quantizer_for

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


def test_pt2e_details_name_the_default_keep_float(tiny_ckpt, data_dir):
    from export.calibration import image_files, load_pixels
    from export.pt2e import pixels_to_tensor, quantize_pt2e
    from model.checkpoint import load_checkpoint
    from model.preprocess import normalize_hwc_uint8

    ck = load_checkpoint(tiny_ckpt)
    px, _ = load_pixels(image_files(data_dir), ck.meta.contract, 18)
    job = ExportJob(ck.model, ck.meta, "int8", "float-nchw", px, "histogram")
    to_input = lambda p: pixels_to_tensor(p, "NCHW", lambda x: normalize_hwc_uint8(x, ck.meta.contract))  # noqa: E731
    converted, _, details = quantize_pt2e(job, ck.model, torch.zeros(1, 3, 64, 64), to_input, "normalized-nchw")
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


def test_onnx_int8_mobilevit_quantizes_convs_outside_the_stem(tiny_ckpt, data_dir, tmp_path):
    import onnx

    res = export_model(tiny_ckpt, ("onnx",), ("int8",), tmp_path, calib=data_dir, calib_count=16, verify=False)
    details = res[0].meta["quantization_details"]
    keep = details["keep_float"]
    assert keep[:3] == ["conv_1", "layer_1", "layer_2"] and "layer_3.1.conv_proj" in keep
    assert "layer_3.1.local_rep.conv_1x1" in keep and not any("*" in k for k in keep)
    assert details["keep_float_source"] == "default for mobilevit" and details["quantized_ops"] == ["Conv"]
    g = onnx.load(str(res[0].artifact)).graph
    producers = _producers(g)
    # LayerNorm, Softmax and the linears stay float (no quantized output, no int8 weight); so do the stem's convs.
    quantized_inputs = {n.input[0] for n in g.node if n.op_type == "QuantizeLinear"}
    inits = {i.name for i in g.initializer}
    for n in g.node:
        if n.op_type in ("LayerNormalization", "Softmax", "Gemm", "MatMul"):
            assert not quantized_inputs & set(n.output), n.name
            assert not any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear"
                           and producers[i].input[0] in inits for i in n.input), n.name
    seen = set()
    for n in g.node:
        if n.op_type == "Conv":
            dq = producers.get(n.input[1])
            quantized = dq is not None and dq.op_type == "DequantizeLinear"
            weight = dq.input[0] if quantized else n.input[1]
            stem = weight.startswith(tuple(k + "." for k in keep))
            assert quantized != stem, (n.name, weight)
            seen.add(stem)
    assert seen == {True, False}


def test_onnx_int8_linear_weights_are_per_output_channel(data_dir, tmp_path):
    """Other families quantize Conv, Gemm and MatMul; a [in, out] weight gets one scale per output."""
    import onnx
    from onnx import numpy_helper

    ckpt = train_tiny_checkpoint(data_dir, tmp_path / "vit.safetensors", arch="vit_test", steps=5)
    res = export_model(ckpt, ("onnx",), ("int8",), tmp_path, calib=data_dir, calib_count=8, verify=False)
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
        checked += 1
    assert checked >= 4
