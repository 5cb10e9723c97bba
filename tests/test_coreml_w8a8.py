"""Core ML W8A8 through coremltools' own activation calibration (--calib-method coremltools), the
calibration range fix, and the interpreter's fast paths (fp16 rounding, BLAS threads)."""

import json
from collections import defaultdict

import coremltools  # noqa: F401
import numpy as np
import pytest
from export_fixtures import export_int8


def _ops(artifact) -> dict:
    from mvit.export.backends import get_backend

    return get_backend("coreml").inspect_spec(artifact)["op_counts"]


def test_coremltools_route_exports_w8a8_that_passes_parity(small_ckpt, small_data_dir, tmp_path):
    from mvit.export import coreml_interp

    r = export_int8(
        small_ckpt,
        "coreml",
        tmp_path,
        small_data_dir,
        12,
        calib_method="coremltools",
        keep_float=("conv_1", "layer_1", "layer_2"),
    )[0]
    d = r.meta["quantization_details"]
    assert d["method"] == "coremltools" and d["calibration_images"] == 12 and "linear" in d["activations"]
    assert (
        d["keep_float"] == ["conv_1", "layer_1", "layer_2"]
        and d["keep_float_ops"] > 0
        and d["keep_float_source"] == "user"
    )
    assert r.parity is not None and r.parity.passed, r.parity.failures
    assert r.parity.n == 24 - 12 and r.parity.numerics.startswith("graph numerics")
    side = json.loads((r.folder / "model_meta.json").read_text())
    assert side["quantization_details"]["method"] == "coremltools" and side["precision"] == "int8"
    assert not (r.artifact / "executorch_debug_handle_mapping.json").exists()

    # keep-float: the stem's convs read float activations with fp16 weights; the rest is W8A8
    fn = coreml_interp.load_program(str(r.artifact)).function
    convs = [o for o in fn.operations if o.op_type == "conv"]
    quantized = [
        o.inputs["x"].op is not None
        and o.inputs["x"].op.op_type == "dequantize"
        and o.inputs["weight"].op.op_type == "constexpr_affine_dequantize"
        for o in convs
    ]
    stem = [o.inputs["weight"].op.op_type == "const" and o.inputs["x"].op.op_type != "dequantize" for o in convs]
    n_stem = stem.index(False)
    assert n_stem == 13 and not any(stem[n_stem:]) and all(quantized[n_stem:])  # conv_1, layer_1, layer_2
    assert _ops(r.artifact)["constexpr_affine_dequantize"] == len(convs) - n_stem + _ops(r.artifact)["linear"]


def test_unknown_keep_float_on_coremltools_route_fails_before_converting(small_ckpt, small_data_dir, tmp_path):
    from mvit.export.base import ExportError

    with pytest.raises(ExportError, match="no module or module type of that name"):
        export_int8(
            small_ckpt,
            "coreml",
            tmp_path,
            small_data_dir,
            4,
            calib_method="coremltools",
            keep_float=("no_such_module",),
            verify=False,
        )


def test_calibration_ranges_cover_every_sample():
    """coremltools 9.0 keeps the last sample's range; inside interpreter_predictions they accumulate."""
    from coremltools.optimize.coreml.experimental import _post_training_quantization as ptq
    from coremltools.optimize.coreml.experimental._model_debugger import ModelDebugger

    from mvit.export.coreml_interp.calibrate import interpreter_predictions

    def ranges(record, update):
        stats = defaultdict(dict)
        for lo, hi in ((-3.0, 1.0), (-1.0, 5.0), (-0.5, 0.5)):
            record(np.array([lo, hi], np.float32), "t", stats)
            update("x", np.array([lo, hi]), stats)
        return (stats["t"]["rmin"], stats["t"]["rmax"]), (stats["x"]["rmin"], stats["x"]["rmax"])

    assert ranges(ModelDebugger.record_intermediate_output, ptq._update_tensor_range) == ((-0.5, 0.5),) * 2
    with interpreter_predictions():
        assert ranges(ModelDebugger.record_intermediate_output, ptq._update_tensor_range) == ((-3.0, 5.0),) * 2
    with interpreter_predictions(accumulate=False):
        assert ranges(ModelDebugger.record_intermediate_output, ptq._update_tensor_range) == ((-0.5, 0.5),) * 2
    assert ranges(ModelDebugger.record_intermediate_output, ptq._update_tensor_range) == ((-0.5, 0.5),) * 2


def test_round_fp16_matches_numpy_bit_for_bit():
    from mvit.export.coreml_interp.interpreter import round_fp16

    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=1_000_000, dtype=np.uint64).astype(np.uint32)
    edges = np.array(
        [
            0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            65504,
            65519.99,
            65520,
            65536,
            32768,
            32767.9,
            2**-14,
            -(2**-14),
            2**-14 * 0.99999,
            2**-24,
            2**-25,
            2**-25 * 1.0001,
            1e-45,
            1.0 + 2**-11,
            1.0 + 3 * 2**-11,
            2047.5,
            2048.5,
        ],
        np.float32,
    )
    x = np.concatenate([bits.view(np.float32), edges]).reshape(-1, 2)[:, ::-1]  # non-contiguous too
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(np.float16).astype(np.float32)
        got = round_fp16(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan) and np.array_equal(ref[~nan].view(np.uint32), got[~nan].view(np.uint32))
    assert round_fp16(np.array(1.0001, np.float32)) == np.float32(1.0)  # 0-d


def test_blas_threads_restores_the_previous_count():
    from mvit.export.coreml_interp import _threads

    libs = _threads._openblas()
    if not libs:
        pytest.skip("no OpenBLAS in this process")
    get, set_ = libs[0]
    before = get()
    with _threads.blas_threads(1):
        assert get() == 1
    assert get() == before
