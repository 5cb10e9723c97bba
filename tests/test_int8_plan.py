"""int8 exports without --keep-float: the float set searched to --min-agreement, cached per checkpoint,
stored in the metadata; an unmet budget stops the export."""
import argparse
import json
import shutil

import onnx
import pytest

from mvit.benchmarks.census import census
from mvit.export.api import export_model
from mvit.export.cli import main as export_main


@pytest.fixture
def ckpt(small_ckpt, tmp_path):
    """A private copy of the small checkpoint: its search cache (written beside it) is this test's own."""
    path = tmp_path / "m.safetensors"
    shutil.copy(small_ckpt, path)
    return path


def test_export_searches_to_the_budget_stores_the_plan_and_reuses_it(ckpt, small_data_dir, tmp_path, monkeypatch):
    from mvit.quant import plan as plan_module

    lines: list[str] = []
    kw = dict(checkpoint=ckpt, formats=("onnx",), precisions=("int8",), out=tmp_path / "out", calib=small_data_dir,
              calib_count=12, min_agreement=0.9, say=lines.append)
    [r] = export_model(**kw)
    plan = r.meta["quantization_details"]["int8_plan"]
    assert plan["source"] == "search" and plan["min_agreement"] == 0.9
    # 12 images left after calibration: half held out for the search, half verify (never the same ones);
    # the search measures the 6 and their mirror images, to half the disagreement the gate allows
    assert plan["search"]["met"] and plan["search"]["images"] == 12 and r.parity.n == 6
    assert plan["search"]["min_agreement"] == pytest.approx(0.95)
    assert plan["search"]["agreement"] >= 0.95 and plan["search"]["evaluations"]
    assert r.meta["quantization_details"]["keep_float"] == plan["float_units"]
    assert r.parity.thresholds["top1_agreement"] == 0.9 and r.parity.passed
    # attention's activation x activation MatMuls run float in onnxruntime, and so does its softmax
    graph = onnx.load(str(r.artifact)).graph
    weights = {t.name for t in graph.initializer}
    attention = [n for n in graph.node if n.op_type == "MatMul" and not any(i in weights for i in n.input)]
    ops = census(r.artifact, "onnx")["ops"]
    assert attention and ops.get("MatMul(float32)", 0) >= len(attention)
    assert not any(k.split("(")[0] in ("QLinearSoftmax", "QLinearMatMul", "MatMulIntegerToFloat") for k in ops), ops
    chosen = [x for x in lines if x.startswith("int8 float layers (onnxruntime-qdq, searched): ")]
    assert len(chosen) == 1 and "on 12 held-out samples (target 95.00% for a 90.0% gate)" in chosen[0]
    cached = json.loads(ckpt.with_name("m.int8.json").read_text())
    key = "onnxruntime-qdq|min_agreement=0.9000|fold|mirrored+half"
    assert len(cached["sha256"]) == 64 and list(cached["entries"]) == [key]

    # the prefixes script reads the cached order and counts flips per half, plain and mirrored
    import int8_prefixes

    n, order = len(list(small_data_dir.rglob("*.jpg"))), cached["entries"][key]["order"]
    assert order, "the search cached no candidate order"
    args = argparse.Namespace(route="onnxruntime-qdq", prefixes=[0, len(order)], weights=str(ckpt), min_agreement=0.9,
                              smooth_alpha=0.0, balance_attention=False, calib=small_data_dir, calib_count=12, search=small_data_dir, verify=small_data_dir,
                              threads=1)
    rep = int8_prefixes.measure(args)
    assert rep["sizes"] == {"search": n, "verify": n} and [r["k"] for r in rep["rows"]] == [0, len(order)]
    assert rep["rows"][1]["added"] == order[-1]
    assert all(0 <= r[f"{h}_{v}"] <= n for r in rep["rows"] for h in ("search", "verify") for v in ("plain", "mirrored"))
    assert rep["rows"][0]["search_plain"] == rep["rows"][0]["verify_plain"]  # same folder, same numbers
    assert all(0 <= r[f"{h}_{v}_expected"] <= n for r in rep["rows"] for h in ("search", "verify")
               for v in ("plain", "mirrored"))
    assert "| 0 | - |" in int8_prefixes.render(rep)
    with pytest.raises(SystemExit, match="the cached order has"):
        int8_prefixes.measure(argparse.Namespace(**dict(vars(args), prefixes=[len(order) + 1])))

    def no_search(*a, **k):
        raise AssertionError("searched despite a cached result")

    monkeypatch.setattr(plan_module, "search_route", no_search)
    lines.clear()
    [again] = export_model(**dict(kw, force=True))
    plan2 = again.meta["quantization_details"]["int8_plan"]
    assert plan2["source"] == "cache" and plan2["float_units"] == plan["float_units"]
    assert any(x.startswith("int8 float layers (onnxruntime-qdq, cached search result): ") for x in lines)
    assert again.parity.n == 12  # no search: no images held out, all the rest verify


def test_an_unmet_budget_exits_nonzero_with_one_line_and_no_artifact(ckpt, small_data_dir, tmp_path, monkeypatch, capsys):
    from mvit.export.backends import onnx_backend

    # every candidate float set misses (as a model whose float top-1 is a near-tie everywhere would)
    monkeypatch.setattr(onnx_backend, "int8_search_evaluator", lambda job, px, ref: lambda units: (0.5, 0.99))
    out = tmp_path / "out"
    rc = export_main(["--weights", str(ckpt), "--format", "onnx", "--quantize", "int8", "--calib", str(small_data_dir),
                      "--calib-count", "12", "--out", str(out)])
    err = [x for x in capsys.readouterr().err.strip().splitlines() if "error" in x]
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("mvit-export: error: int8 (onnxruntime-qdq) cannot reach 99.75% agreement")
    assert "lower --min-agreement" in err[0] and "Traceback" not in err[0]
    assert not any(p for p in out.iterdir() if not p.name.startswith(".write-test"))
    assert not ckpt.with_name("m.int8.json").exists()  # nothing cached either


def test_an_unmet_budget_names_the_int8_tensors_no_float_layer_removes():
    """With every candidate layer float the simulation still runs some ops in int8 (here a concatenation
    of a small and a huge branch, in a module without layers); the error names them."""
    import torch
    from torch import nn

    from mvit.quant import Int8Options, QuantError, SearchInputs, int8_plan

    class Join(nn.Module):  # no conv or linear: no search unit covers it
        def forward(self, a, b):
            return torch.cat((a, b), 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_a, self.conv_b, self.join, self.head = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), Join(), nn.Linear(8, 3)
            with torch.no_grad():
                self.conv_b.weight *= 1000  # one int8 range for both branches rounds conv_a's to zero
                self.head.weight[:, 4:] = 0  # the prediction reads conv_a's branch only
                self.head.weight[:, :4] *= 10
                self.head.bias.zero_()

        def forward(self, x):
            return self.head(self.join(self.conv_a(x), self.conv_b(x)).mean((2, 3)))

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.rand(48, 3, 1, 1).expand(-1, -1, 16, 16).contiguous()  # flat colours: predictions differ
    with torch.no_grad():
        assert len(set(net(x).argmax(1).tolist())) > 1
    with pytest.raises(QuantError) as e:
        int8_plan("pt2e", net, Int8Options(min_agreement=0.99), SearchInputs(x[:16], x[16:], input_range=(0.0, 1.0)))
    msg = str(e.value)
    assert "with every candidate layer float; int8 even then:" in msg and "cat in join" in msg, msg


def test_expected_flips_counts_near_ties_by_their_chance_not_by_their_luck():
    """The smooth flip estimate the prefix report prints: matches the flip count of many rows under
    random int8 error, gives a near-tie about half a flip whichever way it fell, and none without error."""
    import torch

    from mvit.quant.search import expected_flips

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(20000, 6, generator=g) * 2
    out = ref + 0.3 * torch.randn(ref.shape, generator=g)
    flips = int((out.argmax(1) != ref.argmax(1)).sum())
    assert flips > 200 and expected_flips(out, ref) == pytest.approx(flips, rel=0.15)
    assert expected_flips(ref, ref) == 0.0
    tie = torch.tensor([[1.0, 0.999, 0.0]] + [[5.0, 0.0, 0.0]] * 99)
    noise = torch.zeros_like(tie)
    noise[1:, 0] = torch.linspace(-0.2, 0.2, 99)  # int8 error on the clear rows' margins, none on the tie
    for error in (0.0, 0.002):  # the tie kept, then flipped: the same expectation, half a flip
        noise[0, 1] = error
        assert int(((tie + noise).argmax(1) != 0).sum()) == (error > 0)
        assert expected_flips(tie + noise, tie) == pytest.approx(0.5, abs=0.05)
