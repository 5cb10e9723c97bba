"""Post-training quantization recipe: the float-model rewrites and weight adjustments applied before an
int8 conversion, in one call.

``apply_recipe`` returns a float model that every backend converts as usual (PT2E for TFLite and Core
ML, onnxruntime for ONNX): BatchNorm and LayerNorm affine folded, scales migrated, and -- when asked --
weights on their int8 grid (learned rounding) and biases corrected. Which steps help was measured
step by step (benchmarks/results/int8_search.md).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..model.export_prep import fold_layernorm_affine_
from . import QuantError
from .adaround import adaround
from .bias_correction import correct_bias
from .equalize import equalize_
from .fold import fold_batchnorm_, fold_block_layernorm_
from .pt2e import prepare, quantizer_for
from .sim import SimGraph
from .smooth import balance_attention_, smooth_layernorms_, smooth_value_output_

EQUALIZE = ("off", "exact", "approximate")
BIAS_CORRECTION = ("off", "weights", "sequential")


@dataclass(frozen=True)
class Recipe:
    """Which post-training steps to apply."""

    fold_block_norm: bool = True  # MobileViT: block-final LayerNorm into conv_proj
    smooth_alpha: float = 0.0  # SmoothQuant alpha for LayerNorm -> linear (0: off)
    smooth_attention_alpha: float = 0.0  # SmoothQuant alpha for attention value -> output projection
    balance_attention: bool = False  # even out each fused qkv output's query/key/value ranges
    equalize: str = "off"  # cross-layer equalization: off | exact | approximate
    adaround_iters: int = 0  # learned rounding steps per layer (0: round to nearest)
    bias_correction: str = "off"  # off | weights | sequential

    def __post_init__(self):
        if self.equalize not in EQUALIZE:
            raise QuantError(f"equalize {self.equalize!r}: use one of {', '.join(EQUALIZE)}")
        if self.bias_correction not in BIAS_CORRECTION:
            raise QuantError(f"bias correction {self.bias_correction!r}: use one of {', '.join(BIAS_CORRECTION)}")
        if not 0 <= self.smooth_alpha <= 1 or not 0 <= self.smooth_attention_alpha <= 1:
            raise QuantError("SmoothQuant alpha must be in [0, 1]")
        if self.adaround_iters < 0:
            raise QuantError("AdaRound iterations must be >= 0")

    @property
    def needs_sim(self) -> bool:
        """Whether the recipe adjusts weights against a simulated int8 graph."""
        return self.adaround_iters > 0 or self.bias_correction != "off"


@dataclass
class PTQResult:
    """The float model to convert and what was done to it."""

    model: nn.Module
    details: dict = field(default_factory=dict)


def fold_float(model: nn.Module, recipe: Recipe, calib: torch.Tensor, batch: int = 8) -> tuple[nn.Module, dict]:
    """An eval-mode copy of ``model`` with the function-preserving rewrites of ``recipe`` (and, for
    ``equalize="approximate"``, the non-preserving one)."""

    m = fold_layernorm_affine_(fold_batchnorm_(copy.deepcopy(model).eval()), calib[:1])
    details: dict = {"folded": ["batchnorm", "layernorm-affine"]}
    if recipe.fold_block_norm:
        fold_block_layernorm_(m)
        details["folded"].append("block-layernorm")
    batches = [calib[i : i + batch] for i in range(0, len(calib), batch)]
    with torch.no_grad():
        if recipe.smooth_alpha:
            details["smoothquant_layernorm"] = smooth_layernorms_(m, batches, recipe.smooth_alpha)
        if recipe.smooth_attention_alpha:
            details["smoothquant_attention"] = smooth_value_output_(m, batches, recipe.smooth_attention_alpha)
        if recipe.equalize != "off":
            pairs = equalize_(m, calib[:1], approximate=recipe.equalize == "approximate")
            details["equalized_pairs"] = len(pairs)
    if recipe.balance_attention:
        balance_attention_(m)
        details["folded"].append("attention-balance")
    return m, details


def build_sim(model: nn.Module, quantizer, calib: torch.Tensor, batch: int):
    """A ``SimGraph`` of ``model`` at static ``batch``, calibrated on ``calib`` with ``quantizer``
    (PT2E observers; the images beyond a multiple of ``batch`` are not used)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e  # lazy: slow import, loaded only to quantize

    n = len(calib) - len(calib) % batch
    if n == 0:
        raise QuantError(f"calibration needs at least {batch} images")
    prepared = prepare(model, calib[:batch], quantizer)
    with torch.no_grad():
        for i in range(0, n, batch):
            prepared(calib[i : i + batch])
        return SimGraph(convert_pt2e(prepared, fold_quantize=False))


@torch.no_grad()
def write_back(model: nn.Module, weights: dict[str, torch.Tensor], biases: dict[str, torch.Tensor]) -> None:
    """Copy adjusted weights and biases (by module path, as the sim names them) into ``model``."""
    modules = dict(model.named_modules())
    for path in list(weights) + list(biases):
        name = path[len("model.") :] if path not in modules and path.startswith("model.") else path
        if name not in modules:
            raise QuantError(f"adjusted layer {path!r} is not a module of the model")
    for path, w in weights.items():
        mod = modules[path[len("model.") :] if path not in modules else path]
        mod.weight.copy_(w.reshape(mod.weight.shape))
    for path, b in biases.items():
        mod = modules[path[len("model.") :] if path not in modules else path]
        if mod.bias is None:
            mod.bias = nn.Parameter(b.clone())
        else:
            mod.bias.copy_(b)


def apply_recipe(
    model: nn.Module, recipe: Recipe, calib: torch.Tensor, quantizer=None, batch: int = 8, progress=None
) -> PTQResult:
    """``model`` (float, eval) rewritten and adjusted by ``recipe`` on calibration inputs ``calib``
    (model inputs, N first). ``quantizer``: the PT2E quantizer whose int8 scheme the weight adjustments
    target (default: mvit's, everything int8)."""
    t0 = time.perf_counter()
    m, details = fold_float(model, recipe, calib, batch)
    details["recipe"] = asdict(recipe)
    if recipe.needs_sim:
        quantizer = quantizer if quantizer is not None else quantizer_for(m, "histogram")
        sim = build_sim(m, quantizer, calib, batch)
        weights, biases = {}, {}
        if recipe.adaround_iters:
            weights = adaround(sim, calib, batch, iters=recipe.adaround_iters, progress=progress)
        if recipe.bias_correction != "off":
            biases = correct_bias(sim, calib, batch, mode=recipe.bias_correction, progress=progress)
        write_back(m, weights, biases)
    details["seconds"] = round(time.perf_counter() - t0, 1)
    return PTQResult(m, details)
