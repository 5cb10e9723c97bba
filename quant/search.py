"""Automatic mixed precision to an agreement budget: the cheapest set of layers to leave float.

1. Units: for every conv/linear layer, the largest module around it that holds no other conv/linear
   (MobileViT's ``layer_1.0.block.exp_1x1`` = conv + norm + SiLU; a transformer's ``qkv_proj``).
   Leaving a unit float removes its weight quantization and every activation quantization point that
   only its ops read or write (``SimGraph.set_float``).
2. Order: per-point sensitivity (``mvit.quant.sensitivity``, one backward pass) summed over the points
   each unit removes, divided by the unit's float cost: the time its int8 kernels would have saved on
   XNNPACK, per op kind (``xnnpack_int8_speed.json``, measured), plus the quantize/dequantize pair a
   float island adds; units are taken greedily by that marginal benefit per cost given the ones
   already chosen. A depthwise convolution gains little from int8, a 1x1 or 3x3 convolution much.
3. Budget (``StopRule``): the shortest prefix of that order whose int8 model is expected to flip at
   most a set share of the held-out samples' top-1 (``expected_flips``, a smooth estimate from the
   float margins and the int8 error's spread) and whose counted agreement still reaches the gate,
   found by galloping then bisection with a format's own ``evaluate(float_units)``. Held-out images
   are calibration images not used to calibrate, never the verification images.

The result names the chosen units, the agreement reached and every evaluation made, so an export can
print it and store it in its metadata; ``met`` is False when even every unit float misses the budget.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ..model.checkpoint import atomic_write
from .layer_io import layers
from .ptq import build_sim
from .sensitivity import point_sensitivity
from .sim import SimGraph, under


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


SPEED_TABLE = Path(__file__).with_name("xnnpack_int8_speed.json")


@lru_cache(maxsize=1)
def int8_speed() -> dict:
    """The measured int8 speed table (``xnnpack_int8_speed.json``; its ``source`` names the report)."""
    return json.loads(SPEED_TABLE.read_text())


def saved_ms_per_mac(kind: str) -> float:
    """Milliseconds int8 saves per multiply-accumulate of an op of ``kind`` (``op_kind``) on XNNPACK."""
    k = int8_speed()["kinds"][kind]
    return (k["fp32_ms"] - k["int8_ms"]) / k["kernel_macs"]


def island_ms() -> float:
    """What leaving one module float adds: a DEQUANTIZE before it and a QUANTIZE after it, at the
    measured mean time of one such op in the int8 model."""
    q = int8_speed()["quantize_dequantize"]
    return 2 * q["ms"] / q["ops"]


def op_kind(weight: torch.Tensor, groups: int = 1) -> str:
    """The speed table's kind of a conv (4-d ``weight``) or linear (2-d) layer: depthwise (one input
    channel per group), conv1x1, conv3x3 (any larger kernel), linear."""
    if weight.dim() == 2:
        return "linear"
    if groups > 1 and weight.shape[1] == 1:
        return "depthwise"
    return "conv1x1" if weight.shape[2] * weight.shape[3] == 1 else "conv3x3"


def unit_costs(sim: SimGraph, units: list[str], batch: int) -> dict[str, float]:
    """Float cost of each unit, in milliseconds per image on XNNPACK: the time its conv/linear ops
    would have saved in int8 (multiply-accumulates times the measured saving per op kind)."""

    cost = {u: 0.0 for u in units}
    for layer in layers(sim):
        out = layer.node.meta.get("val")
        if out is None:
            continue
        w = layer.point.weight
        per_out = w[0].numel()  # in_channels / groups * kh * kw, or in_features
        macs = out.numel() / batch * per_out
        saved = macs * saved_ms_per_mac(op_kind(w, layer.conv_args()[3] if layer.is_conv else 1))
        for u in units:
            if under(layer.path, u):
                cost[u] += saved
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

        out = set()
        for (name, paths, keep), cov in zip(self.points, self.covered):
            if keep or not paths or all(cov):
                continue
            if all(c or under(pth, module) for pth, c in zip(paths, cov)):
                out.add(name)
        return out

    def add(self, module: str) -> None:

        for (_, paths, _), cov in zip(self.points, self.covered):
            for i, pth in enumerate(paths):
                if not cov[i] and under(pth, module):
                    cov[i] = True


def rank_units(
    sim: SimGraph, units: list[str], point_sens: dict[str, float], cost: dict[str, float], coverage: float = 0.999
) -> list[tuple[str, float, float]]:
    """Modules in the order the search leaves them float: (module, marginal sensitivity, marginal
    cost), greedily by sensitivity removed per cost among ``candidates(units)``; a module's cost is
    its units' ``cost`` not yet float plus one float island (``island_ms``), so a block left float
    whole is charged one quantize/dequantize pair, not one per layer. Stops once ``coverage`` of the
    total sensitivity is removed or nothing sensitive is left."""
    total = sum(point_sens.values()) or 1.0
    cands = candidates(units)
    unit_of = {c: [u for u in units if u == c or u.startswith(c + ".")] for c in cands}
    cov = _Coverage(sim)
    island = island_ms()
    floated: set[str] = set()
    order, removed = [], 0.0
    while removed < coverage * total:
        best = None
        for c in cands:
            new_units = [u for u in unit_of[c] if u not in floated]
            if not new_units:
                continue
            gain = sum(point_sens.get(n, 0.0) for n in cov.would_remove(c))
            c_cost = sum(cost.get(u, 0.0) for u in new_units) + island
            score = gain / c_cost
            if gain > 0 and (best is None or score > best[0]):
                best = (score, c, gain, c_cost, new_units)
        if best is None:
            break
        _, c, gain, c_cost, new_units = best
        cov.add(c)
        floated.update(new_units)
        order.append((c, gain, c_cost - island))
        removed += gain
    return order


@dataclass
class SearchResult:
    """What the mixed-precision search chose and why."""

    float_units: list[str]
    agreement: float  # on the held-out images, with float_units float
    min_agreement: float  # the gate the counted agreement had to reach
    met: bool
    images: int  # held-out images the agreement was measured on
    evaluations: list[dict] = field(default_factory=list)  # {"float_units": k, "agreement": a, "cosine": c}
    order: list[str] = field(default_factory=list)  # the ranked units the prefix came from
    float_cost_fraction: float = 0.0  # share of the int8 time saving (unit_costs) forgone by float_units
    cosine: float | None = None  # mean logit cosine with the float model, with float_units float
    int8_left: list[str] = field(default_factory=list)  # unmet: activations int8 with every candidate float
    expected_flips: float | None = None  # on the held-out images, with float_units float
    max_expected_flips: float | None = None  # the most the stopping rule accepted there

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def score(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    """(top-1 agreement, mean cosine of the mean-centred logits, expected flips) of ``out`` against
    ``ref`` (the scores ``StopRule.accepts`` takes)."""
    a, b = out.double() - out.double().mean(1, keepdim=True), ref.double() - ref.double().mean(1, keepdim=True)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    return agreement(out, ref), float(cos.mean()), expected_flips(out, ref)


def bisect_prefix(
    order: list[str], evaluate, rule: StopRule, n: int, log=None, known: dict | None = None
) -> tuple[int, tuple, list[dict]]:
    """Smallest k whose ``evaluate(order[:k]) -> (agreement, cosine, expected flips)`` on ``n`` samples
    ``rule`` accepts, assuming acceptance only grows with k (the expected flips, which decide, fall
    nearly monotonically; the counted agreement jumps by near-ties, which is why it is only checked at
    the gate): galloping (k = 0, 1, 2, 4, ...) then bisection, so a short answer costs few evaluations;
    returns (k, its scores, evaluations). k = len(order) + 1 when even all miss. ``known``: scores
    already measured, by k."""
    evals: list[dict] = []
    seen: dict[int, tuple] = {}

    def ev(k: int) -> bool:
        if k not in seen:
            measured = k not in (known or {})
            seen[k] = tuple(evaluate(order[:k])) if measured else tuple(known[k])
            agree, cos, expected = seen[k]
            stopped = math.isinf(expected)  # gated_score gave up: too many counted flips
            evals.append(
                {"float_units": k, "agreement": agree, "cosine": cos, "expected_flips": None if stopped else expected}
            )
            if log and measured:
                log(
                    f"  {k} unit(s) float: "
                    + (
                        f"agreement at most {100 * agree:.2f}%, stopped early"
                        if stopped
                        else f"expected flips {expected:.2f}, agreement {100 * agree:.2f}%, cosine {cos:.4f}"
                    )
                )
        return rule.accepts(seen[k], n)

    if ev(0):
        return 0, seen[0], evals
    lo, hi, k = 0, None, 1
    while k < len(order):
        if ev(k):
            hi = k
            break
        lo, k = k, 2 * k
    if hi is None:
        hi = len(order)
        if not ev(hi):
            return hi + 1, seen[hi], evals
    while hi - lo > 1:  # ev(lo) misses, ev(hi) meets
        mid = (lo + hi) // 2
        if ev(mid):
            hi = mid
        else:
            lo = mid
    return hi, seen[hi], evals


def search(
    order: list[tuple[str, float, float]],
    evaluate,
    rule: StopRule,
    images: int,
    total_cost: float,
    log=None,
    known: dict | None = None,
) -> SearchResult:
    """The cheapest prefix of ``order`` (from ``rank_units``) that ``rule`` accepts on ``images`` samples."""
    names = [u for u, _, _ in order]
    k, (agree, cos, expected), evals = bisect_prefix(names, evaluate, rule, images, log, known)
    met = k <= len(names)
    prefix = names[: min(k, len(names))]
    cost = sum(c for u, _, c in order if u in prefix)
    # a module inside another chosen one adds nothing to the list
    chosen = [u for u in prefix if not any(u != o and u.startswith(o + ".") for o in prefix)]
    return SearchResult(
        chosen,
        agree,
        rule.gate,
        met,
        images,
        evals,
        names,
        round(cost / total_cost, 4) if total_cost else 0.0,
        cos,
        expected_flips=expected,
        max_expected_flips=rule.max_expected(images),
    )


def near_ties_first(ref: torch.Tensor) -> torch.Tensor:
    """Row order by float margin (top-1 minus runner-up), smallest first: the rows int8 flips first."""
    return torch.argsort(margins(ref, ref.argmax(-1)), stable=True)


def gated_score(run, x: torch.Tensor, ref: torch.Tensor, rule: StopRule, chunk: int = 64) -> tuple[float, float, float]:
    """``score(run(x), ref)``, computed ``chunk`` rows at a time and given up as soon as the counted flips
    exceed what ``rule``'s gate allows on all rows: then (the agreement those flips already cap,
    the partial cosine, infinite expected flips), which ``rule`` rejects as it would the full score.
    With rows in ``near_ties_first`` order a set that fails stops early, most prefixes below the
    answer do."""
    n = len(x)
    allowed = int(n * (1.0 - rule.gate) + 1e-9)
    outs, flips = [], 0
    for i in range(0, n, chunk):
        out = run(x[i : i + chunk])
        outs.append(out)
        flips += int((out.argmax(-1) != ref[i : i + chunk].argmax(-1)).sum())
        if flips > allowed and i + chunk < n:
            done = sum(len(o) for o in outs)
            return 1.0 - flips / n, score(torch.cat(outs), ref[:done])[1], math.inf
    return score(torch.cat(outs), ref)


def search_sim(
    model: nn.Module,
    quantizer,
    calib: torch.Tensor,
    heldout: torch.Tensor,
    rule: StopRule,
    batch: int = 8,
    sensitivity_images: int = 32,
    log=None,
) -> SearchResult:
    """The search for PT2E int8 (TFLite, Core ML): sensitivity, costs and agreement from a ``SimGraph``
    of ``model`` calibrated on ``calib``; agreement measured on ``heldout`` (model inputs)."""

    sim = build_sim(model, quantizer, calib, batch)
    with torch.no_grad():
        ref = torch.cat([model(heldout[i : i + batch]) for i in range(0, len(heldout), batch)])
    sens = point_sensitivity(sim, calib[: max(batch, sensitivity_images)], batch)
    units = layer_units(model)
    cost = unit_costs(sim, units, batch)
    order = rank_units(sim, units, sens, cost)

    rows = near_ties_first(ref)
    heldout, ref = heldout[rows], ref[rows]

    def evaluate(float_units) -> tuple[float, float, float]:
        sim.set_float(float_units)
        return gated_score(lambda x: sim.run(x, batch), heldout, ref, rule)

    try:
        return search(order, evaluate, rule, len(heldout), sum(cost.values()), log)
    finally:
        sim.set_float(())


def agreement(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Share of rows whose top-1 matches."""
    return float((out.argmax(-1) == ref.argmax(-1)).float().mean())


def margins(logits, top: torch.Tensor) -> torch.Tensor:
    """Each row's logit of class ``top`` minus its largest other logit (negative: ``top`` lost)."""
    x = torch.as_tensor(logits).double()
    rows = torch.arange(len(x))
    others = x.clone()
    others[rows, top] = -torch.inf
    return x[rows, top] - others.max(-1).values


def expected_flips(out, ref) -> float:
    """How many top-1 flips int8 logits ``out`` give against float ``ref`` in expectation, by a smooth
    estimate: every row's float margin (top-1 minus runner-up) shifted by every row's int8 error of
    the margin, ``sum_i mean_j Phi(-(m_i + e_j) / h)`` (a kernel estimate over the empirical error
    distribution, bandwidth ``h`` by Silverman's robust rule). A flip count on a few hundred rows moves by
    whole near-ties; this moves continuously with the logits, and a lucky draw of near-ties does not
    lower it. Using the observed errors rather than one Gaussian spread keeps the few rows that take
    much larger errors in the estimate (the int8 error of a trained model is heavy-tailed:
    benchmarks/results/int8_search.md, "Stopping on expected flips")."""
    out, ref = torch.as_tensor(out).double(), torch.as_tensor(ref).double()
    top = ref.argmax(-1)
    m_float = margins(ref, top)
    err = margins(out, top) - m_float
    if len(err) > 1:  # Silverman's bandwidth, robust to the heavy tail: the smaller of spread and IQR / 1.34
        q1, q3 = torch.quantile(err, torch.tensor([0.25, 0.75], dtype=err.dtype))
        spread = min(float(err.std(unbiased=False)), float(q3 - q1) / 1.34) or float(err.std(unbiased=False))
    else:
        spread = float(err.abs().sum())
    if spread == 0.0:
        return float((m_float + err < 0).sum())
    h = 0.9 * spread * len(err) ** -0.2
    total = 0.0
    for i in range(0, len(m_float), 1024):  # rows x rows in slices: bounded memory for large sets
        total += float(torch.special.ndtr(-(m_float[i : i + 1024, None] + err[None, :]) / h).mean(1).sum())
    return total


@dataclass(frozen=True)
class StopRule:
    """When a float set is good enough, on ``n`` search samples, for an int8 parity gate ``gate``.

    Accepted when (1) the expected flips (``expected_flips``) are at most ``share`` of the disagreement
    the gate allows, ``n * (1 - gate) * share`` (gate 99.5%, share 1/2: 2.5 per 1000 samples); (2) the
    counted agreement reaches the gate itself; (3) the mean logit cosine reaches ``min_cosine``. (1)
    decides in practice: it moves continuously with the model's logits, so rounding-level changes of
    the model and agreement's non-monotonicity in the number of float layers do not move the chosen
    set; (2) keeps a set the gate would reject on the search's own samples from being chosen.
    """

    gate: float
    share: float = 0.5
    min_cosine: float = -1.0

    def max_expected(self, n: int) -> float:
        """The most expected flips accepted on ``n`` samples."""
        return n * (1.0 - self.gate) * self.share

    def accepts(self, scores: tuple, n: int) -> bool:
        """Whether ``scores`` = (agreement, cosine, expected flips) on ``n`` samples meet the rule."""
        agree, cos, expected = scores
        return expected <= self.max_expected(n) + 1e-12 and agree >= self.gate - 1e-12 and cos >= self.min_cosine

    def describe(self, n: int) -> str:
        """The rule in words, for the search's first line."""
        return (
            f"<= {self.max_expected(n):.2f} expected flips ({1000 * (1 - self.gate) * self.share:.1f} per 1000) "
            f"and >= {100 * self.gate:.2f}% counted agreement"
        )


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
