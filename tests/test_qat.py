"""Quantization-aware fine-tuning: the QAT graph is the int8 export's graph, its weights map back to
the float architecture exactly, its learned ranges reach the export, and ``mvit-train --qat`` trains,
resumes and refuses bad input like normal training."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mvit.model.checkpoint import load_checkpoint, read_meta
from mvit.model.cli_train import main
from mvit.model.contract import PreprocessContract
from mvit.model.export_prep import prepare_for_export
from mvit.model.preprocess import normalize_hwc_uint8
from mvit.quant.calibration import generated_pixels
from mvit.quant.pt2e import pixels_to_tensor, quantize_pt2e
from mvit.quant.qat import (HEADER_KEY, LearnedRanges, float_model, learned_ranges, observe_ranges, observer_keys,
                            prepare_qat, read_ranges)

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


def test_learned_ranges_reach_every_observer_of_the_export_graph(qat_model):
    ck, qm = qat_model
    ranges = LearnedRanges(learned_ranges(qm))
    assert ranges.ranges and all(v[0] > 0 for v in ranges.ranges.values())
    contract = ck.meta.contract
    px = generated_pixels(contract, 4)
    h, w = contract.input_size
    net = prepare_for_export(ck.model)  # as mvit.export hands models to the backends
    converted, _, details = quantize_pt2e(
        net, net, torch.zeros(1, 3, h, w),
        lambda p: pixels_to_tensor(p, "NCHW", lambda z: normalize_hwc_uint8(z, contract)), "normalized-nchw",
        calib_pixels=px, method="histogram", ranges=ranges)
    assert details["keep_float"] == [] and details["calibrated_ranges"] == []
    assert details["learned_ranges_applied"] == len(ranges.ranges)
    # the converted graph quantizes with exactly the learned parameters
    learned = {(round(s, 12), z) for s, z, _, _ in ranges.ranges.values()}
    used = {(round(float(n.args[1]), 12), int(n.args[2])) for n in converted.graph.nodes
            if n.op == "call_function" and "quantize_per_tensor" in str(n.target)}
    assert learned <= used

    from mvit.export.wrappers import PixelInput

    wrapped = PixelInput(net, contract, "NHWC").eval()
    _, _, details = quantize_pt2e(net, wrapped, torch.full((1, h, w, 3), 128.0),
                                  lambda p: pixels_to_tensor(p, "NHWC"), "pixels-nhwc", calib_pixels=px,
                                  method="histogram", ranges=ranges)
    # every range but the model input's (now made inside the graph from pixels) is the learned one
    assert details["learned_ranges_applied"] == len(ranges.ranges) - 1
    assert len(details["calibrated_ranges"]) <= 2


def test_qat_graph_and_export_graph_observe_the_same_tensors(qat_model):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from mvit.model.export_prep import fold_layernorm_affine_
    from mvit.quant.pt2e import quantizer_for

    ck, qm = qat_model
    h, w = ck.meta.contract.input_size
    net = fold_layernorm_affine_(prepare_for_export(ck.model))
    ptq = prepare_pt2e(torch.export.export(net, (torch.zeros(1, 3, h, w),)).module(), quantizer_for(net, "histogram"))
    assert set(observer_keys(ptq)) == set(observer_keys(qm.graph))


def _run_qat(data, ckpt, out, *extra):
    return main(["--data", str(data), "--out", str(out), "--qat", "--init", str(ckpt), "--batch-size", "18",
                 "--epochs", "2", "--seed", "3"] + QAT_ARGS + list(extra))


def test_qat_trains_two_steps_resumes_exactly_and_saves_ranges(small_data_dir, small_ckpt, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert _run_qat(small_data_dir, small_ckpt, full) == 0  # 18 training images: one step per epoch
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


@pytest.mark.parametrize("extra, message", [
    ([], "--qat needs --init"),
    (["--init", "X", "--model", "mobilevit_xs"], "takes --model from the --init checkpoint"),
    (["--init", "X", "--distill", "1.5"], "--distill must be in [0.0, 1.0]"),
    (["--init", "X", "--ema", "0.9"], "drop --ema"),
    (["--init", "{pickle}"], "never unpickles"),
    (["--init", "{other}"], "are not the model's (x, y, z)"),
])
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
    header = {"mvit": read_meta(small_ckpt).to_json(),
              HEADER_KEY: json.dumps({"schema": "mvit.qat/1", "ranges": {"input|0": [-1.0, 0, 0.0, 1.0]}})}
    save_file(load_file(str(small_ckpt)), str(bad), metadata=header)
    with pytest.raises(QuantError, match="out of bounds"):
        read_ranges(bad)
    assert np.isfinite(load_checkpoint(bad).model(torch.zeros(1, 3, 64, 64)).detach().numpy()).all()
    assert PreprocessContract(input_size=(64, 64)).input_size == read_meta(bad).contract.input_size
