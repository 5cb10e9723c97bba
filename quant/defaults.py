"""Default mixed precision for int8 exports: which modules stay float unless the user says otherwise.

Measured on the shipped mobilevit_xxs (trashnet6, 256x256, 128 calibration images; agreement = same
top-1 as the float model on the 407 val images): nearly all the int8 error of MobileViT v1 comes from
the high-resolution stem -- the first conv and the first MobileNetV2 stages (``conv_1``, ``layer_1``,
``layer_2``, 13 convs at 128x128 and 64x64). Quantizing one conv at a time (onnxruntime QDQ, 120 val
images) ``conv_1`` alone costs 4 points, each of the next three 1-2 points, every later conv < 0.1;
the transformer blocks, fusion convs and classifier survive int8.

| keep float                        | ONNX (QDQ, Conv only) | TFLite PT2E (histogram) |
|-----------------------------------|-----------------------|-------------------------|
| nothing                           | 71.3% (u8s8 overflow) / 92.6% (s8s8) | 96.6% |
| conv_1 + layer_1                  | 96.3% (Conv+Gemm+MatMul)              |       |
| conv_1 + layer_1 + layer_2        | 99.75%, top-1 89.7% (float 89.4%)     | 99.0%, top-1 89.2%, cos 0.9995 |
| the same + unfold/fold 1x1 convs  | 99.5%, top-1 89.4% (the older ONNX default) |                   |

``--keep-float`` replaces the default list; ``--keep-float none`` quantizes everything.

Rechecked with PT2E folding the transformer LayerNorms' affine parameters (export/pt2e.py), TFLite,
256 calibration images, all 407 val images (``mvit-export --format tflite --quantize int8 --calib
../shared/data/trashnet6/train --verify-data ../shared/data/trashnet6/val --keep-float ...``): default
99.75%, conv_1 + layer_1 98.28%, conv_1 96.81%, nothing 94.84%. Quantizing the stem buys no speed on
this AVX2 CPU either: nothing float runs at the default's speed (0.90x of fp32 each,
benchmarks/results/tflite_int8_speed.md).

ONNX int8 (onnxruntime 1.32 QDQ, u8 activations / s8 per-channel weights, min-max over 256 train
images; all 407 val images; 2 intra-op threads on this 2-core AVX2 machine without VNNI; latency =
median over 3 repeats of the variant/fp32 ratio of interleaved medians, each repeat's ratio in
brackets). "int8 weights" means the float-kept layers store their weights as int8 too (see
``onnx_backend.compress_float_weights``); the stem's weights always stay float. Produced by
``python -m mvit.bench.onnx_int8_variants --calib /work/shared/data/trashnet6/train
--verify-data /work/shared/data/trashnet6/val``:

| variant                                          | size / fp32 | latency / fp32    | agree  | top-1  |
|--------------------------------------------------|-------------|-------------------|--------|--------|
| fp32 (3.87 MB)                                   | 1.000       | 1.00              | 100%   | 89.43% |
| old default: QDQ Conv, float stem, unfold/fold and weights | 0.696 | 1.08 (1.08, 1.07, 1.13) | 99.02% | 88.70% |
| old default + int8 weights, DequantizeLinear     | 0.298       | 1.22 (1.33, 1.22, 1.18) | 99.26% | 88.94% |
| old default + int8 weights, Cast+Mul             | 0.297       | 0.97 (0.96, 0.97, 0.98) | 98.77% | 88.45% |
| QDQ every conv after the stem + int8 weights     | 0.299       | 1.16 (1.19, 1.16, 1.07) | 98.53% | 88.70% |
| **QDQ 3x3, fusion and last 1x1 convs + int8 weights (default)** | **0.292** | **1.03 (1.19, 0.98, 1.03)** | **99.51%** | **89.43%** |
| QDQ fusion convs only + int8 weights             | 0.290       | 0.97 (0.97, 1.04, 0.91) | 99.75% | 89.19% |
| default + QDQ Gemm                               | 0.316       | 0.90 (1.10, 0.90, 0.90) | 99.75% | 89.19% |
| no QDQ: int8 weights only, stem float            | 0.289       | 1.07 (1.21, 1.06, 1.07) | 99.75% | 89.19% |
| no QDQ: int8 weights only, stem too              | 0.284       | 1.08 (1.17, 1.07, 0.93) | 97.79% | 88.45% |

The two "no QDQ" rows load into exactly the fp32 graph (the int8 weights are decoded at session
load), so their 1.07 is this machine's noise (the other agents share its 2 cores): differences
under ~8% are not resolved here. A longer run (4 repeats x 160 interleaved runs) gave default 0.96
(1.00, 0.96, 0.90, 0.96), default + QDQ Gemm 0.97, old default 0.995, and all weights as weight-only
DequantizeLinear 1.45 (1.38-1.46). What limits the speed: the convs are only ~25% of the fp32 time
(ORT profile: Conv 21 ms of 86; Gemm+MatMul+Softmax+Transpose+LayerNorm ~49 ms), and on AVX2 without
VNNI QLinearConv saves little over the NCHWc float convs (16 QDQ convs: Conv+QLinearConv 19-20 ms vs
22 ms float) while each QDQ region adds Q/DQ (~4 ms), NHWC transposes (+3 ms) and breaks the
Sigmoid*Mul -> QuickGelu fusion; QGemm on the 64-96-wide linears is no faster either. Size: 0.3x
needs the transformer linears' weights in int8 (1.97 MB of the 3.87 MB are Gemm weights), which
as weight-only int8 cost nothing (agreement 100% alone); the stem's 35 KB stay float because int8
weights there alone cost 2 points (98.0%, cosine 0.9979). The flips are the val images with the
smallest float top-2 logit margins (0.018-0.5; the 1st percentile margin is 0.145), so 1-2 flips
either way between variants is noise-level.
"""
from __future__ import annotations

from torch import nn

NONE = "none"

# Per architecture family: (module names for PT2E / TFLite / Core ML, module names for ONNX).
# Module names are resolved to ONNX nodes through their weight initializers' names.
# Names may be fnmatch patterns ("*.conv_proj"), expanded against the model's module names.
# ONNX also keeps float (activations; weights int8, see ONNX_FLOAT_WEIGHTS) the 1x1 convs on either side
# of each MobileViT block's unfold/fold: quantized, onnxruntime propagates their QDQ through the unfold's
# Reshape/Transpose chain and runs those transposes on uint8, which its kernels do ~6x slower than float;
# and the MobileNetV2 blocks of layer_3..5 (depthwise + small 1x1 convs on 32x32..8x8 maps), whose QDQ
# costs more in Q/DQ and layout changes than QLinearConv saves. QDQ stays on the full 3x3 convs
# (local_rep.conv_3x3, fusion) and conv_1x1_exp: 99.51% agreement vs 98.53% with every conv after the stem
# in QDQ, and no slower (table above).
DEFAULT_KEEP_FLOAT = {
    "mobilevit": {"pt2e": ("conv_1", "layer_1", "layer_2"),
                  "onnx": ("conv_1", "layer_1", "layer_2", "layer_[345].0", "*.local_rep.conv_1x1", "*.conv_proj")},
}

# ONNX int8 stores the weights of the float-kept Conv/Gemm/MatMul ops as int8 too (weight-only, decoded
# at session load: see onnx_backend.compress_float_weights), except under these modules: int8 weights
# alone in MobileViT's stem cost 2 points of agreement (98.0%, cos 0.9979) for 35 KB.
ONNX_FLOAT_WEIGHTS = {"mobilevit": ("conv_1", "layer_1", "layer_2")}


# onnxruntime static int8 quantizes these op types (QDQ); everything else (elementwise, LayerNorm, Softmax,
# Transpose) stays float: int8 gains no speed there and each QDQ pair costs time and accuracy
# (QLinearSoftmax ran 4x slower than float Softmax). For MobileViT v1 only Conv pays: QGemm ran no faster
# than float Gemm on the 64-96-wide transformer linears and cost 1 point of agreement (98.8% vs 99.75%).
ONNX_STATIC_OPS = {"mobilevit": ("Conv",)}
ONNX_STATIC_OPS_DEFAULT = ("Conv", "Gemm", "MatMul")

# onnxruntime's x86 int8 kernels without VNNI (AVX2: vpmaddubsw) can saturate the int16 sum of two
# uint8 x int8 products; ``reduce_range`` stores weights in 7 bits to rule that out. Families without a
# measured layout quantize every Conv/Gemm/MatMul and hit it: on trashnet6/val (407 images, 64 calibration
# images) MobileNetV2 agreement 79.6% -> 89.9%, ViT-Tiny 87.5% -> 89.9% with it (S8S8 activations instead:
# 83.1% / 87.5%). MobileViT's default layout (float stem, QDQ on few convs) measured 99.5% with 8-bit weights.
ONNX_REDUCE_RANGE = {"mobilevit": False}
ONNX_REDUCE_RANGE_DEFAULT = True


def onnx_float_weights(model: nn.Module, keep_float: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Modules (or op types / node names) whose weights an ONNX int8 export leaves float.

    An explicit ``--keep-float`` list means those layers stay float entirely, weights included;
    ``none`` and the family default use the family's list (only names that exist in ``model``).
    """
    keep_float = tuple(keep_float)
    if keep_float and tuple(k.lower() for k in keep_float) != (NONE,):
        return keep_float
    if keep_float:
        return ()
    names = {n for n, _ in model.named_modules() if n}
    return tuple(n for n in ONNX_FLOAT_WEIGHTS.get(family(model), ()) if n in names)


def onnx_static_ops(model: nn.Module) -> tuple[str, ...]:
    """Op types onnxruntime's quantize_static quantizes for ``model``."""
    return ONNX_STATIC_OPS.get(family(model), ONNX_STATIC_OPS_DEFAULT)


def onnx_reduce_range(model: nn.Module) -> bool:
    """Whether onnxruntime's quantize_static stores ``model``'s int8 weights in 7 bits (see ONNX_REDUCE_RANGE)."""
    return ONNX_REDUCE_RANGE.get(family(model), ONNX_REDUCE_RANGE_DEFAULT)


def family(model: nn.Module) -> str | None:
    """Architecture family of ``model`` for the default keep-float lists (None: no default)."""
    from mvit.model.mobilevit import MobileViT

    if isinstance(model, MobileViT):
        return "mobilevit"
    return None


def resolve_keep_float(model: nn.Module, keep_float: tuple[str, ...], route: str) -> tuple[tuple[str, ...], str]:
    """The keep-float list an int8 export uses, and where it came from.

    ``route`` is "pt2e" or "onnx". An explicit user list wins; ``("none",)`` means no float modules;
    an empty list means the family default (only names that exist in ``model`` are kept, so smaller
    variants of a family are fine).
    """
    keep_float = tuple(keep_float)
    if keep_float:
        if tuple(k.lower() for k in keep_float) == (NONE,):
            return (), "user: none"
        return keep_float, "user"
    fam = family(model)
    if fam is None or route not in DEFAULT_KEEP_FLOAT.get(fam, {}):
        return (), "default: none"
    import fnmatch

    names = [n for n, _ in model.named_modules() if n]
    chosen = []
    for item in DEFAULT_KEEP_FLOAT[fam][route]:
        chosen += [n for n in names if n == item] if not any(c in item for c in "*?[") else fnmatch.filter(names, item)
    return tuple(chosen), f"default for {fam}"
