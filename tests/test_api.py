"""The public Python API in ``mvit``: create, load, export, predict (and bench, tested in test_bench)."""

import dataclasses
import importlib

import numpy as np
import pytest
from PIL import Image

import mvit
from mvit.export import ExportRequest
from mvit.export.base import ExportError


def test_create_load_export_predict(tmp_path):
    from mvit.model.checkpoint import CheckpointMeta, save_checkpoint
    from mvit.model.contract import PreprocessContract

    net = mvit.create("mobilevit_test", num_classes=2)
    path = save_checkpoint(
        tmp_path / "ck.safetensors",
        net.eval(),
        CheckpointMeta("mobilevit_test", ["cat", "dog"], PreprocessContract(input_size=(64, 64))),
    )
    ck = mvit.load(path)
    assert ck.meta.labels == ["cat", "dog"] and ck.meta.architecture == "mobilevit_test"
    [res] = mvit.export(ExportRequest(checkpoint=path, formats=("onnx",), out=tmp_path / "out"), say=lambda _: None)
    assert res.parity.passed and res.artifact.name == "model.onnx"
    img = tmp_path / "x.png"
    Image.fromarray(np.full((80, 70, 3), 120, np.uint8)).save(img)
    from_artifact = mvit.predict(res.artifact, [img], top=2)
    from_checkpoint = mvit.predict(path, [img], top=2)
    assert [l for l, _ in from_artifact[0]] == [l for l, _ in from_checkpoint[0]]
    assert from_artifact[0][0][1] == pytest.approx(from_checkpoint[0][0][1], abs=1e-4)
    assert mvit.bench is importlib.import_module("mvit.benchmarks") and callable(mvit.bench)


def test_request_is_checked_before_any_work(tmp_path):
    req = ExportRequest(formats=("tflite", "pdf"), precisions=("int8",), out=tmp_path / "out", threads=0)
    problems = req.problems()
    assert "unknown format 'pdf'; choose from onnx, tflite, coreml, executorch, coreai" in problems
    assert "--threads must be an integer >= 1, got 0" in problems
    with pytest.raises(ExportError, match="unknown format 'pdf'"):
        mvit.export(req)
    assert not (tmp_path / "out").exists()
    with pytest.raises(dataclasses.FrozenInstanceError):  # frozen: one request, one result
        req.formats = ("onnx",)
