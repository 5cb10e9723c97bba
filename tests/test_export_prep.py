"""model/export_prep.py: exact rewrites before export (all formats) and before PT2E int8."""

import torch
from torch import nn

from mvit import model
from mvit.model.export_prep import fold_layernorm_affine_, prepare_for_export
from mvit.model.mobilevit import MultiHeadAttention


def _trained_like(net: nn.Module) -> nn.Module:
    """Non-trivial LayerNorm and BatchNorm parameters, as training leaves them (init is 1 and 0)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 + 0.1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.BatchNorm2d):
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
    return net.eval()


def test_prepared_model_computes_the_same_logits():
    torch.manual_seed(0)
    net = _trained_like(model.create("mobilevit_test", num_classes=5))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    prepared = fold_layernorm_affine_(prepare_for_export(net), torch.randn(1, 3, 64, 64))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), net(x), rtol=1e-4, atol=1e-4)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the original is untouched


def test_layernorm_affine_moves_into_the_next_linear():
    net = _trained_like(model.create("mobilevit_test", num_classes=5))
    assert all(m.elementwise_affine for m in prepare_for_export(net).modules() if isinstance(m, nn.LayerNorm))
    prepared = fold_layernorm_affine_(prepare_for_export(net), torch.randn(1, 3, 64, 64))
    for seq in (m for m in prepared.modules() if isinstance(m, nn.Sequential)):
        for norm, nxt in zip(seq, list(seq)[1:]):
            if isinstance(norm, nn.LayerNorm) and isinstance(nxt, (nn.Linear, MultiHeadAttention)):
                assert not norm.elementwise_affine
    norms = [m for m in prepared.modules() if isinstance(m, nn.LayerNorm)]
    folded = [m for m in norms if not m.elementwise_affine]
    # Two pre-norm LayerNorms per transformer layer fold; each block's final LayerNorm (before the
    # fold back to a feature map) keeps its affine parameters.
    assert folded and len(norms) - len(folded) == sum(
        1 for m in prepared.modules() if type(m).__name__ == "MobileViTBlock"
    )
    assert all(m.scaling == 1.0 for m in prepared.modules() if isinstance(m, MultiHeadAttention))


def test_layernorm_affine_folds_by_dataflow_in_any_architecture():
    """ViT's blocks call ``attn.qkv(norm1(x))`` (no Sequential): the fold follows the tensors, so its
    pre-norm LayerNorms fold too; the final norm, read through a token slice, keeps its affine."""
    net = _trained_like(model.create("vit_test", num_classes=5))
    x = torch.randn(2, 3, 64, 64)
    prepared = prepare_for_export(net)
    with torch.no_grad():
        ref = prepared(x)
        folded = fold_layernorm_affine_(prepared, x[:1])
        torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-4)
    for blk in folded.blocks:
        assert not blk.norm1.elementwise_affine and not blk.norm2.elementwise_affine
    assert folded.norm.elementwise_affine


class _NormUsedTwice(nn.Module):
    """A LayerNorm whose output feeds a linear and the residual sum: folding would change the sum."""

    def __init__(self):
        super().__init__()
        self.norm, self.fc, self.other = (
            nn.LayerNorm(8),
            nn.Linear(8, 8),
            nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 3)),
        )

    def forward(self, x):
        y = self.norm(x)
        return self.other(self.fc(y) + y)


def test_a_layernorm_with_another_consumer_keeps_its_affine():
    net = _trained_like(_NormUsedTwice())
    x = torch.randn(4, 8)
    with torch.no_grad():
        ref = net(x)
        folded = fold_layernorm_affine_(net, x[:1])
        torch.testing.assert_close(folded(x), ref, rtol=1e-5, atol=1e-5)
    assert folded.norm.elementwise_affine and not folded.other[0].elementwise_affine
