"""Every zoo family at full size as a Core AI fp32 asset: export time, size, op count and the largest
logit difference from PyTorch on generated images through coreai-core's CPU runtime
(benchmarks/results/coreai.md).

    python benchmarks/studies/coreai_zoo.py --models mobilevit_s mobilevitv2_050 mobilenet_v1 --out /tmp/zoo.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_MODELS = (
    "mobilevit_xxs",
    "mobilevit_s",
    "mobilevitv2_050",
    "mobilevitv2_200",
    "mobilenet_v1",
    "mobilenet_v2",
    "vit_tiny",
)


def _spread(m):
    """Random norm scales and head weights, so that an untrained model's logits differ between images
    (fresh MobileNets give near-constant logits, and a logit difference would then say nothing)."""
    import torch

    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)) and mod.weight is not None:
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
            elif isinstance(mod, torch.nn.Linear):
                mod.weight.normal_(0, 0.1)
    return m


def convert_one(arch: str, images: int, work: Path) -> dict:
    """Export ``arch`` (untrained, norms and head spread by ``_spread``, 6 classes, its default input size)
    to an fp32 .aimodel and compare its logits with PyTorch's."""
    import torch

    from mvit.export.api import export_model
    from mvit.export.backends import coreai_backend as cai
    from mvit.export.parity import torch_logits
    from mvit.model.checkpoint import CheckpointMeta, save_checkpoint
    from mvit.model.contract import PreprocessContract
    from mvit.model.images import generated_pixels

    from .. import model

    torch.manual_seed(0)
    size = 224 if arch.startswith("vit") else 256
    kwargs = {"img_size": size} if arch.startswith("vit") else {}
    m = _spread(model.create(arch, num_classes=6, **kwargs)).eval()
    contract = PreprocessContract(input_size=(size, size))
    ckpt = save_checkpoint(
        work / f"{arch}.safetensors",
        m,
        CheckpointMeta(arch, [f"c{i}" for i in range(6)], contract, model_kwargs=kwargs),
    )
    t0 = time.perf_counter()
    (r,) = export_model(
        checkpoint=ckpt, formats=("coreai",), precisions=("fp32",), out=work / "out", verify=False, say=lambda _m: None
    )
    seconds = time.perf_counter() - t0
    px = generated_pixels(contract, images)
    runner = cai.load_runner(r.artifact)
    out = runner.run(px)
    runner.close()
    ref = torch_logits(m, px, contract)
    return {
        "model": arch,
        "params_m": sum(p.numel() for p in m.parameters()) / 1e6,
        "input": size,
        "export_s": seconds,
        "size_mb": r.size_bytes / 1e6,
        "ops": cai.op_census(r.artifact)["ops_total"],
        "max_abs_diff": float(np.abs(out - ref).max()),
        "logit_range": float(np.ptp(ref)),
        "images": images,
    }


def render(rows: list[dict], command: str) -> str:
    """The markdown table of ``rows``."""
    lines = [
        f"Command: `{command}`",
        "",
        "| model | params (M) | input | export s | size MB | MLIR ops | max abs logit diff | logit range |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params_m']:.2f} | {r['input']} | {r['export_s']:.0f} | {r['size_mb']:.2f} | "
            f"{r['ops']} | {r['max_abs_diff']:.2e} | {r['logit_range']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Convert each model and write the table to --out (and stdout)."""
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--images", type=int, default=4, help="generated images compared per model")
    ap.add_argument("--out", type=Path, required=True, help="markdown file to write")
    args = ap.parse_args(argv)
    from mvit.export.backends import coreai_backend as cai

    if cai.unavailable():
        print(f"coreai_zoo: error: {cai.unavailable()}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for arch in args.models:
            rows.append(convert_one(arch, args.images, Path(d)))
            print(rows[-1], flush=True)
    text = render(
        rows, "python benchmarks/studies/coreai_zoo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
