"""Quantization-aware fine-tuning: the QAT graph is the int8 export's graph, its weights map back to
the float architecture exactly, its learned ranges reach the export, and ``mvit-train --qat`` trains,
resumes and refuses bad input like normal training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mvit.model.checkpoint import load_checkpoint, read_meta
from mvit.model.contract import PreprocessContract
from mvit.model.images import generated_pixels
from mvit.model.preprocess import normalize_hwc_uint8
from mvit.quant.cli_train import main
from mvit.quant.qat import HEADER_KEY, float_model, observe_ranges, prepare_qat, read_ranges

QAT_ARGS = ["--workers", "1", "--device", "cpu", "--no-train-eval", "--val-fraction", "0.25"]


def _inputs(contract, n, seed=0):
    return torch.from_numpy(normalize_hwc_uint8(generated_pixels(contract, n, seed), contract))


@pytest.fixture(scope="module")
def qat_model(small_ckpt):
    ck = load_checkpoint(small_ckpt)
    qm = prepare_qat(ck.model, ck.meta.contract.input_size)
    observe_ranges(qm, [_inputs(ck.meta.contract, 8, s) for s in range(2)])
    return ck, qm


def _fake_quant(qm, on: bool) -> None:
    for m in qm.graph.modules():
        if hasattr(m, "enable_fake_quant"):
            m.enable_fake_quant(on)


def test_qat_weights_map_back_to_the_float_architecture(qat_model):
    ck, qm = qat_model
    x = _inputs(ck.meta.contract, 4, seed=5)
    qm.graph.eval()
    _fake_quant(qm, False)
    try:
        with torch.no_grad():
            # BatchNorm, LayerNorm affine and attention scale folded: still the checkpoint's function
            torch.testing.assert_close(qm.graph(x), ck.model(x), rtol=1e-4, atol=1e-4)
            trained = {k: v.clone() for k, v in qm.graph.state_dict().items()}
            for p in qm.graph.parameters():  # stand-in for fine-tuning: every weight and bias moves
                p.add_(0.01 * torch.randn_like(p))
            back = float_model(qm)
            torch.testing.assert_close(back(x), qm.graph(x), rtol=1e-4, atol=1e-4)
            qm.graph.load_state_dict(trained)
    finally:
        _fake_quant(qm, True)
        qm.graph.train()
    norms = [m for m in back.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(float(m.weight.detach().min()) == float(m.weight.detach().max()) == 1.0 for m in norms)


def _run_qat(data, ckpt, out, *extra):
    return main(
        [
            "--data",
            str(data),
            "--out",
            str(out),
            "--qat",
            "--init",
            str(ckpt),
            "--batch-size",
            "18",
            "--epochs",
            "2",
            "--seed",
            "3",
        ]
        + QAT_ARGS
        + list(extra)
    )


@pytest.fixture(scope="module")
def qat_run(small_data_dir, small_ckpt, tmp_path_factory):
    """A finished QAT run of the tiny checkpoint: two epochs of one step each (18 training images)."""
    full = tmp_path_factory.mktemp("qat") / "full"
    assert _run_qat(small_data_dir, small_ckpt, full) == 0
    return full


def test_qat_trains_two_steps_resumes_exactly_and_saves_ranges(qat_run, small_data_dir, small_ckpt, tmp_path):
    full, part = qat_run, tmp_path / "part"
    rows = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1] and all(0 <= r["val_agreement"] <= 1 for r in rows)
    ck = load_checkpoint(full / "last.safetensors")  # an ordinary float checkpoint too
    assert ck.meta.architecture == "mobilevit_test" and read_meta(full / "last.safetensors").provenance["recipe"]["qat"]
    ranges = read_ranges(full / "last.safetensors")
    assert ranges is not None and ranges.keep_float == () and len(ranges.ranges) > 20
    assert read_ranges(small_ckpt) is None

    assert _run_qat(small_data_dir, small_ckpt, part, "--stop-after-epochs", "1") == 0
    assert _run_qat(small_data_dir, small_ckpt, part, "--resume") == 0
    a = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    keys = ("epoch", "lr", "train_loss", "val_loss", "val_agreement")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert read_ranges(part / "last.safetensors").ranges == ranges.ranges
    sa = load_checkpoint(full / "last.safetensors").model.state_dict()
    sb = load_checkpoint(part / "last.safetensors").model.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "--qat needs --init"),
        (["--init", "X", "--model", "mobilevit_xs"], "takes --model from the --init checkpoint"),
        (["--init", "X", "--distill", "1.5"], "--distill must be in [0.0, 1.0]"),
        (["--init", "X", "--ema", "0.9"], "drop --ema"),
        (["--init", "{pickle}"], "never unpickles"),
        (["--init", "{other}"], "are not the model's (x, y, z)"),
    ],
)
def test_qat_bad_input_is_one_clear_line(small_data_dir, small_ckpt, tmp_path, capsys, extra, message):
    pickled = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(1)}, pickled)
    other = tmp_path / "other.safetensors"
    from mvit.model.checkpoint import CheckpointMeta, save_checkpoint

    m = load_checkpoint(small_ckpt)
    save_checkpoint(other, m.model, CheckpointMeta("mobilevit_test", ["x", "y", "z"], m.meta.contract, {}, {}))
    extra = [{"X": str(small_ckpt), "{pickle}": str(pickled), "{other}": str(other)}.get(a, a) for a in extra]
    assert main(["--data", str(small_data_dir), "--out", str(tmp_path / "o"), "--qat"] + QAT_ARGS + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mvit-train: error:") and message in err[-1], err[-1]
    assert "Traceback" not in "\n".join(err)


def test_init_without_qat_is_refused(small_data_dir, small_ckpt, tmp_path, capsys):
    assert main(["--data", str(small_data_dir), "--out", str(tmp_path / "o"), "--init", str(small_ckpt)]) == 2
    assert "--init is for --qat" in capsys.readouterr().err


def test_corrupt_ranges_header_is_one_line(small_ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    from mvit.quant import QuantError

    bad = tmp_path / "bad.safetensors"
    header = {
        "mvit": read_meta(small_ckpt).to_json(),
        HEADER_KEY: json.dumps({"schema": "mvit.qat/1", "ranges": {"input|0": [-1.0, 0, 0.0, 1.0]}}),
    }
    save_file(load_file(str(small_ckpt)), str(bad), metadata=header)
    with pytest.raises(QuantError, match="out of bounds"):
        read_ranges(bad)
    assert np.isfinite(load_checkpoint(bad).model(torch.zeros(1, 3, 64, 64)).detach().numpy()).all()
    assert PreprocessContract(input_size=(64, 64)).input_size == read_meta(bad).contract.input_size


def _tflite_qparams(path) -> set:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    m = fb.read_model_from_bytearray(bytearray(path.read_bytes()))
    out = set()
    for t in m.subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) == 1 and t.type == schema.TensorType.INT8:
            out.add((float(np.float32(q.scale[0])), int(q.zeroPoint[0])))
    return out


def _onnx_convs_fed_by_dequantize(path) -> tuple[int, int]:
    """(Conv nodes, those whose input and weight are both DequantizeLinear outputs) of an .onnx file."""
    import onnx

    m = onnx.load(str(path))
    made_by = {o: n.op_type for n in m.graph.node for o in n.output}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    return len(convs), sum(all(made_by.get(i) == "DequantizeLinear" for i in n.input[:2]) for n in convs)


def _onnx_qparams(path) -> set:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return {
        (float(np.float32(inits[n.input[1]])), int(inits[n.input[2]]))
        for n in m.graph.node
        if n.op_type == "QuantizeLinear" and inits.get(n.input[1]) is not None and inits[n.input[1]].size == 1
    }


def test_qat_checkpoint_exports_every_format_with_its_learned_ranges(qat_run, small_data_dir, tmp_path):
    from mvit.benchmarks.census import census
    from mvit.export.api import export_model
    from mvit.export.request import ExportRequest

    ckpt = qat_run / "last.safetensors"
    learned = read_ranges(ckpt)
    plain_scale = load_checkpoint(ckpt).meta.contract.is_plain_scale
    results = export_model(
        ExportRequest.of(
            checkpoint=ckpt,
            formats=("tflite", "onnx", "coreml"),
            precisions=("int8",),
            calib=small_data_dir,
            calib_count=6,
            verify=False,
            out=tmp_path,
        )
    )

    def qparams(ops=("",)):
        return {
            (float(np.float32(s)), z) for k, (s, z, _, _) in learned.ranges.items() if k.split("|")[1].startswith(ops)
        }

    for r in results:
        d = r.meta["quantization_details"]
        assert d["keep_float"] == [], r.format
        if r.format == "coreml" and not plain_scale:  # image input: normalisation made in the graph, calibrated
            assert d["learned_ranges_applied"] == len(learned.ranges) - 1 and d["calibrated_ranges"]
        else:  # Core ML's image input with a plain 1/255 scale feeds the model's own input (its learned range)
            assert d["learned_ranges_applied"] == len(learned.ranges) and d["calibrated_ranges"] == []
    by = {r.format: r.artifact for r in results}
    # the runtimes get the learned parameters: ONNX all of them; TFLite every conv and linear output (its
    # converter merges back-to-back requantizations, e.g. a sigmoid's fixed range and the product's input)
    assert qparams() <= _onnx_qparams(by["onnx"])
    assert qparams(("aten::conv2d", "aten::linear")) <= _tflite_qparams(by["tflite"])
    ops = census(by["tflite"], "tflite")["ops"]
    assert not any(k.startswith(("CONV_2D(float", "DEPTHWISE_CONV_2D(float", "FULLY_CONNECTED(float")) for k in ops)
    # the ONNX file quantizes every convolution: its input and weight come through DequantizeLinear
    # (which of them onnxruntime then fuses into QLinearConv is its choice: the census shows it)
    assert _onnx_convs_fed_by_dequantize(by["onnx"]) == (35, 35)
