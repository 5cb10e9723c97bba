"""Markdown rows for int8 export folders: float layers and where they came from, parity on the
verification images, and the op census (benchmarks/results/int8_search.md).

    python -m mvit.bench.int8_plan_table OUT/mobilevit_xxs-int8-tflite OUT/mobilevit_xxs-int8-onnx ...
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

WEIGHTED_TFLITE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")


def row(folder: Path, label: str = "") -> str:
    """One table row for an export folder (model_meta.json beside the artifact)."""
    from mvit.bench.census import onnx_census, tflite_census

    meta = json.loads((folder / "model_meta.json").read_text())
    details, parity = meta["quantization_details"], meta.get("parity") or {}
    plan = details.get("int8_plan") or {}
    fmt = meta["format"]
    artifact = next(folder.glob("model.*"))
    if fmt == "tflite":
        c = tflite_census(artifact)
        count = lambda kind: sum(v for k, v in c["ops"].items()  # noqa: E731
                                 if k.split(":")[0] in WEIGHTED_TFLITE and (k.split(":")[1] == "INT8") == (kind == "int8"))
        census = (f"conv/FC/matmul int8 {count('int8')}, float {count('float')}; "
                  f"QUANTIZE {c['quantize']}, DEQUANTIZE {c['dequantize']}")
    else:
        c = onnx_census(artifact)
        census = (f"int8 kernels {c['int_kernels']}; float Conv {c['float_conv']}, float MatMul/Gemm "
                  f"{c['float_matmul']}; QuantizeLinear {c['quantize']}, DequantizeLinear {c['dequantize']}")
    floats = details.get("keep_float", [])
    agree, n, acc = parity.get("top1_agreement"), parity.get("n"), parity.get("artifact_accuracy")
    return (f"| {label or folder.name} | {fmt} | {plan.get('source', details.get('keep_float_source', '?'))} | "
            f"{len(floats)}: {', '.join(floats) or '-'} | "
            f"{'-' if agree is None else f'{100 * agree:.2f}% of {n}'} | "
            f"{'-' if acc is None else f'{100 * acc:.2f}%'} | {census} |")


def main(argv=None) -> int:
    """Print one markdown row per export folder given."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="int8 export folders (LABEL=FOLDER to name a row)")
    args = ap.parse_args(argv)
    print("| row | format | float set from | float layers | agreement (verification images) | top-1 | op census |")
    print("|---|---|---|---|---|---|---|")
    for f in args.folders:
        label, _, path = str(f).rpartition("=")
        print(row(Path(path), label))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
