"""iOS demo: Swift syntax (tree-sitter), the package's shape, golden fixtures and benchmark input shared with Android,
and the benchmark JSON in the Swift code's own schema read back through ``mvit-bench --device-results``.
Build settings: tests/test_app_builds.py; installer: tests/test_app_install.py.

`swift test` (ClassifierCore) and the app build need a Mac with Xcode: see ios_demo/README.md.
"""

from __future__ import annotations

import json
import re

from conftest_apps import GOLDEN_DIRS, IOS, ROOT, same_tree, syntax_errors  # noqa: E402

from mvit.export.apps import fixtures as app_fixtures  # noqa: E402


def _swift_files():
    return sorted(p for p in IOS.rglob("*.swift") if ".build" not in p.parts)


def test_every_swift_file_parses():
    import tree_sitter_swift

    files = _swift_files()
    assert len(files) >= 9
    errors = [e for f in files for e in syntax_errors(tree_sitter_swift.language(), f)]
    assert errors == []


def test_swift_syntax_check_catches_errors(tmp_path):
    import tree_sitter_swift

    bad = tmp_path / "Bad.swift"
    bad.write_text("struct A {\n  func f( -> Int { return 1 }\n")
    assert syntax_errors(tree_sitter_swift.language(), bad)


def test_classifier_core_imports_only_foundation():
    """The tested core stays portable (``swift test`` runs it on macOS and Linux); app frameworks stay in the app."""
    files = list((IOS / "ClassifierCore" / "Sources").rglob("*.swift"))
    assert len(files) >= 4
    for f in files:
        imports = set(re.findall(r"^\s*import\s+(\w+)", f.read_text(), re.M))
        assert imports <= {"Foundation"}, f"{f.name} imports {imports}"
    resources = IOS / "ClassifierCore" / "Tests" / "ClassifierCoreTests" / "Resources" / "golden"
    assert (resources / "fixtures.json").is_file() and (resources / app_fixtures.SHIPPED_FILE).is_file()


def test_golden_fixtures_and_benchmark_input_are_shared_with_android():
    ios, android = GOLDEN_DIRS[1], GOLDEN_DIRS[0]
    assert (ios / "fixtures.json").is_file()
    assert same_tree(android, ios) == []
    expected = app_fixtures.benchmark_input_files(android)
    for spec in app_fixtures.APPS.values():
        for name, data in expected.items():
            assert (ROOT / spec["dir"] / name).read_bytes() == data, (
                f"{spec['dir']}/{name} is stale: run python -m mvit.export.apps.fixtures"
            )


IOS_RESULTS = IOS / "ClassifierCore" / "Tests" / "ClassifierCoreTests" / "Resources" / "device_results_ios.json"


def _swift_coding_keys(struct: str) -> set[str]:
    """The JSON keys of ``struct`` in BenchmarkReport.swift: its CodingKeys, ``case a, b`` or ``case a = "b"``."""
    text = (IOS / "ClassifierCore" / "Sources" / "ClassifierCore" / "BenchmarkReport.swift").read_text()
    body = re.search(rf"public struct {struct}\b.*?enum CodingKeys: String, CodingKey \{{(.*?)\}}", text, re.S)
    assert body, f"no CodingKeys in {struct}"
    keys = set()
    for line in re.findall(r"^\s*case (.+)$", body.group(1), re.M):
        for item in line.split(","):
            name, _, raw = item.partition("=")
            keys.add(raw.strip().strip('"') if raw else name.strip())
    return keys


def test_the_ios_benchmark_json_follows_the_swift_schema_and_reads_back(tmp_path):
    """The fixture the Swift XCTest decodes and re-encodes unchanged (BenchmarkChecksTests) has exactly the
    keys BenchmarkReport.swift writes, and mvit-bench --device-results reads it and shows its checks."""
    from mvit.benchmarks.cli import main as bench_main
    from mvit.benchmarks.device_results import read_device_results

    doc = json.loads(IOS_RESULTS.read_text())
    row_keys = _swift_coding_keys("BenchmarkRow")
    assert {"rounds", "thermal_before", "thermal_after", "throttled", "golden", "artifact_sha256"} <= row_keys
    assert all(set(r) == row_keys for r in doc["rows"]), [sorted(set(r) ^ row_keys) for r in doc["rows"]]
    assert set(doc["device"]) == _swift_coding_keys("DeviceInfo")
    assert all(set(r["latency"]) == _swift_coding_keys("LatencyStats") for r in doc["rows"])
    units = re.search(
        r"computeUnits = \[(.*?)\]",
        (IOS / "ClassifierCore" / "Sources" / "ClassifierCore" / "BenchmarkReport.swift").read_text(),
    ).group(1)
    assert all(f'"{r["accelerator"]}"' in units for r in doc["rows"])

    assert read_device_results(IOS_RESULTS) == doc
    out = tmp_path / "out"
    assert bench_main(["--device-results", str(IOS_RESULTS), "--out", str(out), "--no-plot"]) == 0
    md = (out / "bench.md").read_text()
    assert "## Phone: Apple iPhone15,2 (iOS 18.1)" in md
    assert "| all (cpu_and_ne) |" in md and "| cpu_only (unknown) |" in md, md
    assert "golden top-3 ok, THROTTLED, thermal fair to serious, 5 rounds" in md, md
    assert "FAILED: top-2 is not metal, paper" in md, md
    rows = json.loads((out / "bench.json").read_text())["device_runs"][0]["rows"]
    assert [r["golden"]["passed"] for r in rows] == [True, False]
