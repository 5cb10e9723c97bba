"""Android demo: golden fixtures, the Kotlin core's JUnit run and its benchmark JSON read back by mvit-bench,
Kotlin syntax, app-to-core references. Build settings: tests/test_app_builds.py; installer: tests/test_app_install.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest_apps import ANDROID, GOLDEN_DIRS, ROOT, same_tree, syntax_errors  # noqa: E402

from mvit.export.apps import fixtures as app_fixtures  # noqa: E402
from mvit.model.contract import PreprocessContract  # noqa: E402


# ---------------------------------------------------------------- golden fixtures
def test_committed_fixtures_are_current(tmp_path):
    """The fixtures in both apps are what export/apps/fixtures.py writes today (same Pillow, same contract).

    The installed models' cases (shipped_models.json) come from running the artifacts: they are
    checked with tolerances in tests/test_shipped_fixtures.py.
    """
    out = tmp_path / "golden"
    app_fixtures.write_golden_fixtures(out, contract=PreprocessContract())
    for d in GOLDEN_DIRS:
        assert d.is_dir(), f"{d} missing: run python -m mvit.export.apps.fixtures"
        stale = [f for f in same_tree(out, d) if f != app_fixtures.SHIPPED_FILE]
        assert stale == [], f"{d} is stale ({stale}): run python -m mvit.export.apps.fixtures"


def test_fixture_content_covers_the_contract():
    doc = json.loads((GOLDEN_DIRS[0] / "fixtures.json").read_text())
    assert doc["schema"] == app_fixtures.FIXTURE_SCHEMA
    interps = {c["contract"]["interpolation"] for c in doc["cases"]}
    assert interps == {"nearest", "bilinear", "bicubic"}
    assert {c["contract"]["channel_order"] for c in doc["cases"]} == {"RGB", "BGR"}
    assert any(i["rotation_degrees"] for i in doc["images"]), "an EXIF-rotated image"
    assert {f["layout"] for f in doc["frames"]} == {"i420", "nv21"}
    assert any(c["contract"]["input_size"] == [256, 256] for c in doc["cases"]), "the shipped model's contract"
    for c in doc["cases"]:
        w = c["contract"]["input_size"]
        if w[0] * w[1] <= 64 * 64:
            assert "pixels_b64" in c


# ---------------------------------------------------------------- Kotlin core (JUnit through kotlinc)
@pytest.fixture(scope="module")
def kotlin_core(tmp_path_factory):
    """One run of android_demo/ci/test_core.sh (compile with warnings as errors, JUnit 4); its
    BenchmarkReportTest writes the benchmark mode's JSON to ``device_results``."""
    if shutil.which("java") is None:
        pytest.fail(
            "no java on PATH: the Kotlin core tests need a JDK 17+ (apt-get install -y openjdk-17-jdk-headless)"
        )
    out = tmp_path_factory.mktemp("kotlin") / "device_results.json"
    proc = subprocess.run(
        ["bash", str(ANDROID / "ci" / "test_core.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        env={
            **os.environ,
            "CORE_BUILD_DIR": str(ROOT / "android_demo" / "core" / "build" / "pytest"),
            "MVIT_DEVICE_RESULTS_OUT": str(out),
        },
    )
    return SimpleNamespace(rc=proc.returncode, out=proc.stdout + proc.stderr, device_results=out)


def test_kotlin_core_junit(kotlin_core):
    """Compiles core main + test sources with kotlinc (npm kotlin-compiler, pinned, -Werror) and runs JUnit 4."""
    print(kotlin_core.out[-4000:])
    assert kotlin_core.rc == 0, kotlin_core.out[-6000:]
    m = re.search(r"OK \((\d+) tests?\)", kotlin_core.out)
    assert m and int(m.group(1)) >= 40, kotlin_core.out[-3000:]


def test_the_kotlin_benchmark_report_is_read_by_mvit_bench(kotlin_core, tmp_path):
    """The JSON the Android benchmark mode writes (Kotlin core's BenchmarkReport) goes through
    ``mvit.benchmarks.device_results.read_device_results`` and ``mvit-bench --device-results`` into the report."""
    from mvit.benchmarks.device_results import read_device_results

    assert kotlin_core.device_results.is_file(), kotlin_core.out[-3000:]
    doc = read_device_results(kotlin_core.device_results)
    assert doc["schema"] == "mvit.device_results/1" and doc["source"] == "android-app"
    assert doc["device"]["model"] == "Pixel 8"
    rows = doc["rows"]
    assert [(r["precision"], r["accelerator"], r["accelerator_used"]) for r in rows] == [
        ("fp32", "cpu", "cpu"),
        ("int8", "npu", "cpu"),
    ]
    lat = rows[0]["latency"]
    assert lat["runs"] == 50 and 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"]

    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mvit.benchmarks.cli",
            "--device-results",
            str(kotlin_core.device_results),
            "--out",
            str(out),
            "--no-plot",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bench = json.loads((out / "bench.json").read_text())
    text = json.dumps(bench)
    assert "Pixel 8" in text and "model_int8.tflite" in text, text[:2000]
    md = (out / "bench.md").read_text()
    assert "Pixel 8" in md and "model_int8.tflite" in md, md
    # The benchmark that survives a phone: rounds, thermal state, throttling, golden check, read back and shown.
    assert [
        (r["rounds"], r["thermal_before"], r["thermal_after"], r["throttled"], r["golden"]["passed"]) for r in rows
    ] == [(5, "none", "light", True, True), (5, "light", "light", True, False)]
    assert "golden top-3 ok, THROTTLED, thermal none to light, 5 rounds" in md, md
    assert "FAILED: top-3 is not plastic, glass, metal" in md, md


def test_app_code_uses_only_what_core_declares():
    """Every ``org.mvit.core`` name the app module imports is declared in core's main sources (the app
    cannot be compiled here; a renamed core class would otherwise only break on a developer's machine)."""
    declared = set()
    for f in (ANDROID / "core" / "src" / "main" / "kotlin").rglob("*.kt"):
        declared |= set(
            re.findall(
                r"^(?:(?:data|enum|sealed|abstract|open|internal)\s+)*(?:class|object|interface|fun|val)\s+(?:<[^>]+>\s*)?(\w+)",
                f.read_text(),
                re.M,
            )
        )
    app = [f for f in (ANDROID / "app" / "src").rglob("*.kt")]
    assert len(app) >= 6
    imported = {(f.name, n) for f in app for n in re.findall(r"^import org\.mvit\.core\.(\w+)", f.read_text(), re.M)}
    assert len(imported) >= 20
    missing = sorted(f"{f}: {n}" for f, n in imported if n not in declared)
    assert missing == []


# ---------------------------------------------------------------- Kotlin syntax of every file
def _kotlin_files():
    return sorted(p for p in ANDROID.rglob("*") if p.suffix in (".kt", ".kts") and "build" not in p.parts)


def test_every_kotlin_file_parses():
    import tree_sitter_kotlin

    files = _kotlin_files()
    assert len(files) >= 15
    errors = [e for f in files for e in syntax_errors(tree_sitter_kotlin.language(), f)]
    assert errors == []


def test_kotlin_syntax_check_catches_errors(tmp_path):
    import tree_sitter_kotlin

    bad = tmp_path / "Bad.kt"
    bad.write_text("class A {\n  fun f( = 1\n")
    assert syntax_errors(tree_sitter_kotlin.language(), bad)
