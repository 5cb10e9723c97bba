"""benchmarks/peers.py: the plain ONNX peer files run through mvit's runners exactly as built, and the
op census tells int8 from float nodes."""

import numpy as np
import pytest
import torch

from mvit.benchmarks import census, peers
from mvit.export.api import load_artifact_runner
from mvit.export.parity import torch_logits
from mvit.model.checkpoint import load_checkpoint
from mvit.model.images import generated_pixels
from mvit.model.preprocess import normalize_hwc_uint8


def test_onnx_peers_are_labelled_timed_through_mvit_runners_and_censused(small_ckpt, tmp_path):
    ck = load_checkpoint(small_ckpt)
    contract = ck.meta.contract
    h, w = contract.input_size
    fp32, int8 = tmp_path / "model-fp32.onnx", tmp_path / "model-int8.onnx"
    peers.onnx_fp32_peer(ck.model, torch.zeros(1, 3, h, w), fp32)
    peers.onnx_int8_peer(fp32, int8, normalize_hwc_uint8(generated_pixels(contract, 10), contract))
    for path, precision in ((fp32, "fp32"), (int8, "int8")):
        peers.label_peer(ck, path, "onnx", precision)
    assert not list(tmp_path.glob("*.data"))  # one self-contained file each

    px = generated_pixels(contract, 6, seed=4)
    ref = torch_logits(ck.model, px, contract)
    runner = load_artifact_runner(fp32)
    assert runner.meta["quantization_details"]["method"].startswith("torch.onnx.export")
    np.testing.assert_allclose(runner.run(px), ref, rtol=1e-3, atol=1e-4)
    assert np.isfinite(load_artifact_runner(int8).run(px)).all()

    c32, c8 = census.census(fp32, "onnx"), census.census(int8, "onnx")

    def convs(c, name):
        return sum(v for k, v in c["ops"].items() if k.split("(")[0] == name)

    # what onnxruntime runs, after its graph optimisation
    assert c32["quantize"] == 0 and convs(c32, "Conv") + convs(c32, "FusedConv") == 35
    # stock quantize_static QDQ: onnxruntime fuses some convolutions into QLinearConv and runs the others in
    # float between DequantizeLinear and QuantizeLinear; the census shows which (every one is accounted for)
    assert c8["quantize"] > 0 and c8["dequantize"] >= c8["quantize"]
    assert convs(c8, "QLinearConv") > 0 and convs(c8, "QLinearConv") + convs(c8, "Conv") == 35
    assert "QLinearConv uint8" in census.heavy_ops(c8)


def test_executorch_peers_are_labelled_and_run_through_mvit_runners(small_ckpt, tmp_path):
    if not peers.executorch_ready():
        pytest.skip("ExecuTorch is not installed (pip install 'mvit[executorch]')")
    ck = load_checkpoint(small_ckpt)  # its labels and contract; a small conv net keeps the lowering short
    contract = ck.meta.contract
    h, w = contract.input_size
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, ck.meta.num_classes),
    ).eval()
    fp32, int8 = tmp_path / "model-fp32.pte", tmp_path / "model-int8.pte"
    sample = torch.zeros(1, 3, h, w)
    peers.executorch_fp32_peer(net, sample, fp32)
    peers.executorch_int8_peer(net, sample, int8, normalize_hwc_uint8(generated_pixels(contract, 8), contract))
    for path, precision in ((fp32, "fp32"), (int8, "int8")):
        peers.label_peer(ck, path, "executorch", precision)

    px = generated_pixels(contract, 4, seed=4)
    ref = torch_logits(net, px, contract)
    runner = load_artifact_runner(fp32)
    assert runner.meta["quantization_details"]["method"].startswith("ExecuTorch")
    np.testing.assert_allclose(runner.run(px), ref, rtol=1e-3, atol=1e-3)
    out8 = load_artifact_runner(int8).run(px)
    cos = (out8 * ref).sum(1) / (np.linalg.norm(out8, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.9, cos
    # the stock int8 program runs int8 convolutions inside XNNPACK
    heavy = census.heavy_ops(census.census(int8, "executorch"))
    assert "Conv2d int8" in heavy, heavy


def test_peers_command_line_refuses_bad_numbers(capsys):
    for bad in (["--calib-count", "0"], ["--threads", "0"], ["--min-time", "-1"]):
        with pytest.raises(SystemExit) as e:
            peers.main(["--calib", "x", "--val", "y"] + bad)
        assert e.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_report_calls_a_run_loaded_only_for_load_beyond_its_own_threads():
    """The timed rows' own threads raise the load average to about their count: a quiet 2-thread run
    ends near 2 and must read "quiet"; load before the run or beyond its threads is another process."""
    from mvit.benchmarks.peers import render

    def report(start, end):
        return {
            "rows": [],
            "machine": {"cpu": "cpu", "cores": 2, "isa": ["avx2"]},
            "threads": 2,
            "load_average": {"start": [start], "timing_start": [1.4], "timing_end": [end]},
            "checkpoint": "m.safetensors",
            "checkpoint_sha256": "0" * 64,
            "calibration": "c",
            "evaluation": "e",
            "command": "peers",
        }

    assert "(quiet)" in render(report(0.2, 2.1))
    assert "other processes loaded" in render(report(1.2, 2.1))
    assert "other processes loaded" in render(report(0.2, 3.4))
