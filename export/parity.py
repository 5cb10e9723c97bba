"""Parity of an exported artifact with the float PyTorch model, on the same pixels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..model.contract import PreprocessContract
from ..model.preprocess import normalize_hwc_uint8
from ..quant.plan import DEFAULT_MIN_AGREEMENT, INT8_MIN_COSINE
from .runner import Runner

# Floors per precision. Agreement = same top-1 as the float model. An export gates int8 agreement at
# its --min-agreement (the budget the int8 plan was chosen for; this default).
THRESHOLDS = {
    "fp32": {"top1_agreement": 0.99, "cosine": 0.99999},
    "fp16": {"top1_agreement": 0.98, "cosine": 0.999},
    "dynamic": {"top1_agreement": 0.95, "cosine": 0.98},
    "int8": {"top1_agreement": DEFAULT_MIN_AGREEMENT, "cosine": INT8_MIN_COSINE},
}


@dataclass
class ParityReport:
    """Agreement metrics of one artifact against the float model."""

    n: int
    data: str  # where the images came from
    space: str  # "logits" or "log-probabilities"
    top1_agreement: float
    top5_overlap: float
    mean_abs_diff: float
    max_abs_diff: float
    cosine: float
    kl_mean: float
    float_accuracy: float | None = None
    artifact_accuracy: float | None = None
    thresholds: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    numerics: str = ""
    agreement_gated: bool = True  # False on generated images: top-1 there is often a near-tie
    # images whose top-1 changed, closest float decisions first: {"image", "float_top1", "artifact_top1",
    # "float_margin"} (float top-1 minus top-2, in ``space``); a margin near 0 is a near-tie
    changed: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def torch_logits(
    model: torch.nn.Module, pixels: np.ndarray, contract: PreprocessContract, batch: int = 16
) -> np.ndarray:
    """Float reference: the contract's normalisation, then the eager model."""
    outs = []
    with torch.no_grad():
        for i in range(0, len(pixels), batch):
            x = torch.from_numpy(normalize_hwc_uint8(pixels[i : i + batch], contract))
            outs.append(model(x).float().numpy())
    return np.concatenate(outs)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


MAX_CHANGED = 20  # images listed in ParityReport.changed


def compare(
    ref_logits: np.ndarray,
    out: np.ndarray,
    output_kind: str = "logits",
    labels: np.ndarray | None = None,
    precision: str = "fp32",
    data: str = "",
    numerics: str = "",
    gate_agreement: bool = True,
    floors: dict | None = None,
    names: list[str] | None = None,
) -> ParityReport:
    """Metrics of artifact scores ``out`` against float ``ref_logits`` (same images, same order).
    ``floors`` replaces some of the precision's ``THRESHOLDS`` (an export's --min-agreement);
    ``names`` label the images in ``changed`` (default: their index).

    ``gate_agreement=False`` reports top-1 agreement without failing on it: on generated images the
    float model's top-1 is often a near-tie, so agreement says little and only the logit metrics gate.
    """
    if out.shape != ref_logits.shape:
        raise ValueError(f"artifact output shape {out.shape} != float model output {ref_logits.shape}")
    ref_lp = _log_softmax(ref_logits.astype(np.float64))
    if output_kind == "probabilities":
        out_lp = np.log(np.clip(out.astype(np.float64), 1e-12, None))
        a, b, space = ref_lp, out_lp, "log-probabilities"
    else:
        out_lp = _log_softmax(out.astype(np.float64))
        a, b, space = ref_logits.astype(np.float64), out.astype(np.float64), "logits"
    k = min(5, ref_logits.shape[1])
    ref_top = np.argsort(-ref_logits, axis=1)[:, :k]
    out_top = np.argsort(-out, axis=1)[:, :k]
    overlap = np.mean([len(set(r) & set(o)) / k for r, o in zip(ref_top, out_top)])
    ac, bc = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    cos = (ac * bc).sum(1) / np.maximum(np.linalg.norm(ac, axis=1) * np.linalg.norm(bc, axis=1), 1e-12)
    p = np.exp(ref_lp)
    kl = (p * (ref_lp - out_lp)).sum(1)
    finite = bool(np.isfinite(out).all())
    rep = ParityReport(
        n=len(out),
        data=data,
        space=space,
        top1_agreement=float(np.mean(ref_top[:, 0] == out_top[:, 0])),
        top5_overlap=float(overlap),
        mean_abs_diff=float(np.abs(a - b).mean()),
        max_abs_diff=float(np.abs(a - b).max()),
        cosine=float(cos.mean()),
        kl_mean=float(kl.mean()),
        thresholds={
            k: v
            for k, v in dict(THRESHOLDS.get(precision, {}), **(floors or {})).items()
            if gate_agreement or k != "top1_agreement"
        },
        numerics=numerics,
        agreement_gated=gate_agreement,
    )
    top2 = np.sort(a, axis=1)[:, -2:] if a.shape[1] > 1 else np.concatenate([a, a], axis=1)
    margin = top2[:, 1] - top2[:, 0]
    changed = np.flatnonzero(ref_top[:, 0] != out_top[:, 0])
    rep.changed = [
        {
            "image": names[i] if names is not None else int(i),
            "float_top1": int(ref_top[i, 0]),
            "artifact_top1": int(out_top[i, 0]),
            "float_margin": round(float(margin[i]), 4),
        }
        for i in sorted(changed, key=lambda i: margin[i])[:MAX_CHANGED]
    ]
    if labels is not None:
        rep.float_accuracy = float(np.mean(ref_top[:, 0] == labels))
        rep.artifact_accuracy = float(np.mean(out_top[:, 0] == labels))
    if not finite:
        rep.failures.append("non-finite values in the artifact's output")
    for metric, floor in rep.thresholds.items():
        value = getattr(rep, metric)
        if value < floor:
            rep.failures.append(f"{metric} {value:.5f} < {floor}")
    return rep


def check_runner(
    runner: Runner,
    model: torch.nn.Module,
    pixels: np.ndarray,
    precision: str,
    labels: np.ndarray | None = None,
    data: str = "",
    ref: np.ndarray | None = None,
    gate_agreement: bool = True,
    floors: dict | None = None,
    names: list[str] | None = None,
) -> ParityReport:
    """Run ``pixels`` through the artifact and the float model (or use its precomputed ``ref``
    logits for the same pixels) and compare."""
    if ref is None:
        ref = torch_logits(model, pixels, runner.contract)
    out = runner.run(pixels)
    return compare(
        ref,
        out,
        runner.output.get("kind", "logits"),
        labels,
        precision,
        data,
        getattr(runner, "numerics", ""),
        gate_agreement,
        floors,
        names,
    )
