"""The int8 plan of an export: which layers stay float, and why (``Plan``), for a conversion route.

Backends ask ``int8_plan`` before converting. An explicit ``--keep-float`` list wins (``none``: all
int8); otherwise the mixed-precision search (``mvit.quant.search``) chooses, on held-out calibration
images, the cheapest float set meeting ``min_agreement``. Its result is cached beside the checkpoint
(``<name>.int8.json``, keyed by the checkpoint's SHA-256, the route and the budget), so a checkpoint
is searched once; the shipped model ships its result (how it was made: benchmarks/results/int8_search.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..model.data import AugmentConfig, augment_pixels
from . import QuantError
from .cache import PlanKey, QuantCache
from .pt2e import quantizer_for
from .ptq import Recipe, build_sim, fold_float
from .search import (
    SearchResult,
    StopRule,
    cache_key,
    gated_score,
    layer_units,
    load_cached,
    near_ties_first,
    rank_units,
    search,
    store,
    unit_costs,
)
from .sensitivity import point_sensitivity

if TYPE_CHECKING:
    from .options import Int8Options

ROUTES = ("pt2e", "onnxruntime-qdq")
DEFAULT_MIN_AGREEMENT = 0.995
INT8_MIN_COSINE = 0.95  # the int8 parity floor on the mean logit cosine; the search meets it too
HELDOUT_IMAGES = 256  # calibration-folder images after the calibration ones that the search measures on
# The search aims its expected flips at half the disagreement the gate allows: the gate is a finite-sample
# test on other images, and a set that only just meets the budget on ~200 search images failed it on the
# shipped model's val split (benchmarks/results/int8_search.md, "Search target" and "Stopping on expected
# flips"); the counted agreement on the search's samples must still reach the gate itself.
SEARCH_TARGET_SHARE = 0.5
# Each held-out image is also searched on mirrored: twice the samples near decision boundaries (agreement
# with the float model is measured, so a mirrored image need not keep its label).
SEARCH_MIRRORED = True
# Held-out images of the calibration folder are usually training images, on which a trained model is surer
# and int8 errs less than on photos it never saw, so a float set searched on them can fail on new photos.
# Seeded unseen-like views of them (random crops of 20-60% of the area, colour jitter, random mirror)
# stand in for new photos (benchmarks/results/int8_search.md, "Unseen-like samples", measures how well).
# Images of --search-data are taken as they are.
UNSEEN_LIKE = AugmentConfig(scale=(0.2, 0.6), brightness=0.3, contrast=0.3, saturation=0.3)
UNSEEN_LIKE_VIEWS = 2
UNSEEN_LIKE_SEED = 0
# Part of the cache key: results of another rule are searched again. "unseen-like": the samples of held-out
# calibration-folder images (``search_samples``); "expected-half": StopRule (expected
# flips at most half the gate's allowance, counted agreement at the gate); "xnnpack-time": the order ranks
# by the int8 time a float layer forgoes (mvit.quant.search.unit_costs).
SEARCH_RULE = "unseen-like+expected-half+xnnpack-time"
SEARCH_BATCH = 8
SEARCH_CALIB_IMAGES = 64  # the simulation's ranges come from the first ones (its calibration costs ~2 s/image)
RECIPE = "fold"  # the float-model rewrites the search and the exports share (mvit.quant.ptq.Recipe())
# What a route's simulation computes, where it changed since its first cached results: those are searched
# again. pt2e "shared-cat": one int8 range per concatenation, as TFLite runs it; "exact-input": the graph
# input quantized over its pixel range, not calibrated (mvit.quant.pt2e); "dataflow-fold": the LayerNorm
# affine fold follows the tensors (model.export_prep), so pre-norm blocks outside a Sequential (ViT) fold too;
# "xnnpack-graph": attention matmuls and residual adds int8, ranges shared through moves (mvit.quant.int8_graph).
ROUTE_REVISION = {"pt2e": "shared-cat+exact-input+dataflow-fold+xnnpack-graph"}


# Log records the search's imports emit that say nothing about the export (torchao's optional CUDA and
# MX kernels that a CPU install cannot load; torch's note that torchao registers an Enum as a pytree
# constant): (logger, start of the message) pairs dropped by ``quiet_imports``.
_IMPORT_NOISE = (
    ("torchao", "Failed to load "),
    ("torch.utils._pytree", "%s is an Enum subclass and is now natively supported"),
)


class _DropNoise(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_imports() -> None:
    """Drop the known irrelevant log lines of torchao's import (``_IMPORT_NOISE``), once per process;
    every other record of those loggers still prints."""
    for name, prefix in _IMPORT_NOISE:
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) and f.prefix == prefix for f in log.filters):
            log.addFilter(_DropNoise(prefix))


quiet_imports()  # before any export or benchmark imports torchao (they import this module first)


@dataclass
class Plan:
    """Layers an int8 export leaves float, where that choice came from, and the search behind it."""

    float_units: list[str]
    source: str  # "user", "user: none", "search", "cache", "no held-out images"
    min_agreement: float
    search: dict | None = None  # SearchResult.to_dict() (with provenance when cached)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def stop_rule(min_agreement: float) -> StopRule:
    """When the search stops for a parity gate of ``min_agreement`` (``mvit.quant.search.StopRule``)."""
    return StopRule(min_agreement, SEARCH_TARGET_SHARE, INT8_MIN_COSINE)


def search_samples(pixels: np.ndarray, unseen_like: bool = False) -> np.ndarray:
    """The search's samples from held-out images (N,H,W,3 uint8): the images, then their mirror images;
    ``unseen_like`` (images the model may have trained on): ``UNSEEN_LIKE_VIEWS`` augmented views of each
    (``UNSEEN_LIKE``), the same for the same images."""
    if len(pixels) == 0:
        return pixels
    if unseen_like:
        gen = torch.Generator().manual_seed(UNSEEN_LIKE_SEED)
        return np.concatenate([augment_pixels(pixels, UNSEEN_LIKE, gen) for _ in range(UNSEEN_LIKE_VIEWS)])
    if not SEARCH_MIRRORED:
        return pixels
    return np.concatenate([pixels, np.ascontiguousarray(pixels[:, :, ::-1])])


def search_cache_key(route: str, min_agreement: float) -> str:
    """The cache entry of ``route``'s search for a gate of ``min_agreement`` under this search rule."""
    revision = f"|{ROUTE_REVISION[route]}" if route in ROUTE_REVISION else ""
    return cache_key(route, min_agreement, f"{RECIPE}|{SEARCH_RULE}{revision}")


@dataclass
class SearchInputs:
    """What the search measures candidate float sets on: ``calib`` / ``heldout`` are model inputs (N first)
    for calibration and for the agreement the budget is measured on. ``evaluate(float_units) ->
    (agreement, cosine)`` measures a candidate on ``heldout`` in the route's own runtime (ONNX:
    onnxruntime); None measures it in the simulated PT2E graph. ``input_range``: the model input's value
    range over all pixels (``mvit.quant.pt2e.graph_input_range``), which the simulation quantizes
    exactly as the exports do."""

    calib: torch.Tensor
    heldout: torch.Tensor
    evaluate: Callable | None = None
    input_range: tuple[float, float] | None = None


def user_plan(options: Int8Options) -> Plan | None:
    """The plan an explicit float set makes (a ``--keep-float`` list, or every layer int8); None: search."""
    if options.all_int8:
        return Plan([], "user: none", options.min_agreement)
    if options.keep_float:
        return Plan(list(options.keep_float), "user", options.min_agreement)
    return None


def needs_search(route: str, options: Int8Options, checkpoint: Path | None, sha256: str | None) -> bool:
    """Whether ``int8_plan`` would search (no explicit float set, no cached result): the export then holds
    calibration-folder images out for it."""
    if user_plan(options) is not None:
        return False
    if checkpoint is None or not sha256:
        return True
    return load_cached(Path(checkpoint), sha256, search_cache_key(route, options.min_agreement)) is None


def int8_plan(
    route: str,
    model: nn.Module,
    options: Int8Options,
    search: SearchInputs | None = None,
    *,
    checkpoint: Path | None = None,
    sha256: str | None = None,
    cache: QuantCache | None = None,
    say=None,
) -> Plan:
    """The float set for ``model`` on ``route``: the one ``options`` give, else the cached search result,
    else searched to ``options.min_agreement`` on ``search`` (none: every layer int8, with a note).

    ``checkpoint`` + ``sha256`` enable the on-disk cache; ``cache`` shares the plan between the formats
    of one export run (``QuantCache.plans``).
    """
    if route not in ROUTES:
        raise QuantError(f"unknown int8 route {route!r}")
    min_agreement = options.min_agreement
    calib, heldout = (search.calib, search.heldout) if search is not None else (None, None)
    plan = user_plan(options)
    if plan is not None:
        return plan
    say = say or (lambda _m: None)
    key = search_cache_key(route, min_agreement)
    memo, memo_key = (cache if cache is not None else QuantCache()).plans, PlanKey(key, sha256)
    if memo_key in memo:
        return memo[memo_key]
    if checkpoint is not None and sha256:
        hit = load_cached(Path(checkpoint), sha256, key)
        if hit is not None:
            plan = Plan(hit.float_units, "cache", min_agreement, hit.to_dict())
            memo[memo_key] = plan
            return plan
    if heldout is None or len(heldout) == 0 or calib is None:
        plan = Plan(
            [],
            "no held-out images",
            min_agreement,
            notes=[
                "no held-out calibration images to search a float set on (give --calib with more "
                f"images than --calib-count, {HELDOUT_IMAGES} more are used): every layer int8"
            ],
        )
        memo[memo_key] = plan
        return plan
    t0 = time.perf_counter()
    rule, n = stop_rule(min_agreement), len(heldout)
    say(f"searching the int8 float set for {rule.describe(n)} on {n} held-out samples ({route}) ...")
    result = search_route(route, model, search, rule, say)
    say(
        f"search done in {time.perf_counter() - t0:.0f} s: {len(result.float_units)} layer(s) float, "
        f"expected flips {result.expected_flips:.2f}, agreement {100 * result.agreement:.2f}%"
    )
    if not result.met:
        left = result.int8_left
        still = (
            f"; int8 even then: {', '.join(left[:6])}" + (f" and {len(left) - 6} more" if len(left) > 6 else "")
            if left
            else ""
        )
        reached = (
            f"agreement at most {100 * result.agreement:.2f}%"
            if result.expected_flips == float("inf")
            else f"{result.expected_flips:.2f} expected flips, {100 * result.agreement:.2f}% agreement "
            f"(cosine {result.cosine:.3f})"
        )
        raise QuantError(
            f"int8 ({route}) cannot reach {rule.describe(n)} with the float model on {n} held-out "
            f"samples (the search's rule for a {100 * min_agreement:.1f}% gate): {reached} with every "
            f"candidate layer float{still}; lower --min-agreement or export fp16"
        )
    plan = Plan(result.float_units, "search", min_agreement, result.to_dict())
    if checkpoint is not None and sha256:
        try:
            path = store(
                Path(checkpoint),
                sha256,
                key,
                result,
                {
                    "calibration_images": int(len(calib)),
                    "heldout_images": int(len(heldout)),
                    "simulation_calibration_images": int(min(len(calib), SEARCH_CALIB_IMAGES)),
                    "seconds": round(time.perf_counter() - t0, 1),
                },
            )
            plan.notes.append(f"search result cached in {path}")
        except OSError as e:
            plan.notes.append(f"search result not cached ({e.strerror})")
    memo[memo_key] = plan
    return plan


def search_simulation(
    model: nn.Module,
    calib: torch.Tensor,
    input_range: tuple[float, float] | None = None,
    recipe=None,
    method: str = "histogram",
):
    """The simulated PT2E int8 graph the search measures TFLite / Core ML / ExecuTorch candidates in
    (``mvit.quant.sim.SimGraph``), calibrated on the first ``SEARCH_CALIB_IMAGES`` of ``calib``, the
    input quantized over ``input_range`` (as the exports do; None: calibrated). ``recipe``: the float
    rewrites (default ``mvit.quant.ptq.Recipe()``, what the exports use; others for measurements);
    ``method``: the calibration method (``mvit.quant.pt2e.CALIB_METHODS``; the exports' default)."""

    calib = calib[:SEARCH_CALIB_IMAGES]
    folded, _ = fold_float(model, recipe or Recipe(), calib, SEARCH_BATCH)
    return build_sim(folded, quantizer_for(folded, method, input_range=input_range), calib, SEARCH_BATCH)


def search_route(route: str, model: nn.Module, inputs: SearchInputs, rule: StopRule, say=None) -> SearchResult:
    """Run the search for ``route`` on ``inputs`` until ``rule`` accepts (see ``int8_plan``): every layer
    int8 first; only when that misses, the simulation's sensitivity ranking and the bisection."""

    calib, heldout, evaluate, input_range = (
        inputs.calib[:SEARCH_CALIB_IMAGES],
        inputs.heldout,
        inputs.evaluate,
        inputs.input_range,
    )
    sims = []

    def simulation():
        if not sims:
            sims.append(search_simulation(model, calib, input_range))
        return sims[0]

    simulated = evaluate is None
    if simulated:
        with torch.no_grad():
            ref = torch.cat([model(heldout[i : i + SEARCH_BATCH]) for i in range(0, len(heldout), SEARCH_BATCH)])

        rows = near_ties_first(ref)
        samples, ref = heldout[rows], ref[rows]

        def evaluate(float_units) -> tuple[float, float, float]:
            sim = simulation()
            sim.set_float(float_units)
            return gated_score(lambda x: sim.run(x, SEARCH_BATCH), samples, ref, rule)

    log = (lambda m: say(m)) if say else None
    n = len(heldout)
    first = tuple(evaluate(()))
    if log:
        log(
            f"  every layer int8: agreement at most {100 * first[0]:.2f}%, stopped early"
            if first[2] == float("inf")
            else f"  every layer int8: expected flips {first[2]:.2f}, agreement {100 * first[0]:.2f}%, "
            f"cosine {first[1]:.4f}"
        )
    if rule.accepts(first, n):
        return SearchResult(
            [],
            first[0],
            rule.gate,
            True,
            n,
            [{"float_units": 0, "agreement": first[0], "cosine": first[1], "expected_flips": first[2]}],
            [],
            0.0,
            first[1],
            expected_flips=first[2],
            max_expected_flips=rule.max_expected(n),
        )
    sim = simulation()
    sens = point_sensitivity(sim, calib[: max(SEARCH_BATCH, 32)], SEARCH_BATCH)
    units = layer_units(model)
    cost = unit_costs(sim, units, SEARCH_BATCH)
    order = rank_units(sim, units, sens, cost)
    result = search(order, evaluate, rule, n, sum(cost.values()), log, known={0: first})
    if not result.met and simulated:  # what the simulation still ran in int8: the ops no layer choice covers
        sim.set_float(result.order)
        result.int8_left = sim.int8_tensors()
        sim.set_float(())
    return result


def describe(plan: Plan, route: str) -> str:
    """One line naming the float set of ``plan`` and where it came from."""
    units = ", ".join(plan.float_units) or "none (every layer int8)"
    how = {
        "search": "searched",
        "cache": "cached search result",
        "user": "--keep-float",
        "user: none": "--keep-float none",
    }.get(plan.source, plan.source)
    extra = ""
    if plan.search and plan.source in ("search", "cache"):
        s = plan.search
        expected = s.get("expected_flips")
        extra = (
            f"; {expected:.2f} expected flips (at most {s['max_expected_flips']:.2f}), "
            if expected is not None
            else "; "
        ) + (
            f"{100 * s['agreement']:.2f}% agreement on {s['images']} held-out samples "
            f"(gate {100 * plan.min_agreement:.1f}%)"
        )
    return f"int8 float layers ({route}, {how}): {units}{extra}"
