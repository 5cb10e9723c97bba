"""int8 graphs for XNNPACK, TFLite and ExecuTorch side by side: census, agreement and latency vs fp32.

For a checkpoint (default: the shipped ``mobilevit_xxs``) it builds, from one PT2E calibration per
variant, a .tflite and a .pte of each int8 variant:

- graph ``litert``: litert-torch's annotators as mvit used them before (attention float, residual
  adds float, no range sharing through reshape/transpose/slice);
- graph ``xnnpack``: ``mvit.quant.int8_graph`` (attention matmuls int8 with symmetric right-hand
  operands, residual adds int8, ranges shared through moves; the softmax float);

each with the cached float set (``--keep-float``, default: the checkpoint's cached PT2E search result)
and with nothing float. Every file gets the int8 census headline (``mvit.benchmarks.census.int8_headline``)
and its top-1 agreement with the float PyTorch model on ``--val``; then each runtime's files are timed
side by side (one process, rows interleaved, rotating start, medians), and the attention core alone
(query x key, softmax, weights x value) as fp32, int8 with affine and with symmetric right-hand operands.

    flock -s /tmp/cpu.lock python benchmarks/studies/int8_xnnpack.py --calib ../shared/data/trashnet6/train \\
        --val ../shared/data/trashnet6/val --work /tmp/xnn --build-only
    flock -s /tmp/cpu.lock python benchmarks/studies/int8_xnnpack.py ... --work /tmp/xnn --stage evaluate
    flock -x /tmp/cpu.lock python benchmarks/studies/int8_xnnpack.py ... --work /tmp/xnn --stage time --out report.md
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tflite_int8_speed import ATTENTION, _convert, _stack, add_model_arguments, int8_tflite, tflite_top1

GRAPHS = {"litert": dict(quantize_attention=False, int8_chain=False), "xnnpack": {}}


def cached_float_set(weights: Path, min_agreement: float = 0.995) -> tuple[str, list[str]]:
    """(cache key, float units) of the checkpoint's cached PT2E search for ``min_agreement``, whatever the
    route revision it was searched under (this script compares graphs; it does not search)."""
    from mvit.quant.search import cache_path

    entries = json.loads(cache_path(weights).read_text())["entries"]
    prefix = f"pt2e|min_agreement={min_agreement:.4f}|"
    keys = [k for k in entries if k.startswith(prefix)]
    if not keys:
        raise SystemExit(f"{cache_path(weights)}: no cached PT2E float set for {min_agreement}; pass --keep-float")
    return keys[-1], list(entries[keys[-1]]["float_units"])


def _variants(keep: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, graph, float modules) of every int8 variant."""
    return [
        (f"litert graph, cached float set ({len(keep)})", "litert", tuple(keep)),
        (f"xnnpack graph, cached float set ({len(keep)})", "xnnpack", tuple(keep)),
        ("litert graph, nothing float", "litert", ()),
        ("xnnpack graph, nothing float", "xnnpack", ()),
    ]


def build(args, work: Path) -> dict:
    """Write fp32 and every int8 variant as .tflite and .pte into ``work`` (kept files are reused)."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from mvit.export.backends.executorch_backend import lower
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.export_prep import prepare_for_export
    from mvit.model.images import image_files, load_pixels
    from mvit.model.preprocess import normalize_hwc_uint8
    from mvit.quant.pt2e import _calibrate, model_input_range, quantizer_for

    ck = load_checkpoint(Path(args.weights))
    net, contract = prepare_for_export(ck.model), ck.meta.contract
    sample = torch.zeros(1, 3, *contract.input_size)
    files = {"fp32": {"tflite": work / "fp32.tflite", "pte": work / "fp32.pte"}}
    if not files["fp32"]["tflite"].exists():
        _convert(net, sample, files["fp32"]["tflite"])
    if not files["fp32"]["pte"].exists():
        files["fp32"]["pte"].write_bytes(lower(net, sample)[0])
    calib = None
    variants = list(enumerate(_variants(args.keep_float)))
    order = [variants[i] for i in args.build_order] if args.build_order else variants
    for i, (_name, graph, keep) in order:
        paths = {"tflite": work / f"v{i}.tflite", "pte": work / f"v{i}.pte"}
        if all(p.exists() for p in paths.values()):
            continue
        if calib is None:
            px = load_pixels(image_files(Path(args.calib)), contract, args.calib_count)[0]
            calib = torch.from_numpy(normalize_hwc_uint8(px, contract))
        q = quantizer_for(net, "histogram", keep, True, model_input_range(contract), **GRAPHS[graph])
        with torch.no_grad():
            prepared = _calibrate(net, sample, q, lambda a, b, c=calib: c[a:b], len(calib))
            tfl = allow_exported_model_train_eval(convert_pt2e(copy.deepcopy(prepared), fold_quantize=False))
            _convert(tfl, sample, paths["tflite"], q)  # with mvit-export's finish_graph
            et = allow_exported_model_train_eval(convert_pt2e(copy.deepcopy(prepared), fold_quantize=True))
            paths["pte"].write_bytes(lower(et, sample)[0])
    for i, (name, _, _) in order:  # the report covers the variants asked for
        files[name] = {"tflite": work / f"v{i}.tflite", "pte": work / f"v{i}.pte"}
    for i, paths in enumerate(attention_core(work)):
        files[
            f"attention core: {['fp32', 'int8, affine right-hand operands', 'int8, symmetric right-hand operands'][i]}"
        ] = {"tflite": paths}
    return files


def attention_core(work: Path) -> list[Path]:
    """The attention core alone (``tflite_int8_speed``'s) as fp32 and int8 with affine and symmetric
    right-hand operands."""
    net, shape = _stack(ATTENTION)
    paths = [work / f"attention_{k}.tflite" for k in ("fp32", "affine", "symmetric")]
    torch.manual_seed(0)
    calib = torch.randn(16, *shape[1:])
    if not paths[0].exists():
        _convert(net, torch.zeros(*shape), paths[0])
    for p, mode in zip(paths[1:], ("affine-rhs", True)):
        if not p.exists():
            int8_tflite(net, calib, p, quantize_attention=mode)
    return paths


def _top1(path: Path, x: np.ndarray, threads: int) -> np.ndarray:
    if path.suffix != ".pte":
        return tflite_top1(path, x, threads)
    from mvit.export.backends.executorch_backend import open_method

    method, _ = open_method(path, threads)
    return np.array([int(method.execute([torch.from_numpy(img[None])])[0].argmax()) for img in x])


def evaluate(args, files: dict) -> dict:
    """Census headline and agreement with the float model of every whole-model file."""
    from mvit.benchmarks.census import int8_headline
    from mvit.export.backends import executorch_backend, tflite_backend
    from mvit.model.checkpoint import load_checkpoint
    from mvit.model.images import image_files, load_pixels
    from mvit.model.preprocess import normalize_hwc_uint8

    ck = load_checkpoint(Path(args.weights))
    contract = ck.meta.contract
    val = normalize_hwc_uint8(load_pixels(image_files(Path(args.val)), contract)[0], contract)
    with torch.no_grad():
        ref = np.concatenate(
            [ck.model.eval()(torch.from_numpy(val[i : i + 16])).argmax(1).numpy() for i in range(0, len(val), 16)]
        )
    out = {}
    for name, paths in files.items():
        for fmt, p in paths.items():
            c = (tflite_backend if fmt == "tflite" else executorch_backend).op_census(p, args.threads)
            row = {
                "file": str(p),
                "size_mb": p.stat().st_size / 1e6,
                "census": int8_headline(c),
                "fallback": c["fallback"],
                "partitions": c["delegate_partitions"],
            }
            if not name.startswith("attention"):
                row["agreement"] = float((_top1(p, val, args.threads) == ref).mean() * 100)
                row["images"] = int(len(val))
            out[f"{name} [{fmt}]"] = row
    return out


def time_rows(args, files: dict) -> dict:
    """Median ms of each runtime's files, interleaved per runtime group in this process."""
    from mvit.benchmarks.latency import interleaved_medians, tflite_on_zeros
    from mvit.export.backends.executorch_backend import open_method

    groups: dict[str, dict] = {"tflite": {}, "pte": {}, "attention": {}}
    for name, paths in files.items():
        for fmt, p in paths.items():
            key = f"{name} [{fmt}]"
            g = "attention" if name.startswith("attention") else fmt
            if fmt == "tflite":
                groups[g][key] = tflite_on_zeros(p, args.threads)
            else:
                method, _ = open_method(p, args.threads)
                x = torch.zeros(1, 3, *args.input_size)
                groups[g][key] = lambda m=method, x=x: m.execute([x])
    ms = {}
    for calls in groups.values():
        ms |= interleaved_medians(calls, args.rounds, args.per)
    return ms


def render(args, rows: dict, ms: dict) -> str:
    """The Markdown report."""
    from mvit.benchmarks.matrix import cpu_line

    lines = [
        f"# int8 graphs for XNNPACK: {Path(args.weights).name}",
        "",
        f"CPU: {cpu_line(args.threads)}; batch 1. Latency: medians of {args.rounds} rotating rounds x "
        f"{args.per} invokes, each runtime's files interleaved in one process. Agreement: top-1 of the file vs "
        f"the float PyTorch model on {args.val}. Calibration: {args.calib_count} images of {args.calib}. "
        f"Cached float set: `{args.keep_float_key}`.",
        "",
        "Command: `python benchmarks/studies/int8_xnnpack.py " + " ".join(args.argv) + "`",
        "",
        "| file | MB | median ms | / fp32 | agreement % | MACs int8 | BATCH_MATMUL int8 / delegated | "
        "float LOGISTIC | DEQUANTIZE | QUANTIZE | outside XNNPACK |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for key, r in rows.items():
        fmt = key.rsplit("[", 1)[1][:-1]
        base = "attention core: fp32 [tflite]" if key.startswith("attention") else f"fp32 [{fmt}]"
        c = r["census"]
        t = ms.get(key)
        ratio = f"{t / ms[base]:.2f}" if t and ms.get(base) else "–"
        lines.append(
            f"| {key} | {r['size_mb']:.2f} | {t:.2f} | {ratio} | {r.get('agreement', float('nan')):.2f} | "
            f"{c['mac_int8']}/{c['mac_ops']} ({c['mac_int8_share'] * 100:.0f}%) | "
            f"{c['batch_matmul_int8']}/{c['batch_matmul']} / {c['batch_matmul_int8_delegated']} | "
            f"{c['float_logistic']} | {c['dequantize']} | {c['quantize']} | "
            f"{', '.join(f'{k} x{v}' for k, v in r['fallback'].items()) or 'nothing'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Build (or reuse), evaluate, time and report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(ap, per=10)
    ap.add_argument(
        "--keep-float",
        nargs="*",
        help="the float set of the 'cached' rows (default: the checkpoint's cached PT2E search result)",
    )
    ap.add_argument("--work", required=True, help="folder for the artifacts; files already there are reused")
    ap.add_argument("--build-only", action="store_true", help="write the artifacts and stop (no timing)")
    ap.add_argument(
        "--build-order",
        type=int,
        nargs="+",
        metavar="I",
        help="only these variants (0-3), built in this order (two processes can share --work)",
    )
    ap.add_argument(
        "--stage",
        choices=("all", "evaluate", "time"),
        default="all",
        help="evaluate: census and agreement only (saved in --work); time: timing and report "
        "from the saved evaluation (so the timing alone can hold the CPU)",
    )
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for flag in ("calib", "val"):
        if not Path(getattr(args, flag)).is_dir():
            ap.error(f"--{flag} {getattr(args, flag)}: not a folder")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    torch.set_flush_denormal(True)
    if args.keep_float is None:
        args.keep_float_key, args.keep_float = cached_float_set(Path(args.weights))
    else:
        args.keep_float_key = "given: " + " ".join(args.keep_float)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from mvit.model.checkpoint import load_checkpoint

    args.input_size = load_checkpoint(Path(args.weights)).meta.contract.input_size
    files = build(args, work)
    if args.build_only:
        print(f"artifacts in {work}")
        return 0
    saved = work / "int8_xnnpack_rows.json"
    if args.stage == "time":
        if not saved.exists():
            ap.error(f"--stage time: no {saved}; run --stage evaluate first")
        rows = json.loads(saved.read_text())
    else:
        rows = evaluate(args, files)
        saved.write_text(json.dumps(rows, indent=1))
        if args.stage == "evaluate":
            print(f"census and agreement in {saved}")
            return 0
    ms = time_rows(args, files)
    (work / "int8_xnnpack.json").write_text(json.dumps({"rows": rows, "ms": ms}, indent=1))
    print(render(args, rows, ms))
    if args.out:
        Path(args.out).write_text(render(args, rows, ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
