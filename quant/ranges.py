"""Per-tensor activation range search: min-max, percentile and MSE-optimal ranges from a histogram of
each quantization point's float values on the calibration images.

PT2E's HistogramObserver already picks a range that minimises an L2 quantization error on its own
histogram; ``search_ranges`` offers the alternatives so they can be measured against it
(benchmarks/results/int8_search.md) and used where they do better.
"""

from __future__ import annotations

import torch

from .sim import ActPoint, SimGraph, run_batched

METHODS = ("min-max", "percentile", "mse")


@torch.no_grad()
def point_histograms(sim: SimGraph, x: torch.Tensor, batch: int, bins: int = 2048) -> dict[str, tuple]:
    """(lo, hi, counts) of the float values reaching every calibrated activation point, from two float
    passes over ``x`` (min/max, then a histogram over [lo, hi])."""

    points = {n: p for n, p in sim.acts.items() if not p.fixed}
    state = sim.switches()
    stats: dict[str, list] = {n: [float("inf"), float("-inf"), torch.zeros(bins, dtype=torch.float64)] for n in points}
    phase = ["range"]

    def hook(name):
        def pre(_mod, args):
            v = args[0].detach().float()
            s = stats[name]
            if phase[0] == "range":
                s[0], s[1] = min(s[0], float(v.min())), max(s[1], float(v.max()))
            elif s[1] > s[0]:
                s[2] += torch.histc(v, bins, s[0], s[1]).double()

        return pre

    handles = [p.register_forward_pre_hook(hook(n)) for n, p in points.items()]
    sim.enable_all(False, False)
    try:
        run_batched(sim.gm, x, batch)
        phase[0] = "hist"
        run_batched(sim.gm, x, batch)
    finally:
        for h in handles:
            h.remove()
        sim.restore_switches(state)
    return {n: (s[0], s[1], s[2]) for n, s in stats.items()}


def percentile_range(lo: float, hi: float, counts: torch.Tensor, q: float = 0.9999) -> tuple[float, float]:
    """The [1-q, q] quantiles of the histogram (bin edges)."""
    cdf = counts.cumsum(0) / counts.sum().clamp_min(1)
    edges = torch.linspace(lo, hi, len(counts) + 1, dtype=torch.float64)
    i_lo = int(torch.searchsorted(cdf, torch.tensor(1 - q, dtype=torch.float64)))
    i_hi = int(torch.searchsorted(cdf, torch.tensor(q, dtype=torch.float64)))
    return float(edges[i_lo]), float(edges[min(i_hi + 1, len(counts))])


def quantization_mse(lo: float, hi: float, counts: torch.Tensor, r_lo: float, r_hi: float, levels: int = 255) -> float:
    """Expected squared error of quantizing the histogram's values to ``levels`` steps over [r_lo, r_hi]:
    rounding noise step^2 / 12 inside, the clipping distance outside."""
    centres = torch.linspace(lo, hi, len(counts) + 1, dtype=torch.float64)
    centres = (centres[1:] + centres[:-1]) / 2
    step = max(r_hi - r_lo, 1e-12) / levels
    clipped = centres.clamp(r_lo, r_hi)
    err = (centres - clipped).pow(2) + step**2 / 12
    return float((err * counts).sum() / counts.sum().clamp_min(1))


def mse_range(lo: float, hi: float, counts: torch.Tensor, grid: int = 40) -> tuple[float, float]:
    """The range (shrunk from min-max on a grid, each end independently) with the least quantization MSE."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    best = (quantization_mse(lo, hi, counts, lo, hi), lo, hi)
    fractions = [1 - i / grid for i in range(grid)]
    for a in fractions:  # coordinate search: the upper end, then the lower end
        r_hi = hi * a
        e = quantization_mse(lo, hi, counts, best[1], r_hi)
        if e < best[0]:
            best = (e, best[1], r_hi)
    for a in fractions:
        r_lo = lo * a
        e = quantization_mse(lo, hi, counts, r_lo, best[2])
        if e < best[0]:
            best = (e, r_lo, best[2])
    return best[1], best[2]


def search_ranges(
    sim: SimGraph, hists: dict[str, tuple], method: str, q: float = 0.9999
) -> dict[str, tuple[float, float]]:
    """New [lo, hi] for every point in ``hists`` by ``method``; applied to the sim's points too."""
    if method not in METHODS:
        raise ValueError(f"range method {method!r}: use one of {', '.join(METHODS)}")
    out = {}
    for name, (lo, hi, counts) in hists.items():
        point: ActPoint = sim.acts[name]
        if hi <= lo:
            continue
        if method == "min-max":
            r = (lo, hi)
        elif method == "percentile":
            r = percentile_range(lo, hi, counts, q)
        else:
            r = mse_range(lo, hi, counts)
        point.set_range(*r)
        out[name] = r
    return out
