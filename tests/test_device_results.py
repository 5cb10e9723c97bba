"""Phone result files (mvit.device_results/1): validation with one-line errors, and merging into
mvit-bench's reports with no PC rows at all."""

import copy
import json
import struct

import pytest
from conftest import PIXEL_8

from mvit.benchmarks.cli import main as bench_main
from mvit.benchmarks.device_results import DeviceResultsError, read_device_results, row_checks

ROW = {
    "model": "mobilevit_xxs",
    "artifact": "model_int8.tflite",
    "artifact_sha256": "ab" * 32,
    "format": "tflite",
    "precision": "int8",
    "accelerator": "npu",
    "accelerator_used": "cpu",
    "threads": 4,
    "latency": {"runs": 50, "warmup": 10, "median_ms": 9.8, "p90_ms": 11.2, "min_ms": 9.1, "mean_ms": 10.0},
    "load_ms": 41.0,
    "first_ms": 25.3,
    "top3": [{"label": "plastic", "score": 0.91}, {"label": "glass", "score": 0.05}, {"label": "metal", "score": 0.02}],
    "note": "NNAPI refused the model; ran on the CPU",
}
GOOD = {
    "schema": "mvit.device_results/1",
    "created": "2026-12-01T12:00:00Z",
    "source": "android-app",
    "device": PIXEL_8,
    "rows": [ROW],
}
IPHONE = {
    "schema": "mvit.device_results/1",
    "created": "2026-12-01T12:05:00+00:00",
    "source": "ios-app",
    "device": {
        "manufacturer": "Apple",
        "model": "iPhone15,2",
        "soc": None,
        "os": "iOS",
        "os_version": "18.1",
        "abi": None,
    },
    "rows": [
        dict(
            ROW,
            artifact="model.mlpackage",
            format="coreml",
            precision="fp16",
            accelerator="all",
            accelerator_used="all",
            threads=None,
            top3=None,
            note="",
            latency={"runs": 50, "warmup": 10, "median_ms": 2.1, "p90_ms": 2.4, "min_ms": 2.0, "mean_ms": 2.2},
        )
    ],
}


def _write(tmp_path, data, name="phone.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_reads_a_valid_file(tmp_path):
    assert read_device_results(_write(tmp_path, GOOD)) == GOOD
    assert read_device_results(_write(tmp_path, IPHONE))["device"]["model"] == "iPhone15,2"


def _broken(path, value):
    data = copy.deepcopy(GOOD)
    *keys, last = path
    target = data
    for k in keys:
        target = target[k]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        ("{not json", "not JSON (Expecting property name enclosed in double quotes at line 1)"),
        ("[]", "the top level must be a JSON object"),
        (
            _broken(["schema"], "mvit.device_results/2"),
            "schema is 'mvit.device_results/2', expected 'mvit.device_results/1'",
        ),
        (_broken(["created"], "yesterday"), "created 'yesterday' is not an ISO-8601 time"),
        (_broken(["source"], "adb"), "source 'adb' is not one of android-app"),
        (_broken(["device", "model"], ""), "device.model must be a non-empty string"),
        (_broken(["device", "soc"], 3), "device.soc must be a non-empty string or null"),
        (_broken(["rows"], []), "rows must be a non-empty list"),
        (
            _broken(["rows", 0, "format"], "caffe"),
            "rows[0].format 'caffe' is not one of tflite, coreml, onnx, executorch",
        ),
        (_broken(["rows", 0, "accelerator_used"], "tpu"), "rows[0].accelerator_used 'tpu' is not one of"),
        (
            _broken(["rows", 0, "artifact_sha256"], "xyz"),
            "rows[0].artifact_sha256 must be 64 lowercase hex digits or null",
        ),
        (_broken(["rows", 0, "threads"], 0), "rows[0].threads must be an integer > 0 or null"),
        (_broken(["rows", 0, "latency", "median_ms"], -1), "rows[0].latency.median_ms must be a number > 0"),
        (
            _broken(["rows", 0, "latency", "p90_ms"], 5.0),
            "rows[0].latency needs min_ms <= median_ms <= p90_ms (got 9.1, 9.8, 5.0)",
        ),
        (_broken(["rows", 0, "latency", "runs"], KeyError), "rows[0].latency.runs must be an integer > 0"),
        (_broken(["rows", 0, "load_ms"], "fast"), "rows[0].load_ms must be a number >= 0 or null"),
        (_broken(["rows", 0, "top3"], [{"label": "x"}]), "rows[0].top3[0] must be {label: string, score: number}"),
        (_broken(["rows", 0], "row"), "rows[0] must be an object"),
        (_broken(["rows", 0, "rounds"], 0), "rows[0].rounds must be an integer >= 1 or null"),
        (_broken(["rows", 0, "thermal_after"], ""), "rows[0].thermal_after must be a non-empty string or null"),
        (_broken(["rows", 0, "throttled"], "yes"), "rows[0].throttled must be true, false or null"),
        (
            _broken(["rows", 0, "golden"], {"expected": ["metal"], "checked": 2, "passed": True}),
            "rows[0].golden must be",
        ),
        (_broken(["rows", 0, "golden"], {"expected": ["metal"], "checked": 1}), "rows[0].golden must be"),
    ],
)
def test_bad_files_one_line(tmp_path, data, message):
    with pytest.raises(DeviceResultsError) as e:
        read_device_results(_write(tmp_path, data))
    text = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in text
    assert text.startswith(str(tmp_path / "phone.json") + ": ") and message in text, text


def test_the_checks_of_a_row_are_read_and_described(tmp_path):
    row = dict(
        ROW,
        accelerator="npu",
        accelerator_used="npu+cpu",
        rounds=5,
        thermal_before="none",
        thermal_after="moderate",
        throttled=True,
        golden={"expected": ["plastic", "glass", "metal"], "checked": 2, "passed": False},
    )
    doc = read_device_results(_write(tmp_path, dict(GOOD, rows=[row])))
    assert (
        row_checks(doc["rows"][0])
        == "FAILED: top-2 is not plastic, glass, THROTTLED, thermal none to moderate, 5 rounds"
    )
    assert row_checks(ROW) == "–"
    assert (
        row_checks(dict(ROW, golden={"expected": ["a"], "checked": 1, "passed": True}, throttled=False))
        == "golden top-1 ok"
    )


def test_the_documented_example_is_valid():
    from pathlib import Path

    doc = read_device_results(Path(__file__).resolve().parents[1] / "docs" / "device_results.example.json")
    assert row_checks(doc["rows"][0]) == "golden top-3 ok, THROTTLED, thermal none to light, 5 rounds"


def test_missing_file(tmp_path):
    with pytest.raises(DeviceResultsError, match="no such file"):
        read_device_results(tmp_path / "absent.json")


def test_cli_device_results_only(tmp_path, capfd):
    out = tmp_path / "out"
    rc = bench_main(
        [
            "--device-results",
            str(_write(tmp_path, GOOD)),
            str(_write(tmp_path, IPHONE, "iphone.json")),
            "--out",
            str(out),
            "--no-plot",
        ]
    )
    assert rc == 0, capfd.readouterr().err
    report = json.loads((out / "bench.json").read_text())
    assert report["models"] == [] and [r["device_label"] for r in report["device_runs"]] == [
        "Google Pixel 8 (Tensor G3, Android 15)",
        "Apple iPhone15,2 (iOS 18.1)",
    ]
    md = (out / "bench.md").read_text()
    assert "## Phone: Google Pixel 8 (Tensor G3, Android 15)" in md and "## Phone: Apple iPhone15,2 (iOS 18.1)" in md
    assert "| mobilevit_xxs | `model_int8.tflite` | tflite | int8 | npu (cpu) | 4 | 9.80 | 11.20 |" in md
    assert "| plastic 0.91 | – | NNAPI refused the model" in md, md  # the checks column: none in an older file
    assert "plastic 0.91" in md
    # both phones in one side-by-side table
    side = md.split("## Latency, this PC and the phones side by side")[1].split("## Phone")[0]
    assert "Google Pixel 8" in side and "Apple iPhone15,2" in side
    assert not (out / "bench.png").exists()


def test_cli_device_results_plot_and_bad_file(tmp_path, capfd):
    out = tmp_path / "out"
    assert bench_main(["--device-results", str(_write(tmp_path, GOOD)), "--out", str(out)]) == 0
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24])[0] > 300
    capfd.readouterr()
    rc = bench_main(
        [
            "--device-results",
            str(_write(tmp_path, _broken(["rows", 0, "format"], "caffe"), "bad.json")),
            "--out",
            str(tmp_path / "out2"),
            "--no-plot",
        ]
    )
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("mvit-bench: error:") and "rows[0].format" in err[0]
    assert not (tmp_path / "out2" / "bench.json").exists()
