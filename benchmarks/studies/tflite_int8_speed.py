"""Why int8 TFLite is (or is not) faster than fp32 on this CPU: kernels alone, then the whole model.

Part 1 times small stacks of one layer type (3x3 conv, 1x1 conv, depthwise conv, linear, SiLU, and the
attention core: query x key, softmax, weights x value) as fp32 and as litert-torch PT2E int8, so the int8
kernels' own speed-up on this CPU is known. Part 2 converts the shipped model as fp32 and as int8 variants
(the searched float set mvit-export uses, the same in the converter's PAD order, without int8 SiLU, in
litert-torch's graph without mvit's int8 attention and adds, the float stem of the hand-written default before the search, nothing kept float) and
reports latency against fp32 and top-1 agreement with fp32 on labelled images.

Latency: one process, XNNPACK at ``--threads``, all rows prepared first, then rounds of ``--per`` invokes
per row, the starting row rotating each round; medians of all invokes. Run it on an otherwise idle machine:

    python benchmarks/studies/tflite_int8_speed.py --calib ../shared/data/trashnet6/train \\
        --val ../shared/data/trashnet6/val --out benchmarks/results/tflite_int8_speed.md
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

ATTENTION = "attention: q x k^T, softmax, x v; 16 heads, 256 tokens, d 16"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "model" / "weights" / "mobilevit_xxs_trashnet6.safetensors"


def _interpreter(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(path), num_threads=threads)
    it.allocate_tensors()
    return it


def interleaved_median_ms(paths: list[Path], threads: int, rounds: int, per: int) -> list[float]:
    """Median invoke time of each model, timed in rotating rounds on zero inputs."""
    from mvit.benchmarks.latency import interleaved_medians, tflite_on_zeros

    medians = interleaved_medians({i: tflite_on_zeros(p, threads) for i, p in enumerate(paths)}, rounds, per)
    return [medians[i] for i in range(len(paths))]


def _convert(module: nn.Module, sample: torch.Tensor, path: Path, quantizer=None, pad_in_float=True) -> None:
    import litert_torch

    from mvit.export.backends.tflite_backend import finish_graph, shorten_tensor_names

    kw = {}
    if quantizer is not None:
        from litert_torch.quantize.quant_config import QuantConfig

        kw["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
    litert_torch.convert(module, (sample,), **kw).export(str(path))
    data = path.read_bytes()
    # as mvit-export writes it, or without its PAD rewrite for comparison
    path.write_bytes(finish_graph(data)[0] if pad_in_float else shorten_tensor_names(data))


def int8_tflite(
    module: nn.Module,
    calib: torch.Tensor,
    path: Path,
    keep_float=(),
    quantize_silu=True,
    pad_in_float=True,
    quantize_attention=True,
    input_range=None,
    int8_chain=True,
) -> None:
    """PT2E int8 (the export's quantizer and calibration) of ``module``, calibrated on ``calib``, to ``path``;
    ``pad_in_float=False`` skips mvit-export's dequantize-before-pad rewrite (export/tflite_passes.py);
    ``quantize_attention``, ``int8_chain``: as ``mvit.quant.pt2e.quantizer_for``; ``input_range``: the graph
    input's exact range (as mvit-export quantizes it)."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from mvit.quant.pt2e import _calibrate, quantizer_for

    q = quantizer_for(
        module, "histogram", tuple(keep_float), quantize_silu, input_range, quantize_attention, int8_chain
    )
    sample = calib[:1]
    with torch.no_grad():
        prepared = _calibrate(module, sample, q, lambda i, j: calib[i:j], len(calib))
        converted = allow_exported_model_train_eval(convert_pt2e(prepared, fold_quantize=False))
    _convert(converted, torch.zeros_like(sample), path, q, pad_in_float)


class _Attention(nn.Module):
    """The attention core alone, as MobileViT computes it: [B, heads, N, 3d] (query, key, value) in."""

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        q, k, v = qkv.split(qkv.shape[-1] // 3, dim=-1)
        return torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v


def _stack(kind: str) -> tuple[nn.Module, tuple[int, ...]]:
    layers = {
        "conv 3x3, 64 ch, 64x64": (lambda: nn.Conv2d(64, 64, 3, padding=1), (1, 64, 64, 64)),
        "conv 1x1, 128 ch, 64x64": (lambda: nn.Conv2d(128, 128, 1), (1, 128, 64, 64)),
        "depthwise 3x3, 128 ch, 64x64": (lambda: nn.Conv2d(128, 128, 3, padding=1, groups=128), (1, 128, 64, 64)),
        "linear 96->192->96, 256 tokens": (
            lambda: nn.Sequential(nn.Linear(96, 192), nn.ReLU(), nn.Linear(192, 96)),
            (1, 256, 96),
        ),
        "conv 1x1 + SiLU, 128 ch, 64x64": (lambda: nn.Sequential(nn.Conv2d(128, 128, 1), nn.SiLU()), (1, 128, 64, 64)),
        ATTENTION: (_Attention, (1, 16, 256, 48)),
    }
    make, shape = layers[kind]
    if kind == ATTENTION:
        return make().eval(), shape
    blocks = [nn.Sequential(make(), nn.ReLU()) if "SiLU" not in kind else make() for _ in range(6)]
    return nn.Sequential(*blocks).eval(), shape


def kernels(tmp: Path, threads: int, rounds: int, per: int) -> list[dict]:
    """fp32 vs int8 latency of six stacked layers of each kind (everything int8)."""
    rows = []
    torch.manual_seed(0)
    for kind in (
        "conv 3x3, 64 ch, 64x64",
        "conv 1x1, 128 ch, 64x64",
        "depthwise 3x3, 128 ch, 64x64",
        "linear 96->192->96, 256 tokens",
        "conv 1x1 + SiLU, 128 ch, 64x64",
        ATTENTION,
    ):
        net, shape = _stack(kind)
        f, q = tmp / "k_fp32.tflite", tmp / "k_int8.tflite"
        _convert(net, torch.zeros(*shape), f)
        int8_tflite(net, torch.randn(16, *shape[1:]), q, quantize_attention=kind == ATTENTION)
        ms = interleaved_median_ms([f, q], threads, rounds, per)
        rows.append({"layer": kind, "fp32_ms": ms[0], "int8_ms": ms[1]})
    return rows


def tflite_top1(path: Path, x: np.ndarray, threads: int) -> np.ndarray:
    """Top-1 class of a .tflite file for each normalized NCHW image of ``x`` (quantized first when the
    file takes int8)."""
    it = _interpreter(path, threads)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    top = []
    for img in x:
        xi = img[None]
        if i["dtype"] == np.int8:
            s, z = i["quantization"]
            xi = np.clip(np.round(xi / s + z), -128, 127).astype(np.int8)
        it.set_tensor(i["index"], xi)
        it.invoke()
        top.append(int(np.argmax(it.get_tensor(o["index"]))))
    return np.array(top)


def _agreement(fp32: Path, int8: Path, x: np.ndarray, threads: int) -> float:
    return float((tflite_top1(fp32, x, threads) == tflite_top1(int8, x, threads)).mean() * 100)


def whole_model(
    weights: Path, calib_dir: Path, val_dir: Path, calib_count: int, tmp: Path, threads: int, rounds: int, per: int
) -> list[dict]:
    """fp32 vs int8 variants of the checkpoint: latency ratio and agreement on ``val_dir``."""
    from mvit.export.tflite_passes import dequantize_before_pad
    from mvit.model.checkpoint import file_sha256, load_checkpoint
    from mvit.model.export_prep import prepare_for_export
    from mvit.model.images import image_files, load_pixels
    from mvit.model.preprocess import normalize_hwc_uint8
    from mvit.quant import Int8Options, int8_plan
    from mvit.quant.pt2e import model_input_range

    ck = load_checkpoint(weights)
    net, contract = prepare_for_export(ck.model), ck.meta.contract
    calib = torch.from_numpy(
        normalize_hwc_uint8(load_pixels(image_files(calib_dir), contract, calib_count)[0], contract)
    )
    val = normalize_hwc_uint8(load_pixels(image_files(val_dir), contract)[0], contract)
    stem = ("conv_1", "layer_1", "layer_2")  # the float stem the hand-written default kept until the search
    plan = int8_plan("pt2e", net, Int8Options(), checkpoint=weights, sha256=file_sha256(weights))
    searched = tuple(plan.float_units)
    tag = f"searched float set ({len(searched)} modules, {plan.source})"
    # (name, float modules, SiLU int8, attention int8); the second row is the first's file in the converter's order
    # (name, float modules, SiLU int8, mvit's XNNPACK graph: attention and adds int8, shared moves)
    variants = [
        (f"int8, {tag}: mvit-export's default", searched, True, True),
        ("int8, the same, PAD before DEQUANTIZE (the converter's order)", None, None, None),
        ("int8, the same, SiLU float (litert-torch's annotation)", searched, False, True),
        ("int8, the same in litert-torch's graph (attention, residual adds, moves float)", searched, True, False),
        ("int8, stem float (the hand-written default before the search)", stem, True, True),
        ("int8, nothing float", (), True, True),
    ]
    input_range = model_input_range(contract)
    fp32 = tmp / "fp32.tflite"
    _convert(net, torch.zeros(1, 3, *contract.input_size), fp32)
    paths = [fp32] + [tmp / f"v{i}.tflite" for i in range(len(variants))]
    int8_tflite(net, calib, paths[2], searched, True, pad_in_float=False, input_range=input_range)
    paths[1].write_bytes(dequantize_before_pad(paths[2].read_bytes())[0])  # the same calibration, rewritten
    for (_, keep, silu, xnn), p in list(zip(variants, paths[1:]))[2:]:
        int8_tflite(net, calib, p, keep, silu, quantize_attention=xnn, int8_chain=xnn, input_range=input_range)
    ms = interleaved_median_ms(paths, threads, rounds, per)
    rows = [{"model": "fp32", "ms": ms[0], "ratio": 1.0, "agreement": 100.0, "size": fp32.stat().st_size}]
    for (name, *_), p, t in zip(variants, paths[1:], ms[1:]):
        rows.append(
            {
                "model": name,
                "ms": t,
                "ratio": t / ms[0],
                "agreement": _agreement(fp32, p, val, threads),
                "size": p.stat().st_size,
            }
        )
    return rows


def render(kernel_rows: list[dict], model_rows: list[dict], args) -> str:
    """Markdown report of both parts."""
    from mvit.benchmarks.matrix import cpu_info

    cpu, isa = cpu_info()
    lines = [
        f"# int8 vs fp32 TFLite speed on this CPU ({cpu}; {', '.join(isa) or '?'})",
        "",
        f"XNNPACK, {args.threads} threads, batch 1, medians of {args.rounds} rotating rounds x {args.per} "
        "invokes. Command: `python benchmarks/studies/tflite_int8_speed.py " + " ".join(args.argv) + "`",
        "",
        "## Kernels: six stacked layers, fp32 vs PT2E int8",
        "",
        "| layers | fp32 ms | int8 ms | int8 / fp32 |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['layer']} | {r['fp32_ms']:.2f} | {r['int8_ms']:.2f} | {r['int8_ms'] / r['fp32_ms']:.2f} |"
        for r in kernel_rows
    ]
    lines += [
        "",
        f"## {Path(args.weights).name}: {args.calib_count} calibration images, agreement on {args.val}",
        "",
        "| artifact | MB | median ms | / fp32 | top-1 agreement % |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['size'] / 1e6:.2f} | {r['ms']:.2f} | {r['ratio']:.2f} | {r['agreement']:.2f} |"
        for r in model_rows
    ]
    return "\n".join(lines) + "\n"


def add_model_arguments(ap: argparse.ArgumentParser, per: int) -> None:
    """The checkpoint, images and timing options of this script and ``int8_xnnpack.py``."""
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--calib", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--calib-count", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--per", type=int, default=per)


def main(argv=None) -> int:
    """Run both parts and print (or write) the Markdown report."""
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(ap, per=20)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory() as tmp:
        k = kernels(Path(tmp), args.threads, args.rounds, args.per)
        m = whole_model(
            Path(args.weights),
            Path(args.calib),
            Path(args.val),
            args.calib_count,
            Path(tmp),
            args.threads,
            args.rounds,
            args.per,
        )
    text = render(k, m, args)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
