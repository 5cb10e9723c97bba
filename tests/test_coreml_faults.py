"""Proof that the Core ML parity check catches real faults: edit a saved .mlpackage (the ML Program
protobuf inside it) the way a conversion bug would, and require check_against_reference to fail."""

from __future__ import annotations

import coremltools as ct
import numpy as np
import pytest
import torch

from mvit.export.coreml_interp import UnsupportedOpError, check_against_reference, load_program  # noqa: E402
from mvit.export.coreml_interp._tiny import convert, make_tiny  # noqa: E402


def sensitive_model():
    """Tiny MobileViT v1 whose output depends strongly on its transformer (random tiny models barely
    do), so that a fault there moves the logits well past the fp16 tolerance too."""
    m = make_tiny("mobilevit_v1")
    with torch.no_grad():
        m.attn.qkv.weight.mul_(4)
        m.attn.out.weight.mul_(2)
        m.proj[0].weight.mul_(4)
    return m


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(7)
    model = sensitive_model()
    x = torch.rand(8, 3, 16, 16)
    d = tmp_path_factory.mktemp("faults")
    paths = {}
    for precision in ("fp32", "fp16"):
        paths[precision] = d / f"good_{precision}.mlpackage"
        convert(model, x[:1], precision).save(str(paths[precision]))
    return model, x, paths, d


def edit_package(src, dst, edit):
    """Copy a package, applying ``edit(block, consts)`` to the main function's MIL protobuf block
    (``consts``: const op by output name)."""
    mlmodel = ct.models.MLModel(str(src), skip_model_load=True)
    spec = mlmodel.get_spec()
    block = next(iter(spec.mlProgram.functions["main"].block_specializations.values()))
    consts = {o.outputs[0].name: o for o in block.operations if o.type == "const"}
    edit(block, consts)
    ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True).save(str(dst))
    return dst


def const_tensor(op, name, consts):
    """The immediate tensor value feeding input ``name`` of ``op`` (through its const op)."""
    return consts[op.inputs[name].arguments[0].name].attributes["val"].immediateValue.tensor


def first(block, op_type, pred=lambda op: True):
    return next(o for o in block.operations if o.type == op_type and pred(o))


def set_softmax_axis(block, consts):
    t = const_tensor(first(block, "softmax"), "axis", consts)
    assert list(t.ints.values) == [-1]
    t.ints.values[0] = -2  # attention over the wrong axis; the shape is unchanged (N x N)


def set_layer_norm_epsilon(block, consts):
    t = const_tensor(first(block, "layer_norm"), "epsilon", consts)
    if len(t.floats.values):  # fp32 program
        assert t.floats.values[0] == pytest.approx(1e-5)
        t.floats.values[0] = 1e-2
    else:  # fp16 program: the scalar is stored as raw fp16 bytes
        assert np.frombuffer(t.bytes.values, np.float16)[0] == np.float16(1e-5)
        t.bytes.values = np.float16(1e-2).tobytes()


def swap_transpose_perm(block, consts):
    # the patch unfold transpose [0, 2, 1, 3] of a (64, 2, 4, 2) tensor: [0, 2, 3, 1] has the same
    # output shape but reorders the pixels inside each patch
    def is_unfold(op):
        return list(const_tensor(op, "perm", consts).ints.values) == [0, 2, 1, 3]

    t = const_tensor(first(block, "transpose", is_unfold), "perm", consts)
    t.ints.values[:] = [0, 2, 3, 1]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_unedited_round_trip_passes(setup, precision):
    model, x, paths, d = setup
    path = edit_package(paths[precision], d / f"same_{precision}.mlpackage", lambda block, consts: None)
    r = check_against_reference(path, model, x, precision)
    assert r["passed"], r


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("fault", [set_softmax_axis, set_layer_norm_epsilon, swap_transpose_perm])
def test_fault_is_caught(setup, precision, fault):
    model, x, paths, d = setup
    path = edit_package(paths[precision], d / f"{fault.__name__}_{precision}.mlpackage", fault)
    r = check_against_reference(path, model, x, precision)
    assert not r["passed"], r
    assert r["finite"] and r["max_rel_err"] > 2 * r["thresholds"]["max_rel_err"]


def test_unknown_op_in_package_is_a_loud_error(setup):
    _, _, paths, d = setup

    def silu_to_atan(block, consts):
        first(block, "silu").type = "atan"  # a real MIL op the interpreter does not implement

    path = edit_package(paths["fp32"], d / "atan.mlpackage", silu_to_atan)
    prog = load_program(path)
    assert prog.op_types.get("atan") == 1
    with pytest.raises(UnsupportedOpError, match="'atan'"):
        check_against_reference(path, make_tiny("mobilevit_v1"), torch.rand(1, 3, 16, 16), "fp32")


class Overflowing(torch.nn.Module):
    """Finite in fp32, but the intermediate (x * 300)^2 exceeds fp16's 65504 for x > 0.854."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(48, 4)

    def forward(self, x):
        h = torch.nn.functional.avg_pool2d(x, 4).flatten(1)
        return self.fc(torch.square(h * 300.0) * 1e-5)


def test_fp16_overflow_is_caught(tmp_path):
    torch.manual_seed(0)
    model = Overflowing().eval()
    x = torch.rand(4, 3, 16, 16) * 0.1 + 0.9  # pooled values ~0.95: (0.95 * 300)^2 > 65504
    results = {}
    for precision in ("fp32", "fp16"):
        path = tmp_path / f"ovf_{precision}.mlpackage"
        convert(model, x[:1], precision).save(str(path))
        results[precision] = check_against_reference(path, model, x, precision)
    assert results["fp32"]["passed"], results["fp32"]
    assert not results["fp16"]["passed"] and not results["fp16"]["finite"], results["fp16"]
    assert any("non-finite" in f for f in results["fp16"]["failures"])
