"""benchmarks/tflite_op_profile.py: per-op latency of a .tflite by one-op cut-outs."""

import numpy as np
import pytest
import torch
from torch import nn

from mvit.benchmarks import tflite_op_profile as prof


@pytest.fixture(scope="module")
def small_tflite(tmp_path_factory):
    import litert_torch

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.SiLU(), nn.Conv2d(8, 8, 1)).eval()
    path = tmp_path_factory.mktemp("prof") / "small.tflite"
    litert_torch.convert(net, (torch.zeros(1, 3, 32, 32),)).export(str(path))
    return path


def test_every_op_is_timed_alone_and_cut_outs_compute_like_the_model(small_tflite):
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model(str(small_tflite))
    n_ops = len(model.subgraphs[0].operators)
    rows = prof.profile(small_tflite, threads=1, runs=3)
    assert [r["index"] for r in rows] == list(range(n_ops))
    assert all(r["ms"] > 0 for r in rows) and rows[0]["dtype"] == "float32>float32"
    assert sum(n for n, _ in prof.by_type(rows).values()) == n_ops
    assert {r["op"] for r in rows} >= {"CONV_2D", "LOGISTIC", "MUL"}
    # The whole op range cut out is the model itself: same output for the same input.
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    outs = []
    for content in (small_tflite.read_bytes(), prof.cut(model, 0, n_ops)):
        it = Interpreter(model_content=content)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6)
    assert len(model.subgraphs[0].operators) == n_ops and model.signatureDefs  # the model was restored


def test_spans_and_report(small_tflite, tmp_path, capsys):
    rows = prof.profile(small_tflite, threads=1, runs=3, span=2)
    assert rows[0]["op"].count("+") == 1 and rows[1]["index"] == 2
    out = tmp_path / "p.md"
    assert prof.main([str(small_tflite), "--threads", "1", "--runs", "3", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| CONV_2D | float32>float32 | 2 |" in text and "Slowest" in text and text in capsys.readouterr().out


def test_missing_or_foreign_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    for path, needle in ((tmp_path / "none.tflite", "no such file"), (bad, "cannot read")):
        with pytest.raises(SystemExit) as e:
            prof.main([str(path)])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and needle in err and len(err.splitlines()) == 1
