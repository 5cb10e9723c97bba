"""Import pretrained weights from timm, Hugging Face transformers and apple/ml-cvnets.

Each source's parameter names are translated to the zoo's (ml-cvnets) names by an ordered table of
regular expressions; Hugging Face's separate query/key/value projections are fused. Loading is
strict: a wrong variant fails with the missing and unexpected keys listed.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .contract import HF_MOBILEVIT, IMAGENET_MEAN_STD, MVIT_DEFAULT, TIMM_MOBILEVIT, PreprocessContract

SOURCES = ("cvnets", "timm", "hf", "torchvision")


class WeightImportError(ValueError):
    """Weights that do not fit the requested architecture, or an unreadable weights file."""


_CONV = [(r"\.convolution\.", ".block.conv."), (r"\.normalization\.", ".block.norm.")]
_HF_IR = [
    (r"^(layer_@\d+\.\d+)\.expand_1x1\.", r"\1.block.exp_1x1."),
    (r"^(layer_@\d+\.\d+)\.conv_3x3\.", r"\1.block.conv_3x3."),
    (r"^(layer_@\d+\.\d+)\.reduce_1x1\.", r"\1.block.red_1x1."),
]

# (pattern, replacement) applied in order; stage indices are shifted by _shift_stage afterwards.
_RULES: dict[str, list[tuple[str, str]]] = {
    "hf_v1": [
        (r"^mobilevit\.conv_stem\.", "conv_1."),
        (r"^mobilevit\.conv_1x1_exp\.", "conv_1x1_exp."),
        (r"^mobilevit\.encoder\.layer\.(\d+)\.layer\.(\d+)\.", r"layer_@\1.\2."),
        (r"^mobilevit\.encoder\.layer\.(\d+)\.downsampling_layer\.", r"layer_@\1.0."),
        (r"^mobilevit\.encoder\.layer\.(\d+)\.conv_kxk\.", r"layer_@\1.1.local_rep.conv_3x3."),
        (r"^mobilevit\.encoder\.layer\.(\d+)\.conv_1x1\.", r"layer_@\1.1.local_rep.conv_1x1."),
        (
            r"^mobilevit\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.layernorm_before\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_mha.0.",
        ),
        (
            r"^mobilevit\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_mha.1.\3.",
        ),
        (
            r"^mobilevit\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.attention\.output\.dense\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_mha.1.out_proj.",
        ),
        (
            r"^mobilevit\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.layernorm_after\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_ffn.0.",
        ),
        (
            r"^mobilevit\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.intermediate\.dense\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_ffn.1.",
        ),
        (
            r"^mobilevit\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.output\.dense\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_ffn.4.",
        ),
        (r"^mobilevit\.encoder\.layer\.(\d+)\.layernorm\.", r"layer_@\1.1.global_rep.FINAL."),
        (r"^mobilevit\.encoder\.layer\.(\d+)\.conv_projection\.", r"layer_@\1.1.conv_proj."),
        (r"^mobilevit\.encoder\.layer\.(\d+)\.fusion\.", r"layer_@\1.1.fusion."),
        (r"^classifier\.", "classifier.fc."),
        *_HF_IR,
        *_CONV,
    ],
    "hf_v2": [
        (r"^mobilevitv2\.conv_stem\.", "conv_1."),
        (r"^mobilevitv2\.encoder\.layer\.(\d+)\.layer\.(\d+)\.", r"layer_@\1.\2."),
        (r"^mobilevitv2\.encoder\.layer\.(\d+)\.downsampling_layer\.", r"layer_@\1.0."),
        (r"^mobilevitv2\.encoder\.layer\.(\d+)\.conv_kxk\.", r"layer_@\1.1.local_rep.0."),
        (r"^mobilevitv2\.encoder\.layer\.(\d+)\.conv_1x1\.", r"layer_@\1.1.local_rep.1."),
        (
            r"^mobilevitv2\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.layernorm_before\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_attn.0.",
        ),
        (
            r"^mobilevitv2\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.attention\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_attn.1.",
        ),
        (
            r"^mobilevitv2\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.layernorm_after\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_ffn.0.",
        ),
        (
            r"^mobilevitv2\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.ffn\.conv1\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_ffn.1.",
        ),
        (
            r"^mobilevitv2\.encoder\.layer\.(\d+)\.transformer\.layer\.(\d+)\.ffn\.conv2\.",
            r"layer_@\1.1.global_rep.\2.pre_norm_ffn.3.",
        ),
        (r"^mobilevitv2\.encoder\.layer\.(\d+)\.layernorm\.", r"layer_@\1.1.global_rep.FINAL."),
        (r"^mobilevitv2\.encoder\.layer\.(\d+)\.conv_projection\.", r"layer_@\1.1.conv_proj."),
        (r"^classifier\.", "classifier.fc."),
        *_HF_IR,
        *_CONV,
    ],
    "timm_v1": [
        (r"^stem\.", "conv_1."),
        (r"^final_conv\.", "conv_1x1_exp."),
        (r"^head\.fc\.", "classifier.fc."),
        (r"^stages\.(\d+)\.(\d+)\.conv1_1x1\.", r"layer_@\1.\2.block.exp_1x1."),
        (r"^stages\.(\d+)\.(\d+)\.conv2_kxk\.", r"layer_@\1.\2.block.conv_3x3."),
        (r"^stages\.(\d+)\.(\d+)\.conv3_1x1\.", r"layer_@\1.\2.block.red_1x1."),
        (r"^stages\.(\d+)\.1\.conv_kxk\.", r"layer_@\1.1.local_rep.conv_3x3."),
        (r"^stages\.(\d+)\.1\.conv_1x1\.weight$", r"layer_@\1.1.local_rep.conv_1x1.block.conv.weight"),
        (r"^stages\.(\d+)\.1\.transformer\.(\d+)\.norm1\.", r"layer_@\1.1.global_rep.\2.pre_norm_mha.0."),
        (r"^stages\.(\d+)\.1\.transformer\.(\d+)\.attn\.qkv\.", r"layer_@\1.1.global_rep.\2.pre_norm_mha.1.qkv_proj."),
        (r"^stages\.(\d+)\.1\.transformer\.(\d+)\.attn\.proj\.", r"layer_@\1.1.global_rep.\2.pre_norm_mha.1.out_proj."),
        (r"^stages\.(\d+)\.1\.transformer\.(\d+)\.norm2\.", r"layer_@\1.1.global_rep.\2.pre_norm_ffn.0."),
        (r"^stages\.(\d+)\.1\.transformer\.(\d+)\.mlp\.fc1\.", r"layer_@\1.1.global_rep.\2.pre_norm_ffn.1."),
        (r"^stages\.(\d+)\.1\.transformer\.(\d+)\.mlp\.fc2\.", r"layer_@\1.1.global_rep.\2.pre_norm_ffn.4."),
        (r"^stages\.(\d+)\.1\.norm\.", r"layer_@\1.1.global_rep.FINAL."),
        (r"^stages\.(\d+)\.1\.conv_proj\.", r"layer_@\1.1.conv_proj."),
        (r"^stages\.(\d+)\.1\.conv_fusion\.", r"layer_@\1.1.fusion."),
        (r"(?<!block)\.conv\.weight$", ".block.conv.weight"),
        (r"\.bn\.", ".block.norm."),
    ],
    "timm_v2": [
        (r"^stem\.", "conv_1."),
        (r"^head\.fc\.", "classifier.fc."),
        (r"^stages\.(\d+)\.(\d+)\.conv1_1x1\.", r"layer_@\1.\2.block.exp_1x1."),
        (r"^stages\.(\d+)\.(\d+)\.conv2_kxk\.", r"layer_@\1.\2.block.conv_3x3."),
        (r"^stages\.(\d+)\.(\d+)\.conv3_1x1\.", r"layer_@\1.\2.block.red_1x1."),
        (r"^stages\.(\d+)\.1\.conv_kxk\.", r"layer_@\1.1.local_rep.0."),
        (r"^stages\.(\d+)\.1\.conv_1x1\.weight$", r"layer_@\1.1.local_rep.1.block.conv.weight"),
        (r"^stages\.(\d+)\.1\.transformer\.(\d+)\.norm1\.", r"layer_@\1.1.global_rep.\2.pre_norm_attn.0."),
        (
            r"^stages\.(\d+)\.1\.transformer\.(\d+)\.attn\.(qkv_proj|out_proj)\.(weight|bias)$",
            r"layer_@\1.1.global_rep.\2.pre_norm_attn.1.\3.block.conv.\4",
        ),
        (r"^stages\.(\d+)\.1\.transformer\.(\d+)\.norm2\.", r"layer_@\1.1.global_rep.\2.pre_norm_ffn.0."),
        (
            r"^stages\.(\d+)\.1\.transformer\.(\d+)\.mlp\.fc1\.(weight|bias)$",
            r"layer_@\1.1.global_rep.\2.pre_norm_ffn.1.block.conv.\3",
        ),
        (
            r"^stages\.(\d+)\.1\.transformer\.(\d+)\.mlp\.fc2\.(weight|bias)$",
            r"layer_@\1.1.global_rep.\2.pre_norm_ffn.3.block.conv.\3",
        ),
        (r"^stages\.(\d+)\.1\.norm\.", r"layer_@\1.1.global_rep.FINAL."),
        (r"^stages\.(\d+)\.1\.conv_proj\.", r"layer_@\1.1.conv_proj."),
        (r"(?<!block)\.conv\.weight$", ".block.conv.weight"),
        (r"\.bn\.", ".block.norm."),
    ],
}


def _translate(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    # layer_@N: the source's 0-based stage index -> the zoo's layer_{N+1}
    return re.sub(r"^layer_@(\d+)\.", lambda m: f"layer_{int(m.group(1)) + 1}.", key)


def _fuse_hf_qkv(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = re.match(r"^(.*\.pre_norm_mha\.1\.)query\.(weight|bias)$", k)
        if m:
            prefix, kind = m.groups()
            parts = [sd.get(f"{prefix}{n}.{kind}") for n in ("query", "key", "value")]
            if any(p is None for p in parts):
                raise WeightImportError(f"incomplete query/key/value projection at {prefix}")
            out[f"{prefix}qkv_proj.{kind}"] = torch.cat(parts, dim=0)
        elif not re.search(r"\.pre_norm_mha\.1\.(key|value)\.", k):
            out[k] = v
    return out


def _resolve_final_norm(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``global_rep.FINAL`` -> the index of the final norm in that block of ``model``."""
    out = {}
    for k, v in sd.items():
        if ".global_rep.FINAL." in k:
            block_path = k.split(".global_rep.FINAL.")[0]
            n = len(model.get_submodule(block_path + ".global_rep")) - 1 if _has(model, block_path) else "FINAL"
            k = k.replace(".global_rep.FINAL.", f".global_rep.{n}.")
        out[k] = v
    return out


def _has(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path + ".global_rep")
        return True
    except AttributeError:
        return False


def detect_source(sd: dict[str, torch.Tensor]) -> str:
    """Guess where a state dict comes from by its parameter names."""
    keys = list(sd)
    if any(k.startswith("mobilevitv2.") for k in keys):
        return "hf_v2"
    if any(k.startswith("mobilevit.") for k in keys):
        return "hf_v1"
    if any(k.startswith("stages.") for k in keys):
        return "timm_v2" if any(".attn.qkv_proj." in k for k in keys) else "timm_v1"
    return "native"


def convert_state_dict(sd: dict[str, torch.Tensor], model: nn.Module, source: str = "auto") -> dict[str, torch.Tensor]:
    """Translate a foreign state dict to ``model``'s parameter names (no loading)."""
    sd = {k.removeprefix("module."): v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    if source == "auto":
        source = detect_source(sd)
    if source in ("native", "cvnets", "torchvision"):
        return sd
    if source in ("hf", "timm"):
        v2 = any(k.startswith("mobilevitv2.") or ".attn.qkv_proj." in k for k in sd)
        source = f"{source}_{'v2' if v2 else 'v1'}"
    if source not in _RULES:
        raise WeightImportError(f"unknown weights source {source!r}; use one of {', '.join(SOURCES)}")
    rules = _RULES[source]
    out = {_translate(k, rules): v for k, v in sd.items()}
    if source == "hf_v1":
        out = _fuse_hf_qkv(out)
    return _resolve_final_norm(out, model)


def load_into(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "auto") -> None:
    """Strictly load a (possibly foreign) state dict into ``model``, with one clear error on mismatch."""
    converted = convert_state_dict(sd, model, source)
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    shape = sorted(k for k in set(own) & set(converted) if own[k].shape != converted[k].shape)
    if missing or unexpected or shape:
        name = getattr(model, "mvit_name", type(model).__name__)
        parts = []
        if shape:
            k = shape[0]
            parts.append(
                f"{len(shape)} shape mismatches (e.g. {k}: weights {tuple(converted[k].shape)} "
                f"vs model {tuple(own[k].shape)})"
            )
        if missing:
            parts.append(f"{len(missing)} missing keys ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])}"
                f"{', ...' if len(unexpected) > 3 else ''})"
            )
        raise WeightImportError(f"weights do not fit {name}: {'; '.join(parts)}; wrong variant or class count?")
    model.load_state_dict(converted, strict=False)


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Read a foreign weights file: safetensors, or a PyTorch file with ``weights_only=True``
    (never arbitrary unpickling). Nested ``state_dict``/``model`` entries are unwrapped."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).exists():
                return read_state_dict(path / name)
        raise WeightImportError(f"{path}: folder holds no model.safetensors or pytorch_model.bin")
    if not path.exists():
        raise WeightImportError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightImportError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for foreign pickles and corrupt zips
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightImportError(f"{path}: not loadable with weights_only=True ({first[:160]})") from None
    for key in ("state_dict", "model", "model_state_dict", "model_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightImportError(f"{path}: does not hold a state dict of tensors")
    return obj


def default_contract_for(source: str, arch: str, img_size: int = 256) -> PreprocessContract:
    """The preprocessing the source's pretrained weights expect (recorded, never baked in)."""
    source = source.split("_")[0]
    if source == "hf":
        base = HF_MOBILEVIT
    elif source == "timm":
        base = TIMM_MOBILEVIT
    elif arch.startswith(("mobilenet", "vit")):
        base = IMAGENET_MEAN_STD
    else:
        base = MVIT_DEFAULT
    return PreprocessContract(
        input_size=(img_size, img_size),
        crop_fraction=base.crop_fraction,
        interpolation=base.interpolation,
        mean=base.mean,
        std=base.std,
        channel_order=base.channel_order,
    )
