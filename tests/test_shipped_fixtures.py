"""The golden cases of the models installed in the apps (shipped_models.json) stay true.

export/apps/fixtures.py records, for every installed artifact (by sha256) and a few fixture images,
the preprocessing checksums at the model's own contract, the raw output and the expected top-3; the
Kotlin and Swift core tests replay them. Here the artifacts are re-run: TFLite on every recorded
image (fast), Core ML (reference interpreter, seconds per image) on one image per model. Floats are
compared within ``app_fixtures.TOLERANCES``, never exactly: kernels differ between CPUs.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from conftest_apps import GOLDEN_DIRS, ROOT  # noqa: E402

from mvit.export.apps import fixtures as app_fixtures  # noqa: E402

SHIPPED = GOLDEN_DIRS[0] / app_fixtures.SHIPPED_FILE


def _doc() -> dict:
    assert SHIPPED.is_file(), f"{SHIPPED} missing: run `{app_fixtures.SHIPPED_COMMAND}`"
    return app_fixtures.read_shipped(SHIPPED)


def _model(app: str, variant: str) -> dict:
    found = [m for m in _doc()["models"] if (m["app"], m["variant"]) == (app, variant)]
    assert found, f"no recorded cases for the {app} {variant} model: run `{app_fixtures.shipped_command(app)}`"
    return found[0]


def test_recorded_cases_describe_the_installed_artifacts():
    """sha256 of every installed artifact and metadata file = the recorded one, and nothing is missing."""
    doc = _doc()
    assert app_fixtures.stale_shipped_cases(doc, ROOT) == []
    installed = {(e["app"], e["variant"]) for e in app_fixtures.installed_models(ROOT)}
    assert installed == {("android", "float"), ("android", "int8"), ("ios", "float"), ("ios", "int8")}
    for m in doc["models"]:
        assert m["meta"] == json.loads((ROOT / m["meta_file"]).read_text()), m["meta_file"]


def test_recorded_cases_are_consistent():
    """Post-processing replayed from the recorded raw outputs (what the app tests do) gives the recorded top-3."""
    images = {im["file"] for im in json.loads((GOLDEN_DIRS[0] / "fixtures.json").read_text())["images"]}
    for m in _doc()["models"]:
        meta = m["meta"]
        assert 3 <= len(m["cases"]) <= 5, m["artifact"]
        for c in m["cases"]:
            assert c["image"] in images
            values = np.array(c["output"]["values"], dtype=meta["output"]["dtype"])
            deq, scores = app_fixtures.decode_output(values, meta)
            assert deq.tolist() == c["dequantized"]
            np.testing.assert_allclose(scores, c["scores"], atol=app_fixtures.TOLERANCES["probability_abs"])
            assert [t["index"] for t in c["top3"]] == app_fixtures.top_k(scores, 3)
            assert [t["label"] for t in c["top3"]] == [meta["labels"][t["index"]] for t in c["top3"]]
            if meta["output"]["dtype"] in ("int8", "uint8"):
                assert c["output"]["quantization"] == meta["output"]["quantization"]


def _rerun(m: dict, n: int) -> None:
    """Run the installed artifact on the first ``n`` recorded images and compare with the record."""
    meta = m["meta"]
    runner = app_fixtures.load_shipped_runner(ROOT / m["artifact"], meta)
    tol = app_fixtures.output_tolerance(
        meta["output"].get("kind", "logits"), meta["output"]["dtype"], meta["precision"]
    )
    regen = f"if the model changed on purpose, run `{app_fixtures.shipped_command(m['app'])}`"
    try:
        assert app_fixtures.tensor_output_quantization(runner) == m["output_quantization_in_artifact"]
        for c in m["cases"][:n]:
            what = f"{m['artifact']} on {c['image']}"
            pixels, native, raw = app_fixtures.run_shipped(runner, meta, GOLDEN_DIRS[0] / c["image"])
            assert app_fixtures.fnv1a32(pixels.tobytes()) == c["pixels_fnv1a32"], f"{what}: pixels"
            assert app_fixtures.input_fnv1a32(native) == c["input"]["fnv1a32"], f"{what}: model input"
            diff = float(np.max(np.abs(raw.astype(np.float64) - np.array(c["output"]["values"], np.float64))))
            assert diff <= tol, f"{what}: outputs differ from the record by {diff:.4g} > {tol}; {regen}"
            _, scores = app_fixtures.decode_output(raw, meta)
            if c["stable_top3"]:
                assert app_fixtures.top_k(scores, 3) == [t["index"] for t in c["top3"]], f"{what}: top-3; {regen}"
    finally:
        runner.close()


@pytest.mark.parametrize("variant", ["float", "int8"])
def test_tflite_artifacts_reproduce_their_cases(variant):
    m = _model("android", variant)
    _rerun(m, len(m["cases"]))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["float", "int8"])
def test_coreml_artifacts_reproduce_their_first_case(variant):
    _rerun(_model("ios", variant), 1)


def test_stale_cases_name_the_regeneration_command(tmp_path):
    doc = _doc()
    m = _model("android", "int8")
    changed = json.loads(json.dumps(doc))
    for e in changed["models"]:
        if e["artifact"] == m["artifact"]:
            e["artifact_sha256"] = "0" * 64
    problems = app_fixtures.stale_shipped_cases(changed, ROOT)
    assert len(problems) == 1 and m["artifact"] in problems[0]
    assert "python -m mvit.export.apps.fixtures --shipped --app android" in problems[0]
    problems = app_fixtures.stale_shipped_cases(doc, tmp_path)  # nothing installed there
    assert len(problems) == 1 and "no longer installed" in problems[0]


def test_writer_reruns_merges_and_drops(tmp_path):
    """Only the requested app is re-run, the others keep their cases, uninstalled models are dropped."""
    root = tmp_path / "repo"
    assets = root / "android_demo" / "app" / "src" / "main" / "assets"
    assets.mkdir(parents=True)
    src = ROOT / "android_demo" / "app" / "src" / "main" / "assets"
    for name in ("model_int8.tflite", "model_int8_meta.json"):
        shutil.copy(src / name, assets / name)
    golden = tmp_path / "golden"
    shutil.copytree(GOLDEN_DIRS[0], golden)
    recorded = _model("android", "int8")

    app_fixtures.write_shipped_fixtures([golden], root, apps=["ios"])  # android int8: kept as recorded
    doc = app_fixtures.read_shipped(golden / app_fixtures.SHIPPED_FILE)
    assert doc["models"] == [recorded]

    (golden / app_fixtures.SHIPPED_FILE).unlink()
    app_fixtures.write_shipped_fixtures([golden, tmp_path / "copy"], root, apps=["android"])
    doc = app_fixtures.read_shipped(golden / app_fixtures.SHIPPED_FILE)
    assert [(m["app"], m["variant"]) for m in doc["models"]] == [("android", "int8")]
    again = doc["models"][0]
    assert again["artifact_sha256"] == recorded["artifact_sha256"] and again["meta"] == recorded["meta"]
    assert [c["top3"] for c in again["cases"]] == [c["top3"] for c in recorded["cases"]]
    assert (tmp_path / "copy" / app_fixtures.SHIPPED_FILE).read_bytes() == (
        golden / app_fixtures.SHIPPED_FILE
    ).read_bytes()
    assert app_fixtures.stale_shipped_cases(doc, root) == []


def test_base_regeneration_keeps_the_shipped_cases(tmp_path, monkeypatch):
    golden = tmp_path / "a"
    golden.mkdir()
    (golden / app_fixtures.SHIPPED_FILE).write_text('{"schema": "x"}')

    def fake(out, **kw):
        out.mkdir(parents=True, exist_ok=True)
        (out / "fixtures.json").write_text("{}")

    monkeypatch.setattr(app_fixtures, "write_golden_fixtures", fake)
    app_fixtures.write_app_fixtures([golden, tmp_path / "b"])
    for d in (golden, tmp_path / "b"):
        assert (d / app_fixtures.SHIPPED_FILE).read_text() == '{"schema": "x"}'


def test_mvit_export_app_rerecords_the_golden_cases(monkeypatch, capsys, tmp_path):
    """``mvit-export --app`` installs, then re-records that app's cases (or prints the command)."""
    from mvit.export import cli

    monkeypatch.chdir(tmp_path)  # the default --out is ./out: not the checkout's

    def fake_export(request, **kw):  # what the request asked for, without converting anything
        return [
            SimpleNamespace(
                format=f,
                precision=p,
                folder="out/x",
                size_bytes=1e6,
                seconds=1.0,
                parity=None,
                status="ok",
                artifact="out/x/model",
                notes=[],
            )
            for f in request.formats
            for p in request.precisions
        ]

    monkeypatch.setattr(cli, "export_model", fake_export)  # the names cli.main calls
    monkeypatch.setattr(cli, "install_into_app", lambda *a, **k: {"model": "assets/model_int8.tflite"})
    calls = []
    monkeypatch.setattr(app_fixtures, "write_shipped_fixtures", lambda **kw: calls.append(kw) or ["golden/x.json"])
    assert cli.main(["--app", "android", "--quantize", "int8"]) == 0
    assert calls == [{"apps": ["android"], "variants": ["int8"]}]
    assert "golden cases: golden/x.json" in capsys.readouterr().out

    assert cli.main(["--app", "android", "--no-app-fixtures"]) == 0
    assert len(calls) == 1
    assert "python -m mvit.export.apps.fixtures --shipped --app android" in capsys.readouterr().out

    def boom(**kw):
        raise RuntimeError("no interpreter")

    monkeypatch.setattr(app_fixtures, "write_shipped_fixtures", boom)
    assert cli.main(["--app", "ios", "--format", "coreml"]) == 0
    err = capsys.readouterr().err
    assert "no interpreter" in err and "python -m mvit.export.apps.fixtures --shipped --app ios" in err
