"""Automatic mixed precision to an agreement budget: the cheapest set of layers to leave float.

1. Units: for every conv/linear layer, the largest module around it that holds no other conv/linear
   (MobileViT's ``layer_1.0.block.exp_1x1`` = conv + norm + SiLU; a transformer's ``qkv_proj``).
   Leaving a unit float removes its weight quantization and every activation quantization point that
   only its ops read or write (``SimGraph.set_float``).
2. Order: per-point sensitivity (``mvit.quant.sensitivity``, one backward pass) summed over the points
   each unit removes, divided by the unit's float cost (its multiply-accumulates -- the work int8
   would have sped up -- plus the tensors an extra quantize/dequantize pair touches); units are taken
   greedily by that marginal benefit per cost given the ones already chosen.
3. Budget: the shortest prefix of that order whose int8 model agrees with the float model (same
   top-1) on at least ``min_agreement`` of the held-out images, found by bisection with a format's
   own ``evaluate(float_set) -> agreement``. Held-out images are calibration images not used to
   calibrate, never the verification images.

The result names the chosen units, the agreement reached and every evaluation made, so an export can
print it and store it in its metadata; ``met`` is False when even every unit float misses the budget.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .layer_io import layers
from .sim import SimGraph


def layer_units(model: nn.Module) -> list[str]:
    """For every conv/linear of ``model``, the largest enclosing module holding no other conv/linear."""
    weighted = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    count = Counter()
    for n in weighted:
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            count[".".join(parts[:i])] += 1
    units = []
    for n in weighted:
        parts = n.split(".")
        unit = n
        for i in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:i])
            if count[prefix] != 1:
                break
            unit = prefix
        if unit not in units:
            units.append(unit)
    return units


def unit_costs(sim: SimGraph, units: list[str], batch: int) -> dict[str, float]:
    """Float cost of each unit: multiply-accumulates of its conv/linear ops per image, plus the input and
    output elements a float island's quantize/dequantize pair touches (4 per element)."""
    from .sim import under

    cost = {u: 0.0 for u in units}
    for layer in layers(sim):
        out = layer.node.meta.get("val")
        inp = layer.node.args[0].meta.get("val") if isinstance(layer.node.args[0], torch.fx.Node) else None
        if out is None:
            continue
        w = layer.point.weight
        per_out = w[0].numel()  # in_channels / groups * kh * kw, or in_features
        macs = out.numel() / batch * per_out
        touched = (out.numel() + (inp.numel() if inp is not None else 0)) / batch
        for u in units:
            if under(layer.path, u):
                cost[u] += macs + 4 * touched
    return cost


def candidates(units: list[str]) -> list[str]:
    """The units and every module above them (blocks, stages): leaving a whole block float also removes
    the quantization points its layers share (a conv's output read by the next conv)."""
    out = list(units)
    for u in units:
        parts = u.split(".")
        for i in range(len(parts) - 1, 0, -1):
            a = ".".join(parts[:i])
            if a not in out:
                out.append(a)
    return out


class _Coverage:
    """Which quantization points a set of float modules removes (``SimGraph.set_float``'s rule),
    updated one module at a time."""

    def __init__(self, sim: SimGraph):
        self.points = []  # (name, paths that must all be float, always_kept)
        for name, p in sim.acts.items():
            keep = p.producer == "" or (p.producer is None and not p.consumers)
            paths = ([p.producer] if p.producer else []) + list(p.consumers)
            self.points.append((name, paths, keep))
        for name, p in sim.weights.items():
            self.points.append((name, [p.consumer] if p.consumer else [], not p.consumer))
        self.covered = [[False] * len(paths) for _, paths, _ in self.points]

    def would_remove(self, module: str) -> set[str]:
        from .sim import under

        out = set()
        for (name, paths, keep), cov in zip(self.points, self.covered):
            if keep or not paths or all(cov):
                continue
            if all(c or under(pth, module) for pth, c in zip(paths, cov)):
                out.add(name)
        return out

    def add(self, module: str) -> None:
        from .sim import under

        for (_, paths, _), cov in zip(self.points, self.covered):
            for i, pth in enumerate(paths):
                if not cov[i] and under(pth, module):
                    cov[i] = True


def rank_units(sim: SimGraph, units: list[str], point_sens: dict[str, float], cost: dict[str, float],
               coverage: float = 0.999) -> list[tuple[str, float, float]]:
    """Modules in the order the search leaves them float: (module, marginal sensitivity, marginal
    cost), greedily by sensitivity removed per cost among ``candidates(units)``. Stops once
    ``coverage`` of the total sensitivity is removed or nothing sensitive is left."""
    total = sum(point_sens.values()) or 1.0
    cands = candidates(units)
    unit_of = {c: [u for u in units if u == c or u.startswith(c + ".")] for c in cands}
    cov = _Coverage(sim)
    floated: set[str] = set()
    order, removed = [], 0.0
    while removed < coverage * total:
        best = None
        for c in cands:
            new_units = [u for u in unit_of[c] if u not in floated]
            if not new_units:
                continue
            gain = sum(point_sens.get(n, 0.0) for n in cov.would_remove(c))
            c_cost = sum(cost.get(u, 0.0) for u in new_units)
            score = gain / max(c_cost, 1.0)
            if gain > 0 and (best is None or score > best[0]):
                best = (score, c, gain, c_cost, new_units)
        if best is None:
            break
        _, c, gain, c_cost, new_units = best
        cov.add(c)
        floated.update(new_units)
        order.append((c, gain, c_cost))
        removed += gain
    return order


@dataclass
class SearchResult:
    """What the mixed-precision search chose and why."""

    float_units: list[str]
    agreement: float                  # on the held-out images, with float_units float
    min_agreement: float
    met: bool
    images: int                       # held-out images the agreement was measured on
    evaluations: list[dict] = field(default_factory=list)  # {"float_units": k, "agreement": a, "cosine": c}
    order: list[str] = field(default_factory=list)         # the ranked units the prefix came from
    float_cost_fraction: float = 0.0  # share of the model's conv/linear cost left float
    cosine: float | None = None       # mean logit cosine with the float model, with float_units float
    int8_left: list[str] = field(default_factory=list)  # unmet: activations int8 with every candidate float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchResult":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def score(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(top-1 agreement, mean cosine of the mean-centred logits) of ``out`` against ``ref``."""
    a, b = out.double() - out.double().mean(1, keepdim=True), ref.double() - ref.double().mean(1, keepdim=True)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    return agreement(out, ref), float(cos.mean())


def bisect_prefix(order: list[str], evaluate, min_agreement: float, log=None, min_cosine: float = -1.0,
                  known: dict | None = None) -> tuple[int, tuple[float, float], list[dict]]:
    """Smallest k whose ``evaluate(order[:k]) -> (agreement, cosine)`` meets ``min_agreement`` and
    ``min_cosine``, by bisection (both grow with k, up to noise); returns (k, its scores,
    evaluations). k = len(order) + 1 when even all miss. ``known``: scores already measured, by k."""
    evals: list[dict] = []
    seen: dict[int, tuple[float, float]] = {}

    def ev(k: int) -> bool:
        if k not in seen:
            measured = k not in (known or {})
            seen[k] = tuple(evaluate(order[:k])) if measured else known[k]
            evals.append({"float_units": k, "agreement": seen[k][0], "cosine": seen[k][1]})
            if log and measured:
                log(f"  {k} unit(s) float: agreement {100 * seen[k][0]:.2f}%, cosine {seen[k][1]:.4f}")
        return seen[k][0] >= min_agreement and seen[k][1] >= min_cosine

    if ev(0):
        return 0, seen[0], evals
    hi = len(order)
    if not ev(hi):
        return hi + 1, seen[hi], evals
    lo = 0  # ev(lo) misses, ev(hi) meets
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ev(mid):
            hi = mid
        else:
            lo = mid
    return hi, seen[hi], evals


def search(order: list[tuple[str, float, float]], evaluate, min_agreement: float, images: int,
           total_cost: float, log=None, min_cosine: float = -1.0, known: dict | None = None) -> SearchResult:
    """The cheapest prefix of ``order`` (from ``rank_units``) meeting ``min_agreement`` (and ``min_cosine``)."""
    names = [u for u, _, _ in order]
    k, (agree, cos), evals = bisect_prefix(names, evaluate, min_agreement, log, min_cosine, known)
    met = k <= len(names)
    prefix = names[: min(k, len(names))]
    cost = sum(c for u, _, c in order if u in prefix)
    # a module inside another chosen one adds nothing to the list
    chosen = [u for u in prefix if not any(u != o and u.startswith(o + ".") for o in prefix)]
    return SearchResult(chosen, agree, min_agreement, met, images, evals, names,
                        round(cost / total_cost, 4) if total_cost else 0.0, cos)


def search_sim(model: nn.Module, quantizer, calib: torch.Tensor, heldout: torch.Tensor, min_agreement: float,
               batch: int = 8, sensitivity_images: int = 32, log=None) -> SearchResult:
    """The search for PT2E int8 (TFLite, Core ML): sensitivity, costs and agreement from a ``SimGraph``
    of ``model`` calibrated on ``calib``; agreement measured on ``heldout`` (model inputs)."""
    from .ptq import build_sim
    from .sensitivity import point_sensitivity

    sim = build_sim(model, quantizer, calib, batch)
    with torch.no_grad():
        ref = torch.cat([model(heldout[i : i + batch]) for i in range(0, len(heldout), batch)])
    sens = point_sensitivity(sim, calib[: max(batch, sensitivity_images)], batch)
    units = layer_units(model)
    cost = unit_costs(sim, units, batch)
    order = rank_units(sim, units, sens, cost)

    def evaluate(float_units) -> tuple[float, float]:
        sim.set_float(float_units)
        return score(sim.run(heldout, batch), ref)

    try:
        return search(order, evaluate, min_agreement, len(heldout), sum(cost.values()), log)
    finally:
        sim.set_float(())


def agreement(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Share of rows whose top-1 matches."""
    return float((out.argmax(-1) == ref.argmax(-1)).float().mean())


def expected_flips(out, ref) -> float:
    """How many top-1 flips int8 logits ``out`` give against float ``ref`` in expectation, by a smooth
    estimate: each row's float margin (top-1 minus runner-up) against the spread of the int8 error
    of that margin over all rows, ``sum(Phi(-margin / sigma))``. A flip count on a few hundred rows
    moves by whole near-ties; this does not, and a lucky draw of near-ties does not lower it
    (benchmarks/results/int8_article.md: ViT-Tiny's chosen float set flips 2 of its 410 search samples,
    expects 3.9; its unseen half flips 3 of 202 and expects 2.9). One sigma for all rows assumes a
    Gaussian error: where a few rows take much larger errors it counts too few (the shipped model all
    int8: 6 and 10 flips on the two val halves, 2.0 and 5.6 expected)."""
    out, ref = torch.as_tensor(out).double(), torch.as_tensor(ref).double()
    rows, top = torch.arange(len(ref)), ref.argmax(-1)

    def margin(x: torch.Tensor) -> torch.Tensor:
        others = x.clone()
        others[rows, top] = -torch.inf
        return x[rows, top] - others.max(-1).values

    m_float = margin(ref)
    sigma = float((margin(out) - m_float).pow(2).mean().sqrt())
    return float(torch.special.ndtr(-m_float / sigma).sum()) if sigma > 0 else 0.0


CACHE_SUFFIX = ".int8.json"


def cache_path(checkpoint: Path) -> Path:
    """Where a checkpoint's search results live: ``<name>.int8.json`` beside ``<name>.safetensors``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + CACHE_SUFFIX)


def cache_key(route: str, min_agreement: float, recipe: str) -> str:
    """Cache entry name: conversion route (e.g. ``pt2e``, ``onnx``), budget and recipe."""
    return f"{route}|min_agreement={min_agreement:.4f}|{recipe}"


def load_cached(checkpoint: Path, sha256: str, key: str) -> SearchResult | None:
    """A stored search result for this checkpoint (by SHA-256) and key, or None."""
    path = cache_path(checkpoint)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("sha256") != sha256:
        return None
    entry = data.get("entries", {}).get(key)
    try:
        return SearchResult.from_dict(entry) if isinstance(entry, dict) else None
    except TypeError:
        return None


def store(checkpoint: Path, sha256: str, key: str, result: SearchResult, provenance: dict) -> Path:
    """Add ``result`` under ``key`` to the checkpoint's cache file (written atomically), replacing any
    entry for the same route and budget made under another rule (``load_cached`` would never read it)."""
    from ..model.checkpoint import atomic_write

    path = cache_path(checkpoint)
    try:
        data = json.loads(path.read_text())
        if data.get("sha256") != sha256:
            data = {}
    except (OSError, ValueError):
        data = {}
    data.setdefault("sha256", sha256)
    entries = data.setdefault("entries", {})
    same = key.split("|")[:2]
    for stale in [k for k in entries if k != key and k.split("|")[:2] == same]:
        del entries[stale]
    entries[key] = dict(result.to_dict(), provenance=provenance)
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path
