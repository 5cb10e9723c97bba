"""mvit-import: turn timm / Hugging Face / ml-cvnets / torchvision weights into an mvit checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoint import CheckpointError, CheckpointMeta, save_checkpoint
from .import_weights import SOURCES, WeightImportError, default_contract_for, detect_source, load_into, read_state_dict
from .registry import create, list_models


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mvit-import", description=__doc__)
    p.add_argument(
        "weights",
        help="weights file (.safetensors, .pt/.pth/.bin read with weights_only=True) or a Hugging Face model folder",
    )
    p.add_argument("--model", required=True, choices=list_models(), metavar="NAME", help="zoo architecture")
    p.add_argument("--source", default="auto", choices=("auto",) + SOURCES)
    p.add_argument("--labels", help="text file with one label per line (default: class_0, class_1, ...)")
    p.add_argument("--img-size", type=int, default=256)
    p.add_argument("--out", required=True, help="output .safetensors checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return p


def main(argv=None) -> int:
    """Entry point of ``mvit-import``."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        if out.exists() and not args.force:
            raise CheckpointError(f"{out}: exists; pass --force to overwrite")
        sd = read_state_dict(args.weights)
        head = next(
            (
                v
                for k, v in sd.items()
                if k.endswith(
                    (
                        "classifier.weight",
                        "classifier.fc.weight",
                        "head.fc.weight",
                        "head.weight",
                        "classifier.1.weight",
                    )
                )
            ),
            None,
        )
        num_classes = int(head.shape[0]) if head is not None else 1000
        labels = [f"class_{i}" for i in range(num_classes)]
        if args.labels:
            labels = [ln.strip() for ln in Path(args.labels).read_text().splitlines() if ln.strip()]
            if len(labels) != num_classes:
                raise CheckpointError(f"{args.labels}: {len(labels)} labels for a {num_classes}-class head")
        m = create(args.model, num_classes=num_classes)
        source = detect_source(sd) if args.source == "auto" else args.source
        load_into(m, sd, source)
        contract = default_contract_for(source, args.model, args.img_size)
        meta = CheckpointMeta(
            args.model, labels, contract, provenance={"imported_from": str(args.weights), "source": source}
        )
        save_checkpoint(out, m, meta)
    except (CheckpointError, WeightImportError, OSError) as e:
        print(f"mvit-import: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({args.model}, {num_classes} classes, source {source}, channel order {contract.channel_order})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
