"""Graph rewrites on converted .tflite files (export/tflite_passes.py)."""

import numpy as np
import pytest
import torch
from conftest import tflite_op_input_types
from torch import nn

from mvit.export.tflite_passes import dequantize_before_pad


def _outputs(model_bytes: bytes, xs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes, num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for x in xs:
        it.set_tensor(i["index"], x[None])
        it.invoke()
        out.append(it.get_tensor(o["index"]).copy())
    return np.stack(out)


class _FloatStem(nn.Module):
    """A stride-2 float stem (kept float) behind an int8 input, then an int8 1x1 conv: MobileViT's layout."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.SiLU())
        self.head = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.head(self.stem(x))


@pytest.fixture(scope="module")
def float_stem_int8(tmp_path_factory) -> bytes:
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from mvit.quant.pt2e import quantizer_for

    torch.manual_seed(0)
    net = _FloatStem().eval()
    quantizer = quantizer_for(net, "min-max", ("stem",))
    sample = torch.rand(1, 3, 16, 16)
    prepared = prepare_pt2e(torch.export.export(net, (sample,)).module(), quantizer)
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.rand(1, 3, 16, 16) * 4 - 2)
    converted = convert_pt2e(prepared, fold_quantize=False)
    path = tmp_path_factory.mktemp("pad") / "stem.tflite"
    litert_torch.convert(converted, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    return path.read_bytes()


def test_dequantize_moves_in_front_of_the_pad_and_changes_no_output(float_stem_int8):
    before = tflite_op_input_types(float_stem_int8)
    assert before[:3] == [("TRANSPOSE", "INT8"), ("PAD", "INT8"), ("DEQUANTIZE", "INT8")]  # what the converter emits
    after_bytes, moved = dequantize_before_pad(float_stem_int8)
    assert moved == 1
    after = tflite_op_input_types(after_bytes)
    assert after[:4] == [("TRANSPOSE", "INT8"), ("DEQUANTIZE", "INT8"), ("PAD", "FLOAT32"), ("CONV_2D", "FLOAT32")]
    assert sorted(after) != sorted(before) and len(after) == len(before)
    xs = np.random.default_rng(0).integers(-128, 128, (8, 3, 16, 16)).astype(np.int8)
    xs[0] = 127  # the border matters most where the image is far from the fill value
    np.testing.assert_array_equal(_outputs(after_bytes, xs), _outputs(float_stem_int8, xs))
    assert dequantize_before_pad(after_bytes) == (after_bytes, 0)  # nothing left to move


def test_float_graphs_pass_through_unchanged(tmp_path):
    import litert_torch

    net = _FloatStem().eval()
    path = tmp_path / "fp32.tflite"
    litert_torch.convert(net, (torch.rand(1, 3, 16, 16),)).export(str(path))
    data = path.read_bytes()
    assert dequantize_before_pad(data) == (data, 0)
