"""Quantization-aware fine-tuning (QAT): ``mvit-train --qat --init CKPT``.

The float checkpoint's model is exported (torch.export) and prepared with torchao's
``prepare_qat_pt2e`` and the quantizer mvit's int8 export uses (``mvit.quant.pt2e.quantizer_for``:
int8 per-channel symmetric weights, int8 per-tensor affine activations, SiLU in int8, the same
float regions), with fake quantization where the export has observers. The training loop of
``mvit.model.train`` then fine-tunes the weights through that graph for a few epochs, distilling
from the float model (the aim is an int8 model that predicts what the float one does).

What trains is the graph the int8 export builds, so what was learned is what gets exported:

- BatchNorm is folded into its convolution before export (running statistics, frozen from then on),
  as the export folds it; LayerNorm affine parameters and the attention scale are folded as the
  export folds them (``mvit.model.export_prep``). The graph is exported in eval mode: no dropout.
- Weights are fake-quantized with each step's own per-channel min/max (averaging constant 1), which
  is what the export's per-channel min/max observer computes from the final weights.
- Activation ranges are moving averages (constant 0.01) of the observed min/max (torchao's
  ``FusedMovingAvgObsFakeQuantize``), started from a pass over training images, not updated by
  evaluation, and frozen for the last epoch (when there is more than one).

The checkpoint (safetensors, never pickle) is an ordinary mvit checkpoint of the float architecture
holding the fine-tuned weights (each folded BatchNorm as an exact identity scale plus the folded
shift, LayerNorm affine 1/0), so it loads, predicts and exports like any other, plus a header entry
``mvit_qat`` (JSON) with the learned activation quantization parameters::

    {"schema": "mvit.qat/1", "keep_float": [], "weights": "...", "activations": "...",
     "ranges": {"<module path>|<aten op>|<n>": [scale, zero_point, min, max], ...}}

A key names the tensor an observer watches by where it is made: the n-th observed output of that
op under that module (``layer_1.0.block.exp_1x1.block.act|aten::mul.Tensor|0``: the SiLU product),
or ``input|0`` for the model's input. Keys survive re-exporting the model (another batch size, an
input wrapper around it, BatchNorm folded by PT2E instead of before export) where observer and node
names do not. ``LearnedRanges.apply`` gives every matching observer of a freshly prepared PT2E graph
the learned (scale, zero point); the rest (an input wrapper's own arithmetic) calibrate as usual.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..model.checkpoint import load_checkpoint, read_header_entry, read_meta, save_checkpoint
from ..model.data import DecodedImages, eval_batch
from ..model.export_prep import attention_layers, fold_layernorm_affine_, prepare_for_export, scale_queries_
from ..model.train import Recipe, Trainee, TrainError, param_groups, train, train_eval_view
from . import QuantError
from .pt2e import QAT_GRAPH, model_input_range, quantizer_for

SCHEMA = "mvit.qat/1"
HEADER_KEY = "mvit_qat"
INPUT = "input"
CALIB_IMAGES = 256  # training images that start the activation ranges
CALIB_BATCH = 32


# ---------------------------------------------------------------------------------------------
# the QAT graph


def qat_config():
    """litert-torch's QAT configuration (the fake-quantizing twin of ``quantizer_for``'s), with the
    weights fake-quantized at each step's own per-channel min/max."""
    from litert_torch.quantize.pt2e_quantizer import (  # lazy: slow import, loaded only to quantize
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import (  # lazy: slow import, loaded only to quantize
        FusedMovingAvgObsFakeQuantize,
        MovingAveragePerChannelMinMaxObserver,
    )

    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=True)
    weight = replace(
        config.weight,
        observer_or_fake_quant_ctr=FusedMovingAvgObsFakeQuantize.with_args(
            observer=MovingAveragePerChannelMinMaxObserver, averaging_constant=1.0, eps=2**-12
        ),
    )
    return replace(config, weight=weight)


def qat_quantizer(model: nn.Module, keep_float: tuple[str, ...] = (), input_range: tuple[float, float] | None = None):
    """mvit's PT2E quantizer (``quantizer_for``: the export's annotations, SiLU split, float regions
    and exact input over ``input_range``) with the QAT configuration."""

    quantizer = quantizer_for(model, "min-max", keep_float, input_range=input_range, **QAT_GRAPH).set_global(
        qat_config()
    )
    # litert-torch 0.10 builds its conv+BatchNorm QAT patterns by torch.export-ing a plain function,
    # which torchao 0.18 refuses; fold_for_qat leaves no BatchNorm for them to match anyway.
    quantizer.STATIC_QAT_ONLY_OPS = []
    return quantizer


@dataclass(frozen=True)
class FoldedNorm:
    """A BatchNorm folded into the convolution before it (module paths)."""

    conv: str
    norm: str
    conv_had_bias: bool


def fold_for_qat(model: nn.Module, sample: torch.Tensor) -> tuple[nn.Module, list[FoldedNorm]]:
    """An eval-mode copy of ``model`` as the int8 export sees it (attention scale and LayerNorm affine
    folded), with every Conv2d -> BatchNorm2d pair of an ``nn.Sequential`` fused into one Conv2d."""
    m = fold_layernorm_affine_(prepare_for_export(model), sample)
    names = {id(mod): n for n, mod in m.named_modules()}
    folded = []
    for seq in [s for s in m.modules() if isinstance(s, nn.Sequential)]:
        keys = list(seq._modules)
        for a, b in zip(keys, keys[1:]):
            conv, norm = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                prefix = names[id(seq)] + "." if names[id(seq)] else ""
                folded.append(FoldedNorm(prefix + a, prefix + b, conv.bias is not None))
                seq._modules[a] = fuse_conv_bn_eval(conv, norm)
                seq._modules[b] = nn.Identity()
    left = [n for n, mod in m.named_modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise QuantError(
            f"QAT folds each BatchNorm into the convolution before it; {left[0]} does not follow "
            f"a Conv2d in an nn.Sequential"
        )
    return m, folded


@dataclass
class QatModel:
    """A float model prepared for QAT: ``graph`` trains (its parameters keep the model's names);
    ``base`` is the float model it started from, into which ``float_model`` maps the weights back."""

    graph: torch.fx.GraphModule
    base: nn.Module
    folded: list[FoldedNorm]
    keep_float: tuple[str, ...] = ()
    frozen: bool = False  # activation ranges no longer follow the data
    activation_fqs: list = field(default_factory=list)

    def set_mode(self, training: bool) -> None:
        """Train or eval: activation observers run only while training and not frozen."""
        self.graph.training = training
        for fq in self.activation_fqs:
            fq.enable_observer(training and not self.frozen)

    def freeze(self, frozen: bool = True) -> None:
        self.frozen = frozen
        self.set_mode(self.graph.training)


def prepare_qat(
    model: nn.Module,
    input_size: tuple[int, int],
    keep_float: tuple[str, ...] = (),
    input_range: tuple[float, float] | None = None,
) -> QatModel:
    """Fold, export (batch size free) and ``prepare_qat_pt2e`` a float model; returns the QAT model.
    ``input_range``: the model input's range over all pixels, quantized exactly as the export does.

    The graph's ``train()``/``eval()`` only switch the activation observers (nothing else in it
    depends on the mode), so the training loop and DDP can call them as on any module.
    """
    from torchao.quantization.pt2e import FakeQuantizeBase  # lazy: slow import, loaded only to quantize
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e  # lazy: slow import, loaded only to quantize

    h, w = input_size
    folded_model, folded = fold_for_qat(model, torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0)))
    batch = torch.export.Dim("batch", min=1)
    exported = torch.export.export(folded_model, (torch.zeros(2, 3, h, w),), dynamic_shapes=({0: batch},))
    graph = prepare_qat_pt2e(exported.module(), qat_quantizer(folded_model, tuple(keep_float), input_range))
    mods = dict(graph.named_modules())
    acts = [mods[name] for name in observer_keys(graph).values() if isinstance(mods[name], FakeQuantizeBase)]
    qm = QatModel(graph, copy.deepcopy(model).cpu().eval(), folded, tuple(keep_float), activation_fqs=acts)

    def train(mode: bool = True):
        qm.set_mode(mode)
        return graph

    graph.train = train  # an exported (and prepared) module's own train()/eval() refuse to run
    graph.eval = lambda: train(False)
    qm.set_mode(True)
    return qm


def observe_ranges(qm: QatModel, batches) -> None:
    """Start the activation ranges from data: observers on, fake quantization off, each range the
    mean of the per-batch min/max over ``batches`` (model inputs)."""
    acts = qm.activation_fqs
    learned = [fq for fq in acts if hasattr(fq.activation_post_process, "averaging_constant")]
    constants = [fq.activation_post_process.averaging_constant for fq in learned]
    for fq in acts:
        fq.enable_fake_quant(False)
        fq.enable_observer(True)
    with torch.no_grad():
        for i, x in enumerate(batches):
            for fq in learned:
                fq.activation_post_process.averaging_constant = 1.0 / (i + 1)
            qm.graph(x)
    for fq, c in zip(learned, constants):
        fq.activation_post_process.averaging_constant = c
    for fq in acts:
        fq.enable_fake_quant(True)
    qm.set_mode(qm.graph.training)


# ---------------------------------------------------------------------------------------------
# where-made keys for observers, the learned ranges, and applying them to an export's graph


def _op_name(target) -> str:
    name = getattr(target, "name", None)
    return name() if callable(name) else getattr(target, "__name__", str(target))


def _module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _producer(node, model_prefix: str) -> str | None:
    """``<module path>|<op>`` of the node whose output an observer watches, relative to the model
    (``model_prefix``: the model's attribute path inside an input wrapper, e.g. ``model.``); ``None``
    for tensors the model does not make (a wrapper's arithmetic, a wrapped graph's raw input)."""
    while node.op == "call_module":  # an observer of an observer's output watches the same tensor
        node = node.args[0]
    if node.op == "placeholder":
        return None if model_prefix else INPUT
    if node.op != "call_function":
        return None
    path = _module_path(node)
    if model_prefix:
        if path == model_prefix.rstrip("."):
            path = ""
        elif path.startswith(model_prefix):
            path = path[len(model_prefix) :]
        else:
            return None
    return f"{path}|{_op_name(node.target)}"


def observer_keys(graph: torch.fx.GraphModule, model_prefix: str = "") -> dict[str, str]:
    """``{key: observer module name}`` for the activation observers (or fake quantizers) of a
    prepared PT2E graph, in graph order; weight observers (fed by a parameter) are left out."""
    from torchao.quantization.pt2e import FakeQuantizeBase, ObserverBase  # lazy: slow import, loaded only to quantize

    mods = dict(graph.named_modules())
    keys: dict[str, str] = {}
    seen: set[str] = set()
    counts: dict[str, int] = {}
    for node in graph.graph.nodes:
        if (
            node.op != "call_module"
            or node.target in seen
            or not isinstance(mods.get(node.target), (ObserverBase, FakeQuantizeBase))
        ):
            continue
        seen.add(node.target)
        src = node.args[0]
        if src.op == "get_attr":
            continue
        where = _producer(src, model_prefix)
        if where is None:
            continue
        n = counts.get(where, 0)
        counts[where] = n + 1
        keys[f"{where}|{n}"] = node.target
    return keys


def learned_ranges(qm: QatModel) -> dict[str, list]:
    """``{key: [scale, zero_point, min, max]}`` of every activation range the QAT graph learned
    (fixed-parameter ones, e.g. the sigmoid's, are left out: the export sets those itself)."""
    mods = dict(qm.graph.named_modules())
    out = {}
    for key, name in observer_keys(qm.graph).items():
        fq = mods[name]
        obs = getattr(fq, "activation_post_process", None)
        if obs is None or not hasattr(obs, "averaging_constant"):
            continue
        lo, hi = float(obs.min_val), float(obs.max_val)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise QuantError(f"QAT: no range was observed for {key}")
        out[key] = [float(fq.scale.reshape(-1)[0]), int(fq.zero_point.reshape(-1)[0]), lo, hi]
    return out


@dataclass(frozen=True)
class LearnedRanges:
    """The activation quantization a QAT checkpoint carries (its ``mvit_qat`` header entry)."""

    ranges: dict
    keep_float: tuple[str, ...] = ()

    def apply(self, prepared: torch.fx.GraphModule, model_prefix: str = "") -> dict:
        """Give the matching activation observers of a prepared (not yet converted) PT2E graph the
        learned (scale, zero point); returns what was applied and which observers kept their own."""
        from torchao.quantization.pt2e import FixedQParamsObserver  # lazy: slow import, loaded only to quantize

        mods = dict(prepared.named_modules())
        applied, own = 0, []
        for key, name in observer_keys(prepared, model_prefix).items():
            obs = mods[name]
            if key not in self.ranges:
                if not isinstance(obs, FixedQParamsObserver):
                    own.append(key)
                continue
            scale, zero_point = self.ranges[key][:2]
            fixed = FixedQParamsObserver(
                scale,
                zero_point,
                dtype=obs.dtype,
                qscheme=obs.qscheme,
                quant_min=obs.quant_min,
                quant_max=obs.quant_max,
            )
            prepared.add_submodule(name, fixed)
            applied += 1
        return {"learned_ranges_applied": applied, "calibrated_ranges": own}


def read_ranges(path) -> LearnedRanges | None:
    """The learned ranges of a QAT checkpoint; ``None`` for an ordinary checkpoint."""

    text = read_header_entry(path, HEADER_KEY)
    if text is None:
        return None
    try:
        d = json.loads(text)
        if d.get("schema") != SCHEMA:
            raise ValueError(f"unknown schema {d.get('schema')!r}")
        ranges = {}
        for key, (scale, zp, lo, hi) in d["ranges"].items():
            if not (
                isinstance(key, str)
                and math.isfinite(scale)
                and scale > 0
                and -128 <= int(zp) <= 127
                and int(zp) == zp
                and math.isfinite(lo)
                and math.isfinite(hi)
            ):
                raise ValueError(f"range {key!r} is out of bounds")
            ranges[key] = [float(scale), int(zp), float(lo), float(hi)]
        keep = tuple(str(k) for k in d.get("keep_float", []))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise QuantError(f"{path}: invalid {HEADER_KEY} entry ({e})") from None
    return LearnedRanges(ranges, keep)


# ---------------------------------------------------------------------------------------------
# back to a float checkpoint


def _unit_variance(eps: float) -> float:
    """A float32 variance v with v + eps == 1 exactly in float32, so BatchNorm divides by exactly 1."""
    e = torch.tensor(eps, dtype=torch.float32)
    v = torch.tensor(1.0 - eps, dtype=torch.float32)
    for _ in range(8):
        s = v + e
        if s == 1:
            return float(v)
        v = torch.nextafter(v, torch.tensor(2.0 if s < 1 else 0.0))
    raise QuantError(f"no float32 variance makes BatchNorm(eps={eps}) an identity")


def float_model(qm: QatModel) -> nn.Module:
    """The fine-tuned weights in the float architecture (a copy of ``qm.base``): each folded
    BatchNorm becomes an identity scale plus the folded shift, each folded LayerNorm gets affine 1/0,
    and the attention scale is taken back out of the query projection (the export folds it again)."""

    m = copy.deepcopy(qm.base).cpu().eval()
    trained = {k: v.detach().cpu() for k, v in qm.graph.state_dict().items()}
    own = m.state_dict()
    with torch.no_grad():
        for f in qm.folded:
            norm = m.get_submodule(f.norm)
            norm.weight.fill_(1.0)
            norm.running_mean.zero_()
            norm.running_var.fill_(_unit_variance(norm.eps))
            bias = trained.pop(f.conv + ".bias")
            if f.conv_had_bias:
                m.get_submodule(f.conv).bias.copy_(bias)
                norm.bias.zero_()
            else:
                norm.bias.copy_(bias)
        for name, mod in m.named_modules():
            if isinstance(mod, nn.LayerNorm) and mod.elementwise_affine and f"{name}.weight" not in trained:
                mod.weight.fill_(1.0)
                if mod.bias is not None:
                    mod.bias.zero_()
        for k, v in trained.items():
            if k in own and own[k].shape == v.shape:
                own[k].copy_(v)
    for a in attention_layers(m):  # undo fold_attention_scale_ (the export folds it again)
        scale_queries_(a.qkv, 1.0 / getattr(a.module, a.scale_attr))
    return m


def qat_header(qm: QatModel) -> dict:
    """The ``mvit_qat`` header entry of a QAT checkpoint."""
    return {
        "schema": SCHEMA,
        "keep_float": list(qm.keep_float),
        "weights": "int8 per-channel symmetric, each step's min/max",
        "activations": "int8 per-tensor affine, moving-average min/max (0.01)",
        "ranges": learned_ranges(qm),
    }


def save_qat_checkpoint(path, qm: QatModel, meta) -> Path:
    """Write the float architecture with the fine-tuned weights and the learned ranges (safetensors)."""

    return save_checkpoint(path, float_model(qm), meta, {HEADER_KEY: json.dumps(qat_header(qm))})


# ---------------------------------------------------------------------------------------------
# the training recipe


def distillation_loss(teacher: nn.Module, distill: float, label_smoothing: float):
    """``distill`` x KL(teacher || student) + (1 - ``distill``) x cross-entropy with the labels."""

    def loss(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        total = logits.new_zeros(())
        if distill > 0:
            with torch.no_grad():
                target = F.log_softmax(teacher(x).float(), dim=1)
            total = total + distill * F.kl_div(
                F.log_softmax(logits, dim=1), target, log_target=True, reduction="batchmean"
            )
        if distill < 1:
            total = total + (1 - distill) * F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        return total

    return loss


class QatRecipe(Recipe):
    """Fine-tune a float checkpoint through the QAT graph; its checkpoints carry the learned ranges."""

    name = "quantization-aware"

    def __init__(self, init):

        self.ckpt = load_checkpoint(init)

    def contract(self, cfg):
        return self.ckpt.meta.contract

    def build(self, cfg, rt, data) -> Trainee:
        """The QAT graph (ranges started from training images unless resuming), the float model as
        teacher, AdamW, and observers frozen for the last epoch."""

        meta = self.ckpt.meta
        data.reorder(meta.labels)  # the model's output i is its label i
        torch.manual_seed(cfg.seed)
        qm = prepare_qat(self.ckpt.model, meta.contract.input_size, input_range=model_input_range(meta.contract))
        qm.graph.to(rt.device)
        teacher = copy.deepcopy(self.ckpt.model).to(rt.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        if not cfg.resume:  # a resumed run restores the ranges with the rest of its state
            observe_ranges(qm, _calibration_batches(data, cfg.seed, rt.device))
        reference = _top1(teacher, data.val_px, data.contract)
        opt = torch.optim.AdamW(param_groups(qm.graph, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))

        def begin_epoch(epoch: int) -> None:
            qm.freeze(cfg.epochs > 1 and epoch == cfg.epochs - 1)

        return Trainee(
            qm.graph,
            opt,
            distillation_loss(teacher, cfg.distill, cfg.label_smoothing),
            lambda path, _weights, m: save_qat_checkpoint(path, qm, m),
            meta.model_kwargs,
            begin_epoch=begin_epoch,
            val_references={"val_agreement": reference},
            recipe={
                "qat": {
                    "init": Path(cfg.init).name,
                    "init_sha256": self.ckpt.sha256,
                    "distill": cfg.distill,
                    "keep_float": list(qm.keep_float),
                    "activation_ranges": "frozen for the last epoch" if cfg.epochs > 1 else "moving",
                }
            },
        )


def _calibration_batches(data, seed: int, device):
    """Model inputs of up to CALIB_IMAGES seeded training images, cropped as the contract crops."""

    n = min(CALIB_IMAGES, len(data.train_px))
    pick = torch.randperm(len(data.train_px), generator=torch.Generator().manual_seed(seed))[:n]
    pick = pick.to(data.train_px.pixels.device)
    view = train_eval_view(
        DecodedImages(data.train_px.pixels[pick], data.train_px.labels[pick], []), data.contract, device
    )
    return (eval_batch(view.pixels[i : i + CALIB_BATCH], data.contract) for i in range(0, n, CALIB_BATCH))


def _top1(model: nn.Module, px, contract, batch: int = 64) -> torch.Tensor:

    with torch.no_grad():
        return torch.cat(
            [model(eval_batch(px.pixels[i : i + batch], contract)).argmax(1) for i in range(0, len(px), batch)]
        )


def train_qat(cfg, log=None) -> dict:
    """``mvit-train --qat``: fine-tune ``cfg.init`` quantization-aware; returns the run's summary."""

    if not cfg.init:
        raise TrainError("--qat needs --init CHECKPOINT (the float model to fine-tune)")
    if cfg.ema > 0 or cfg.progressive:
        raise TrainError("--qat trains the int8 graph at its input size without an EMA: drop --ema and --progressive")
    meta = read_meta(cfg.init)
    h, w = meta.contract.input_size
    if h != w:
        raise TrainError(f"--init {cfg.init}: QAT trains square inputs; this model takes {h}x{w}")
    cfg = replace(cfg, model=meta.architecture, img_size=h, amp="off", channels_last="off")
    return train(cfg, log, QatRecipe(cfg.init))
