"""Weights from Hugging Face transformers, timm and ml-cvnets load into the zoo exactly."""

import importlib.util
import subprocess
import sys
import textwrap

import pytest
import torch

from mvit import model
from mvit.model.import_weights import WeightImportError, convert_state_dict, load_into, read_state_dict


def randomise_(m):
    """Perturb every parameter and BatchNorm statistic so a wrong mapping cannot go unnoticed."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, b in m.named_buffers():
            if n.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif n.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return m.eval()


def test_hf_mobilevit_v1_logits_match():
    from transformers import MobileViTConfig, MobileViTForImageClassification

    cfg = MobileViTConfig(
        hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320], expand_ratio=2.0, num_labels=10
    )  # = mobilevit_xxs
    hf = randomise_(MobileViTForImageClassification(cfg))
    ours = model.create("mobilevit_xxs", num_classes=10).eval()
    load_into(ours, hf.state_dict(), source="hf")
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        ref = hf(pixel_values=x).logits
        assert ref.std() > 0.05
        assert (ours(x) - ref).abs().max() <= 1e-4


def test_hf_mobilevit_v2_logits_match():
    from transformers import MobileViTV2Config, MobileViTV2ForImageClassification

    hf = randomise_(MobileViTV2ForImageClassification(MobileViTV2Config(width_multiplier=0.75, num_labels=7)))
    ours = model.create("mobilevitv2_075", num_classes=7).eval()
    load_into(ours, hf.state_dict())  # source detected from the key names
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        ref = hf(pixel_values=x).logits
        assert ref.std() > 0.05
        assert (ours(x) - ref).abs().max() <= 1e-4


TIMM_CHECK = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    import torchvision_shim; torchvision_shim.install()
    import timm, model
    from mvit.model.import_weights import load_into
    from test_import_weights import randomise_
    for name in ("mobilevit_xs", "mobilevitv2_050"):
        t = randomise_(timm.create_model(name, num_classes=5))
        ours = model.create(name, num_classes=5).eval()
        load_into(ours, t.state_dict(), source="timm")
        x = torch.randn(2, 3, 256, 256)
        with torch.no_grad():
            ref = t(x)
            assert ref.std() > 0.05, name
            print(name, float((ours(x) - ref).abs().max()))
""")


def test_timm_logits_match():
    from pathlib import Path

    # timm is a test dependency (tests/run.sh installs it without its torchvision requirement): absent, fail
    assert importlib.util.find_spec("timm") is not None, "timm missing: run tests/run.sh, which installs it"
    tests = Path(__file__).parent
    # A subprocess: the torchvision shim must not leak into other tests (transformers probes torchvision).
    out = subprocess.run(
        [sys.executable, "-c", TIMM_CHECK.format(root=str(tests.parent), tests=str(tests))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    diffs = dict(line.split() for line in out.stdout.strip().splitlines())
    assert set(diffs) == {"mobilevit_xs", "mobilevitv2_050"}
    assert all(float(d) <= 1e-4 for d in diffs.values()), diffs


# Parameter names as apple/ml-cvnets writes them (cvnets/models/classification/mobilevit.py,
# cvnets/modules/mobilevit_block.py, cvnets/modules/transformer.py): the zoo uses them verbatim.
CVNETS_V1_KEYS = [
    "conv_1.block.conv.weight",
    "conv_1.block.norm.running_var",
    "layer_1.0.block.exp_1x1.block.conv.weight",
    "layer_1.0.block.conv_3x3.block.norm.weight",
    "layer_1.0.block.red_1x1.block.conv.weight",
    "layer_3.1.local_rep.conv_3x3.block.conv.weight",
    "layer_3.1.local_rep.conv_1x1.block.conv.weight",
    "layer_3.1.global_rep.0.pre_norm_mha.0.weight",
    "layer_3.1.global_rep.0.pre_norm_mha.1.qkv_proj.weight",
    "layer_3.1.global_rep.0.pre_norm_mha.1.out_proj.bias",
    "layer_3.1.global_rep.0.pre_norm_ffn.1.weight",
    "layer_3.1.global_rep.0.pre_norm_ffn.4.weight",
    "layer_3.1.global_rep.2.weight",
    "layer_3.1.conv_proj.block.conv.weight",
    "layer_3.1.fusion.block.norm.bias",
    "conv_1x1_exp.block.conv.weight",
    "classifier.fc.weight",
]
CVNETS_V2_KEYS = [
    "layer_3.1.local_rep.0.block.conv.weight",
    "layer_3.1.local_rep.1.block.conv.weight",
    "layer_3.1.global_rep.0.pre_norm_attn.0.weight",
    "layer_3.1.global_rep.0.pre_norm_attn.1.qkv_proj.block.conv.bias",
    "layer_3.1.global_rep.0.pre_norm_attn.1.out_proj.block.conv.weight",
    "layer_3.1.global_rep.0.pre_norm_ffn.1.block.conv.weight",
    "layer_3.1.global_rep.0.pre_norm_ffn.3.block.conv.bias",
    "layer_3.1.global_rep.2.weight",
    "layer_3.1.conv_proj.block.norm.weight",
    "classifier.fc.bias",
]


def test_cvnets_names_load_unchanged():
    v1 = model.create("mobilevit_xxs").state_dict()
    v2 = model.create("mobilevitv2_050").state_dict()
    assert set(CVNETS_V1_KEYS) <= set(v1)
    assert set(CVNETS_V2_KEYS) <= set(v2)
    # A cvnets checkpoint (same names, with DataParallel's "module." prefix) loads strictly.
    src = randomise_(model.create("mobilevit_xxs", num_classes=3))
    dst = model.create("mobilevit_xxs", num_classes=3)
    load_into(dst, {f"module.{k}": v for k, v in src.state_dict().items()}, source="cvnets")
    assert torch.equal(dst.classifier.fc.weight, src.classifier.fc.weight)


def test_wrong_variant_lists_missing_and_unexpected_keys():
    sd = model.create("mobilevit_xs", num_classes=10).state_dict()
    with pytest.raises(WeightImportError, match=r"weights do not fit mobilevit_xxs: .*shape mismatches"):
        load_into(model.create("mobilevit_xxs", num_classes=10), sd)
    sd_v2 = model.create("mobilevitv2_050").state_dict()
    with pytest.raises(WeightImportError, match=r"missing keys \(.*\); \d+ unexpected keys"):
        load_into(model.create("mobilevit_xxs"), sd_v2)


def test_hf_state_dict_converts_to_zoo_names():
    from transformers import MobileViTConfig, MobileViTForImageClassification

    hf = MobileViTForImageClassification(MobileViTConfig(num_labels=4))  # defaults = mobilevit_s
    converted = convert_state_dict(hf.state_dict(), model.create("mobilevit_s", num_classes=4))
    assert "layer_5.1.global_rep.0.pre_norm_mha.1.qkv_proj.weight" in converted
    assert converted["layer_5.1.global_rep.0.pre_norm_mha.1.qkv_proj.weight"].shape == (720, 240)
    assert "layer_5.1.global_rep.3.weight" in converted  # the final LayerNorm after 3 transformer layers


def test_foreign_files_are_read_without_unpickling_code(tmp_path):
    sd = {"w": torch.ones(2)}
    torch.save({"state_dict": sd}, tmp_path / "ok.pt")
    assert torch.equal(read_state_dict(tmp_path / "ok.pt")["w"], sd["w"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import pickle

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(WeightImportError, match="not loadable with weights_only=True"):
        read_state_dict(tmp_path / "evil.pt")
    with pytest.raises(WeightImportError, match="no such file"):
        read_state_dict(tmp_path / "missing.pt")
