"""Parity of a Core ML package (run by the reference interpreter) against the PyTorch model."""

from __future__ import annotations

import numpy as np
import torch

from .interpreter import Interpreter, as_program, scores

SOURCE_LABEL = "graph numerics from the mvit reference interpreter (numpy, coremltools MIL), not a device measurement"

# precision -> (interpreter mode, thresholds). Float thresholds from issue 7; the quantized ones
# compare top-1 with the float model on real images (min_agreement is an argument).
THRESHOLDS = {
    "fp32": {"mode": "fp32", "max_rel_err": 1e-5},
    "fp16": {"mode": "fp16", "max_rel_err": 5e-3, "min_cosine": 0.9999},
    "int8_weights": {"mode": "auto"},
    "w8a8": {"mode": "auto"},
}
ALIASES = {"float32": "fp32", "float16": "fp16", "w8": "int8_weights", "dynamic": "int8_weights", "int8": "w8a8"}


def compare(y: np.ndarray, ref: np.ndarray) -> dict:
    """Metrics of outputs ``y`` against reference ``ref`` (both [N, K]).

    max_rel_err = max |y - ref| / max |ref| over the batch (relative to the reference's scale, so it
    is not blown up by near-zero logits); cosine = the smallest per-sample cosine similarity;
    finite = no inf/nan in ``y``; top1_agreement = share of samples with the same argmax.
    """
    y, ref = np.asarray(y, np.float64).reshape(len(ref), -1), np.asarray(ref, np.float64).reshape(len(ref), -1)
    finite = bool(np.isfinite(y).all())
    with np.errstate(all="ignore"):
        err = np.abs(y - ref)
        scale = np.abs(ref).max()
        cos = (y * ref).sum(1) / (np.linalg.norm(y, axis=1) * np.linalg.norm(ref, axis=1))
    return {
        "max_abs_err": float(err.max()) if finite else float("inf"),
        "max_rel_err": float(err.max() / scale) if finite and scale > 0 else float("inf"),
        "cosine": float(np.nan_to_num(cos, nan=-1.0).min()),
        "finite": finite,
        "top1_agreement": float((y.argmax(1) == ref.argmax(1)).mean()),
        "n": int(len(ref)),
    }


def check_against_reference(
    program_path,
    torch_model,
    inputs,
    precision: str,
    *,
    coreml_inputs=None,
    min_agreement: float = 0.95,
    mode: str | None = None,
) -> dict:
    """Run the Core ML package with the reference interpreter and compare with the PyTorch model.

    ``program_path``: ``.mlpackage`` path, :class:`CoreMLProgram` or in-memory ``MLModel``.
    ``torch_model``: the *float* PyTorch model (eval mode) the package was exported from.
    ``inputs``: [N, C, H, W] float batch (numpy or torch), exactly what ``torch_model`` takes.
    ``coreml_inputs``: the same N samples as the package takes them, when that differs: for an image
    input, 0..255 RGB pixels, [N, 3, H, W] (see :func:`run`). Defaults to ``inputs``.
    ``precision``: "fp32" | "fp16" | "int8_weights" (alias "w8", "dynamic") | "w8a8" (alias "int8").
    ``mode``: interpreter mode override (default: fp32 -> "fp32", fp16 -> "fp16", quantized -> "auto").

    Pass criteria (all require finite outputs):
      fp32: max_rel_err <= 1e-5;  fp16: max_rel_err <= 5e-3 and cosine >= 0.9999 (fp16 emulation);
      int8_weights / w8a8: top1_agreement >= ``min_agreement`` with the float model; judge these on
      real images, random inputs say little about agreement.
    Returns the metrics of :func:`compare` plus precision, mode, thresholds, ``passed`` (bool),
    ``failures`` (list of reasons) and ``source`` (says these are interpreter numerics).
    """
    precision = ALIASES.get(precision, precision)
    if precision not in THRESHOLDS:
        raise ValueError(f"precision must be one of {sorted(THRESHOLDS) + sorted(ALIASES)}, got {precision!r}")
    thr = dict(THRESHOLDS[precision])
    run_mode = mode or thr.pop("mode")
    thr.pop("mode", None)
    if precision in ("int8_weights", "w8a8"):
        thr["min_top1_agreement"] = min_agreement

    x = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    cx = (
        x
        if coreml_inputs is None
        else (coreml_inputs.detach().cpu().numpy() if isinstance(coreml_inputs, torch.Tensor) else coreml_inputs)
    )
    if len(cx) != len(x):
        raise ValueError(f"{len(x)} torch inputs but {len(cx)} Core ML inputs")
    with torch.no_grad():
        ref = torch_model(torch.as_tensor(x, dtype=torch.float32))
    ref = ref.detach().cpu().numpy().reshape(len(x), -1)

    interp = Interpreter(as_program(program_path))
    prog = interp.program
    name = next(iter(prog.inputs))

    def sample(i):  # one sample as the program takes it: [1, ...] array, or a PIL image as it is
        s = cx[i]
        return s if hasattr(s, "convert") else np.asarray(s)[None]

    y = np.stack([scores(interp.execute({name: sample(i)}, run_mode), prog) for i in range(len(cx))])
    y = y.reshape(len(x), -1)
    if y.shape != ref.shape:
        raise ValueError(f"Core ML output {y.shape} vs PyTorch output {ref.shape}")

    m = compare(y, ref)
    failures = []
    if not m["finite"]:
        failures.append("non-finite outputs (inf/nan: fp16 overflow?)")
    if "max_rel_err" in thr and not m["max_rel_err"] <= thr["max_rel_err"]:
        failures.append(f"max_rel_err {m['max_rel_err']:.3g} > {thr['max_rel_err']:g}")
    if "min_cosine" in thr and not m["cosine"] >= thr["min_cosine"]:
        failures.append(f"cosine {m['cosine']:.6f} < {thr['min_cosine']}")
    if "min_top1_agreement" in thr and not m["top1_agreement"] >= thr["min_top1_agreement"]:
        failures.append(f"top-1 agreement {m['top1_agreement']:.4f} < {thr['min_top1_agreement']}")
    return {
        **m,
        "precision": precision,
        "mode": run_mode,
        "thresholds": thr,
        "passed": not failures,
        "failures": failures,
        "source": SOURCE_LABEL,
    }
