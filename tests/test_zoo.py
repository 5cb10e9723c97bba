"""The model zoo: variants, sizes, exportability."""

import onnx
import pytest
import torch

from mvit import model
from mvit.model import mobilevit, mobilevit_v2

V1 = ["mobilevit_xxs", "mobilevit_xs", "mobilevit_s"]
V2 = [f"mobilevitv2_{w}" for w in ("050", "075", "100", "125", "150", "175", "200")]


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mobilevit_xxs", 1_272_024),
        ("mobilevit_xs", 2_317_848),
        ("mobilevit_s", 5_578_632),
        ("mobilenet_v2", 3_504_872),
        ("mobilenet_v1", 4_231_976),
    ],
)
def test_exact_parameter_counts_at_1000_classes(name, expected):
    assert n_params(model.create(name)) == expected


@pytest.mark.parametrize(
    "name,millions",
    [
        ("mobilevitv2_050", 1.4),
        ("mobilevitv2_075", 2.9),
        ("mobilevitv2_100", 4.9),
        ("mobilevitv2_125", 7.5),
        ("mobilevitv2_150", 10.6),
        ("mobilevitv2_175", 14.3),
        ("mobilevitv2_200", 18.5),
    ],
)
def test_v2_parameter_counts_match_the_paper(name, millions):
    assert n_params(model.create(name)) / 1e6 == pytest.approx(millions, abs=0.06)  # the paper rounds to 0.1M


def test_vit_tiny_has_deit_tiny_shape():
    m = model.create("vit_tiny", img_size=224)
    assert n_params(m) == 5_717_416  # DeiT-Ti at 224 with 1000 classes
    assert len(m.blocks) == 12 and m.blocks[0].attn.num_heads == 3 and m.head.in_features == 192


def test_registry_lists_every_variant_and_rejects_unknown_names():
    names = model.list_models()
    for n in V1 + V2 + ["mobilenet_v2", "mobilenet_v1", "vit_tiny"]:
        assert n in names
    with pytest.raises(ValueError, match="unknown model 'mobilevit_xxxl'"):
        model.create("mobilevit_xxxl")


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_050", "mobilenet_v2", "vit_tiny"])
def test_num_classes_sets_the_head(name):
    m = model.create(name, num_classes=6).eval()
    assert m(torch.randn(2, 3, 256, 256)).shape == (2, 6)


def test_unfold_fold_roundtrip_and_patch_order():
    x = torch.arange(2 * 3 * 8 * 6, dtype=torch.float32).reshape(2, 3, 8, 6)
    p = mobilevit.unfold_patches(x, 2, 2)
    assert p.shape == (2 * 4, 12, 3)
    # patch pixel (0, 1) of patch (row 1, col 2) of image 1, channel 2
    assert p[1 * 4 + 1, 1 * 3 + 2, 2] == x[1, 2, 2, 5]
    assert torch.equal(mobilevit.fold_patches(p, 2, 8, 6, 2, 2), x)
    q = mobilevit_v2.unfold_patches_v2(x, 2, 2)
    ref = torch.nn.functional.unfold(x, kernel_size=2, stride=2).reshape(2, 3, 4, 12)
    assert torch.equal(q, ref)
    assert torch.equal(mobilevit_v2.fold_patches_v2(q, 8, 6, 2, 2), x)


def test_input_not_divisible_by_32_is_a_clear_error():
    m = model.create("mobilevit_test").eval()
    with pytest.raises(ValueError, match="divisible by 32"):
        m(torch.randn(1, 3, 48, 48))


def _max_rank(model_proto) -> int:
    inferred = onnx.shape_inference.infer_shapes(model_proto)
    g = inferred.graph
    values = list(g.value_info) + list(g.input) + list(g.output)
    ranks = [len(v.type.tensor_type.shape.dim) for v in values]
    ranks += [len(t.dims) for t in g.initializer]
    assert len(values) > 50  # shape inference really covered the graph
    return max(ranks)


# One narrow and one wide variant per family: within a family the width multiplier scales channels only,
# the graph (and so every tensor's rank) is the same.
@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevit_s", "mobilevitv2_050", "mobilevitv2_200"])
def test_onnx_export_has_no_tensor_above_rank_4(name):
    m = model.create(name, num_classes=10).eval()
    # Rank does not depend on resolution: 64x64 keeps the export quick.
    prog = torch.onnx.export(m, (torch.randn(1, 3, 64, 64),), dynamo=True, verbose=False)
    assert _max_rank(prog.model_proto) == 4
