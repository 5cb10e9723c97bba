"""mvit-bench FILE ...: model files made elsewhere (stock litert-torch, plain torch.onnx), without
mvit metadata: latency, memory and op census; with --labels and preprocessing options, accuracy
and agreement with a reference; ops the runtime lacks and bad input get one line and exit 2."""

import json

import numpy as np
import pytest
import torch
from conftest import make_image_folder
from export_fixtures import FAST

from mvit.benchmarks.cli import main as bench_main


class TinyNet(torch.nn.Module):
    """A small third-party classifier: 3 classes, 32x32 RGB input, NCHW."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    """A .tflite by stock litert-torch and an .onnx by plain torch.onnx of the same model, labels, images."""
    import litert_torch

    root = tmp_path_factory.mktemp("third_party")
    model, sample = TinyNet().eval(), torch.zeros(1, 3, 32, 32)
    litert_torch.convert(model, (sample,)).export(str(root / "tiny.tflite"))
    torch.onnx.export(model, (sample,), str(root / "tiny.onnx"), dynamo=True, external_data=False)
    (root / "labels.txt").write_text("a\nb\nc\n")
    make_image_folder(root / "images", per_class=3, size=(40, 36))
    return root


def _with_custom_op(src, dst, code: str):
    """A copy of ``src`` whose MEAN op is replaced by a custom op named ``code`` (e.g. FlexErf)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    m = fb.read_model_from_bytearray(bytearray(src.read_bytes()))
    oc = schema.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    oc.customCode, oc.version = code, 1
    m.operatorCodes.append(oc)
    mean = next(
        op
        for op in m.subgraphs[0].operators
        if fb.get_builtin_code_from_operator_code(m.operatorCodes[op.opcodeIndex]) == schema.BuiltinOperator.MEAN
    )
    mean.opcodeIndex, mean.builtinOptionsType, mean.builtinOptions = len(m.operatorCodes) - 1, 0, None
    dst.write_bytes(bytes(fb.convert_object_to_bytearray(m)))
    return dst


def _rows(out):
    return json.loads((out / "bench.json").read_text())["models"][0]["rows"]


def test_file_without_metadata_latency_memory_census(third_party, tmp_path, capfd):
    out = tmp_path / "out"
    rc = bench_main([str(third_party / "tiny.tflite"), "--out", str(out), "--no-plot", *FAST])
    assert rc == 0, capfd.readouterr().err
    (row,) = _rows(out)
    assert row["metadata"] == "none" and row["status"] == "measured" and row["precision"] == "fp32"
    lat = row["latency"]
    assert lat["runs"] >= 3 and 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"]
    assert lat["load_ms"] > 0 and lat["first_ms"] > 0 and row["memory"]["peak_rss_mb"] > 0
    census = row["census"]
    ops = {o["op"]: o for o in census["ops"]}
    assert ops["CONV_2D"]["dtype"] == "float32" and ops["CONV_2D"]["delegated"] == 1
    assert census["ops_delegated"] == census["ops_total"] and census["fallback"] == {}
    assert "top1" not in row and any("latency (on a generated image)" in n for n in row["notes"])
    md = (out / "bench.md").read_text()
    assert "### Op census: `tiny.tflite`" in md and "| CONV_2D | float32 | 1 | 1 |" in md


def test_labels_accuracy_reference_and_two_files_interleaved(third_party, tmp_path, capfd):
    out = tmp_path / "out"
    rc = bench_main(
        [
            str(third_party / "tiny.tflite"),
            str(third_party / "tiny.onnx"),
            "--labels",
            str(third_party / "labels.txt"),
            "--size",
            "32",
            "--mean",
            "0.5",
            "0.5",
            "0.5",
            "--std",
            "0.5",
            "0.5",
            "0.5",
            "--resize-short",
            "36",
            "--data",
            str(third_party / "images"),
            "--reference",
            str(third_party / "tiny.onnx"),
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert rc == 0, capfd.readouterr().err
    tfl, onx = _rows(out)
    for r in (tfl, onx):
        assert r["metadata"] == "options" and r["status"] == "measured" and r["n_images"] == 9
        assert 0 <= r["top1"] <= 1 and r["latency"]["median_ms"] > 0
        assert r["reference"] == "onnx file tiny.onnx"
    assert onx["agreement"] == 1.0 and onx["kl_mean"] == pytest.approx(0, abs=1e-9)
    assert tfl["agreement"] == 1.0 and tfl["cosine"] > 0.9999  # the same model through two converters
    census = onx["census"]
    assert census["file_nodes"] >= census["ops_total"] and census["ops"] != census["file_ops"]
    report = json.loads((out / "bench.json").read_text())
    assert report["settings"]["threads"] == 2 and report["machine"]["cpu"]
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "code, kind", [("FlexErf", "Flex: a TensorFlow op, needs the Select TF ops delegate"), ("MyCustomNms", "custom op")]
)
def test_op_the_runtime_lacks_one_line(third_party, tmp_path, capfd, code, kind):
    bad = _with_custom_op(third_party / "tiny.tflite", tmp_path / "bad.tflite", code)
    rc = bench_main([str(bad), "--out", str(tmp_path / "out"), "--no-plot", *FAST])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0] == f"mvit-bench: error: {bad}: needs ops this runtime does not have: {code} ({kind})"


@pytest.mark.parametrize(
    "args, message",
    [
        (["{d}/absent.tflite"], "absent.tflite: no such file"),
        (["{d}/labels.txt"], "labels.txt: not a .tflite, .onnx, .pte, .mlpackage or .aimodel file"),
        (["{corrupt}"], "corrupt.tflite: not a readable .tflite file"),
        (
            ["{d}/tiny.tflite", "--size", "32"],
            "--size describes a model file without mvit metadata: give its --labels too",
        ),
        (["{d}/tiny.tflite", "--labels", "{d}/labels.txt", "--crop", "1.5"], "--crop 1.5: must be in (0, 1]"),
        (
            ["{d}/tiny.tflite", "--labels", "{d}/labels.txt", "--size", "64"],
            "--size 64x64 but the file's input is 32x32",
        ),
        (["{d}/tiny.tflite", "--labels", "{two}"], "the output has 3 values but --labels has 2 labels"),
        (["{d}/tiny.tflite", "--labels", "{empty}"], "no labels in the file"),
        (["{d}/tiny.tflite", "--labels", "{d}/labels.txt", "--reference", "{d}/tiny.onnx"], "--reference needs --data"),
        (["{d}/tiny.tflite", "--weights", "x.safetensors"], "FILE arguments benchmark those files"),
        (["{d}/tiny.tflite", "--labels", "{d}/labels.txt", "--std", "0", "1", "1"], "--std values must be > 0"),
        (["{d}/tiny.tflite", "--layer-images", "0"], "--layer-images 0 / --keep-float-top 3: must be >= 1 / >= 0"),
    ],
)
def test_bad_input_one_line(third_party, tmp_path, capfd, args, message):
    (tmp_path / "corrupt.tflite").write_bytes(np.random.default_rng(0).bytes(256))
    (tmp_path / "two.txt").write_text("a\nb\n")
    (tmp_path / "empty.txt").write_text("\n")
    fmt = {
        "d": third_party,
        "corrupt": tmp_path / "corrupt.tflite",
        "two": tmp_path / "two.txt",
        "empty": tmp_path / "empty.txt",
    }
    try:
        rc = bench_main([a.format(**fmt) for a in args] + ["--out", str(tmp_path / "out"), "--no-plot", *FAST])
    except SystemExit as e:
        rc = e.code
    err = capfd.readouterr().err.strip().splitlines()
    errors = [l for l in err if l.startswith("mvit-bench: error:")]
    assert rc == 2 and len(errors) == 1 and message in errors[0], err
    assert not (tmp_path / "out").exists()  # nothing written for a refused command
