"""iOS demo: Swift syntax (tree-sitter), the package's shape, golden fixtures and benchmark input shared with Android.
Build settings: tests/test_app_builds.py; installer: tests/test_app_install.py.

`swift test` (ClassifierCore) and the app build need a Mac with Xcode: see ios_demo/README.md.
"""
from __future__ import annotations

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
            assert (ROOT / spec["dir"] / name).read_bytes() == data, f"{spec['dir']}/{name} is stale: run python -m mvit.export.apps.fixtures"
