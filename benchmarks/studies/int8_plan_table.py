"""Markdown rows for int8 export folders: float layers and where they came from, parity on the
verification images, and the op census (benchmarks/results/int8_search.md).

    python benchmarks/studies/int8_plan_table.py OUT/mobilevit_xxs-int8-tflite OUT/mobilevit_xxs-int8-onnx ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def row(folder: Path, label: str = "") -> str:
    """One table row for an export folder (model_meta.json beside the artifact)."""
    from mvit.benchmarks.census import census, census_line

    meta = json.loads((folder / "model_meta.json").read_text())
    details, parity = meta["quantization_details"], meta.get("parity") or {}
    plan = details.get("int8_plan") or {}
    fmt = meta["format"]
    artifact = next(folder.glob("model.*"))
    floats = details.get("keep_float", [])
    agree, n, acc = parity.get("top1_agreement"), parity.get("n"), parity.get("artifact_accuracy")
    return (
        f"| {label or folder.name} | {fmt} | {plan.get('source', details.get('keep_float_source', '?'))} | "
        f"{len(floats)}: {', '.join(floats) or '-'} | "
        f"{'-' if agree is None else f'{100 * agree:.2f}% of {n}'} | "
        f"{'-' if acc is None else f'{100 * acc:.2f}%'} | {census_line(census(artifact, fmt))} |"
    )


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
