"""ExecuTorch (.pte, XNNPACK) as an export format: fp32 and int8 through mvit's PT2E engine, the
whole graph delegated, metadata inside the program, the runner's thread count, matrix and FILE rows,
and the one-line message when the optional extra is missing."""

import json
import sys

import numpy as np
import pytest

pytest.importorskip(
    "executorch", reason="the optional extra: pip install 'mvit[executorch]' (tests/run.sh installs it)"
)

from export_fixtures import FAST, bench_reused, bench_rows  # noqa: E402

from mvit.benchmarks.cli import main as bench_main  # noqa: E402
from mvit.export.api import export_model  # noqa: E402
from mvit.export.backends import executorch_backend as et  # noqa: E402
from mvit.export.base import ExportCache  # noqa: E402
from mvit.export.cli import main as export_main  # noqa: E402


@pytest.fixture(scope="module")
def exported(small_ckpt, small_data_dir, tmp_path_factory):
    """fp32 and int8 .pte of the tiny trained model, parity-checked on its images; and the PT2E cache."""
    out = tmp_path_factory.mktemp("et_export")
    cache = ExportCache()
    results = export_model(
        checkpoint=small_ckpt,
        formats=("executorch",),
        precisions=("fp32", "int8"),
        out=out,
        calib=small_data_dir,
        calib_count=16,
        verify_data=small_data_dir,
        force=True,
        cache=cache,
    )
    return {r.precision: r for r in results}, out, cache


def test_parity_and_whole_graph_delegated(exported):
    results, _, _ = exported
    for p in ("fp32", "int8"):
        r = results[p]
        assert r.parity.passed, r.parity.failures
        assert r.parity.n == 24 and r.parity.top1_agreement >= 0.95
        d = r.meta["quantization_details"]["delegation"]
        assert d["subgraphs"] == 1 and set(d["non_delegated_ops"]) <= {"getitem"}, d
        assert "native_layer_norm" not in d["delegated_ops"]  # decomposed into ops XNNPACK takes
    assert results["fp32"].parity.cosine > 0.99999
    int8 = results["int8"].meta["quantization_details"]
    assert int8["method"] == "pt2e" and int8["observer"] == "histogram"  # the TFLite/Core ML default
    assert int8["delegation"]["delegated_ops"]["quantized_decomposed_quantize_per_tensor"]
    assert results["int8"].size_bytes < results["fp32"].size_bytes


def test_int8_runs_the_pt2e_model_shared_with_tflite(exported, small_ckpt, small_data_dir):
    """XNNPACK executes the very quantized model TFLite and Core ML are converted from: same
    calibration (one cache entry), and its logits match PyTorch running that model."""
    import torch

    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.images import image_files, load_pixels
    from mvit.model.preprocess import normalize_hwc_uint8
    from mvit.quant.pt2e import Pt2eGraph, Pt2eSettings, pixels_to_tensor, quantize_pt2e

    results, _, cache = exported
    assert {k.graph_input for k in cache.calibrations} == {"normalized-nchw"}
    ckpt = load_checkpoint(small_ckpt)
    c = ckpt.meta.contract
    px, _ = load_pixels(image_files(small_data_dir), c, 8)
    to_input = lambda p: pixels_to_tensor(p, "NCHW", lambda x: normalize_hwc_uint8(x, c))  # noqa: E731
    graph = Pt2eGraph(ckpt.model, ckpt.model, torch.zeros(1, 3, *c.input_size), to_input, "normalized-nchw")
    converted, _, _ = quantize_pt2e(graph, Pt2eSettings(None, "histogram"), cache=cache, fold_quantize=True)
    # XNNPACK's int8 cat takes inputs that share the output's (scale, zero point): the PT2E model has them
    qd = torch.ops.quantized_decomposed
    cats = [n for n in converted.graph.nodes if n.target == torch.ops.aten.cat.default]
    assert cats
    for cat in cats:
        [out] = cat.users
        assert out.target == qd.quantize_per_tensor.default
        assert all(
            a.target == qd.dequantize_per_tensor.default and tuple(a.args[1:]) == tuple(out.args[1:])
            for a in cat.args[0]
        ), cat.name
    with torch.no_grad():  # the converted graph was exported at batch 1
        ref = np.concatenate([converted(to_input(px[i : i + 1])).numpy() for i in range(len(px))])
    runner = et.load_runner(results["int8"].artifact, 2)
    out = runner.run(px)
    assert np.array_equal(out.argmax(1), ref.argmax(1))
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()


def test_metadata_inside_the_program_and_sidecars(exported):
    results, _, _ = exported
    r = results["int8"]
    inside = et.read_metadata(r.artifact)
    assert inside == json.loads((r.folder / "model_meta.json").read_text())
    assert inside["format"] == "executorch" and inside["parity"]["passed"]
    assert (r.folder / "labels.txt").read_text().split() == inside["labels"]
    from executorch.runtime import Runtime  # an app reads it the same way: a method returning the JSON

    (text,) = Runtime.get().load_program(r.artifact).load_method("mvit_meta").execute([])
    assert json.loads(text)["labels"] == inside["labels"]


def test_metadata_added_to_a_program_without_the_method(exported, tmp_path):
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    src = exported[0]["fp32"].artifact
    pte = deserialize_pte_binary(src.read_bytes())
    pte.program.execution_plan = [p for p in pte.program.execution_plan if p.name != "mvit_meta"]
    bare = tmp_path / "bare.pte"
    bare.write_bytes(bytes(serialize_pte_binary(pte, extract_delegate_segments=True, segment_alignment=128)))
    with pytest.raises(ValueError, match="no mvit metadata"):
        et.read_metadata(bare)
    meta = et.read_metadata(src)
    et.embed_metadata(bare, meta)
    assert et.read_metadata(bare) == meta
    px = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    assert np.array_equal(et.load_runner(bare, 1).run(px), et.load_runner(src, 1).run(px))


def test_runner_sets_the_thread_count(exported):
    from executorch.extension.pybindings import portable_lib

    for n in (1, 2):
        runner = et.load_runner(exported[0]["fp32"].artifact, n)
        assert runner.threads == n == portable_lib._threadpool_get_thread_count()


def test_matrix_rows_and_file_rows(exported, small_ckpt, small_data_dir, tmp_path, capfd):
    results, art, _ = exported
    out = tmp_path / "matrix"
    rc = bench_reused(small_ckpt, small_data_dir, out, "executorch", "all", *FAST, artifacts=art)
    assert rc == 0, capfd.readouterr().err
    rows = bench_rows(json.loads((out / "bench.json").read_text()))
    assert list(rows) == ["torch-fp32", "executorch-fp32", "executorch-int8"]  # fp16/dynamic: not ExecuTorch precisions
    for key in ("executorch-fp32", "executorch-int8"):
        r = rows[key]
        assert r["reused"] and r["status"] == "exported" and r["runtime"] == "ExecuTorch runtime (XNNPACK delegate)"
        assert r["latency"]["median_ms"] > 0 and r["agreement"] >= 0.95 and r["n_images"] == 24
    files_out = tmp_path / "files"
    rc = bench_main(
        [str(results["int8"].artifact), "--data", str(small_data_dir), "--out", str(files_out), "--no-plot", *FAST]
    )
    assert rc == 0, capfd.readouterr().err
    (row,) = json.loads((files_out / "bench.json").read_text())["models"][0]["rows"]
    assert row["metadata"] == "mvit metadata" and row["precision"] == "int8" and 0 <= row["top1"] <= 1
    census = row["census"]
    ops = {(o["op"], o["dtype"]) for o in census["ops"]}
    assert ("Conv2d", "int8") in ops and ("FullyConnected", "int8") in ops  # int8 kernels inside XNNPACK
    assert census["delegate_partitions"] == 1 and census["fallback"] == {}


def test_missing_extra_one_line(small_ckpt, tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "executorch", None)  # ``import executorch`` now raises ImportError
    assert et.unavailable() == "ExecuTorch is not installed: pip install 'mvit[executorch]' (executorch==1.5.1)"
    rc = export_main(["--weights", str(small_ckpt), "--format", "executorch", "--no-verify", "--out", str(tmp_path)])
    err = capfd.readouterr().err.strip().splitlines()
    assert (
        rc == 2
        and err[-1]
        == "mvit-export: error: ExecuTorch is not installed: pip install 'mvit[executorch]' (executorch==1.5.1)"
    )
    assert not any(p.name.endswith("executorch") for p in tmp_path.iterdir())
