"""The ONNX measurement scripts' shared command line and inputs (benchmarks/studies/onnx_inputs.py)."""

import onnx_int8_variants
import onnx_simplifier
import pytest
import torch
from onnx_inputs import load_bench_inputs, onnx_bench_parser

from mvit import model
from mvit.model.checkpoint import CheckpointMeta, save_checkpoint
from mvit.model.contract import PreprocessContract

SHARED = ("--weights", "--calib", "--calib-count", "--verify-data", "--threads", "--rounds", "--per-round", "--repeats")


@pytest.mark.parametrize("script, own", [(onnx_int8_variants, ("--only", "--out")), (onnx_simplifier, ("--out",))])
def test_both_scripts_take_the_shared_options(script, own, capsys):
    with pytest.raises(SystemExit) as e:
        script.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage:")
    assert all(opt in out for opt in SHARED + own)


def test_shared_inputs_load_checkpoint_and_images(image_folder, tmp_path):
    m = model.create("mobilevit_test", num_classes=3)
    meta = CheckpointMeta(
        "mobilevit_test", ["a", "b", "c"], PreprocessContract(input_size=(64, 64)), provenance={"test": "bench scripts"}
    )
    ckpt = save_checkpoint(tmp_path / "ck.safetensors", m.eval(), meta)
    args = onnx_bench_parser("title\nbody", rounds=7).parse_args(
        [
            "--weights",
            str(ckpt),
            "--calib",
            str(image_folder),
            "--calib-count",
            "5",
            "--verify-data",
            str(image_folder),
            "--threads",
            "1",
        ]
    )
    assert (args.rounds, args.per_round, args.repeats) == (7, 3, 3)
    threads = torch.get_num_threads()
    try:
        inp = load_bench_inputs(args)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert inp.calib.shape == (5, 64, 64, 3) and inp.val.shape == (12, 64, 64, 3)
    assert len(inp.val_files) == 12 and inp.x_val.shape == (12, 3, 64, 64)
    assert inp.ckpt.meta.labels == ["a", "b", "c"] and inp.net is not None


def test_interleaved_medians_calls_each_callable_equally_and_reports_medians():
    from mvit.benchmarks.latency import interleaved_medians

    counts = {"a": 0, "b": 0}

    def call(key):
        counts[key] += 1

    out = interleaved_medians({k: (lambda k=k: call(k)) for k in counts}, rounds=4, per_round=5, warmup=2)
    assert set(out) == {"a", "b"} and all(v >= 0 for v in out.values())
    assert counts == {"a": 2 + 4 * 5, "b": 2 + 4 * 5}


def test_onnx_int8_variants_builds_the_searched_variant_and_writes_its_command(image_folder, tmp_path, capsys):
    m = model.create("mobilevit_test", num_classes=3)
    meta = CheckpointMeta(
        "mobilevit_test", ["a", "b", "c"], PreprocessContract(input_size=(64, 64)), provenance={"test": "bench scripts"}
    )
    ckpt = save_checkpoint(tmp_path / "ck.safetensors", m.eval(), meta)
    out = tmp_path / "variants.md"
    name = "searched float set (mvit-export's default)"
    threads = torch.get_num_threads()
    try:
        assert (
            onnx_int8_variants.main(
                [
                    "--weights",
                    str(ckpt),
                    "--calib",
                    str(image_folder),
                    "--calib-count",
                    "4",
                    "--verify-data",
                    str(image_folder),
                    "--threads",
                    "1",
                    "--rounds",
                    "1",
                    "--per-round",
                    "1",
                    "--repeats",
                    "1",
                    "--reduce-range",
                    "--only",
                    name,
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(threads)
    text = out.read_text()
    assert text.startswith("# ONNX int8 variants of ck.safetensors") and "--reduce-range" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [r.split(" | ")[0] for r in rows] == ["| fp32", f"| {name}"]
