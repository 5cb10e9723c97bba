"""W8A8 for Core AI with coreai-opt, driven by mvit's int8 plan.

coreai-opt's default ``QuantizerConfig()`` (graph mode, on torchao's PT2E): int8 per-channel symmetric
weights and int8 per-tensor symmetric activations whose min/max ranges follow a moving average over the
calibration images, fed one at a time (the average depends on how they are batched). From the export job it takes the float set of mvit's
int8 plan (searched, given with --keep-float, or a QAT checkpoint's) as ``module_name_configs`` /
``module_type_configs`` set to None, and the job's calibration images (``calibration_mode``).
``finalize()`` turns the fake quantizers into Core AI quantize/dequantize ops. Float parts stay
float32 (``FLOAT_COMPUTE``): coreai-opt's documented ``cast_to_16_bit_precision`` after W8A8 moved
logits far from PyTorch (benchmarks/results/coreai.md), and the parity gate refuses such an artifact.
"""

from __future__ import annotations

import hashlib
import re
import time

import numpy as np
import torch
from torch import nn

from ..base import ExportError, ExportJob

# Between the quantized ops: float32. "float16" is coreai-opt's documented recipe (``cast_to_16_bit_precision``
# after W8A8); the parity gate refuses what it made of the tiny test model (tests/test_coreai.py).
FLOAT_COMPUTE = "float32"
# What coreai-opt cannot take from mvit's int8 engine, said in the metadata and on the console.
CANNOT_TAKE = (
    "coreai-opt cannot take mvit's QAT-learned activation ranges (its observers calibrate their own "
    "min/max on the calibration images) nor histogram calibration"
)


def float_configs(job: ExportJob, wrapped: nn.Module, prefix: str) -> tuple[dict, dict, list[str]]:
    """(module_name_configs, module_type_configs, the names as given) that leave the job's float set
    unquantized; every name must be a module or module type of the model (ExportError otherwise)."""
    keep = [k for k in job.keep_float if k]  # the plan's float set (empty: every layer int8)
    names = {n for n, _ in job.model.named_modules() if n}
    types = {type(m).__name__: f"{type(m).__module__}.{type(m).__qualname__}" for m in wrapped.modules()}
    by_name, by_type = {}, {}
    for k in keep:
        if k in names:
            by_name[re.escape(prefix + k)] = None
        elif k in types:
            by_type[types[k]] = None
        else:
            raise ExportError(
                f"--keep-float {k!r}: no module or module type of that name in the model "
                f"(e.g. {next(iter(sorted(names)), '')!r} or 'LayerNorm')"
            )
    return by_name, by_type, keep


def quantize(job: ExportJob, wrapped: nn.Module, sample: torch.Tensor, in_model: bool) -> tuple[nn.Module, dict]:
    """The coreai-opt W8A8 model of ``wrapped`` (the job's model, possibly inside an input wrapper whose
    model is ``.model``), calibrated on the job's images; returns (finalized module, details). The finalized
    module is kept in ``job.cache``: another export of the same inputs converts it without quantizing again."""
    from coreai_opt.quantization import Quantizer, QuantizerConfig  # lazy: optional extra [coreai]

    if job.calib_pixels is None or len(job.calib_pixels) == 0:
        raise ExportError("int8 export needs calibration images")
    prefix = "model." if wrapped is not job.model else ""
    by_name, by_type, keep = float_configs(job, wrapped, prefix)
    key = (in_model, tuple(keep), hashlib.sha1(job.calib_pixels.tobytes()).hexdigest())
    t0 = time.perf_counter()
    if key not in job.cache.coreai_w8a8:  # one quantization per export run (and per shared cache) for these inputs
        quantizer = Quantizer(wrapped, QuantizerConfig(module_name_configs=by_name, module_type_configs=by_type))
        with torch.no_grad():
            prepared = quantizer.prepare((sample,))
            with quantizer.calibration_mode():
                for x in _calibration_inputs(job, in_model):
                    prepared(x)
            job.cache.coreai_w8a8[key] = quantizer.finalize()
    finalized = job.cache.coreai_w8a8[key]
    details = {
        "method": "coreai-opt",
        "config": "QuantizerConfig() (graph mode)",
        "observer": "min-max per image, moving average (coreai-opt's default, constant 0.01)",
        "weights": "int8 per-channel symmetric",
        "activations": "int8 per-tensor symmetric",
        "float_compute": FLOAT_COMPUTE,
        "calibration_images": int(len(job.calib_pixels)),
        "keep_float": keep,
        "keep_float_source": job.keep_float_source,
        "calibration_seconds": round(time.perf_counter() - t0, 1),
        "not_taken": CANNOT_TAKE,
        "coreai": "W8A8: int8 weights and activations (quantize/dequantize ops)",
    }
    if job.learned_ranges is not None:
        details["learned_ranges"] = "not applied: " + CANNOT_TAKE
    return finalized, details


def _calibration_inputs(job: ExportJob, in_model: bool):
    """The calibration images one at a time (the exported graph has batch 1), as the graph's input."""
    px = job.calib_pixels
    if in_model:  # raw 0..255 pixels, NHWC (mvit.export.wrappers.PixelInput)
        for i in range(len(px)):
            yield torch.from_numpy(px[i : i + 1].astype(np.float32))
        return
    x = job.calib_inputs()
    for i in range(len(x)):
        yield torch.from_numpy(np.ascontiguousarray(x[i : i + 1]))
