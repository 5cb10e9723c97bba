"""Android demo: golden fixtures, Kotlin core JUnit run, Kotlin syntax, project structure, installer."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest_apps import ANDROID, GOLDEN_DIRS, ROOT, same_tree, syntax_errors  # noqa: E402
from mvit.apps import fixtures as app_fixtures  # noqa: E402
from mvit.apps.install import AppInstallError, install_into_app, validate_meta  # noqa: E402
from mvit.export.metadata import meta_problems  # noqa: E402
from mvit.model.contract import PreprocessContract  # noqa: E402


# ---------------------------------------------------------------- golden fixtures
def test_committed_fixtures_are_current(tmp_path):
    """The fixtures in both apps are what export/app_fixtures.py writes today (same Pillow, same contract).

    The installed models' cases (shipped_models.json) come from running the artifacts: they are
    checked with tolerances in tests/test_shipped_fixtures.py.
    """
    out = tmp_path / "golden"
    app_fixtures.write_golden_fixtures(out, contract=PreprocessContract())
    for d in GOLDEN_DIRS:
        assert d.is_dir(), f"{d} missing: run python -m mvit.apps.fixtures"
        stale = [f for f in same_tree(out, d) if f != app_fixtures.SHIPPED_FILE]
        assert stale == [], f"{d} is stale ({stale}): run python -m mvit.apps.fixtures"


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


def test_topk_hook_adds_model_cases(tmp_path):
    import numpy as np

    labels = ["a", "b", "c", "d"]

    def logits_fn(batch):
        assert batch.dtype == np.float32 and batch.shape[1:] == (3, 24, 32)
        means = batch.mean(axis=(2, 3))  # (N, 3)
        return np.concatenate([means, -means[:, :1]], axis=1)

    c = PreprocessContract(input_size=(24, 32))
    path = app_fixtures.write_golden_fixtures(tmp_path, c, checkpoint=logits_fn, labels=labels)
    doc = json.loads(path.read_text())
    assert len(doc["model_cases"]) == len(doc["images"])
    for mc in doc["model_cases"]:
        assert [t["index"] for t in mc["topk"]] == app_fixtures.top_k(app_fixtures.softmax(np.array(mc["logits"])), 3)
        assert mc["topk"][0]["label"] in labels
    with pytest.raises(TypeError):
        app_fixtures.write_golden_fixtures(tmp_path / "x", c, checkpoint="model.pt")


# ---------------------------------------------------------------- Kotlin core (JUnit through kotlinc)
@pytest.mark.skipif(shutil.which("java") is None, reason="no java on PATH: the Kotlin core tests need a JDK")
def test_kotlin_core_junit():
    """Compiles core main + test sources with kotlinc (npm kotlin-compiler, pinned) and runs JUnit 4."""
    proc = subprocess.run(["bash", str(ANDROID / "ci" / "test_core.sh")], capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "CORE_BUILD_DIR": str(ROOT / "android_demo" / "core" / "build" / "pytest")})
    out = proc.stdout + proc.stderr
    print(out[-4000:])
    assert proc.returncode == 0, out[-6000:]
    m = re.search(r"OK \((\d+) tests?\)", out)
    assert m and int(m.group(1)) >= 20, out[-3000:]


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


# ---------------------------------------------------------------- project structure
def test_gradle_project_structure():
    settings = (ANDROID / "settings.gradle.kts").read_text()
    assert 'include(":core", ":app")' in settings
    catalog = (ANDROID / "gradle" / "libs.versions.toml").read_text()
    assert re.search(r'^litert = "2\.\d+\.\d+"', catalog, re.M)
    assert 'module = "com.google.ai.edge.litert:litert-gpu"' in catalog
    assert re.search(r'^camerax = "1\.5\.\d+"', catalog, re.M)
    assert "compose-bom" in catalog and "material3" in catalog
    app = (ANDROID / "app" / "build.gradle.kts").read_text()
    assert "minSdk = 24" in app
    assert 'noCompress += "tflite"' in app
    assert "compose = true" in app and 'project(":core")' in app
    assert "libs.litert.gpu" in app
    core = (ANDROID / "core" / "build.gradle.kts").read_text()
    assert "kotlin.jvm" in core and "com.android" not in core and "android {" not in core
    manifest = (ANDROID / "app" / "src" / "main" / "AndroidManifest.xml").read_text()
    assert "android.permission.CAMERA" in manifest


def test_core_is_pure_kotlin():
    for f in (ANDROID / "core" / "src").rglob("*.kt"):
        text = f.read_text()
        assert not re.search(r"^\s*import\s+android", text, re.M), f
        assert "org.json" not in text, f


def test_app_uses_camera_and_litert_as_specified():
    src = "\n".join(p.read_text() for p in (ANDROID / "app" / "src" / "main" / "kotlin").rglob("*.kt"))
    assert "STRATEGY_KEEP_ONLY_LATEST" in src
    assert "newSingleThreadExecutor" in src
    assert "CompiledModel.create" in src and "Accelerator.GPU" in src
    assert "GPU unavailable" in src, "the fallback must show the backend actually used"
    assert "RequestPermission" in src and "PickVisualMedia" in src
    assert "rotationDegrees" in src
    for asset in ("model.tflite", "model_meta.json", "model_int8.tflite", "model_int8_meta.json", "labels.txt"):
        assert asset in src, asset


# ---------------------------------------------------------------- installer
def _fake_export(tmp_path, variant="float", fmt="tflite", name="mvit"):
    d = tmp_path / f"export_{variant}_{fmt}"
    d.mkdir()
    meta = app_fixtures.example_model_meta("int8" if variant == "int8" else "float")
    meta["format"] = fmt
    if fmt == "tflite":
        (d / f"{name}.tflite").write_bytes(b"TFL3" + bytes(range(64)))
    else:
        pkg = d / f"{name}.mlpackage"
        (pkg / "Data").mkdir(parents=True)
        (pkg / "Manifest.json").write_text("{}")
        (pkg / "Data" / "weights.bin").write_bytes(b"\0" * 32)
    (d / "model_meta.json").write_text(json.dumps(meta))
    (d / "labels.txt").write_text("\n".join(meta["labels"]) + "\n")
    return d, meta


@pytest.mark.parametrize("variant", ["float", "int8"])
def test_install_into_android_app(tmp_path, variant):
    src, meta = _fake_export(tmp_path, variant)
    root = tmp_path / "repo"
    paths = install_into_app(src, "android", variant, app_root=root)
    assets = root / "android_demo" / "app" / "src" / "main" / "assets"
    model, meta_name = ("model.tflite", "model_meta.json") if variant == "float" else ("model_int8.tflite", "model_int8_meta.json")
    assert paths["model"] == assets / model and (assets / model).read_bytes().startswith(b"TFL3")
    assert json.loads((assets / meta_name).read_text()) == meta
    assert (assets / "labels.txt").read_text().splitlines() == meta["labels"]
    assert not [p for p in assets.iterdir() if p.name.startswith(".")], "no temporary files left"
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in assets.iterdir()), "assets readable by all (not mkstemp's 0600)"
    # Re-installing replaces in place.
    install_into_app(src / "mvit.tflite", "android", variant, app_root=root)


def test_install_rejects_bad_metadata(tmp_path):
    src, meta = _fake_export(tmp_path)
    root = tmp_path / "repo"
    bad = dict(meta, num_classes=5)
    (src / "model_meta.json").write_text(json.dumps(bad))
    with pytest.raises(AppInstallError, match="num_classes"):
        install_into_app(src, "android", app_root=root)
    bad = json.loads(json.dumps(meta))
    bad["input"]["shape"] = [1, 224, 224, 3]
    bad["output"]["dtype"] = "int8"
    (src / "model_meta.json").write_text(json.dumps(bad))
    with pytest.raises(AppInstallError) as e:
        install_into_app(src, "android", app_root=root)
    assert "input_size" in str(e.value) and "output.quantization" in str(e.value)
    (src / "model_meta.json").write_text(json.dumps(meta))
    with pytest.raises(AppInstallError, match="int8 slot"):
        install_into_app(src, "android", "int8", app_root=root)
    with pytest.raises(AppInstallError, match="no .mlpackage artifact"):
        install_into_app(src, "ios", app_root=root)
    with pytest.raises(AppInstallError, match="needs 'coreml'"):
        validate_meta(meta, "ios")
    assert not (root / "android_demo" / "app" / "src" / "main" / "assets" / "model.tflite").exists()


def test_validate_meta_returns_labels_only_for_valid_metadata():
    """Bad labels are refused with the labels message; a class-count mismatch is named where it is."""
    meta = app_fixtures.example_model_meta("float")
    assert meta_problems(meta) == [] and validate_meta(meta) == meta["labels"]
    for labels in ([], ["a", ""], ["a\nb"] + meta["labels"][1:], "a b c"):
        assert any(p.startswith("labels must") for p in meta_problems(dict(meta, labels=labels))), labels
        with pytest.raises(AppInstallError, match="labels must"):
            validate_meta(dict(meta, labels=labels))
    problems = meta_problems(dict(meta, num_classes=len(meta["labels"]) + 1))
    assert len(problems) == 1 and problems[0].startswith("num_classes")
    problems = meta_problems(dict(meta, labels=meta["labels"] + ["extra"], num_classes=len(meta["labels"]) + 1))
    assert len(problems) == 1 and problems[0].startswith("output")
    with pytest.raises(AppInstallError, match="output"):
        validate_meta(dict(meta, labels=meta["labels"] + ["extra"], num_classes=len(meta["labels"]) + 1))


def test_install_refuses_mixed_labels(tmp_path):
    src, meta = _fake_export(tmp_path, "float")
    root = tmp_path / "repo"
    install_into_app(src, "android", "float", app_root=root)
    src8, meta8 = _fake_export(tmp_path, "int8")
    meta8["labels"] = [f"class{i}" for i in range(6)]
    (src8 / "model_meta.json").write_text(json.dumps(meta8))
    (src8 / "labels.txt").unlink()
    with pytest.raises(AppInstallError, match="other labels"):
        install_into_app(src8, "android", "int8", app_root=root)
    install_into_app(src8, "android", "int8", app_root=root, replace_other=True)
    assets = root / "android_demo" / "app" / "src" / "main" / "assets"
    assert not (assets / "model.tflite").exists()
    assert (assets / "labels.txt").read_text().split() == meta8["labels"]
