"""int8 exports without --keep-float: the float set searched to --min-agreement, cached per checkpoint,
stored in the metadata; an unmet budget stops the export."""

import argparse
import json
import shutil

import onnx
import pytest
from export_fixtures import export_int8

from mvit.benchmarks.census import census
from mvit.export.cli import main as export_main
from mvit.quant.plan import SEARCH_RULE


@pytest.fixture
def ckpt(small_ckpt, tmp_path):
    """A private copy of the small checkpoint: its search cache (written beside it) is this test's own."""
    path = tmp_path / "m.safetensors"
    shutil.copy(small_ckpt, path)
    return path


def test_export_searches_to_the_budget_stores_the_plan_and_reuses_it(ckpt, small_data_dir, tmp_path, monkeypatch):
    from mvit.quant import plan as plan_module

    lines: list[str] = []
    kw = dict(
        checkpoint=ckpt, fmt="onnx", out=tmp_path / "out", calib=small_data_dir, calib_count=12, min_agreement=0.9
    )
    [r] = export_int8(**kw, say=lines.append)
    plan = r.meta["quantization_details"]["int8_plan"]
    assert plan["source"] == "search" and plan["min_agreement"] == 0.9
    # 12 images left after calibration: half held out for the search, half verify (never the same ones);
    # the search measures the 6 and their mirror images: expected flips at most half the disagreement
    # the gate allows, counted agreement at the gate
    s = plan["search"]
    assert s["met"] and s["images"] == 12 and r.parity.n == 6
    assert s["min_agreement"] == pytest.approx(0.9) and s["max_expected_flips"] == pytest.approx(12 * 0.1 * 0.5)
    assert s["agreement"] >= 0.9 and s["expected_flips"] <= s["max_expected_flips"] and s["evaluations"]
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
    assert len(chosen) == 1 and "(at most 0.60), " in chosen[0] and "on 12 held-out samples (gate 90.0%)" in chosen[0]
    cached = json.loads(ckpt.with_name("m.int8.json").read_text())
    key = f"onnxruntime-qdq|min_agreement=0.9000|fold|{SEARCH_RULE}"  # the current rule's entry, no other
    assert len(cached["sha256"]) == 64 and list(cached["entries"]) == [key]

    # the prefixes script reads the cached order and counts flips per half, plain and mirrored; the tiny
    # model may need no float layer (an empty order), so the cache is given two candidates of its own
    import int8_prefixes

    from mvit.model.checkpoint import load_checkpoint
    from mvit.quant.search import layer_units

    n, order = len(list(small_data_dir.rglob("*.jpg"))), layer_units(load_checkpoint(ckpt).model)[:2]
    assert len(order) == 2
    cached["entries"][key]["order"] = order
    ckpt.with_name("m.int8.json").write_text(json.dumps(cached))
    args = argparse.Namespace(
        route="onnxruntime-qdq",
        prefixes=[0, len(order)],
        weights=str(ckpt),
        min_agreement=0.9,
        smooth_alpha=0.0,
        balance_attention=False,
        calib=small_data_dir,
        calib_count=12,
        search=small_data_dir,
        verify=small_data_dir,
        threads=1,
    )
    rep = int8_prefixes.measure(args)
    assert rep["sizes"] == {"search": n, "verify": n} and [r["k"] for r in rep["rows"]] == [0, len(order)]
    assert rep["rows"][1]["added"] == order[-1]
    assert all(
        0 <= r[f"{h}_{v}"] <= n for r in rep["rows"] for h in ("search", "verify") for v in ("plain", "mirrored")
    )
    assert rep["rows"][0]["search_plain"] == rep["rows"][0]["verify_plain"]  # same folder, same numbers
    assert all(
        0 <= r[f"{h}_{v}_expected"] <= n
        for r in rep["rows"]
        for h in ("search", "verify")
        for v in ("plain", "mirrored")
    )
    assert "| 0 | - |" in int8_prefixes.render(rep)
    with pytest.raises(SystemExit, match="the cached order has"):
        int8_prefixes.measure(argparse.Namespace(**dict(vars(args), prefixes=[len(order) + 1])))

    def no_search(*a, **k):
        raise AssertionError("searched despite a cached result")

    monkeypatch.setattr(plan_module, "search_route", no_search)
    lines.clear()
    [again] = export_int8(**kw, say=lines.append, force=True)
    plan2 = again.meta["quantization_details"]["int8_plan"]
    assert plan2["source"] == "cache" and plan2["float_units"] == plan["float_units"]
    assert any(x.startswith("int8 float layers (onnxruntime-qdq, cached search result): ") for x in lines)
    assert again.parity.n == 12  # no search: no images held out, all the rest verify


def test_an_unmet_budget_exits_nonzero_with_one_line_and_no_artifact(
    ckpt, small_data_dir, tmp_path, monkeypatch, capsys
):
    from mvit.export.backends import onnx_backend

    # every candidate float set misses (as a model whose float top-1 is a near-tie everywhere would)
    monkeypatch.setattr(onnx_backend, "int8_search_evaluator", lambda job, px, ref: lambda units: (0.5, 0.99, 3.0))
    out = tmp_path / "out"
    rc = export_main(
        [
            "--weights",
            str(ckpt),
            "--format",
            "onnx",
            "--quantize",
            "int8",
            "--calib",
            str(small_data_dir),
            "--calib-count",
            "12",
            "--out",
            str(out),
        ]
    )
    err = [x for x in capsys.readouterr().err.strip().splitlines() if "error" in x]
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(
        "mvit-export: error: int8 (onnxruntime-qdq) cannot reach <= 0.03 expected flips "
        "(2.5 per 1000) and >= 99.50% counted agreement"
    ), err[0]
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
            self.conv_a, self.conv_b, self.join, self.head = (
                nn.Conv2d(3, 4, 1),
                nn.Conv2d(3, 4, 1),
                Join(),
                nn.Linear(8, 3),
            )
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


def test_expected_flips_ignores_an_exact_rescale_of_the_logits_and_follows_a_heavy_tail():
    """Scaling every logit by 2 (an exact rewrite of the classifier) leaves the estimate as it was; when
    a few rows take a much larger error, the estimate stays near the flip count, where one Gaussian
    spread over all rows (the tail inflating it) is far off."""
    import torch

    from mvit.quant.search import expected_flips, margins

    g = torch.Generator().manual_seed(1)
    ref = torch.randn(400, 6, generator=g) * 2
    out = ref + 0.05 * torch.randn(ref.shape, generator=g)
    assert expected_flips(2 * out, 2 * ref) == pytest.approx(expected_flips(out, ref), rel=1e-9)
    tail = out.clone()
    tail[:8] = ref[:8] + 3 * torch.randn(8, 6, generator=g)  # 2% of rows take a 60x larger error
    counted = int((tail.argmax(1) != ref.argmax(1)).sum())
    top = ref.argmax(1)
    m = margins(ref, top)
    one_spread = float(torch.special.ndtr(-m / (margins(tail, top) - m).pow(2).mean().sqrt()).sum())
    assert abs(expected_flips(tail, ref) - counted) < 0.5 * counted < abs(one_spread - counted)


def test_the_stop_rule_needs_both_the_expected_flips_and_the_counted_gate():
    from mvit.quant.search import StopRule

    rule = StopRule(0.995, 0.5, 0.95)
    assert rule.max_expected(400) == pytest.approx(1.0)
    assert rule.accepts((0.995, 0.99, 1.0), 400)
    assert not rule.accepts((0.995, 0.99, 1.01), 400)  # expected flips over the allowance
    assert not rule.accepts((0.9925, 0.99, 0.5), 400)  # 3 counted flips of 400: under the gate
    assert not rule.accepts((1.0, 0.9, 0.0), 400)  # cosine under the floor
    assert "<= 1.00 expected flips (2.5 per 1000) and >= 99.50% counted agreement" == rule.describe(400)


def test_the_prefix_search_gallops_and_takes_the_first_prefix_the_rule_accepts():
    """Expected flips fall smoothly with k while the counted agreement jumps around above the gate: the
    answer is the first k the expected flips allow, whatever the count does there, found in few
    evaluations when it is short; all missing gives len + 1."""
    from mvit.quant.search import StopRule, bisect_prefix

    order = [f"u{i}" for i in range(40)]
    counted = {k: 0.99 if k < 6 else (1.0 if k % 3 else 0.9975) for k in range(41)}  # not monotone in k
    calls = []

    def evaluate(units):
        calls.append(len(units))
        return counted[len(units)], 1.0, 10.0 / (1 + len(units))

    rule = StopRule(0.995, 0.5)  # 1.0 expected flips allowed on 400 samples: k >= 9
    k, scores, evals = bisect_prefix(order, evaluate, rule, 400)
    assert k == 9 and scores == (0.9975, 1.0, 1.0) and calls == [0, 1, 2, 4, 8, 16, 12, 10, 9]
    assert [e["float_units"] for e in evals] == calls and evals[-1]["expected_flips"] == pytest.approx(1.0)
    counted[9] = 0.99  # the count misses the gate there: the next prefix
    assert bisect_prefix(order, evaluate, rule, 400)[0] == 10
    k, _, _ = bisect_prefix(order, lambda u: (0.5, 1.0, 50.0), rule, 400)
    assert k == 41


def test_the_cost_model_charges_a_float_layer_the_int8_time_it_forgoes():
    """Per multiply-accumulate, int8 saves far less on a depthwise convolution than on a 1x1 or 3x3 one
    (the measured table, which names its report); with equal sensitivity the search floats the depthwise
    layer first, and a block left float whole pays one island, not one per layer."""
    import torch
    from torch import nn

    from mvit.quant.pt2e import quantizer_for
    from mvit.quant.ptq import build_sim
    from mvit.quant.search import (
        SPEED_TABLE,
        int8_speed,
        island_ms,
        layer_units,
        op_kind,
        rank_units,
        saved_ms_per_mac,
        unit_costs,
    )

    assert "benchmarks/results/" in int8_speed()["source"] and SPEED_TABLE.parent.name == "quant"
    assert saved_ms_per_mac("depthwise") < 0.6 * saved_ms_per_mac("conv1x1")
    assert saved_ms_per_mac("conv1x1") < 2 * saved_ms_per_mac("conv3x3") and island_ms() > 0
    assert [
        op_kind(torch.zeros(8, 1, 3, 3), 8),
        op_kind(torch.zeros(8, 8, 1, 1)),
        op_kind(torch.zeros(8, 8, 3, 3)),
        op_kind(torch.zeros(8, 4, 3, 3), 2),
        op_kind(torch.zeros(3, 8)),
    ] == ["depthwise", "conv1x1", "conv3x3", "conv3x3", "linear"]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.pw = nn.Conv2d(8, 8, 1)
            self.pair = nn.Sequential(nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1))
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.pair(self.pw(self.dw(x))).mean((2, 3)))

    torch.manual_seed(0)
    net, x = Net().eval(), torch.rand(8, 8, 16, 16)
    sim = build_sim(net, quantizer_for(net, "histogram"), x, 8)
    units = layer_units(net)
    cost = unit_costs(sim, units, 8)
    macs = 16 * 16 * 8 * 9, 16 * 16 * 8 * 8
    assert cost["dw"] == pytest.approx(macs[0] * saved_ms_per_mac("depthwise"))
    assert cost["pw"] == pytest.approx(macs[1] * saved_ms_per_mac("conv1x1")) and cost["pw"] > cost["dw"]
    weights = {p.consumer: n for n, p in sim.weights.items()}
    sens = {weights[u]: 1.0 for u in units}  # every layer's weights equally sensitive, activations not at all
    order = rank_units(sim, units, sens, cost)
    names = [u for u, _, _ in order]
    assert names.index("dw") < names.index("pw") and names.index("head") < names.index("pw")
    whole = dict((u, c) for u, _, c in order).get("pair")
    assert whole is None or whole == pytest.approx(cost["pair.0"] + cost["pair.1"])
