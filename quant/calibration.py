"""Data-free calibration images (ZeroQ) synthesised from a model's BatchNorm statistics, and the
shipped set that spares the main job the synthesis."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..model.contract import PreprocessContract
from . import QuantError


def synthesize_zeroq(
    model: nn.Module, contract: PreprocessContract, n: int = 32, iters: int = 60, seed: int = 0, progress=None
) -> np.ndarray:
    """Data-free calibration images (ZeroQ, Cai et al. 2020): optimise pixels so that every
    BatchNorm layer sees the batch mean and standard deviation it recorded in training.

    Pixels are parameterised as 255 * sigmoid(z), so they are always valid images, and pass through
    the contract's normalisation, so the model sees exactly what an app would feed.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        raise QuantError("data-free calibration needs BatchNorm layers; give --calib images")
    stats: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(mod, inp, _out):
        x = inp[0]
        stats.append((x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)))

    handles = [m.register_forward_hook(hook) for m in bns]
    g = torch.Generator().manual_seed(seed)
    h, w = contract.input_size
    z = torch.randn(n, 3, h, w, generator=g).mul_(0.5).requires_grad_(True)
    mean = torch.tensor(contract.mean).view(1, 3, 1, 1)
    std = torch.tensor(contract.std).view(1, 3, 1, 1)
    opt = torch.optim.Adam([z], lr=0.2)
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for step in range(iters):
            stats.clear()
            x = (torch.sigmoid(z) - mean) / std
            if contract.channel_order == "BGR":
                x = x.flip(1)
            model(x)
            loss = sum(
                torch.norm(mu - bn.running_mean)
                + torch.norm(var.add(bn.eps).sqrt() - bn.running_var.add(bn.eps).sqrt())
                for (mu, var), bn in zip(stats, bns)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress and (step % 10 == 0 or step == iters - 1):
                progress(step + 1, iters, float(loss.detach()))
    finally:
        for hd in handles:
            hd.remove()
        for p in model.parameters():
            p.requires_grad_(True)
        model.train(was_training)
    with torch.no_grad():
        px = (torch.sigmoid(z) * 255).round().to(torch.uint8)
    return px.permute(0, 2, 3, 1).numpy()


def shipped_set_path(checkpoint: Path) -> Path:
    """Where the data-free calibration set of a checkpoint is stored: ``<checkpoint>.zeroq.npz``."""
    return Path(str(checkpoint).replace(".safetensors", ".zeroq.npz"))


def data_free_pixels(ckpt, checkpoint: Path, n: int, say) -> tuple[np.ndarray, str]:
    """Calibration pixels without data: the set shipped beside ``checkpoint`` when it was made for
    exactly these weights (SHA-256), else ``n`` images synthesised now. Returns (pixels, description)."""
    shipped = shipped_set_path(checkpoint)
    if shipped.exists():
        with np.load(shipped) as data:
            if str(data["sha256"]) == ckpt.sha256:
                px = data["pixels"]
                return px, f"{len(px)} data-free (ZeroQ) images shipped with the model"
    say(f"synthesising {n} data-free (ZeroQ) calibration images from the model's BatchNorm statistics ...")
    t0 = time.perf_counter()
    px = synthesize_zeroq(ckpt.model, ckpt.meta.contract, n=n)
    say(f"synthesised {n} ZeroQ images in {time.perf_counter() - t0:.0f} s")
    return px, f"{n} data-free (ZeroQ) images synthesised from BatchNorm statistics"
