"""Learned rounding of int8 weights: AdaRound (Nagel et al., ICML 2020) per layer, fitted against the
quantized model's own inputs (the asymmetric reconstruction of AdaRound's section 5).

Each conv/linear weight is rounded up or down (not to nearest) so that the layer's output on the
calibration images, fed the quantized model's own input, stays as close as possible to the float
layer's output. The result is written back as float weights that lie exactly on their int8 grid, so
any later int8 conversion that uses the same symmetric per-channel scale (max |w| / 127: PT2E for
TFLite and Core ML, onnxruntime's QInt8) stores precisely the learned integers.

The reconstruction error is a quadratic form in the second moments of the layer's inputs, gathered in
one pass over the calibration images (every im2col patch and token, none stored), so each Adam step
costs a few small matrix products whatever the number of images.
"""

from __future__ import annotations

import time

import torch

from .layer_io import Layer, capture, layers, sample_rows
from .sim import SimGraph

ZETA, GAMMA = 1.1, -0.1  # rectified sigmoid stretch (AdaRound eq. 23)


def _h(v: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)


def _init_v(frac: torch.Tensor) -> torch.Tensor:
    """V with h(V) = frac (the nearest rounding's fractional part)."""
    p = ((frac - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
    return torch.log(p / (1 - p))


class Moments:
    """Second moments of a layer's quantized and float inputs over all calibration rows:
    E[xq xq^T], E[xq xf^T], E[xf xf^T] (per channel for depthwise convs). The reconstruction error
    ||W' xq - W xf||^2 is a quadratic form in them, so every row counts and none is stored."""

    def __init__(self):
        self.qq = self.qf = self.ff = None
        self.mq = self.mf = None
        self.n = 0

    def add(self, xq: torch.Tensor, xf: torch.Tensor) -> None:
        if xq.dim() == 2:
            qq, qf, ff = (xq.t() @ xq).double(), (xq.t() @ xf).double(), (xf.t() @ xf).double()
        else:  # [R, C, k]: per channel
            qq = torch.einsum("rci,rcj->cij", xq, xq).double()
            qf = torch.einsum("rci,rcj->cij", xq, xf).double()
            ff = torch.einsum("rci,rcj->cij", xf, xf).double()
        mq, mf = xq.double().sum(0), xf.double().sum(0)
        if self.qq is None:
            self.qq, self.qf, self.ff, self.mq, self.mf = qq, qf, ff, mq, mf
        else:
            self.qq += qq
            self.qf += qf
            self.ff += ff
            self.mq += mq
            self.mf += mf
        self.n += len(xq)

    def finish(self, asymmetric: bool = True) -> Moments:
        """Means from sums; ``asymmetric=False`` fits against float inputs only (xq := xf)."""
        for k in ("qq", "qf", "ff", "mq", "mf"):
            setattr(self, k, (getattr(self, k) / max(self.n, 1)).float())
        if not asymmetric:
            self.qq, self.qf, self.mq = self.ff, self.ff, self.mf
        return self


def _error(
    m: Moments, wq: torch.Tensor, wf: torch.Tensor, bq: torch.Tensor | None, bf: torch.Tensor | None, depthwise: bool
) -> torch.Tensor:
    """Mean over rows of ||Wq xq + bq - (Wf xf + bf)||^2 from the moments."""
    wq, wf = wq.flatten(1), wf.flatten(1)
    if depthwise:  # per channel c: wq_c^T Qqq_c wq_c - 2 wq_c^T Qqf_c wf_c + wf_c^T Qff_c wf_c
        quad = (
            torch.einsum("ci,cij,cj->c", wq, m.qq, wq)
            - 2 * torch.einsum("ci,cij,cj->c", wq, m.qf, wf)
            + torch.einsum("ci,cij,cj->c", wf, m.ff, wf)
        )
        lin_q, lin_f = (wq * m.mq).sum(1), (wf * m.mf).sum(1)
    else:
        quad = ((wq @ m.qq) * wq).sum(1) - 2 * ((wq @ m.qf) * wf).sum(1) + ((wf @ m.ff) * wf).sum(1)
        lin_q, lin_f = wq @ m.mq, wf @ m.mf
    db = (bq if bq is not None else 0) - (bf if bf is not None else 0)
    if isinstance(db, torch.Tensor):
        quad = quad + 2 * db * (lin_q - lin_f) + db * db
    return quad.sum()


@torch.no_grad()
def collect_moments(
    sim: SimGraph,
    ls: list[Layer],
    x: torch.Tensor,
    batch: int,
    max_rows: int = 8192,
    seed: int = 0,
    asymmetric: bool = True,
) -> list[Moments]:
    """``Moments`` of every layer in ``ls`` over the images ``x``: per chunk of the graph's batch, one float
    pass keeps each layer's input, one quantized pass pairs it with the quantized input. At most
    ``max_rows`` rows per layer and chunk (the same random rows on both sides) enter the moments."""
    keys = {l.node: i for i, l in enumerate(ls)}
    moments = [Moments() for _ in ls]
    state = sim.switches()
    gen = torch.Generator().manual_seed(seed)
    flt: dict[int, torch.Tensor] = {}

    def keep(key, node, env, _out):
        flt[key] = env[node.args[0]]

    def pair(key, node, env, _out):
        state = gen.get_state()
        rq = sample_rows(ls[key], env[node.args[0]], max_rows, gen)
        gen.set_state(state)  # the same positions on the float side
        rf = sample_rows(ls[key], flt.pop(key), max_rows, gen)
        moments[key].add(rq, rf)

    try:
        for i in range(0, len(x) - batch + 1, batch):
            chunk = x[i : i + batch]
            sim.enable_all(False, False)
            capture(sim, chunk, keys, keep, batch)
            sim.restore_switches(state)
            capture(sim, chunk, keys, pair, batch)
    finally:
        sim.restore_switches(state)
    return [m.finish(asymmetric) for m in moments]


def _low_rank_error(m: Moments, w: torch.Tensor, energy: float = 0.9999, max_rank: int = 256):
    """With float inputs on both sides the error is ||(Wq - W) L||^2 for E[x x^T] = L L^T; keeping the
    eigen-directions that hold ``energy`` of the input's second moment (at most ``max_rank``) makes each
    step cost out x in x rank instead of out x in^2."""
    vals, vecs = torch.linalg.eigh(m.ff.double())
    vals = vals.clamp_min(0).flip(0)
    vecs = vecs.flip(1)
    cum = vals.cumsum(0) / vals.sum().clamp_min(1e-30)
    rank = min(int(torch.searchsorted(cum, torch.tensor(energy, dtype=cum.dtype))) + 1, max_rank, len(vals))
    root = (vecs[:, :rank] * vals[:rank].sqrt()).float()
    wf = w.flatten(1)
    return lambda wq: (wq.flatten(1) - wf).matmul(root).pow(2).sum()


def round_layer(
    layer: Layer, m: Moments, bias: torch.Tensor | None, iters: int = 1000, lam: float = 0.5, lr: float = 1e-2
) -> tuple[torch.Tensor, float, float]:
    """Learned int8 rounding of one layer from its input ``Moments``; returns (on-grid float weight,
    error of nearest rounding, error of learned rounding)."""
    p = layer.point
    w = p.weight
    depthwise = m.qq.dim() == 3
    shape = [-1] + [1] * (w.dim() - 1)
    s = p.scale.view(shape)
    ws = w / s
    base = torch.floor(ws)
    # the elements that set a channel's range keep their nearest rounding, so max |w| / 127 -- the scale
    # any re-quantization computes -- stays the same
    fixed = ws.abs() >= p.qmax - 0.5
    v = _init_v(ws - base).requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)

    def weight(hard: bool) -> torch.Tensor:
        r = (_h(v) >= 0.5).float() if hard else _h(v)
        return torch.where(fixed, torch.round(ws), base + r).clamp(p.qmin, p.qmax) * s

    with torch.no_grad():
        nearest = torch.round(ws).clamp(p.qmin, p.qmax) * s
        e_near = float(_error(m, nearest, w, bias, bias, depthwise))
    loss_fn = (
        _low_rank_error(m, w)
        if m.qq is m.ff and not depthwise
        else (lambda wq: _error(m, wq, w, bias, bias, depthwise))
    )
    scale = 1.0 / max(e_near, 1e-12)  # a well-conditioned loss whatever the layer's magnitude
    warmup = iters // 5
    for it in range(iters):
        loss = loss_fn(weight(False)) * scale
        if it >= warmup:
            beta = 20 - (20 - 2) * (it - warmup) / max(1, iters - warmup)
            loss = loss + lam * (1 - (2 * _h(v) - 1).abs().pow(beta)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        learned = weight(True)
        e_learned = float(_error(m, learned, w, bias, bias, depthwise))
    if e_learned >= e_near:
        return nearest, e_near, e_near
    return learned, e_near, e_learned


def adaround(
    sim: SimGraph,
    x: torch.Tensor,
    batch: int,
    iters: int = 1000,
    lam: float = 0.5,
    only=None,
    asymmetric: bool = False,
    progress=None,
) -> dict[str, torch.Tensor]:
    """Learned rounding for every conv/linear of ``sim`` (or those whose module path ``only`` accepts),
    fitted on calibration inputs ``x``. Sets each ``WeightPoint.rounded``; returns the on-grid weights by
    module path (to write into the float model).

    ``asymmetric=True`` fits each layer to the quantized model's inputs (compensating upstream error);
    done for all layers at once that over-compensates (each layer also undoes upstream error that the
    upstream layer's own rounding then removes), so the default fits to float inputs, which makes the
    layers independent."""
    t0 = time.perf_counter()
    ls = [l for l in layers(sim) if only is None or only(l.path)]
    moments = collect_moments(sim, ls, x, batch, asymmetric=asymmetric)
    if progress:
        progress(f"input moments of {len(ls)} layers ({time.perf_counter() - t0:.0f} s)")
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of small products: extra threads only wait on each other
    try:
        rounded = [
            round_layer(l, m, l.point.bias if l.point.has_bias else None, iters, lam) for l, m in zip(ls, moments)
        ]
    finally:
        torch.set_num_threads(threads)
    for layer, (w, e0, e1) in zip(ls, rounded):
        layer.point.rounded = w
        out[layer.path] = w
        if progress:
            progress(f"{layer.path}: output error {e0:.3g} -> {e1:.3g} ({time.perf_counter() - t0:.0f} s)")
    return out
