"""iOS demo: Swift syntax (tree-sitter), project structure, golden fixtures copy, installer.

`swift test` (ClassifierCore) and the app build need a Mac with Xcode: see ios_demo/README.md.
"""
from __future__ import annotations

import json
import plistlib
import re

import pytest

from conftest_apps import GOLDEN_DIRS, IOS, same_tree, syntax_errors  # noqa: E402
from mvit.apps import fixtures as app_fixtures  # noqa: E402
from mvit.apps.install import install_into_app  # noqa: E402


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


def test_classifier_core_is_a_foundation_only_package():
    pkg = (IOS / "ClassifierCore" / "Package.swift").read_text()
    assert '.target(name: "ClassifierCore")' in pkg
    assert 'name: "ClassifierCoreTests"' in pkg and 'dependencies: ["ClassifierCore"]' in pkg
    assert '.copy("Resources/golden")' in pkg
    assert ".iOS(.v17)" in pkg
    for f in (IOS / "ClassifierCore" / "Sources").rglob("*.swift"):
        imports = set(re.findall(r"^\s*import\s+(\w+)", f.read_text(), re.M))
        assert imports <= {"Foundation"}, f"{f.name} imports {imports}"
    tests = (IOS / "ClassifierCore" / "Tests" / "ClassifierCoreTests" / "ClassifierCoreTests.swift").read_text()
    assert "import XCTest" in tests and "Bundle.module" in tests and "fixtures.json" in tests


def test_golden_fixtures_are_shared_with_android():
    ios, android = GOLDEN_DIRS[1], GOLDEN_DIRS[0]
    assert (ios / "fixtures.json").is_file()
    assert same_tree(android, ios) == []


def test_info_plist_and_xcodegen_spec():
    info = plistlib.loads((IOS / "MVitDemo" / "Info.plist").read_bytes())
    assert info["NSCameraUsageDescription"].strip()
    assert "UILaunchScreen" in info
    spec = (IOS / "project.yml").read_text()
    import yaml

    y = yaml.safe_load(spec)
    assert y["packages"]["ClassifierCore"]["path"] == "ClassifierCore"
    target = y["targets"]["MVitDemo"]
    assert target["type"] == "application" and target["platform"] == "iOS"
    assert float(target["deploymentTarget"]) >= 17.0
    assert {"package": "ClassifierCore", "product": "ClassifierCore"} in target["dependencies"]
    assert target["settings"]["base"]["INFOPLIST_FILE"] == "MVitDemo/Info.plist"
    assert (IOS / target["sources"][0]["path"]).is_dir()


def test_app_sources_use_the_specified_apis():
    src = "\n".join(p.read_text() for p in (IOS / "MVitDemo").glob("*.swift"))
    assert "VNCoreMLRequest" in src and "regionOfInterest" in src and "imageCropAndScaleOption" in src
    assert "alwaysDiscardsLateVideoFrames = true" in src
    assert "DispatchQueue(label: \"mvit.camera.session\")" in src
    assert "computeUnits" in src and ".cpuAndGPU" in src and ".cpuOnly" in src and ".all" in src
    assert "PhotosPicker" in src and "requestAccess" in src and "openSettingsURLString" in src
    assert "RollingAverage" in src and "import ClassifierCore" in src
    assert "@main" in src


@pytest.mark.parametrize("variant", ["float", "int8"])
def test_install_into_ios_app(tmp_path, variant):
    d = tmp_path / "export"
    d.mkdir()
    meta = app_fixtures.example_model_meta("int8" if variant == "int8" else "float")
    meta["format"] = "coreml"
    pkg = d / "mvit.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    (pkg / "Manifest.json").write_text("{}")
    (d / "model_meta.json").write_text(json.dumps(meta))
    root = tmp_path / "repo"
    paths = install_into_app(d, "ios", variant, app_root=root)
    models = root / "ios_demo" / "MVitDemo" / "Models"
    name = "Model.mlpackage" if variant == "float" else "ModelInt8.mlpackage"
    assert paths["model"] == models / name and (models / name / "Manifest.json").is_file()
    assert (models / "labels.txt").read_text().splitlines() == meta["labels"]
    # Installing again swaps the package atomically and leaves nothing behind.
    install_into_app(pkg, "ios", variant, app_root=root)
    assert sorted(p.name for p in models.iterdir() if p.name.startswith(".")) == []
