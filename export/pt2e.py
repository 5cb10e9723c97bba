"""Post-training int8 quantisation in PyTorch (PT2E), shared by the TFLite and Core ML backends.

One calibrated model serves both formats in one export run (``job.cache``), so W8A8 TFLite and
Core ML artifacts carry the same quantisation parameters.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from export.base import ExportError, ExportJob

CALIB_METHODS = ("min-max", "histogram")


def quantizer_for(model: nn.Module, method: str, keep_float: tuple[str, ...] = ()):
    """litert-torch's PT2E quantizer: int8 per-channel symmetric weights, int8 affine activations."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    config = get_symmetric_quantization_config(is_per_channel=True)
    if method == "min-max":
        from dataclasses import replace

        from torchao.quantization.pt2e.observer import MinMaxObserver

        act = replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        config = replace(config, input_activation=act, output_activation=act)
    elif method != "histogram":
        raise ExportError(f"calibration method {method!r} is not available for PT2E; use {' or '.join(CALIB_METHODS)}")
    quantizer = PT2EQuantizer().set_global(config)
    names = dict(model.named_modules())
    types = {type(m).__name__: type(m) for m in model.modules()}
    for item in keep_float:
        if item in names:
            quantizer.set_module_name(item, None)
        elif item in types:
            quantizer.set_module_type(types[item], None)
        else:
            raise ExportError(f"--keep-float {item!r}: no module or module type of that name in the model "
                              f"(e.g. {next(iter(n for n in names if n), '')!r} or 'LayerNorm')")
    return quantizer


def quantize_pt2e(job: ExportJob, wrapped: nn.Module, sample: torch.Tensor, to_input,
                  graph_input: str, fold_quantize: bool = False) -> tuple[nn.Module, object, dict]:
    """Export, calibrate and convert ``wrapped``; calibration is cached in the job per graph input
    kind (``graph_input``: e.g. "normalized-nchw"), method and keep-float list, so TFLite
    (``fold_quantize=False``) and Core ML (``True``: int8 weight constants) share one calibration.

    ``to_input(pixels_uint8_nhwc) -> tensor`` maps calibration pixels to ``wrapped``'s input.
    Returns (converted module, quantizer, details).
    """
    import copy

    from torchao.quantization.pt2e import allow_exported_model_train_eval, move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    key = ("pt2e", graph_input, job.calib_method, job.keep_float)
    if key not in job.cache:
        if job.calib_pixels is None or len(job.calib_pixels) == 0:
            raise ExportError("int8 export needs calibration images")
        t0 = time.perf_counter()
        quantizer = quantizer_for(job.model, job.calib_method, job.keep_float)
        with torch.no_grad():
            graph = torch.export.export(wrapped, (sample,)).module()
            prepared = prepare_pt2e(graph, quantizer)
            for i in range(len(job.calib_pixels)):
                prepared(to_input(job.calib_pixels[i : i + 1]))
        details = {"method": "pt2e", "observer": job.calib_method, "weights": "int8 per-channel symmetric",
                   "activations": "int8 per-tensor affine", "calibration_images": int(len(job.calib_pixels)),
                   "keep_float": list(job.keep_float), "calibration_seconds": round(time.perf_counter() - t0, 1)}
        job.cache[key] = (prepared, quantizer, details)
    prepared, quantizer, details = job.cache[key]
    with torch.no_grad():
        converted = convert_pt2e(copy.deepcopy(prepared), fold_quantize=fold_quantize)
    converted = allow_exported_model_train_eval(move_exported_model_to_eval(converted))
    return converted, quantizer, dict(details)


def pixels_to_tensor(pixels: np.ndarray, layout: str, normalize_fn=None) -> torch.Tensor:
    """uint8 NHWC pixels -> the float tensor a wrapped model takes."""
    if normalize_fn is not None:
        x = normalize_fn(pixels)  # NCHW float32
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 3, 1) if layout == "NHWC" else x))
    x = pixels.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x if layout == "NHWC" else x.transpose(0, 3, 1, 2)))
