"""mvit-bench: the full format x (fp32, int8) matrix on a tiny trained model, reports, CI floors, bad input."""

import json
import struct

import pytest
from conftest import make_image_folder
from export_fixtures import CLASSES, FAST, bench_matrix, bench_reused, bench_rows, train_tiny_checkpoint

from mvit.benchmarks.cli import main as bench_main
from mvit.benchmarks.report import check_floors, parse_floor


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_data")
    make_image_folder(root / "train", classes=CLASSES, per_class=8, size=(80, 72), seed=1)
    make_image_folder(root / "val", classes=CLASSES, per_class=6, size=(80, 72), seed=2)
    return root


@pytest.fixture(scope="module")
def tiny(data, tmp_path_factory):
    return train_tiny_checkpoint(data / "train", tmp_path_factory.mktemp("bench_ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def bench(tiny, data, tmp_path_factory):
    """One run of the matrix: the core formats x fp32/int8, with a floor that holds (ExecuTorch's rows:
    test_executorch.py, which reuses its own exports)."""
    out = tmp_path_factory.mktemp("bench_out")
    rc = bench_matrix(
        tiny,
        data / "val",
        out,
        "--formats",
        "onnx",
        "tflite",
        "coreml",
        "--quantize",
        "fp32",
        "int8",
        "--calib-count",
        "8",
        "--calib-method",
        "min-max",
        "--layer-images",
        "4",
        "--coreml-max-images",
        "6",
        "--fail-below",
        "agreement=0.5",
        *FAST,
    )
    report = json.loads((out / "bench.json").read_text())
    return rc, out, report


def test_matrix_rows_and_metrics(bench):
    rc, out, report = bench
    assert rc == 0
    rows = bench_rows(report)
    assert list(rows) == [
        "torch-fp32",
        "onnx-fp32",
        "onnx-int8",
        "tflite-fp32",
        "tflite-int8",
        "coreml-fp32",
        "coreml-int8",
    ]
    base = rows["torch-fp32"]
    assert base["status"] == "baseline" and base["latency"]["median_ms"] > 0 and base["latency_vs_eager"] == 1.0
    for key, r in rows.items():
        assert r["status"] == ("baseline" if key == "torch-fp32" else "exported"), (key, r.get("reason"))
        assert r["n_images"] == (6 if r["format"] == "coreml" else 18)  # --coreml-max-images 6
        assert 0 <= r["top1"] <= 1 and 0 <= r["top5"] <= 1
        assert 0 <= r["agreement"] <= 1 and r["kl_mean"] >= -1e-6 and -1 <= r["cosine"] <= 1 + 1e-9
        if key != "torch-fp32":
            assert r["size_mb"] > 0 and r["artifact"] and r["reused"] is False
        if r["format"] == "coreml":  # no Core ML runtime on Linux: numbers say where they come from
            assert "latency" not in r and "no latency" in r["latency_note"] and "reference interpreter" in r["numerics"]
        else:
            lat = r["latency"]
            assert lat["runs"] >= 3 and lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"]
            assert lat["std_ms"] >= 0 and lat["throughput_ips"] > 0 and lat["load_ms"] > 0 and lat["first_ms"] > 0
            assert r["latency_vs_eager"] == pytest.approx(lat["median_ms"] / base["latency"]["median_ms"])
            assert r["memory"]["peak_rss_mb"] >= r["memory"]["rss_before_load_mb"] > 0
    for fmt in ("onnx", "tflite"):  # the fp32 artifacts are the float model
        assert rows[f"{fmt}-fp32"]["agreement"] == 1.0 and rows[f"{fmt}-fp32"]["cosine"] > 0.9999


def test_memory_is_per_row(bench):
    _, _, report = bench
    peaks = [r["memory"]["peak_rss_mb"] for r in report["models"][0]["rows"] if "memory" in r]
    assert len(set(round(p) for p in peaks)) > 1  # not the parent's high-water mark inherited by every worker


def test_json_describes_the_machine(bench):
    _, _, report = bench
    m = report["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["threads"] == 2
    for lib in ("torch", "onnxruntime", "ai-edge-litert", "coremltools"):
        assert m["libraries"][lib]
    assert report["settings"]["threads"] == 2 and report["models"][0]["checkpoint_sha256"]


def test_markdown_and_png(bench):
    _, out, report = bench
    md = (out / "bench.md").read_text()
    for needle in (
        "| PyTorch eager | fp32 | baseline",
        "| onnx | int8 |",
        "| tflite | int8 |",
        "| coreml | fp32 |",
        "median ms",
        "Where the int8 error comes from: onnx int8",
        "--keep-float",
    ):
        assert needle in md, needle
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    assert w > 300 and h > 200


def test_layer_reports_name_layers_the_exporters_accept(bench, tiny):
    _, out, report = bench
    reports = {r["artifact"]: r for r in report["models"][0]["layer_reports"]}
    onnx_rep = reports["onnx int8"]
    pt2e_rep = reports["tflite int8 and coreml int8"]
    for rep in (onnx_rep, pt2e_rep):
        assert "error" not in rep, rep.get("error")
        sqnr = [r["local_sqnr_db"] for r in rep["layers"]]
        # ONNX int8 puts QDQ only on the convs and linears outside the searched float set (their in and out
        # tensors): at least the three layers it suggests
        assert len(sqnr) >= (6 if rep is onnx_rep else 20) and sqnr == sorted(sqnr)  # worst first
        assert len(rep["suggested_keep_float"]) == 3
    # The suggested names are accepted by mvit-export's --keep-float resolution, per format.
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mvit.model.checkpoint import load_checkpoint
    from mvit.quant.onnx_qdq import _nodes_to_keep_float
    from mvit.quant.pt2e import quantizer_for

    pre = out / "pre.onnx"
    quant_pre_process(str(bench_rows(report)["onnx-fp32"]["artifact"]), str(pre), skip_symbolic_shape=True)
    assert len(_nodes_to_keep_float(onnx.load(str(pre)), onnx_rep["suggested_keep_float"])) == 3
    model = load_checkpoint(tiny).model
    quantizer_for(model, "min-max", tuple(pt2e_rep["suggested_keep_float"]))  # raises on an unknown name
    assert all(name in dict(model.named_modules()) for name in pt2e_rep["suggested_keep_float"])


def test_the_tflite_file_report_compares_each_int8_tensor_with_the_float_model(bench, tiny, data):
    """The report of the .tflite file itself: every int8 tensor it names after a module, against that
    module's float output; images unlike the calibration set show as clipped tensors."""
    import numpy as np

    from mvit.export.backends import get_backend
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.images import image_files, load_pixels

    _, out, report = bench
    rep = next(r for r in report["models"][0]["layer_reports"] if r["artifact"].startswith("tflite int8 file"))
    assert "error" not in rep, rep.get("error")
    ckpt = load_checkpoint(tiny)
    names = dict(ckpt.model.named_modules())
    layers = rep["layers"]
    sqnr = [r["local_sqnr_db"] for r in layers]
    assert len(layers) > 10 and sqnr == sorted(sqnr) and len(rep["suggested_keep_float"]) == 3
    assert all(r["keep_float_name"] in names and 0 <= r["clipped_pct"] <= 100 for r in layers)
    # where the file is int8 it computes the float model's tensors, within int8 error
    assert float(np.median([r["model_sqnr_db"] for r in layers])) > 15
    assert "Where the int8 error comes from: tflite int8 file" in (out / "bench.md").read_text()

    artifact = bench_rows(report)["tflite-int8"]["artifact"]
    px, _ = load_pixels(image_files(data / "val")[:4], ckpt.meta.contract, 4)
    saturated = ((np.random.default_rng(0).random(px.shape) > 0.5) * 255).astype(np.uint8)
    tensor_error = get_backend("tflite").tensor_error
    calm = max(r["clipped_pct"] for r in tensor_error(artifact, ckpt.model, px)["layers"])
    wild = tensor_error(artifact, ckpt.model, saturated)["layers"]
    assert max(r["clipped_pct"] for r in wild) > max(1.0, 5 * calm)


def test_an_int8_tflite_file_gets_its_tensor_report_against_a_checkpoint(bench, tiny, data, tmp_path):
    _, _, report = bench
    artifact = bench_rows(report)["tflite-int8"]["artifact"]
    out = tmp_path / "files"
    rc = bench_main(
        [
            artifact,
            "--data",
            str(data / "val"),
            "--reference",
            str(tiny),
            "--out",
            str(out),
            "--layer-images",
            "2",
            "--no-plot",
            *FAST,
        ]
    )
    assert rc == 0
    files = json.loads((out / "bench.json").read_text())["models"][0]
    (rep,) = files["layer_reports"]
    assert "error" not in rep and rep["images"] == 2 and rep["layers"]
    assert "Where the int8 error comes from: tflite int8 file" in (out / "bench.md").read_text()


def test_fail_below_exits_nonzero_and_reuse_skips_export(bench, tiny, data, capfd):
    _, out, _ = bench
    floors = ["--fail-below", "onnx-fp32:agreement=1.01", "--fail-above", "onnx-*:size_mb=1000"]
    rc = bench_reused(tiny, data / "val", out, "onnx", "fp32", *floors, *FAST)
    err = capfd.readouterr().err
    assert rc == 1
    assert "limit not met: mobilevit_test onnx-fp32: agreement 1 < 1.01" in err
    assert "size_mb" not in err  # the ceiling that holds is not reported
    report = json.loads((out / "bench.json").read_text())
    assert bench_rows(report)["onnx-fp32"]["reused"] is True and "exporting" not in err


def test_the_report_says_when_int8_is_not_faster_than_fp32_naming_the_isa():
    from mvit.benchmarks.report import int8_verdicts

    rows = [
        {"format": "onnx", "precision": "fp32", "latency": {"median_ms": 8.0}},
        {"format": "onnx", "precision": "int8", "latency": {"median_ms": 12.0}},
        {"format": "tflite", "precision": "fp32", "latency": {"median_ms": 14.0}},
        {"format": "tflite", "precision": "int8", "latency": {"median_ms": 7.0}},
        {"format": "coreml", "precision": "int8", "latency": None},
    ]
    lines = int8_verdicts(rows, ["avx2", "avx512_vnni"])
    assert len(lines) == 1 and lines[0].startswith("onnx int8 is not faster than onnx fp32")
    assert "avx2 avx512_vnni" in lines[0] and "1.50x" in lines[0]


def test_check_floors_unit():
    report = {
        "models": [
            {
                "architecture": "m",
                "rows": [
                    {"format": "torch", "precision": "fp32", "status": "baseline", "top1": 0.9, "agreement": 1.0},
                    {
                        "format": "tflite",
                        "precision": "int8",
                        "status": "exported",
                        "top1": 0.85,
                        "agreement": 0.97,
                        "latency_vs_eager": 0.25,
                    },
                    {"format": "onnx", "precision": "int8", "status": "failed", "reason": "export failed: boom"},
                ],
            }
        ]
    }
    assert check_floors(report, ["tflite-int8:agreement=0.95"], []) == []
    assert check_floors(report, ["tflite-int8:agreement=0.99"], []) == ["m tflite-int8: agreement 0.97 < 0.99"]
    assert check_floors(report, [], ["tflite-int8:latency_vs_eager=0.2"]) == [
        "m tflite-int8: latency_vs_eager 0.25 > 0.2"
    ]
    failed = check_floors(report, ["*-int8:top1=0.5"], [])
    assert len(failed) == 1 and "onnx-int8" in failed[0] and "boom" in failed[0]
    assert check_floors(report, ["coreml-*:top1=0.5"], [])[0].endswith("no row matches 'coreml-*'")
    assert parse_floor("agreement=0.99") == ("*", "agreement", 0.99)
    with pytest.raises(ValueError):
        parse_floor("speed=3")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "/nonexistent/folder"], "--data /nonexistent/folder: no such folder"),
        (["--formats", "caffe"], "unknown value 'caffe'"),
        (["--quantize", "int4"], "unknown value 'int4'"),
        (["--fail-below", "speed=3"], "expected [ROWS:]METRIC=VALUE"),
        (["--weights", "/nonexistent.safetensors"], "no such checkpoint"),
    ],
)
def test_bad_input_one_clear_line(args, message, data, capfd):
    argv = args if "--data" in args else ["--data", str(data / "val"), *args]
    try:
        rc = bench_main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("mvit-bench: error:") and message in err[0], err
