"""Synthesise and store a data-free (ZeroQ) calibration set beside a checkpoint.

``python -m mvit.quant.zeroq_set CHECKPOINT [--count N] [--iters N]`` writes ``<checkpoint>.zeroq.npz``
(uint8 pixels + the checkpoint's SHA-256). ``mvit-export`` uses it when no ``--calib`` is given
and the hash matches, so the README's main job needs no data and no minutes of synthesis.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..model.checkpoint import atomic_write, load_checkpoint
from .calibration import shipped_set_path, synthesize_zeroq


def main(argv=None) -> int:
    """Entry point: synthesise and save the set."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("--count", type=int, default=32)
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    ck = load_checkpoint(args.checkpoint)
    t0 = time.perf_counter()
    px = synthesize_zeroq(
        ck.model,
        ck.meta.contract,
        n=args.count,
        iters=args.iters,
        seed=args.seed,
        progress=lambda s, n, loss: print(f"step {s}/{n} BN-statistics loss {loss:.3f}", flush=True),
    )
    out = shipped_set_path(Path(args.checkpoint))
    atomic_write(
        out,
        lambda tmp: np.savez_compressed(
            open(tmp, "wb"), pixels=px, sha256=np.array(ck.sha256), iters=np.array(args.iters), seed=np.array(args.seed)
        ),
    )
    print(f"wrote {out} ({len(px)} images, {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
