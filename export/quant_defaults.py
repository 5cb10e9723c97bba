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
| the same + unfold/fold 1x1 convs  | 99.5%, top-1 89.4% (the ONNX default) |                         |

``--keep-float`` replaces the default list; ``--keep-float none`` quantizes everything.
"""
from __future__ import annotations

from torch import nn

NONE = "none"

# Per architecture family: (module names for PT2E / TFLite / Core ML, module names for ONNX).
# Module names are resolved to ONNX nodes through their weight initializers' names.
# Names may be fnmatch patterns ("*.conv_proj"), expanded against the model's module names.
# ONNX also keeps float the 1x1 convs on either side of each MobileViT block's unfold/fold: quantized,
# onnxruntime propagates their QDQ through the unfold's Reshape/Transpose chain and runs those
# transposes on uint8, which its kernels do ~6x slower than float (int8 model 1.44x slower than fp32
# -> on par with fp32; agreement 99.5% either way).
DEFAULT_KEEP_FLOAT = {
    "mobilevit": {"pt2e": ("conv_1", "layer_1", "layer_2"),
                  "onnx": ("conv_1", "layer_1", "layer_2", "*.local_rep.conv_1x1", "*.conv_proj")},
}


# onnxruntime static int8 quantizes these op types (QDQ); everything else (elementwise, LayerNorm, Softmax,
# Transpose) stays float: int8 gains no speed there and each QDQ pair costs time and accuracy
# (QLinearSoftmax ran 4x slower than float Softmax). For MobileViT v1 only Conv pays: QGemm ran no faster
# than float Gemm on the 64-96-wide transformer linears and cost 1 point of agreement (98.8% vs 99.75%).
ONNX_STATIC_OPS = {"mobilevit": ("Conv",)}
ONNX_STATIC_OPS_DEFAULT = ("Conv", "Gemm", "MatMul")


def onnx_static_ops(model: nn.Module) -> tuple[str, ...]:
    """Op types onnxruntime's quantize_static quantizes for ``model``."""
    return ONNX_STATIC_OPS.get(family(model), ONNX_STATIC_OPS_DEFAULT)


def family(model: nn.Module) -> str | None:
    """Architecture family of ``model`` for the default keep-float lists (None: no default)."""
    from model.mobilevit import MobileViT

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
