"""mvit-bench --adb against a fake adb that replays outputs recorded in the real tools' formats
(tests/adb_recordings/README.md says where each format comes from), every error case included."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from conftest import PIXEL_8

from mvit.benchmarks.cli import main as bench_main
from mvit.benchmarks.device_results import read_device_results

REC = Path(__file__).parent / "adb_recordings"

FAKE_ADB = """#!{python}
import json, os, re, sys
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
line = " ".join(args)
if args[:1] == ["push"] and not os.path.exists(args[1]):
    sys.stderr.write("adb: error: cannot stat '%s': No such file or directory\\n" % args[1])
    sys.exit(1)
for rule in json.load(open(os.environ["FAKE_ADB_SCENARIO"])):
    if re.search(rule["match"], line):
        for stream, key in ((sys.stdout, "stdout"), (sys.stderr, "stderr")):
            if rule.get(key):
                stream.write(open(os.path.join({rec!r}, rule[key])).read())
        sys.exit(rule.get("rc", 0))
"""

# The happy path: one authorised Pixel 8; benchmark_model on CPU and GPU, executor_runner via logcat.
PHONE = [
    {"match": r"^devices$", "stdout": "devices_one.txt"},
    {"match": r"^shell getprop$", "stdout": "getprop.txt"},
    {"match": r"benchmark_model .*--use_gpu=true", "stdout": "benchmark_model_gpu.txt"},
    {
        "match": r"benchmark_model .*--graph=\S*flex",
        "stdout": "benchmark_model_rejected.stdout.txt",
        "stderr": "benchmark_model_rejected.stderr.txt",
        "rc": 1,
    },
    {"match": r"benchmark_model .*--use_xnnpack=true", "stdout": "benchmark_model_cpu.txt"},
    {"match": r"executor_runner .*custom\.pte", "rc": 134},
    {"match": r"executor_runner ", "stdout": "executor_runner_stdout.txt"},
    {"match": r"^logcat -d -s ExecuTorch:I$", "stdout": "executor_runner_logcat.txt"},
]


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """A fake adb on PATH replaying ``rules`` (PHONE by default); returns (set_rules, calls, files)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable, rec=str(REC)))
    adb.chmod(adb.stat().st_mode | stat.S_IXUSR)
    scenario, log = tmp_path / "scenario.json", tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_SCENARIO", str(scenario))
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    files = {}
    for name, data in (
        ("model_int8.tflite", b"TFL3 model bytes"),
        ("flex.tflite", b"TFL3 flex"),
        ("model_int8.pte", b"ET12 program"),
        ("custom.pte", b"ET12 custom"),
        ("benchmark_model", b"\x7fELF aarch64"),
        ("executor_runner", b"\x7fELF aarch64"),
    ):
        files[name] = tmp_path / name
        files[name].write_bytes(data)

    def set_rules(rules):
        scenario.write_text(json.dumps(rules))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    set_rules(PHONE)
    return set_rules, calls, files


def _bench(args, capfd):
    try:
        rc = bench_main(args)
    except SystemExit as e:
        rc = e.code
    return rc, capfd.readouterr().err


def _one_error_line(rc, err, message):
    """Exit status 2 and one error line (progress lines of the steps before it may precede it)."""
    errors = [l for l in err.splitlines() if l.startswith("mvit-bench: error:")]
    assert rc == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err, err


def test_adb_rows_from_both_tools(phone, tmp_path, capfd):
    _, calls, f = phone
    out = tmp_path / "out"
    rc, err = _bench(
        [
            "--adb",
            str(f["model_int8.tflite"]),
            str(f["model_int8.pte"]),
            "--adb-gpu",
            "--adb-benchmark-binary",
            str(f["benchmark_model"]),
            "--adb-benchmark-binary",
            f"executorch={f['executor_runner']}",
            "--adb-warmup",
            "3",
            "--out",
            str(out),
            "--no-plot",
        ],
        capfd,
    )
    assert rc == 0, err
    tfl = read_device_results(out / "device-39021FDH2000KR-benchmark_model.json")
    et = read_device_results(out / "device-39021FDH2000KR-executor_runner.json")
    assert tfl["device"] == PIXEL_8
    cpu, gpu = tfl["rows"]
    assert (cpu["accelerator"], cpu["accelerator_used"], cpu["threads"]) == ("cpu", "cpu", 4)
    assert cpu["latency"] == pytest.approx(
        {
            "runs": 103,
            "warmup": 52,
            "median_ms": 9.766,
            "p90_ms": None,
            "p95_ms": 10.302,
            "p5_ms": 9.531,
            "min_ms": 9.497,
            "mean_ms": 9.82951,
            "std_ms": 0.341,
        }
    )
    assert cpu["load_ms"] == pytest.approx(41.234) and cpu["first_ms"] == pytest.approx(25.312)
    assert "XNNPACK delegate: completely" in cpu["note"] and "p95, not p90" in cpu["note"]
    assert gpu["accelerator_used"] == "gpu" and "partially, 2 delegate kernels" in gpu["note"]
    assert gpu["latency"]["median_ms"] == pytest.approx(6.857)
    (row,) = et["rows"]
    assert row["threads"] == 4 and row["load_ms"] == pytest.approx(33.418752)
    assert row["first_ms"] == pytest.approx(22.705114)
    assert row["latency"]["runs"] == 10 and row["latency"]["warmup"] == 3  # 13 iterations, 3 warm-up
    assert row["latency"]["median_ms"] == pytest.approx(11.508035)  # iterations 4..13
    assert row["latency"]["min_ms"] == pytest.approx(11.388519)
    assert row["artifact_sha256"] and row["format"] == "executorch"
    md = (out / "bench.md").read_text()
    assert "## Phone: Google Pixel 8 (Tensor G3, Android 15)" in md and "| p95 10.30 |" in md
    cmds = [" ".join(c) for c in calls()]
    assert any("--num_threads=4" in c and "--use_xnnpack=true" in c and "--warmup_runs=3" in c for c in cmds)
    assert any("--cpu_threads=4" in c and "--num_executions=53" in c for c in cmds)
    assert any(c.endswith("logcat -c") for c in cmds)  # cleared before the run it reads back
    assert all(c[:2] == ["-s", "39021FDH2000KR"] for c in calls()[1:])


@pytest.mark.parametrize(
    "devices, extra, message",
    [
        ("devices_none.txt", [], "no Android device connected"),
        ("devices_unauthorized.txt", [], "device 39021FDH2000KR is unauthorized: unlock it and accept"),
        ("devices_two.txt", [], "2 devices connected (39021FDH2000KR, emulator-5554): pass the one to use"),
        ("devices_two.txt", ["emulator-5554"], "device emulator-5554 is offline, not ready"),
        ("devices_one.txt", ["R58M123"], "device R58M123 is not connected (adb devices lists: 39021FDH2000KR)"),
    ],
)
def test_device_problems_one_line(phone, tmp_path, capfd, devices, extra, message):
    set_rules, calls, f = phone
    set_rules([{"match": r"^devices$", "stdout": devices}] + PHONE[1:])
    rc, err = _bench(
        [
            "--adb",
            *extra,
            str(f["model_int8.tflite"]),
            "--adb-benchmark-binary",
            str(f["benchmark_model"]),
            "--out",
            str(tmp_path / "out"),
            "--no-plot",
        ],
        capfd,
    )
    _one_error_line(rc, err, message)
    assert not any(c[-1:] == ["getprop"] for c in calls())  # nothing ran on a phone


@pytest.mark.parametrize(
    "case, message",
    [
        ("no binary", "no benchmark_model binary given: pass --adb-benchmark-binary tflite=PATH/TO/benchmark_model"),
        ("missing path", "--adb-benchmark-binary tflite=/nonexistent/benchmark_model: no such file"),
        (
            "not on device",
            "benchmark_model does not run on Google Pixel 8: /system/bin/sh: "
            "/data/local/tmp/mvit/benchmark_model: inaccessible or not found",
        ),
        ("cannot link", "executor_runner does not run on Google Pixel 8: CANNOT LINK EXECUTABLE"),
        ("no adb", "adb not found (/nonexistent/adb): install Android platform-tools"),
        ("unnamed binary", "--adb-benchmark-binary"),
    ],
)
def test_binary_problems_one_line(phone, tmp_path, capfd, case, message):
    set_rules, _, f = phone
    model, binary = f["model_int8.tflite"], [str(f["benchmark_model"])]
    extra = []
    if case == "no binary":
        binary = []
    elif case == "missing path":
        binary = ["tflite=/nonexistent/benchmark_model"]
    elif case == "not on device":
        set_rules([{"match": r"benchmark_model --graph", "stderr": "shell_not_found.txt", "rc": 127}] + PHONE)
    elif case == "cannot link":
        model, binary = f["model_int8.pte"], [f"executorch={f['executor_runner']}"]
        set_rules([{"match": r"executor_runner --model", "stderr": "shell_cannot_link.txt", "rc": 1}] + PHONE)
    elif case == "no adb":
        extra = ["--adb-path", "/nonexistent/adb"]
    elif case == "unnamed binary":
        renamed = tmp_path / "runner.bin"
        renamed.write_bytes(b"x")
        binary = [str(renamed)]
    args = ["--adb", str(model), "--out", str(tmp_path / "out"), "--no-plot", *extra]
    for b in binary:
        args += ["--adb-benchmark-binary", b]
    _one_error_line(*_bench(args, capfd), message)


def test_rejected_models_get_one_line_each_and_the_rest_runs(phone, tmp_path, capfd):
    set_rules, _, f = phone
    out = tmp_path / "out"
    rules = list(PHONE)
    # the rejected .pte's logcat is read after its own run: replay it for that run only
    rules.insert(0, {"match": r"^logcat -d -s ExecuTorch:I$", "stdout": "executor_runner_rejected_logcat.txt"})
    set_rules(rules)
    rc, err = _bench(
        [
            "--adb",
            "39021FDH2000KR",
            str(f["flex.tflite"]),
            str(f["custom.pte"]),
            str(f["model_int8.tflite"]),
            "--adb-benchmark-binary",
            f"tflite={f['benchmark_model']}",
            "--adb-benchmark-binary",
            f"executorch={f['executor_runner']}",
            "--out",
            str(out),
            "--no-plot",
        ],
        capfd,
    )
    errors = [l for l in err.splitlines() if l.startswith("mvit-bench: error:")]
    assert rc == 2 and len(errors) == 2, err
    assert "flex.tflite: benchmark_model rejected it on Google Pixel 8 (cpu): Select TensorFlow op(s)" in errors[0]
    assert (
        "custom.pte: executor_runner rejected it on Google Pixel 8 (cpu): Missing operator: [2] mvit::custom_op.out"
        in errors[1]
    )
    rows = read_device_results(out / "device-39021FDH2000KR-benchmark_model.json")["rows"]
    assert [r["artifact"] for r in rows] == ["model_int8.tflite"]  # the good file still measured
    assert "model_int8.tflite" in (out / "bench.md").read_text()
