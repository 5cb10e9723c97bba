"""Post-training algorithms of mvit.quant on tiny models: folds and equalization keep the float function,
bias correction and learned rounding do what they promise, the simulated int8 graph matches PT2E's,
and the mixed-precision search finds a planted sensitive layer."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import mvit.model
from mvit.model.export_prep import attention_layers, fold_layernorm_affine_, prepare_for_export
from mvit.quant import pt2e
from mvit.quant.ptq import build_sim
from mvit.quant.smooth import balance_attention_


def _tiny_cnn(act=nn.ReLU) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        act(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.BatchNorm2d(8),
        act(),
        nn.Conv2d(8, 6, 1),
        nn.BatchNorm2d(6),
        nn.Conv2d(6, 4, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


def _randomize_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g) * 3)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model


@pytest.fixture(scope="module")
def tiny_mobilevit(small_ckpt):
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.export_prep import prepare_for_export

    ck = load_checkpoint(small_ckpt)
    return prepare_for_export(ck.model)


@pytest.fixture(scope="module")
def tiny_inputs(small_data_dir, small_ckpt):
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.preprocess import list_images, normalize_hwc_uint8, pixels_uint8

    contract = load_checkpoint(small_ckpt).meta.contract
    files = list_images(small_data_dir)
    return torch.from_numpy(normalize_hwc_uint8(np.stack([pixels_uint8(f, contract) for f in files]), contract))


def test_folds_keep_the_float_function(tiny_mobilevit, tiny_inputs):
    from mvit.model.export_prep import fold_layernorm_affine_
    from mvit.quant.fold import fold_batchnorm_, fold_block_layernorm_

    x = tiny_inputs[:8]
    with torch.no_grad():
        ref = tiny_mobilevit(x)
        folded = fold_block_layernorm_(fold_layernorm_affine_(fold_batchnorm_(copy.deepcopy(tiny_mobilevit)), x[:1]))
        out = folded(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert not any(isinstance(m, nn.LayerNorm) and m.elementwise_affine for m in folded.modules())
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_equalization_is_exact_across_relu_and_skips_silu(tiny_mobilevit, tiny_inputs):
    from mvit.quant.equalize import conv_pairs, equalize_
    from mvit.quant.fold import fold_batchnorm_

    net = fold_batchnorm_(_randomize_bn(_tiny_cnn(nn.ReLU)))
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        ref = net(x)
        pairs = equalize_(net, x[:1])
        out = net(x)
    assert [(a, act, b) for a, act, b in pairs] == [("0", "relu", "3"), ("3", "relu", "6"), ("6", "identity", "8")]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # after equalization each pair's ranges match: conv1's row i and conv2's column i
    c1, c2 = net[6], net[8]
    r1 = c1.weight.abs().flatten(1).amax(1)
    r2 = c2.weight.abs().transpose(0, 1).flatten(1).amax(1)
    torch.testing.assert_close(r1, r2, rtol=1e-3, atol=1e-6)

    # SiLU is not scale-equivariant: exact mode leaves MobileViT's chains alone, approximate mode changes it
    mv = fold_batchnorm_(copy.deepcopy(tiny_mobilevit))
    assert conv_pairs(mv, tiny_inputs[:1]) == []
    with torch.no_grad():
        before = mv(tiny_inputs[:4])
        assert len(equalize_(mv, tiny_inputs[:1], approximate=True)) > 5
        assert not torch.allclose(mv(tiny_inputs[:4]), before, atol=1e-4)


def _single_conv_sim(conv: nn.Module, x: torch.Tensor, batch: int):
    return build_sim(conv, pt2e.quantizer_for(conv, "min-max"), x, batch)


def test_bias_correction_restores_each_channel_mean():
    """Weights mode: with int8 weights only, the layer's output mean on the calibration images equals
    the float layer's; sequential mode: the same with int8 activations too."""
    from mvit.quant.bias_correction import correct_bias

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.SiLU(), nn.Conv2d(6, 5, 3, padding=1)).eval()
    x = torch.randn(16, 4, 12, 12) + 0.5
    with torch.no_grad():
        ref_mean = net(x).mean(dim=(0, 2, 3))
    for mode, acts in (("weights", False), ("sequential", True)):
        sim = _single_conv_sim(net, x, 8)
        sim.enable_all(acts=acts, weights=True)
        before = sim.run(x, 8)
        # the last conv's output is the graph output, quantized (when acts are on) after the bias
        last = [p for p in sim.acts.values() if p.producer and p.producer.endswith("2")]
        for p in last:
            p.enabled = False
        before = sim.run(x, 8).mean(dim=(0, 2, 3))
        correct_bias(sim, x, 8, mode=mode)
        after = sim.run(x, 8).mean(dim=(0, 2, 3))
        assert (after - ref_mean).abs().max() < 1e-4, mode
        assert (before - ref_mean).abs().max() > 1e-4, mode
        # switched off, the layer is the float one again
        sim.enable_all(False, False)
        torch.testing.assert_close(sim.run(x, 8).mean(dim=(0, 2, 3)), ref_mean, rtol=1e-5, atol=1e-5)


def test_adaround_rounds_onto_the_grid_and_lowers_layer_error():
    from mvit.quant.adaround import _error, adaround, collect_moments
    from mvit.quant.layer_io import layers

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1)).eval()
    with torch.no_grad():
        net[0].weight.mul_(torch.linspace(0.2, 3, 8).view(-1, 1, 1, 1))
    x = torch.rand(16, 3, 16, 16)
    sim = _single_conv_sim(net, x, 8)
    sim.enable_all(acts=False, weights=True)
    layer = layers(sim)[0]
    m = collect_moments(sim, [layer], x, 8, asymmetric=False)[0]
    w, b = layer.point.weight, layer.point.bias
    nearest = layer.point.quantized()
    out = adaround(sim, x, 8)
    learned = out["0"]
    assert learned.shape == w.shape
    q = learned / layer.point.scale.view(-1, 1, 1, 1)
    torch.testing.assert_close(q, q.round(), rtol=0, atol=1e-4)  # on the int8 grid
    assert float((learned - w).abs().max()) <= float(layer.point.scale.max()) + 1e-6  # one step at most
    torch.testing.assert_close(learned.abs().flatten(1).amax(1), w.abs().flatten(1).amax(1))  # same scale
    assert float(_error(m, learned, w, b, b, False)) < 0.8 * float(_error(m, nearest, w, b, b, False))


def test_sim_matches_the_converted_pt2e_graph(tiny_mobilevit, tiny_inputs):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from mvit.quant.sim import SimGraph

    x = tiny_inputs[:8]
    q = pt2e.quantizer_for(tiny_mobilevit, "histogram")
    prepared = pt2e.prepare(tiny_mobilevit, x, q)
    with torch.no_grad():
        prepared(x)
        converted = convert_pt2e(prepared, fold_quantize=False)
        ref = converted(x)
        sim = SimGraph(copy.deepcopy(converted))
        torch.testing.assert_close(sim(x), ref, rtol=0, atol=1e-5)
        sim.enable_all(False, False)
        torch.testing.assert_close(sim(x), tiny_mobilevit(x), rtol=1e-4, atol=1e-4)
        # a float block removes the points inside it but not those its neighbours quantize
        sim.set_float(("layer_3",))
        off = {n for n, p in sim.acts.items() if not p.enabled}
        inside = lambda path: path.startswith("layer_3.")  # noqa: E731
        assert off and all(
            (p.producer is None or inside(p.producer)) and all(map(inside, p.consumers))
            for n, p in sim.acts.items()
            if n in off
        )
        assert all(not p.enabled for p in sim.weights.values() if p.consumer.startswith("layer_3."))
        assert all(p.enabled for p in sim.weights.values() if not p.consumer.startswith("layer_3."))


def _plant_outlier(net: nn.Module) -> nn.Module:
    """A channel of ~1000 after layer_4.0's depthwise conv that the next conv ignores: harmless in float,
    ruinous for the per-tensor int8 range of that activation."""
    net = copy.deepcopy(net)
    blk = net.layer_4[0].block
    with torch.no_grad():
        blk.conv_3x3.block.norm.bias[0] += 1000.0
        blk.red_1x1.block.conv.weight[:, 0] = 0
    return net


def test_search_finds_a_planted_sensitive_layer(tiny_mobilevit, tiny_inputs):
    """The stopping rule can fail: every layer int8 is rejected (expected flips far above the allowance),
    and the set it accepts leaves the planted layer float."""
    from mvit.quant.search import StopRule, layer_units, search_sim

    net = _plant_outlier(tiny_mobilevit)
    calib, heldout = tiny_inputs[:8], tiny_inputs[8:24]
    q = pt2e.quantizer_for(net, "histogram")
    rule = StopRule(0.99)
    res = search_sim(net, q, calib, heldout, rule, batch=8)
    assert res.met and res.agreement >= 0.99 and res.expected_flips <= rule.max_expected(16)
    first = res.evaluations[0]
    assert first["float_units"] == 0 and first["agreement"] < 0.8  # all int8 fails
    assert first["expected_flips"] > 10 * rule.max_expected(16)
    # the chosen float set covers the planted tensor's producer and consumer, and little else
    covers = lambda layer: any(layer == u or layer.startswith(u + ".") for u in res.float_units)  # noqa: E731
    assert covers("layer_4.0.block.conv_3x3") and covers("layer_4.0.block.red_1x1")
    assert len(res.float_units) <= 3 and res.float_cost_fraction < 0.25
    assert len(layer_units(net)) > 30


def test_the_chosen_set_survives_a_rounding_level_change_of_the_model(tiny_mobilevit, tiny_inputs):
    """Every weight times (1 + 1e-6 noise), the kind of change a float rewrite makes: calibration,
    sensitivity and ranking run again and the search chooses the same float set, at nearly the same
    expected flips."""
    from mvit.quant.search import StopRule, search_sim

    net = _plant_outlier(tiny_mobilevit)
    calib, heldout = tiny_inputs[:8], tiny_inputs[8:24]
    rule = StopRule(0.99)
    base = search_sim(net, pt2e.quantizer_for(net, "histogram"), calib, heldout, rule, batch=8)
    moved = copy.deepcopy(net)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for prm in moved.parameters():
            prm.mul_(1 + 1e-6 * torch.randn(prm.shape, generator=g))
        assert not torch.equal(net(heldout), moved(heldout))
    again = search_sim(moved, pt2e.quantizer_for(moved, "histogram"), calib, heldout, rule, batch=8)
    assert again.float_units == base.float_units
    assert again.expected_flips == pytest.approx(base.expected_flips, abs=0.02 * rule.max_expected(16) + 1e-6)


def _input_channel_spread(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> float:
    """Widest over median per-channel max |input| of ``layer``: how much one int8 scale wastes."""
    seen = []
    h = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].abs().flatten(0, -2).amax(0)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    r = seen[0]
    return float(r.max() / r.median())


def test_smoothquant_is_exact_and_narrows_an_outlier_channel():
    """A ViT whose residual stream carries one huge channel (as trained ViTs do): after the LayerNorm
    fold that channel dominates every qkv / fc1 input; smoothing moves it into the weights, exactly."""
    from mvit.quant.ptq import Recipe, fold_float

    torch.manual_seed(0)
    net = mvit.model.create("vit_test", num_classes=5).eval()
    with torch.no_grad():
        net.patch_embed.proj.bias[3] += 40.0
    x = torch.randn(8, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
    folded, _ = fold_float(net, Recipe(), x)
    smoothed, details = fold_float(net, Recipe(smooth_alpha=0.5, smooth_attention_alpha=0.5), x)
    assert details["smoothquant_layernorm"] == 2 * len(net.blocks) and details["smoothquant_attention"] == len(
        net.blocks
    )
    with torch.no_grad():
        torch.testing.assert_close(smoothed(x), ref, rtol=1e-4, atol=1e-4)
    before = _input_channel_spread(folded, folded.blocks[0].attn.qkv, x)
    after = _input_channel_spread(smoothed, smoothed.blocks[0].attn.qkv, x)
    assert before > 5 and after < before / 2, (before, after)
    # the PT2E graph folds LayerNorm affines again (quant.pt2e.prepare): the smoothing scale must stay
    from mvit.model.export_prep import fold_layernorm_affine_

    again = fold_layernorm_affine_(copy.deepcopy(smoothed), x[:1])
    assert again.blocks[0].norm1.elementwise_affine
    assert _input_channel_spread(again, again.blocks[0].attn.qkv, x) == pytest.approx(after, rel=1e-4)


def test_smoothquant_and_attention_balance_keep_mobilevit_exact(tiny_mobilevit, tiny_inputs):
    from mvit.quant.ptq import Recipe, fold_float

    x = tiny_inputs[:8]
    with torch.no_grad():
        ref = tiny_mobilevit(x)
    recipe = Recipe(smooth_alpha=0.5, smooth_attention_alpha=0.5, balance_attention=True)
    smoothed, details = fold_float(tiny_mobilevit, recipe, x)
    assert details["smoothquant_layernorm"] > 0 and details["smoothquant_attention"] > 0
    assert "attention-balance" in details["folded"]
    with torch.no_grad():
        torch.testing.assert_close(smoothed(x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.xfail(
    strict=True,
    reason="since the XNNPACK int8 graph (int8 residual adds, ranges shared through moves) leaving the worst "
    "group float no longer lifts the all-int8 cosine on this tiny model: the planted outlier reaches a third "
    "group; open in issue 27",
)
def test_int8_sources_blames_the_group_holding_a_planted_outlier(tiny_mobilevit, tiny_inputs):
    """``mvit.benchmarks.int8_sources``: a ~1000 channel after a conv ruins its conv output and SiLU output
    ranges; the report's worst group alone is one of those, every other group alone is harmless, and
    leaving the worst float helps."""
    from mvit.benchmarks.int8_sources import groups, measure

    net = _plant_outlier(tiny_mobilevit)
    x = tiny_inputs[:16]
    sim = build_sim(net, pt2e.quantizer_for(net, "histogram"), tiny_inputs[:8], 8)
    with torch.no_grad():
        ref = net(x).numpy()
    assert sum(len(v) for v in groups(sim).values()) == len(sim.acts)
    rows = measure(sim, x, ref, 8)
    assert [r["what"] for r in rows[:3]] == ["every layer int8", "weights only", "activations only"]
    worst = min(rows[3:], key=lambda r: r["cosine"])
    assert worst["what"] in ("conv2d", "mul"), [(r["what"], r["cosine"]) for r in rows]
    assert worst["cosine"] < 0.5
    assert worst["without"]["cosine"] > rows[0]["cosine"]
    assert all(r["cosine"] > 0.9 for r in rows[3:] if r["what"] not in ("conv2d", "mul"))
    assert all(p.enabled for p in sim.acts.values())  # the simulation is left as found


def test_int8_sources_refuses_a_bad_image_count_in_one_line(capsys):
    from mvit.benchmarks import int8_sources

    with pytest.raises(SystemExit) as e:
        int8_sources.main(["--calib", "x", "--data", "y", "--max-images", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--max-images 0: use 1 or more" in err


def _qkv_ranges(net: nn.Module, x: torch.Tensor) -> list[list[float]]:
    """Per attention layer, the output range (max - min) of the query, key and value parts of its fused
    projection on ``x``."""
    out = []

    def hook(_m, _a, y):
        out.append([float(p.max() - p.min()) for p in y.split(y.shape[-1] // 3, dim=-1)])

    handles = [a.qkv.register_forward_hook(hook) for a in attention_layers(net)]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return out


def _plant_imbalance_(net: nn.Module) -> nn.Module:
    """Keys 8x wider and queries 8x narrower, values 4x wider (the output projection compensates): the
    same function, the shape a trained model's fused projection has once 1/sqrt(head_dim) is folded in."""
    with torch.no_grad():
        for a in attention_layers(net):
            d = a.qkv.out_features // 3
            for rows, f in ((slice(0, d), 1 / 8), (slice(d, 2 * d), 8.0), (slice(2 * d, 3 * d), 4.0)):
                a.qkv.weight[rows] *= f
                a.qkv.bias[rows] *= f
            a.out.weight /= 4.0
    return net


def test_attention_balance_evens_out_the_qkv_ranges_and_keeps_the_function():
    """The fused projection's output gets one int8 scale, so narrow queries get few steps:
    ``balance_attention_`` evens the query, key and value parts out, exactly."""
    for arch in ("vit_test", "mobilevit_test"):
        net = _plant_imbalance_(mvit.model.create(arch, num_classes=5).eval())
        x = torch.randn(4, 3, 64, 64)
        folded = fold_layernorm_affine_(prepare_for_export(net), x[:1])
        balanced = balance_attention_(fold_layernorm_affine_(prepare_for_export(net), x[:1]))
        with torch.no_grad():
            torch.testing.assert_close(balanced(x), net(x), rtol=1e-4, atol=1e-4)
        before, after = _qkv_ranges(folded, x), _qkv_ranges(balanced, x)
        assert before and len(before) == len(after)
        for parts_before, parts in zip(before, after):
            assert max(parts_before) / min(parts_before) > 20
            assert max(parts) / min(parts) < 2
