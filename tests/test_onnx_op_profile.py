"""benchmarks/onnx_op_profile.py: onnxruntime kernel time per node, summed by op type."""

import pytest

from mvit.benchmarks import onnx_op_profile as prof


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 64])
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="swap", perm=[0, 2, 1]),
        helper.make_node("Softmax", ["t"], ["s"], name="soft", axis=-1),
        helper.make_node("Sqrt", ["s"], ["y"], name="root"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("prof") / "small.onnx"
    onnx.save_model(model, str(path))
    return path


def test_every_node_is_profiled_and_the_report_sums_by_op_type(small_onnx, tmp_path, capsys):
    rows = prof.profile(small_onnx, threads=1, runs=3)
    assert [(r["node"], r["op"]) for r in rows] == [("swap", "Transpose"), ("soft", "Softmax"), ("root", "Sqrt")]
    assert all(r["ms"] > 0 for r in rows)
    assert prof.by_type(rows)["Softmax"] == (1, rows[1]["ms"])
    out = tmp_path / "p.md"
    assert prof.main([str(small_onnx), "--threads", "1", "--runs", "3", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| Softmax | 1 |" in text and "Slowest" in text and text in capsys.readouterr().out


def test_missing_or_foreign_file_or_bad_count_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    for args, needle in (
        ([str(tmp_path / "none.onnx")], "no such file"),
        ([str(bad)], "cannot profile"),
        ([str(bad), "--runs", "0"], "--runs must be at least 1"),
    ):
        with pytest.raises(SystemExit) as e:
            prof.main(args)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and needle in err and len(err.splitlines()) == 1, err
