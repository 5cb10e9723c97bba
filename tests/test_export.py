"""mvit-export: every format x precision on a tiny trained model, metadata, parity, bad input."""

import json

import numpy as np
import pytest
from conftest import make_image_folder, tflite_op_input_types
from export_fixtures import CLASSES, export_int8, seed_int8_plan, train_tiny_checkpoint

from mvit.export import parity
from mvit.export.api import export_model, load_artifact_runner
from mvit.export.backends import FORMATS, get_backend
from mvit.export.base import PRECISIONS
from mvit.export.cli import main as export_main
from mvit.export.cli_predict import main as predict_main
from mvit.quant.calibration import synthesize_zeroq

STEM = ("conv_1", "layer_1", "layer_2")
# The int8 exports' float set: the stem and the block before the first MobileViT block, whose output
# (the MobileViT block's residual) meets the int8 conv_proj output in a concatenation.
FLOAT_SET = STEM + ("layer_3.0",)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), classes=CLASSES, per_class=14, size=(80, 72))


@pytest.fixture(scope="session")
def tiny_ckpt(data_dir, tmp_path_factory):
    return train_tiny_checkpoint(data_dir, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


# The formats with every precision, exported together; ExecuTorch (fp32 and int8 only, an optional extra,
# minutes of lowering) has its own module, tests/test_executorch.py.
ALL_PRECISION_FORMATS = tuple(f for f in FORMATS if get_backend(f).PRECISIONS == PRECISIONS)


@pytest.fixture(scope="session")
def pt2e_cache():
    """The matrix export's calibrated PT2E models (``export_model(cache=...)``)."""
    from mvit.export.base import ExportCache

    return ExportCache()


@pytest.fixture(scope="session")
def matrix(tiny_ckpt, data_dir, tmp_path_factory, pt2e_cache):
    """Those formats x all precisions in one run (conversions share calibration and fp32 graphs)."""
    out = tmp_path_factory.mktemp("artifacts")
    seed_int8_plan(tiny_ckpt, FLOAT_SET)  # a cached search result: int8 keeps these float, no search here
    results = export_model(
        checkpoint=tiny_ckpt,
        formats=ALL_PRECISION_FORMATS,
        precisions=PRECISIONS,
        out=out,
        calib=data_dir,
        calib_count=24,
        cache=pt2e_cache,
    )
    return {(r.format, r.precision): r for r in results}, out


@pytest.mark.parametrize("fmt", ALL_PRECISION_FORMATS)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_format_and_precision_exports_and_passes_parity(matrix, fmt, precision):
    results, out = matrix
    r = results[(fmt, precision)]
    assert r.folder == out / f"mobilevit_test-{precision}-{fmt}" and r.artifact.exists()
    assert r.parity is not None and r.parity.passed, r.parity.failures
    assert r.parity.n == 42 - 24 and r.parity.float_accuracy is not None  # the spare --calib images, labelled
    side = json.loads((r.folder / "model_meta.json").read_text())
    assert side == get_backend(fmt).read_metadata(r.artifact)  # embedded == beside
    assert (r.folder / "labels.txt").read_text().split() == list(CLASSES)
    assert side["precision"] == precision and side["format"] == fmt and len(side["source_checkpoint_sha256"]) == 64
    assert side["parity"]["passed"] is True
    # The runner, built from the artifact alone, reproduces the export-time numbers.
    runner = load_artifact_runner(r.folder)
    px = np.zeros((1, 64, 64, 3), np.uint8) + 100
    assert runner.run(px).shape == (1, 3)


def test_int8_artifacts_are_quantized_and_small(matrix):
    results, _ = matrix
    tfl = results[("tflite", "int8")].meta
    assert tfl["input"]["dtype"] == "int8" and tfl["input"]["quantization"]["scale"] > 0
    assert tfl["output"]["dtype"] == "int8"
    # Tiny models are dominated by graph overhead, so sizes are checked on TFLite and on ONNX weights.
    assert results[("tflite", "int8")].size_bytes < results[("tflite", "fp32")].size_bytes
    assert results[("tflite", "fp16")].size_bytes < 0.95 * results[("tflite", "fp32")].size_bytes
    import onnx

    g = onnx.load(str(results[("onnx", "int8")].artifact)).graph
    int8_weights = [t for t in g.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) >= 10  # every conv weight stored as int8
    info = get_backend("coreml").inspect_spec(results[("coreml", "int8")].artifact)
    assert info["quant_ops"].get("quantize", 0) > 0 and info["quant_ops"].get("dequantize", 0) > 0
    assert info["max_rank"] <= 5 and info["labels"] == list(CLASSES)
    dyn = get_backend("coreml").inspect_spec(results[("coreml", "dynamic")].artifact)
    assert any(k.startswith("constexpr") for k in dyn["quant_ops"])


def test_tflite_tensor_names_are_module_paths(matrix):
    from ai_edge_litert.interpreter import Interpreter

    from mvit.export.backends.tflite_backend import short_tensor_name

    long = (
        "model.mobilevit.MobileViT/torch.nn.modules.container.Sequential_layer_3/model.layers.InvertedResidual_0/"
        "torch.nn.modules.container.Sequential_block/model.layers.ConvLayer_red_1x1/"
        "torch.nn.modules.container.Sequential_block/torch.nn.modules.conv.Conv2d_conv;1"
    )
    assert short_tensor_name(long) == "layer_3.0.block.red_1x1.block.conv;1"
    assert short_tensor_name("serving_default_args_0:0") == "serving_default_args_0:0"
    results, _ = matrix
    for precision in ("fp32", "int8"):
        it = Interpreter(str(results[("tflite", precision)].artifact))
        names = [d["name"] for d in it.get_tensor_details()]
        assert not any("torch.nn.modules" in n for n in names), precision
        assert any(n.startswith("layer_") for n in names)
        assert it.get_signature_list()["serving_default"]["inputs"]  # signature survives the rewrite


def test_tflite_int8_runs_silu_in_int8_outside_the_float_stem(matrix, tiny_ckpt):
    """SiLU (LOGISTIC + MUL in TFLite) is int8 wherever its conv or linear is; only the layers the int8
    plan keeps float (FLOAT_SET) have float LOGISTIC ops."""
    from torch import nn

    from mvit.model.checkpoint import load_checkpoint

    net = load_checkpoint(tiny_ckpt).model
    results, _ = matrix
    details = results[("tflite", "int8")].meta["quantization_details"]
    assert details["keep_float"] == list(FLOAT_SET) and details["int8_plan"]["source"] == "cache"
    silu = [name for name, m in net.named_modules() if isinstance(m, nn.SiLU)]
    in_stem = [n for n in silu if any(n.startswith(k + ".") for k in FLOAT_SET)]
    ops = tflite_op_input_types(results[("tflite", "int8")].artifact)
    logistic = [t for op, t in ops if op == "LOGISTIC"]
    assert len(logistic) == len(silu)
    assert logistic.count("FLOAT32") == len(in_stem) and logistic.count("INT8") == len(silu) - len(in_stem) > 0


def test_tflite_int8_computes_what_its_pt2e_model_computes(matrix, pt2e_cache, tiny_ckpt, data_dir):
    """The .tflite file runs the PT2E model it was converted from (the one the int8 search simulates),
    also where a concatenation reads a float layer (layer_3.0) and an int8 one (conv_proj): litert-torch
    turns such a cat into an int8 CONCATENATION with one scale, which the PT2E model must share."""
    import torch

    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.images import image_files, load_pixels
    from mvit.model.preprocess import normalize_hwc_uint8
    from mvit.quant.pt2e import Pt2eGraph, Pt2eSettings, pixels_to_tensor, quantize_pt2e

    results, _ = matrix
    r = results[("tflite", "int8")]
    [key] = [k for k in pt2e_cache.calibrations if k.graph_input == "normalized-nchw"]
    c = load_checkpoint(tiny_ckpt).meta.contract
    to_input = lambda p: pixels_to_tensor(p, "NCHW", lambda x: normalize_hwc_uint8(x, c))  # noqa: E731
    net = load_checkpoint(tiny_ckpt).model
    graph = Pt2eGraph(net, net, torch.zeros(1, 3, *c.input_size), to_input, key.graph_input)
    converted, _, details = quantize_pt2e(graph, Pt2eSettings(None, key.method, key.keep_float), cache=pt2e_cache)
    assert details["keep_float"] == list(FLOAT_SET)
    px, _ = load_pixels(image_files(data_dir), c, 42)
    px = px[24:]  # the parity images
    with torch.no_grad():
        ref = np.concatenate([converted(to_input(px[i : i + 1])).numpy() for i in range(len(px))])
    out = load_artifact_runner(r.folder).run(px)
    assert np.array_equal(out.argmax(1), ref.argmax(1))
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    # each int8 CONCATENATION of the file has the one range its cat has in the PT2E model
    from ai_edge_litert.interpreter import Interpreter

    dq = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    pt2e_cats = [
        {float(a.args[1]) if a.target == dq else None for a in n.args[0]}
        for n in converted.graph.nodes
        if n.target == torch.ops.aten.cat.default
    ]
    it = Interpreter(str(r.artifact))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    concats = [o for o in it._get_ops_details() if o["op_name"] == "CONCATENATION"]
    assert concats and len(concats) == len(pt2e_cats)
    for op in concats:
        [scale] = {float(tensors[i]["quantization"][0]) for i in op["inputs"]}
        assert any(len(c) == 1 and None not in c and abs(next(iter(c)) - scale) <= 1e-6 * scale for c in pt2e_cats), (
            scale,
            pt2e_cats,
        )


def test_tflite_int8_float_stem_pads_in_float(matrix):
    """The stride-2 first conv of the float stem gets its PAD after the input's DEQUANTIZE, where
    XNNPACK folds it into the conv (export/tflite_passes.dequantize_before_pad)."""
    results, _ = matrix
    r = results[("tflite", "int8")]
    ops = tflite_op_input_types(r.artifact)
    pads = [i for i, (op, _) in enumerate(ops) if op == "PAD"]
    assert ops[pads[0]] == ("PAD", "FLOAT32") and ops[pads[0] - 1] == ("DEQUANTIZE", "INT8")
    assert not any(ops[i][1] == "INT8" and ops[i + 1][0] == "DEQUANTIZE" for i in pads)
    assert r.meta["quantization_details"]["dequantize_before_pad"] >= 1


def test_split_silu_is_numerically_silu():
    import torch

    from mvit import model
    from mvit.quant.pt2e import split_silu

    torch.manual_seed(0)
    net = model.create("mobilevit_test", num_classes=3).eval()
    x = torch.rand(2, 3, 64, 64)
    gm = torch.export.export(net, (x,)).module()
    n_silu = sum(isinstance(m, torch.nn.SiLU) for m in net.modules())
    assert split_silu(gm, lambda n: True) == n_silu
    assert not any(n.target == torch.ops.aten.silu.default for n in gm.graph.nodes)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), net(x), rtol=1e-5, atol=1e-5)


def test_parallel_export_matches_serial(matrix, tiny_ckpt, data_dir, tmp_path):
    """--jobs 2: formats in worker processes, TFLite and Core ML int8 from one calibration made in the
    parent (its observer states sent to the workers); same artifacts, parity and order as one after
    another."""
    serial, _ = matrix
    formats = ("tflite", "coreml", "onnx")
    results = export_model(
        checkpoint=tiny_ckpt,
        formats=formats,
        precisions=("int8",),
        out=tmp_path,
        calib=data_dir,
        calib_count=24,
        jobs=2,
    )
    assert [(r.format, r.precision) for r in results] == [(f, "int8") for f in formats]
    px = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    for r in results:
        assert r.parity.passed and r.parity.n == 42 - 24
        np.testing.assert_allclose(
            load_artifact_runner(r.folder).run(px),
            load_artifact_runner(serial[(r.format, "int8")].folder).run(px),
            atol=1e-6,
        )
    # Same inputs, same bytes: every file of each artifact folder (the log holds the timings) as the
    # serial run wrote it, though this run calibrated once more, in other processes.
    for r in results:
        folder = serial[(r.format, "int8")].folder
        files = sorted(p.relative_to(r.folder) for p in r.folder.rglob("*") if p.is_file() and p.name != "export.log")
        assert files == sorted(
            p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.name != "export.log"
        )
        for f in files:
            assert (r.folder / f).read_bytes() == (folder / f).read_bytes(), f"{r.format}: {f} differs between runs"
    assert "calibration_seconds" not in json.dumps(results[0].meta)


def test_uint8_pixel_input_puts_normalisation_in_the_model(tiny_ckpt, data_dir, tmp_path):
    res = export_model(
        checkpoint=tiny_ckpt,
        formats=("onnx",),
        precisions=("fp32",),
        out=tmp_path,
        verify_data=data_dir,
        input_mode="uint8-nhwc",
    )
    meta = res[0].meta
    assert meta["input"]["normalization_in_model"] and meta["input"]["layout"] == "NHWC"
    assert meta["input"]["dtype"] == "uint8" and res[0].parity.passed and res[0].parity.cosine > 0.99999


def test_keep_float_keeps_named_ops_out_of_int8(tiny_ckpt, data_dir, tmp_path):
    import onnx

    res = export_int8(tiny_ckpt, "onnx", tmp_path, data_dir, 20, keep_float=("MatMul",), verify=False)
    g = onnx.load(str(res[0].artifact)).graph
    producers = {o: n for n in g.node for o in n.output}
    matmuls = [n for n in g.node if n.op_type == "MatMul"]
    assert matmuls and all(
        producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for n in matmuls for i in n.input
    )
    with pytest.raises(Exception, match="no ONNX node, op type or module"):
        export_int8(tiny_ckpt, "onnx", tmp_path, data_dir, 20, keep_float=("NoSuchLayer",), verify=False, force=True)


def test_parity_failure_exits_nonzero_and_keeps_marked_file(tiny_ckpt, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(parity.THRESHOLDS, "fp32", {"cosine": 1.5})
    rc = export_main(
        ["--weights", str(tiny_ckpt), "--format", "onnx", "--out", str(tmp_path), "--verify-data", str(data_dir)]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "failed the parity check (onnx fp32: cosine" in err
    meta = json.loads((tmp_path / "mobilevit_test-fp32-onnx" / "model_meta.json").read_text())
    assert meta["status"] == "failed-parity" and meta["parity"]["passed"] is False


def test_predict_from_artifact_and_checkpoint_agree(matrix, tiny_ckpt, data_dir, capsys):
    results, _ = matrix
    img = sorted((data_dir / "green").iterdir())[0]
    assert predict_main([str(img), "--model", str(results[("tflite", "fp32")].folder), "--top", "2"]) == 0
    assert predict_main([str(img), "--model", str(tiny_ckpt), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split(": ")[1].split()[0] == lines[1].split(": ")[1].split()[0] == "green"


def test_zeroq_matches_batchnorm_statistics(tiny_ckpt):
    from mvit.model.checkpoint import load_checkpoint

    ck = load_checkpoint(tiny_ckpt)
    losses = []
    px = synthesize_zeroq(ck.model, ck.meta.contract, n=4, iters=25, progress=lambda s, t, loss: losses.append(loss))
    assert px.shape == (4, 64, 64, 3) and px.dtype == np.uint8
    assert losses[-1] < 0.7 * losses[0]


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err)
    errors = [line for line in err if "error" in line]
    assert len(errors) == 1 and errors[0] == err[-1] and err[-1].startswith("mvit-export: error: ")
    return err[-1]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--format", "coreml", "--input", "uint8-nhwc"], "coreml does not take --input uint8-nhwc"),
        (["--format", "tflite", "--input", "image"], "tflite does not take --input image"),
        (
            ["--format", "onnx", "--quantize", "int8", "--calib-method", "histogram"],
            "onnx int8 has no --calib-method histogram",
        ),
        (["--format", "onnx", "--calib-method", "min-max"], "--calib-method applies to int8 only"),
        (
            ["--format", "tflite", "--quantize", "dynamic", "--keep-float", "conv_1"],
            "tflite dynamic cannot keep layers float",
        ),
        (
            ["--format", "coreml", "--quantize", "fp16", "--keep-float", "conv_1"],
            "coreml fp16 cannot keep layers float",
        ),
        (["--format", "onnx", "--threads", "0"], "--threads must be an integer >= 1"),
        (["--format", "onnx", "--jobs", "-2"], "--jobs must be an integer >= 1"),
        (["--format", "onnx", "--quantize", "int8", "--app", "android"], "the android app runs tflite models only"),
        (["--format", "all", "--app", "ios"], "cannot install onnx/tflite"),
        (
            ["--format", "tflite", "--quantize", "int8", "dynamic", "--app", "android"],
            "would both go to the android app's int8 slot",
        ),
        (["--format", "tflite", "--quantize", "bf16"], "invalid choice: 'bf16'"),
        (["--format", "onnx", "--quantize", "int8", "--calib", "{tmp}/missing"], "missing: no such folder"),
        (["--format", "onnx", "--quantize", "int8", "--calib", "{tmp}/empty"], "no image files"),
        (["--format", "onnx", "--quantize", "int8", "--calib", "{tmp}/junk"], "none of the image files could be read"),
        (["--format", "onnx", "--calib-count", "0", "--quantize", "int8"], "--calib-count must be an integer >= 1"),
        (
            ["--format", "onnx", "--quantize", "int8", "--min-agreement", "0"],
            "--min-agreement must be a number in (0, 1], got 0.0",
        ),
        (
            ["--format", "onnx", "--quantize", "int8", "--min-agreement", "1.01"],
            "--min-agreement must be a number in (0, 1], got 1.01",
        ),
        (
            ["--format", "onnx", "--quantize", "int8", "--min-agreement", "nan"],
            "--min-agreement must be a number in (0, 1], got nan",
        ),
        (
            ["--format", "onnx", "--quantize", "int8", "--min-agreement", "most"],
            "argument --min-agreement: invalid float value: 'most'",
        ),
        (
            ["--format", "onnx", "--quantize", "int8", "--search-data", "{tmp}/empty", "--verify-data", "{tmp}/empty/"],
            "--search-data and --verify-data share images",
        ),
        (["--format", "onnx", "--search-data", "{tmp}/empty"], "--search-data applies to int8 only"),
        (["--format", "onnx", "--out", "{tmp}/file.txt/sub"], "cannot write there"),
        (["--format", "onnx", "--weights", "{tmp}/model.pt"], "pickled PyTorch file"),
        (["--format", "onnx", "--weights", "{tmp}/nope.safetensors"], "no such file"),
    ],
)
def test_bad_input_is_one_clear_line_and_leaves_nothing(tiny_ckpt, tmp_path, capsys, args, needle):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_text("not a jpeg")
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04rest-of-a-torch-zip")
    args = [a.format(tmp=tmp_path) for a in args]
    if "--weights" not in args:
        args += ["--weights", str(tiny_ckpt)]
    out = tmp_path / "out"
    if "--out" not in args:
        args += ["--out", str(out)]
    assert export_main(args) == 2
    assert needle in _one_error_line(capsys)
    assert not out.exists() or not any(out.iterdir())


def test_existing_output_needs_force(tiny_ckpt, tmp_path, capsys):
    target = tmp_path / "mobilevit_test-fp32-onnx"
    target.mkdir()
    (target / "keep.txt").write_text("user file")
    assert export_main(["--weights", str(tiny_ckpt), "--format", "onnx", "--out", str(tmp_path), "--no-verify"]) == 2
    assert "exists; pass --force" in _one_error_line(capsys)
    assert (target / "keep.txt").exists()


def test_generated_verification_images_gate_on_logits_not_agreement():
    ref = np.array([[1.0, 0.99, -3.0], [2.0, 0.0, -1.0]])
    out = np.array([[0.99, 1.0, -3.0], [2.0, 0.0, -1.0]])  # a near-tie flips on the first image
    gated = parity.compare(ref, out, precision="int8")
    assert not gated.passed and "top1_agreement" in gated.failures[0]
    lenient = parity.compare(ref, out, precision="int8", gate_agreement=False)
    assert lenient.passed and lenient.top1_agreement == 0.5  # still reported
    bad = parity.compare(ref, -out, precision="int8", gate_agreement=False)
    assert not bad.passed and "cosine" in bad.failures[0]


def test_parity_names_the_images_whose_top1_changed_closest_decisions_first():
    ref = np.array([[1.0, 0.99, -3.0], [2.0, 0.0, -1.0], [3.0, 1.0, 0.0], [0.0, 1.5, 1.0]])
    out = np.array([[0.99, 1.0, -3.0], [2.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.0, 1.5, 1.0]])
    rep = parity.compare(ref, out, precision="int8", names=["a/1.jpg", "b/2.jpg", "c/3.jpg", "d/4.jpg"])
    assert rep.top1_agreement == 0.5
    assert rep.changed == [
        {"image": "a/1.jpg", "float_top1": 0, "artifact_top1": 1, "float_margin": 0.01},
        {"image": "c/3.jpg", "float_top1": 0, "artifact_top1": 1, "float_margin": 2.0},
    ]
    assert parity.compare(ref, ref, precision="int8").changed == []
    assert parity.compare(ref, out, precision="int8").changed[0]["image"] == 0  # no names: the index


def _ort_ops(path):
    """{(op type, first input's dtype): count} in onnxruntime's own optimised graph, and the census."""
    from mvit.export.backends.onnx_backend import op_census

    census = op_census(path)
    ops: dict = {}
    for r in census["ops"]:
        key = (r["op"].split(":")[-1], r["dtype"])
        ops[key] = ops.get(key, 0) + r["count"]
    return ops, census


def _float(ops, *types):
    return sum(v for (op, dtype), v in ops.items() if op in types and dtype == "float32")


@pytest.fixture(scope="module")
def onnx_int8_layouts(tiny_ckpt, data_dir, tmp_path_factory, monkeypatch_module):
    """The tiny model's ONNX int8 with nothing float, in the integer layout and in the linear one."""
    from mvit.quant import onnx_qdq

    out, files = tmp_path_factory.mktemp("layouts"), {}
    from mvit.export.base import ExportCache

    cache = ExportCache()
    for layout in ("integer", "linear"):
        monkeypatch_module.setattr(onnx_qdq, "LAYOUT", layout)
        [r] = export_int8(
            tiny_ckpt, "onnx", out / layout, data_dir, 16, keep_float=("none",), verify=False, cache=cache
        )
        assert r.meta["quantization_details"]["layout"] == layout
        files[layout] = r.artifact
    return files


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_onnx_int8_runs_silu_adds_and_attention_on_integer_kernels(onnx_int8_layouts):
    """onnxruntime's optimised graph of the integer layout (nothing float): every SiLU is QLinearSigmoid x
    QLinearMul, the residual adds and concatenations QLinearAdd/QLinearConcat, the attention MatMuls
    QLinearMatMul; conversions are left only around the float LayerNorms. The linear layout of the same
    model runs SiLU and attention in float (so these counts can fail)."""
    import onnx

    ops, census = _ort_ops(onnx_int8_layouts["integer"])
    graph = onnx.load(str(onnx_int8_layouts["integer"])).graph
    file_nodes, weights = graph.node, {i.name for i in graph.initializer}
    producer = {o: n for n in file_nodes for o in n.output}
    # activation x activation MatMuls (query x key, weights x value): both inputs dequantize an activation
    attention = sum(
        1
        for n in file_nodes
        if n.op_type == "MatMul"
        and all(
            i in producer and producer[i].op_type == "DequantizeLinear" and producer[i].input[0] not in weights
            for i in n.input
        )
    )
    silu = sum(1 for n in file_nodes if n.op_type == "Sigmoid")
    assert attention > 0 and silu > 0
    assert _float(ops, "Sigmoid", "Mul", "QuickGelu", "Add", "Concat", "Softmax") == 0, ops
    assert _float(ops, "Conv", "FusedConv") == 0, ops
    # one float MatMul at most: the tiny model's last stage multiplies a constant on the left (MatMul(W, x)),
    # a form onnxruntime's QDQ MatMul fusion does not take
    assert _float(ops, "MatMul", "FusedMatMul", "Gemm") <= 1, ops
    integer = lambda op: sum(v for (o, _), v in ops.items() if o == op)  # noqa: E731 - any dtype label
    assert integer("QLinearSigmoid") == silu and integer("QLinearMul") == silu
    assert integer("QLinearMatMul") == attention and integer("QLinearSoftmax") == attention // 2
    norms = sum(v for (op, _), v in ops.items() if op.endswith("LayerNormalization"))
    dq = sum(v for (op, _), v in ops.items() if op == "DequantizeLinear")
    # a DequantizeLinear into each float LayerNorm, into that float MatMul (two), into the global average
    # pool (ReduceMean), on the logits, and on the tiny model's two unused Split outputs
    assert 0 < dq <= norms + 6, (dq, norms)
    head = census["integer"]
    assert head["integer_share"] >= (head["mac_ops"] - 1) / head["mac_ops"]
    assert head["conversions"]["DequantizeLinear"] == dq

    linear, census = _ort_ops(onnx_int8_layouts["linear"])
    assert _float(linear, "Sigmoid", "QuickGelu") > 0 and _float(linear, "MatMul", "FusedMatMul") >= attention
    assert census["integer"]["integer_share"] < 1.0 and census["integer"]["conversions"]["DequantizeLinear"] > dq


def test_onnx_int8_float_layers_keep_their_silu_float(tiny_ckpt, data_dir, tmp_path, monkeypatch):
    """A float layer's SiLU (no weight, no module path in the ONNX graph) stays float with it, so the float
    conv's output and the next float conv's input are not quantized; every other SiLU runs integer."""
    import onnx

    from mvit.quant import onnx_qdq
    from mvit.quant.onnx_qdq import _nodes_to_keep_float, float_closure

    monkeypatch.setattr(onnx_qdq, "LAYOUT", "integer")
    [r] = export_int8(tiny_ckpt, "onnx", tmp_path, data_dir, 16, keep_float=("conv_1",), verify=False)
    ops, _ = _ort_ops(r.artifact)
    assert _float(ops, "Conv", "FusedConv") == 1, ops
    # conv_1's SiLU: float (fused by onnxruntime into the conv or run as QuickGelu / Sigmoid x Mul)
    model = onnx.load(str(r.artifact))
    graph = model.graph
    fused = sum(v for (op, _), v in ops.items() if op == "FusedConv")
    integer = sum(v for (op, _), v in ops.items() if op == "QLinearSigmoid")  # any dtype label
    assert sum(1 for n in graph.node if n.op_type == "Sigmoid") == integer + _float(ops, "Sigmoid", "QuickGelu") + fused
    assert _float(ops, "Sigmoid", "QuickGelu") + fused == 1
    # the closure: conv_1's Sigmoid and Mul join it, the next conv's do not
    closure = float_closure(model, _nodes_to_keep_float(model, ("conv_1",)))
    kinds = sorted(n.op_type for n in graph.node if n.name in closure)
    assert kinds == ["Conv", "Mul", "Sigmoid"], kinds
