"""What an export reads and leaves on disk: ordinary folders and files, its converter log, no debris
of killed runs, odd images in the calibration folder, a quiet console, several values per option."""

import stat
import subprocess
import sys

import numpy as np
import pytest
from export_fixtures import export_int8
from PIL import Image

from mvit import model
from mvit.export.api import export_model
from mvit.export.cli import build_parser, render, request_from_args
from mvit.export.cli import main as export_main
from mvit.export.parity import compare
from mvit.model.checkpoint import CheckpointMeta, save_checkpoint
from mvit.model.contract import PreprocessContract


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    m = model.create("mobilevit_test", num_classes=3)
    meta = CheckpointMeta(
        "mobilevit_test", ["a", "b", "c"], PreprocessContract(input_size=(64, 64)), provenance={"test": "export folder"}
    )
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "ck.safetensors", m.eval(), meta)


def test_export_folder_is_0755_and_files_0644(ckpt, tmp_path):
    [res] = export_model(
        checkpoint=ckpt, formats=("onnx",), precisions=("fp32",), out=tmp_path / "out", verify=False, say=lambda _: None
    )
    assert stat.S_IMODE(res.folder.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in res.folder.iterdir()} == {
        "model.onnx": 0o644,
        "model_meta.json": 0o644,
        "labels.txt": 0o644,
        "export.log": 0o644,
    }


def test_next_run_removes_the_temporary_folder_of_a_killed_run(ckpt, tmp_path):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".mobilevit_test-fp32-onnx.tmp-{dead.pid}-x1y2"
    running = out / f".mobilevit_test-int8-onnx.tmp-{subprocess.os.getppid()}-a3b4"  # a live process's: kept
    for d in (stale, running):
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(b"half-written")
    export_model(checkpoint=ckpt, formats=("onnx",), precisions=("fp32",), out=out, verify=False, say=lambda _: None)
    assert not stale.exists() and running.exists()
    assert sorted(p.name for p in out.iterdir()) == [running.name, "mobilevit_test-fp32-onnx"]


def _odd_images(root):
    """One class folder each of: greyscale, CMYK, RGBA, 16-bit greyscale PNG, EXIF-rotated JPEG; plus junk."""
    rng = np.random.default_rng(0)
    rgb = lambda: rng.integers(0, 255, (40, 56, 3), np.uint8)  # noqa: E731
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
    Image.fromarray(rgb()).convert("L").save(root / "a" / "grey.jpg")
    Image.fromarray(rgb()).convert("CMYK").save(root / "a" / "cmyk.jpg")
    Image.fromarray(np.dstack([rgb(), rng.integers(0, 255, (40, 56), np.uint8)])).save(root / "b" / "rgba.png")
    Image.fromarray(rng.integers(0, 65535, (40, 56), np.uint16)).save(root / "b" / "grey16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: decoded upright
    Image.fromarray(rgb()).save(root / "c" / "rotated.jpg", exif=exif)
    Image.fromarray(rgb()).save(root / "c" / "plain.jpg")
    (root / "c" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_calibration_folder_with_odd_images_calibrates_and_warns_once(ckpt, tmp_path):
    data = _odd_images(tmp_path / "odd")
    said = []
    [res] = export_int8(ckpt, "onnx", tmp_path / "out", data, 6, say=said.append)
    skipped = [line for line in said if "unreadable" in line]
    assert len(skipped) == 1 and "skipped 1 unreadable image" in skipped[0] and "broken.jpg" in skipped[0], said
    assert res.meta["quantization_details"]["calibration_images"] == 6
    assert res.parity is not None and np.isfinite(res.parity.cosine)


def test_console_is_quiet_and_the_converters_output_is_in_the_log(ckpt, tmp_path, capfd):
    out = tmp_path / "out"
    assert export_main(["--weights", str(ckpt), "--format", "tflite", "--out", str(out)]) == 0
    captured = capfd.readouterr()
    console = (captured.out + captured.err).strip().splitlines()
    assert len(console) <= 12, console
    assert not any("LiteRT-Torch" in line or "Warning" in line for line in console), console
    log = (out / "mobilevit_test-fp32-tflite" / "export.log").read_text()
    assert "LiteRT-Torch Convert" in log


def test_several_values_per_option_and_all():
    args = build_parser().parse_args(["--format", "tflite", "onnx", "--quantize", "none", "int8", "fp32"])
    req = request_from_args(args)
    assert req.formats == ("tflite", "onnx") and req.precisions == ("fp32", "int8")
    req = request_from_args(build_parser().parse_args(["--format", "all", "--quantize", "all"]))
    assert req.formats == ("onnx", "tflite", "coreml") and req.precisions == ("fp32", "fp16", "dynamic", "int8")


def test_parity_on_generated_images_prints_no_agreement_figure():
    ref = np.array([[1.0, 0.99, -3.0], [2.0, 0.0, -1.0]])
    rep = compare(
        ref,
        np.array([[0.99, 1.0, -3.0], [2.0, 0.0, -1.0]]),
        precision="int8",
        data="32 generated images",
        gate_agreement=False,
    )

    class R:  # the fields render reads from an ExportResult
        format, precision, size_bytes, seconds, status, notes, parity = "onnx", "int8", 1e6, 3.0, "ok", [], rep
        artifact = "out/x/model.onnx"

    text = render([R()])
    header, row = text.splitlines()[:2]
    assert row.split()[4] == "n/a" and "0.5" not in row
    assert "--verify-data DIR" in text
