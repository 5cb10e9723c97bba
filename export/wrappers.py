"""Torch wrappers that put the preprocessing contract's arithmetic inside the exported graph."""

from __future__ import annotations

import torch

from ..model.pixel_input import NormalizeOnly, PixelInput
from ..model.preprocess import normalize_hwc_uint8
from ..quant.pt2e import Pt2eGraph, pixels_to_tensor, quantize_pt2e
from .base import ExportError

__all__ = ["NormalizeOnly", "PixelInput", "input_graph", "pt2e_input_graph", "quantize_input_graph"]


def input_graph(job, fmt_name: str):
    """(module, sample input, layout, normalisation in the model) of an export job whose format takes a
    float tensor: ``float-nchw`` is the model itself on normalised NCHW input; ``uint8-nhwc`` wraps it in
    ``PixelInput`` (raw 0..255 RGB pixels, NHWC, as float; a uint8 input where the format quantizes)."""
    h, w = job.contract.input_size
    if job.input_mode == "float-nchw":
        return job.model, torch.zeros(1, 3, h, w), "NCHW", False
    if job.input_mode == "uint8-nhwc":
        return PixelInput(job.model, job.contract, "NHWC").eval(), torch.full((1, h, w, 3), 128.0), "NHWC", True
    raise ExportError(f"{fmt_name} takes --input float-nchw or uint8-nhwc, not {job.input_mode}")


def pt2e_input_graph(job, module, sample, layout: str, in_model: bool):
    """The ``mvit.quant.pt2e.Pt2eGraph`` of an ``input_graph``: the job's calibration pixels mapped to
    that graph's input."""
    normalize = None if in_model else (lambda px: normalize_hwc_uint8(px, job.contract))
    return Pt2eGraph(
        job.model,
        module,
        sample,
        lambda px: pixels_to_tensor(px, layout, normalize),
        "pixels-nhwc" if in_model else "normalized-nchw",
    )


def quantize_input_graph(job, module, sample, layout: str, in_model: bool, **kwargs):
    """The PT2E int8 model (``mvit.quant.pt2e.quantize_pt2e``) of an ``input_graph``, calibrated on the
    job's images mapped to that graph's input; returns (converted module, quantizer, details)."""
    return quantize_pt2e(
        pt2e_input_graph(job, module, sample, layout, in_model), job.pt2e_settings(), cache=job.cache, **kwargs
    )
