"""Accuracy of a checkpoint on an image folder, preprocessing exactly per its contract.

python benchmarks/article/eval_checkpoint.py model/weights/mobilevit_xxs_trashnet6.safetensors ../shared/data/trashnet6/val
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from mvit.model.checkpoint import load_checkpoint
from mvit.model.data import scan_class_folders
from mvit.model.preprocess import preprocess_file


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("folder", help="FOLDER/<class>/<images>, class names as in the checkpoint")
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args(argv)
    ck = load_checkpoint(a.checkpoint)
    split = scan_class_folders(a.folder, ck.meta.labels)
    correct = 0
    with torch.no_grad():
        for i in range(0, len(split.paths), a.batch):
            x = torch.from_numpy(np.stack([preprocess_file(q, ck.meta.contract) for q in split.paths[i : i + a.batch]]))
            pred = ck.model.float()(x).argmax(1)
            correct += int((pred == torch.tensor(split.labels[i : i + a.batch])).sum())
    print(
        json.dumps(
            {
                "checkpoint": a.checkpoint,
                "folder": a.folder,
                "images": len(split.paths),
                "top1": round(correct / len(split.paths), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
