"""Installing exported artifacts into the demo apps (mvit.export.apps.install): the slot plan decided before
exporting (``plan_install``), metadata validation, atomic copies, shared labels, source-checkout check."""

from __future__ import annotations

import json

import pytest

from mvit.export.apps import fixtures as app_fixtures  # noqa: E402
from mvit.export.apps.install import AppInstallError, install_into_app, main, plan_install, validate_meta  # noqa: E402
from mvit.export.apps.slots import APPS, SLOT_OF_PRECISION  # noqa: E402
from mvit.export.metadata import meta_problems  # noqa: E402


def _checkout(tmp_path):
    """A repository root with the apps' folders, as a source checkout has them."""
    root = tmp_path / "repo"
    for spec in APPS.values():
        (root / spec["project"]).mkdir(parents=True, exist_ok=True)
    return root


# ---------------------------------------------------------------- the slot plan
def test_plan_sends_each_precision_to_its_slot_from_the_one_table(tmp_path):
    root = _checkout(tmp_path)
    assert plan_install("android", ["tflite"], ["dynamic"], root) == {("tflite", "dynamic"): "int8"}
    assert plan_install("android", ("tflite",), ("fp32", "int8"), root) == {
        ("tflite", "fp32"): "float",
        ("tflite", "int8"): "int8",
    }
    assert plan_install("ios", ["coreml"], ["fp16", "dynamic"], root) == {
        ("coreml", "fp16"): "float",
        ("coreml", "dynamic"): "int8",
    }
    assert set(SLOT_OF_PRECISION) == {"fp32", "fp16", "dynamic", "int8"}


@pytest.mark.parametrize(
    "app,formats,precisions,expected",
    [
        (
            "android",
            ["onnx", "tflite", "coreml"],
            ["fp32"],
            "the android app runs tflite models only, so --app android cannot install onnx/coreml",
        ),
        ("ios", ["tflite"], ["int8"], "the ios app runs coreml models only"),
        (
            "android",
            ["tflite"],
            ["fp32", "fp16", "dynamic", "int8"],
            "fp32 and fp16 would both go to the android app's float slot",
        ),
        ("android", ["tflite"], ["dynamic", "int8"], "dynamic and int8 would both go to the android app's int8 slot"),
        ("android", ["tflite"], ["int4"], "no android app slot for precision int4"),
        ("watch", ["tflite"], ["fp32"], "app must be one of android, ios"),
    ],
)
def test_plan_refuses_what_the_app_cannot_hold_in_one_line(tmp_path, app, formats, precisions, expected):
    with pytest.raises(AppInstallError) as e:
        plan_install(app, formats, precisions, _checkout(tmp_path))
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_without_a_source_checkout_the_apps_are_named_missing(tmp_path, capsys):
    """As after ``pip install mvit`` from a wheel: no android_demo/ beside the package."""
    with pytest.raises(AppInstallError) as e:
        plan_install("android", ["tflite"], ["fp32"], tmp_path)
    assert "android_demo/ is not in" in str(e.value) and "source checkout" in str(e.value) and "\n" not in str(e.value)
    src, _ = _fake_export(tmp_path)
    with pytest.raises(AppInstallError, match="ios_demo/ is not in"):
        install_into_app(src, "ios", app_root=tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists(), "nothing created outside a checkout"


def test_the_command_line_says_one_line_and_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing.tflite"), "--app", "android"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing.tflite: no such file or folder" in err and "\n" not in err


def test_the_slot_defaults_to_the_metadatas_precision(tmp_path):
    root = _checkout(tmp_path)
    src, meta = _fake_export(tmp_path, "int8")
    meta["precision"] = "dynamic"
    (src / "model_meta.json").write_text(json.dumps(meta))
    paths = install_into_app(src, "android", app_root=root)
    assert paths["model"].name == "model_int8.tflite"


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
    root = _checkout(tmp_path)
    paths = install_into_app(src, "android", variant, app_root=root)
    assets = root / "android_demo" / "app" / "src" / "main" / "assets"
    model, meta_name = (
        ("model.tflite", "model_meta.json") if variant == "float" else ("model_int8.tflite", "model_int8_meta.json")
    )
    assert paths["model"] == assets / model and (assets / model).read_bytes().startswith(b"TFL3")
    assert json.loads((assets / meta_name).read_text()) == meta
    assert (assets / "labels.txt").read_text().splitlines() == meta["labels"]
    assert not [p for p in assets.iterdir() if p.name.startswith(".")], "no temporary files left"
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in assets.iterdir()), (
        "assets readable by all (not mkstemp's 0600)"
    )
    # Re-installing replaces in place.
    install_into_app(src / "mvit.tflite", "android", variant, app_root=root)


def test_install_rejects_bad_metadata(tmp_path):
    src, meta = _fake_export(tmp_path)
    root = _checkout(tmp_path)
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
    root = _checkout(tmp_path)
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
    root = _checkout(tmp_path)
    paths = install_into_app(d, "ios", variant, app_root=root)
    models = root / "ios_demo" / "MVitDemo" / "Models"
    name = "Model.mlpackage" if variant == "float" else "ModelInt8.mlpackage"
    assert paths["model"] == models / name and (models / name / "Manifest.json").is_file()
    assert (models / "labels.txt").read_text().splitlines() == meta["labels"]
    # Installing again swaps the package atomically and leaves nothing behind.
    install_into_app(pkg, "ios", variant, app_root=root)
    assert sorted(p.name for p in models.iterdir() if p.name.startswith(".")) == []
