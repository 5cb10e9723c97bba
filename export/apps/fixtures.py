"""Golden fixtures for the demo apps: "accurate in Python, wrong on the phone" must fail a test.

The Android ``core`` module (JUnit) and the iOS ``ClassifierCore`` package (XCTest) read the files
written here and check their own frame conversion, rotation, resize, centre crop, normalisation,
channel order, layout, (de)quantisation, softmax and top-k against the one Python implementation
of the preprocessing contract (``model/preprocess.py``). Nothing in this module re-implements the
contract: every expected pixel and tensor comes from ``pixels_uint8`` / ``normalize_hwc_uint8``.

What is written to ``out_dir`` (all small, deterministic, commit-ready):

* ``<image>.png|.jpg`` - a handful of synthetic images (non-square, greyscale, tiny/upscaled,
  high-frequency to exercise the antialiasing of PIL's downscale, one JPEG with EXIF orientation);
* ``<image>.rgba`` - the *decoded* pixels as stored in the file (before EXIF rotation), raw RGBA,
  row-major, ``width * height * 4`` bytes. App tests start from these bytes, never from their own
  PNG/JPEG decoder (platform decoders differ from PIL's);
* ``<frame>.yuv`` - synthetic camera frames in YUV_420_888 layout (planar and interleaved chroma,
  padded rows) with the plane offsets/strides in ``fixtures.json``;
* ``model_meta_*.json`` - example artifact metadata (float NHWC, int8 NHWC, uint8 raw-pixel input);
* ``fixtures.json`` - everything expected, see ``FIXTURE_SCHEMA``;
* ``shipped_models.json`` - the models installed in the apps (``SHIPPED_SCHEMA``): for each artifact
  (by sha256) and a few fixture images, the preprocessing checksums at its own contract (read from
  the installed ``model_meta.json``), its raw output and the top-3 after the apps' post-processing.
  Written by ``write_shipped_fixtures`` (``python -m mvit.export.apps.fixtures --shipped``; ``mvit-export
  --app`` runs it after installing); tests/test_shipped_fixtures.py re-runs the artifacts and fails
  when an installed model no longer matches its recorded cases.

Exactness: the apps implement PIL's separable, fixed-point convolution resampling (bilinear/bicubic
with antialiasing support scaled by the downscale factor, 22 fractional bits) and PIL's affine
nearest-neighbour sampling, so the resized and cropped uint8 pixels must match *exactly*; so must
everything after them (float32 normalisation is bit-exact in IEEE single precision, quantisation
uses round-half-to-even). ``TOLERANCES`` documents the only allowed slack (sums of floats).

The benchmark modes of both apps run on one of these images (``BENCHMARK_IMAGE``), installed into
the apps' model folders as ``benchmark_input.rgba`` + ``benchmark_input.json``
(``write_benchmark_inputs``), so a phone's top-3 can be compared with the recorded cases.

CLI: ``python -m mvit.export.apps.fixtures`` regenerates the committed copies in both apps and their
benchmark inputs (``--shipped``: only the installed models' cases, ``--no-shipped``: only the synthetic ones).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ...model.contract import PreprocessContract
from ...model.preprocess import load_rgb, normalize_hwc_uint8, pixels_uint8
from ..api import load_artifact_runner
from ..backends import get_backend
from .slots import APPS, REPO

FIXTURE_SCHEMA = "mvit.app_fixtures/1"
APP_FIXTURE_DIRS = (
    REPO / "android_demo" / "core" / "src" / "test" / "resources" / "golden",
    REPO / "ios_demo" / "ClassifierCore" / "Tests" / "ClassifierCoreTests" / "Resources" / "golden",
)

TOLERANCES = {
    "pixels_uint8": 0,  # every resized/cropped pixel, exact
    "tensor_float_abs": 0.0,  # sampled float32 values, exact (IEEE single precision, same op order)
    "tensor_sum_rel": 1e-9,  # float64 sum of the float32 tensor (summation order may differ)
    "quantized": 0,  # int8/uint8 values, exact (round half to even, clamp)
    "probability_abs": 1e-6,  # softmax outputs
    # Shipped-model cases (shipped_models.json): re-running an artifact on another CPU.
    "model_output_float_abs": 1e-3,  # float TFLite logits (XNNPACK kernels differ per CPU)
    "model_output_quantized_steps": 1,  # int8/uint8 outputs, in quantisation steps
    "coreml_probability_abs": 5e-3,  # Core ML probabilities from the reference interpreter
    # W8A8 Core ML: a different summation order (BLAS threads, CPU) can move one activation across an
    # fp16 rounding boundary and so by a whole int8 step; measured 0.0116 between two interpreter builds.
    "coreml_int8_probability_abs": 3e-2,
}

# Small contracts: the fixture JSON stays small while covering every option of the contract.
FIXTURE_CONTRACTS: dict[str, PreprocessContract] = {
    "bilinear_24x32_meanstd_rgb": PreprocessContract(
        input_size=(24, 32),
        crop_fraction=1.0,
        interpolation="bilinear",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        channel_order="RGB",
    ),
    "bicubic_24x24_crop0875_bgr": PreprocessContract(
        input_size=(24, 24), crop_fraction=0.875, interpolation="bicubic", channel_order="BGR"
    ),
    "nearest_16x20_crop09_half": PreprocessContract(
        input_size=(16, 20), crop_fraction=0.9, interpolation="nearest", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    ),
}

QUANT_PARAMS = {
    "int8": {"scale": 0.02, "zero_point": -5},
    "uint8": {"scale": 0.025, "zero_point": 120},
}


# --------------------------------------------------------------------------------------------
# helpers (checksums the Kotlin/Swift tests re-implement in a few lines)


def fnv1a32(data: bytes) -> int:
    """32-bit FNV-1a of ``data`` (trivial to reproduce in Kotlin and Swift)."""
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """``q = clamp(round_half_even(x / scale) + zero_point)`` in float32, as the apps do it."""
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    q = np.rint(x.astype(np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, lo, hi).astype(np.int8 if dtype == "int8" else np.uint8)


def dequantize(values: np.ndarray, q: dict | None) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32, as the apps do it; float outputs pass through."""
    if q is None:
        return np.asarray(values, np.float32)
    return (np.asarray(values).astype(np.float32) - np.float32(q["zero_point"])) * np.float32(q["scale"])


def softmax(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64) - np.max(x)
    e = np.exp(z)
    return e / e.sum()


def top_k(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k largest scores; ties broken by the lower index (the apps do the same)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return order[:k]


def sample_indices(h: int, w: int, n: int = 12) -> list[list[int]]:
    """Fixed (c, y, x) indices: corners, centre and a deterministic LCG spread."""
    pts = [(0, 0, 0), (1, 0, w - 1), (2, h - 1, 0), (0, h - 1, w - 1), (1, h // 2, w // 2)]
    state = 12345
    while len(pts) < n:
        state = (1103515245 * state + 12345) & 0x7FFFFFFF
        c = state % 3
        state = (1103515245 * state + 12345) & 0x7FFFFFFF
        y = state % h
        state = (1103515245 * state + 12345) & 0x7FFFFFFF
        x = state % w
        pts.append((c, y, x))
    return [list(p) for p in pts]


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


# --------------------------------------------------------------------------------------------
# synthetic images


def _synthetic_images() -> dict[str, Image.Image]:
    """Deterministic small images (no randomness beyond a seeded generator)."""
    rng = np.random.default_rng(20240607)
    out: dict[str, Image.Image] = {}

    h, w = 30, 40
    yy, xx = np.mgrid[0:h, 0:w]
    grad = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (w + h - 2)], -1)
    out["gradient_40x30.png"] = Image.fromarray(grad.astype(np.uint8), "RGB")

    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w]
    checker = (((xx // 3) + (yy // 3)) % 2) * 200 + 20
    img = np.stack([checker, (xx * 7 + yy * 3) % 256, 255 - checker // 2], -1).astype(np.uint8)
    img[60:140, 100:220] = rng.integers(0, 256, size=(80, 120, 3), dtype=np.uint8)
    out["checker_300x200.png"] = Image.fromarray(img, "RGB")

    h, w = 80, 64
    yy, xx = np.mgrid[0:h, 0:w]
    grey = ((np.sin(xx / 3.0) + np.cos(yy / 5.0)) * 60 + 128).clip(0, 255).astype(np.uint8)
    out["grey_64x80.png"] = Image.fromarray(grey, "L")

    tiny = rng.integers(0, 256, size=(14, 20, 3), dtype=np.uint8)
    out["tiny_20x14.png"] = Image.fromarray(tiny, "RGB")

    h, w = 36, 48
    yy, xx = np.mgrid[0:h, 0:w]
    arrow = np.zeros((h, w, 3), np.uint8)
    arrow[..., 0] = xx * 5
    arrow[..., 1] = yy * 7
    arrow[:6, :] = (255, 255, 0)  # a bar on the stored top edge: rotation shows
    arrow[..., 2] = 90
    out["exif_rot6_48x36.jpg"] = Image.fromarray(arrow, "RGB")
    return out


def _save(img: Image.Image, path: Path) -> None:
    if path.suffix == ".jpg":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
        img.save(path, "JPEG", quality=92, exif=exif.tobytes())
    else:
        img.save(path, "PNG")


def _stored_rgba(path: Path) -> tuple[np.ndarray, int]:
    """Decoded pixels as stored (no EXIF transpose) and the clockwise rotation that displays them."""
    with Image.open(path) as im:
        im.load()
        orientation = im.getexif().get(0x0112, 1)
        rgba = np.asarray(im.convert("RGB").convert("RGBA"), dtype=np.uint8)
    rotation = {1: 0, 3: 180, 6: 90, 8: 270}.get(orientation)
    if rotation is None:
        raise ValueError(f"{path.name}: fixture images use orientations 1/3/6/8 only")
    return rgba, rotation


# --------------------------------------------------------------------------------------------
# YUV_420_888 camera frames


# Full-range BT.601 (JFIF), 16.16 fixed point, floor shifts: the formula the apps implement.
def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    y = y.astype(np.int64)
    u = u.astype(np.int64) - 128
    v = v.astype(np.int64) - 128
    r = y + ((91881 * v + 32768) >> 16)
    g = y + ((-22554 * u - 46802 * v + 32768) >> 16)
    b = y + ((116130 * u + 32768) >> 16)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def _make_yuv_frame(rgb: np.ndarray, layout: str, row_pad: int):
    """Encode an RGB frame as YUV_420_888 bytes with the given chroma layout and padded rows."""
    h, w = rgb.shape[:2]
    f = rgb.astype(np.float64)
    yv = np.clip(np.rint(0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]), 0, 255)
    sub = f.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    uv = np.clip(np.rint(-0.168736 * sub[..., 0] - 0.331264 * sub[..., 1] + 0.5 * sub[..., 2] + 128), 0, 255)
    vv = np.clip(np.rint(0.5 * sub[..., 0] - 0.418688 * sub[..., 1] - 0.081312 * sub[..., 2] + 128), 0, 255)
    yv, uv, vv = yv.astype(np.uint8), uv.astype(np.uint8), vv.astype(np.uint8)
    y_stride = w + row_pad
    buf = bytearray(y_stride * h)
    for r in range(h):
        buf[r * y_stride : r * y_stride + w] = yv[r].tobytes()
    planes = {"y": {"offset": 0, "row_stride": y_stride, "pixel_stride": 1}}
    if layout == "i420":  # planar chroma, pixel stride 1
        c_stride = w // 2 + row_pad
        for name, plane in (("u", uv), ("v", vv)):
            off = len(buf)
            cbuf = bytearray(c_stride * (h // 2))
            for r in range(h // 2):
                cbuf[r * c_stride : r * c_stride + w // 2] = plane[r].tobytes()
            buf += cbuf
            planes[name] = {"offset": off, "row_stride": c_stride, "pixel_stride": 1}
    elif layout == "nv21":  # interleaved V,U (what most Android cameras deliver), pixel stride 2
        c_stride = w + row_pad
        off = len(buf)
        cbuf = bytearray(c_stride * (h // 2))
        for r in range(h // 2):
            inter = np.stack([vv[r], uv[r]], -1).reshape(-1)  # V0 U0 V1 U1 ...
            cbuf[r * c_stride : r * c_stride + w] = inter.tobytes()
        buf += cbuf
        planes["v"] = {"offset": off, "row_stride": c_stride, "pixel_stride": 2}
        planes["u"] = {"offset": off + 1, "row_stride": c_stride, "pixel_stride": 2}
    else:
        raise ValueError(layout)
    # Decode exactly as the apps do (nearest chroma sample per 2x2 block).
    ys = np.frombuffer(bytes(buf), np.uint8)

    def plane_at(p, ph, pw):
        idx = p["offset"] + np.arange(ph)[:, None] * p["row_stride"] + np.arange(pw)[None, :] * p["pixel_stride"]
        return ys[idx]

    y_full = plane_at(planes["y"], h, w)
    u_half = plane_at(planes["u"], h // 2, w // 2)
    v_half = plane_at(planes["v"], h // 2, w // 2)
    u_full = np.repeat(np.repeat(u_half, 2, 0), 2, 1)
    v_full = np.repeat(np.repeat(v_half, 2, 0), 2, 1)
    return bytes(buf), planes, yuv_to_rgb(y_full, u_full, v_full)


# --------------------------------------------------------------------------------------------
# expected values


def _tensor_record(pixels: np.ndarray, contract: PreprocessContract, full_pixels: bool) -> dict:
    h, w = contract.input_size
    t = normalize_hwc_uint8(pixels, contract)  # CHW float32, channel order applied
    idx = sample_indices(h, w)
    rec = {
        "pixels_shape": list(pixels.shape),
        "pixels_sum": int(pixels.astype(np.int64).sum()),
        "pixels_fnv1a32": fnv1a32(pixels.tobytes()),
        "tensor_sum": float(t.astype(np.float64).sum()),
        "tensor_fnv1a32": fnv1a32(t.astype("<f4").tobytes()),
        "samples": [{"chw": i, "value": float(t[i[0], i[1], i[2]])} for i in idx],
        "quantized": {},
    }
    if full_pixels:
        rec["pixels_b64"] = _b64(pixels)
    for dtype, qp in QUANT_PARAMS.items():
        q = quantize(t, qp["scale"], qp["zero_point"], dtype)
        rec["quantized"][dtype] = {
            **qp,
            "sum": int(q.astype(np.int64).sum()),
            "fnv1a32": fnv1a32(q.tobytes()),  # NCHW bytes
            "samples": [int(q[i[0], i[1], i[2]]) for i in idx],
        }
    return rec


def _geometry(width: int, height: int, contract: PreprocessContract) -> dict:
    """Where the crop lies (mirrors ``resize_and_crop``; the Kotlin test proves it pixel-exactly)."""
    h_out, w_out = contract.input_size
    scale = contract.resize_short / min(width, height)
    new_w = max(w_out, int(round(width * scale)))
    new_h = max(h_out, int(round(height * scale)))
    return {
        "resized_width": new_w,
        "resized_height": new_h,
        "left": (new_w - w_out) // 2,
        "top": (new_h - h_out) // 2,
        "width": w_out,
        "height": h_out,
    }


def _postprocess_cases() -> list[dict]:
    """Output decoding cases: logits/probabilities, float and quantized outputs, ties."""
    cases = []
    labels = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]
    raw = [
        ("float_logits", np.array([1.5, -0.25, 3.0, 0.0, 2.75, -4.0], np.float32), None, "logits"),
        ("float_logits_tie", np.array([2.0, 2.0, -1.0, 2.0, 0.5, 0.5], np.float32), None, "logits"),
        ("float_probabilities", np.array([0.05, 0.1, 0.05, 0.6, 0.15, 0.05], np.float32), None, "probabilities"),
        ("int8_logits", np.array([-40, 17, 90, -128, 127, 3], np.int8), {"scale": 0.0625, "zero_point": -10}, "logits"),
        (
            "uint8_probabilities",
            np.array([0, 12, 200, 30, 13, 0], np.uint8),
            {"scale": 1 / 256, "zero_point": 0},
            "probabilities",
        ),
        ("float_logits_large", np.array([1000.0, 999.0, -1000.0, 998.5, 0.0, 1.0], np.float32), None, "logits"),
    ]
    for name, values, qp, kind in raw:
        deq = dequantize(values, qp)
        probs = softmax(deq) if kind == "logits" else deq.astype(np.float64)
        top = top_k(probs, 3)
        cases.append(
            {
                "name": name,
                "dtype": str(values.dtype),
                "values": [v.item() for v in values],
                "quantization": qp,
                "kind": kind,
                "dequantized": [float(v) for v in deq],
                "probabilities": [float(p) for p in probs],
                "top3": [{"index": i, "label": labels[i], "score": float(probs[i])} for i in top],
            }
        )
    return cases


def example_model_meta(
    variant: str = "float", contract: PreprocessContract | None = None, labels: Sequence[str] | None = None
) -> dict:
    """A ``model_meta.json`` document (docs/model_meta.md) for the fixtures and installer tests."""
    contract = contract or PreprocessContract()
    labels = list(labels or ["cardboard", "glass", "metal", "paper", "plastic", "trash"])
    h, w = contract.input_size
    nhwc = [1, h, w, 3]
    inp = {
        "name": "image",
        "shape": nhwc,
        "layout": "NHWC",
        "dtype": "float32",
        "quantization": None,
        "normalization_in_model": False,
    }
    out = {"name": "logits", "shape": [1, len(labels)], "dtype": "float32", "quantization": None, "kind": "logits"}
    precision = "fp32"
    if variant == "int8":
        inp.update(dtype="int8", quantization={"scale": 1 / 255, "zero_point": -128})
        out.update(dtype="int8", quantization={"scale": 0.0625, "zero_point": -10})
        precision = "int8"
    elif variant == "uint8_raw":
        inp.update(dtype="uint8", quantization={"scale": 1.0, "zero_point": 0}, normalization_in_model=True)
        out.update(dtype="uint8", quantization={"scale": 1 / 256, "zero_point": 0}, kind="probabilities")
        precision = "int8"
    elif variant != "float":
        raise ValueError(f"unknown variant {variant!r}")
    return {
        "schema": "mvit.model_meta/1",
        "architecture": "mobilevit_xxs",
        "num_classes": len(labels),
        "labels": labels,
        "preprocess": contract.to_dict(),
        "input": inp,
        "output": out,
        "format": "tflite",
        "precision": precision,
        "quantization_details": {},
        "source_checkpoint_sha256": "0" * 64,
        "mvit_version": "0.1.0",
    }


# --------------------------------------------------------------------------------------------
# shipped models: the artifacts installed in the apps (shipped_models.json)

SHIPPED_FILE = "shipped_models.json"
SHIPPED_SCHEMA = "mvit.app_fixtures.shipped/1"
SHIPPED_COMMAND = "python -m mvit.export.apps.fixtures --shipped"
INTERPRETED_IMAGES = 3  # models whose runner is a reference interpreter (Core ML): seconds per image
SHIPPED_NOTES = {
    "what": "for each model installed in a demo app and a few fixture images (fixtures.json images): "
    "the preprocessing at the model's own contract, the artifact's raw output and the top-3 "
    "the app must show",
    "meta": "the installed model_meta.json, verbatim; artifact_sha256/meta_sha256 identify the installed files",
    "sha256": "a file's sha256; for an .mlpackage folder, sha256 over sorted lines "
    "'relative/path\\0<sha256 of the file>\\n'",
    "input": "fnv1a32 over the native input tensor's little-endian bytes, in the metadata's layout and "
    "dtype: exactly what the app feeds the model",
    "output": "values: the artifact's raw output (int8/uint8 as stored); quantization: the metadata's "
    "output.quantization, which the app reads (output_quantization_in_artifact: the tensor's own)",
    "scores": "dequantised in float32, then softmax when output.kind is logits; top3 ties go to the lower index",
    "stable_top3": "false when neighbouring top-4 outputs are within twice the re-run tolerance (another "
    "CPU may order them differently)",
    "coreml": "Core ML outputs come from mvit's numpy reference interpreter fed with the contract's PIL "
    "resize (graph numerics, not a device measurement); on the phone Vision does the resize",
    "regenerate": SHIPPED_COMMAND + " (mvit-export --app runs it after installing)",
}


def shipped_command(app: str | None = None) -> str:
    """The one command that regenerates the shipped-model cases (of one app's models)."""
    return SHIPPED_COMMAND + (f" --app {app}" if app else "")


def artifact_sha256(path) -> str:
    """sha256 of a file, or of a folder (``.mlpackage``) over its files' relative paths and hashes."""
    path = Path(path)
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path)
        if not any(part.startswith(".") for part in rel.parts):  # .DS_Store and friends
            h.update(f"{rel.as_posix()}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def _rel(path, root) -> str:
    return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()


def installed_models(root=REPO) -> list[dict]:
    """The models installed in the demo apps: app, variant, format, artifact and metadata paths."""
    found = []
    for app, spec in APPS.items():
        for variant, (model_name, meta_name) in spec["names"].items():
            artifact, meta = Path(root) / spec["dir"] / model_name, Path(root) / spec["dir"] / meta_name
            if artifact.exists() and meta.is_file():
                found.append(
                    {"app": app, "variant": variant, "format": spec["format"], "artifact": artifact, "meta": meta}
                )
    return found


def output_tolerance(kind: str, dtype: str, precision: str = "fp32") -> float:
    """How far a re-run's raw output (``kind``: logits or probabilities) may be from the recorded one
    (``TOLERANCES``), in raw units. Probabilities come from Core ML's reference interpreter, the only
    format whose artifact ends in a softmax."""
    if dtype in ("int8", "uint8"):
        return float(TOLERANCES["model_output_quantized_steps"])
    if kind == "probabilities":
        return TOLERANCES["coreml_int8_probability_abs" if precision == "int8" else "coreml_probability_abs"]
    return TOLERANCES["model_output_float_abs"]


def load_shipped_runner(artifact, meta: dict):
    """The artifact's runner, reproducible (``Runner.reproducible``: the same numbers on every machine).

    Refuses an artifact whose embedded metadata disagrees with the installed ``meta`` on anything
    the app reads, since the app would then feed or decode the model wrongly.
    """

    runner = load_artifact_runner(artifact).reproducible()
    for key in ("labels", "preprocess", "input", "output"):
        if runner.meta.get(key) != meta.get(key):
            raise ValueError(
                f"{artifact}: the artifact's embedded metadata differs from the installed "
                f"model_meta.json in {key!r}; reinstall the model"
            )
    return runner


def tensor_output_quantization(runner) -> dict | None:
    """The output tensor's own quantisation as stored in a .tflite (None elsewhere or when float)."""
    interp = getattr(runner, "interpreter", None)
    if interp is None:
        return None
    scale, zero_point = interp.get_output_details()[0]["quantization"]
    return {"scale": float(scale), "zero_point": int(zero_point)} if scale else None


def input_fnv1a32(native: np.ndarray) -> int:
    """``fnv1a32`` of a native model input's little-endian bytes (what the apps hash)."""
    return fnv1a32(np.ascontiguousarray(native, dtype=native.dtype.newbyteorder("<")).tobytes())


def run_shipped(runner, meta: dict, image_path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image through an artifact at its contract: (pixels HWC, native input batch, raw output row)."""
    pixels = pixels_uint8(image_path, PreprocessContract.from_dict(meta["preprocess"]))
    native = runner.prepare(pixels[None])
    return pixels, native, np.asarray(runner.invoke(native))[0]


def stable_top3(raw: np.ndarray, tol: float) -> bool:
    """True when the top-4 raw outputs are pairwise more than ``2 * tol`` apart (a re-run keeps the order)."""
    top = np.sort(np.asarray(raw, np.float64))[::-1][:4]
    return bool(np.all(top[:-1] - top[1:] > 2 * tol))


def decode_output(raw: np.ndarray, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Raw artifact output -> (dequantised float32, probabilities), as the apps do it."""
    out = meta["output"]
    q = out.get("quantization") if out["dtype"] in ("int8", "uint8") else None
    deq = dequantize(raw, q)
    scores = softmax(deq) if out.get("kind", "logits") == "logits" else deq.astype(np.float64)
    return deq, scores


def _shipped_case(runner, meta: dict, image: dict, path: Path) -> dict:
    """One fixture image through one shipped artifact: pixels, native input, raw output, top-3."""
    pixels, native, raw = run_shipped(runner, meta, path)
    deq, scores = decode_output(raw, meta)
    out = meta["output"]
    contract = PreprocessContract.from_dict(meta["preprocess"])
    return {
        "image": image["file"],
        "geometry": _geometry(image["upright_width"], image["upright_height"], contract),
        "pixels_sum": int(pixels.astype(np.int64).sum()),
        "pixels_fnv1a32": fnv1a32(pixels.tobytes()),
        "input": {
            "dtype": str(native.dtype),
            "layout": meta["input"]["layout"],
            "shape": list(native.shape),
            "sum": native.astype(np.float64).sum().item(),
            "fnv1a32": input_fnv1a32(native),
        },
        "output": {
            "dtype": out["dtype"],
            "kind": out.get("kind", "logits"),
            "quantization": out.get("quantization") if out["dtype"] in ("int8", "uint8") else None,
            "values": [v.item() for v in raw],
        },
        "dequantized": [float(v) for v in deq],
        "scores": [float(p) for p in scores],
        "top3": [{"index": i, "label": meta["labels"][i], "score": float(scores[i])} for i in top_k(scores, 3)],
        "stable_top3": stable_top3(
            raw, output_tolerance(out.get("kind", "logits"), out["dtype"], meta.get("precision", "fp32"))
        ),
    }


def shipped_model_record(entry: dict, images: Sequence[dict], image_dir: Path, root=REPO) -> dict:
    """Cases of one installed model (an ``installed_models`` entry) on the given fixture images."""
    meta = json.loads(Path(entry["meta"]).read_text(encoding="utf-8"))
    runner = load_shipped_runner(entry["artifact"], meta)
    try:
        in_tensor = tensor_output_quantization(runner)
        in_meta = meta["output"].get("quantization")
        if in_tensor is not None and (
            in_meta is None
            or in_tensor["zero_point"] != in_meta["zero_point"]
            or not np.isclose(in_tensor["scale"], in_meta["scale"], rtol=1e-6, atol=0)
        ):
            raise ValueError(
                f"{entry['artifact']}: output tensor quantisation {in_tensor} != the metadata's "
                f"{in_meta}: the app would dequantise wrongly; re-export the model"
            )
        cases = [_shipped_case(runner, meta, im, Path(image_dir) / im["file"]) for im in images]
        numerics = getattr(runner, "numerics", "ai-edge-litert interpreter, CPU")
    finally:
        runner.close()
    return {
        "app": entry["app"],
        "variant": entry["variant"],
        "format": entry["format"],
        "artifact": _rel(entry["artifact"], root),
        "artifact_sha256": artifact_sha256(entry["artifact"]),
        "meta_file": _rel(entry["meta"], root),
        "meta_sha256": artifact_sha256(entry["meta"]),
        "numerics": numerics,
        "output_quantization_in_artifact": in_tensor,
        "meta": meta,
        "cases": cases,
    }


def read_shipped(path) -> dict:
    """The recorded ``shipped_models.json`` (an empty document when absent)."""
    path = Path(path)
    if not path.is_file():
        return {"schema": SHIPPED_SCHEMA, "models": []}
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("schema") != SHIPPED_SCHEMA:
        raise ValueError(f"{path}: schema {doc.get('schema')!r}, expected {SHIPPED_SCHEMA!r}; run {SHIPPED_COMMAND}")
    return doc


def stale_shipped_cases(doc: dict, root=REPO) -> list[str]:
    """Why the recorded shipped-model cases do not describe the installed models (empty when current)."""
    recorded = {m["artifact"]: m for m in doc.get("models", [])}
    problems = []
    installed = installed_models(root)
    for e in installed:
        rel = _rel(e["artifact"], root)
        m = recorded.get(rel)
        fix = f"run `{shipped_command(e['app'])}`"
        if m is None:
            problems.append(f"{rel} is installed but has no recorded cases: {fix}")
        elif m["artifact_sha256"] != artifact_sha256(e["artifact"]):
            problems.append(
                f"{rel} changed since its cases were recorded (sha256 {m['artifact_sha256'][:12]}... recorded): {fix}"
            )
        elif m["meta_sha256"] != artifact_sha256(e["meta"]):
            problems.append(f"{_rel(e['meta'], root)} changed since the cases were recorded: {fix}")
    gone = sorted(set(recorded) - {_rel(e["artifact"], root) for e in installed})
    if gone:
        problems.append(f"cases recorded for models no longer installed ({', '.join(gone)}): run `{SHIPPED_COMMAND}`")
    return problems


def write_shipped_fixtures(
    dirs: Iterable[Path] = APP_FIXTURE_DIRS,
    root=REPO,
    *,
    apps: Iterable[str] | None = None,
    variants: Iterable[str] | None = None,
    interpreted_images: int = INTERPRETED_IMAGES,
) -> list[Path]:
    """Record the installed models' cases into ``shipped_models.json`` in every fixture folder.

    ``apps`` / ``variants`` restrict which installed models are re-run (default: all); the other
    installed models keep their recorded cases (or get computed when they have none), models no
    longer installed are dropped. Models run on every fixture image, those of a format whose runner is a
    reference interpreter (``Capabilities.interpreted``: Core ML) on the first ``interpreted_images`` (by
    name). The images come from the fixtures in the first folder.
    """

    dirs = [Path(d) for d in dirs]
    fixtures = dirs[0] / "fixtures.json"
    if not fixtures.is_file():
        raise FileNotFoundError(f"{fixtures} missing: run python -m mvit.export.apps.fixtures first")
    images = sorted(json.loads(fixtures.read_text())["images"], key=lambda r: r["file"])
    old = {m["artifact"]: m for m in read_shipped(dirs[0] / SHIPPED_FILE)["models"]}
    apps, variants = (set(x) if x is not None else None for x in (apps, variants))
    models = []
    for entry in installed_models(root):
        rel = _rel(entry["artifact"], root)
        redo = (apps is None or entry["app"] in apps) and (variants is None or entry["variant"] in variants)
        if not redo and rel in old:
            models.append(old[rel])
            continue
        n = interpreted_images if get_backend(entry["format"]).CAPABILITIES.interpreted else len(images)
        models.append(shipped_model_record(entry, images[:n], dirs[0], root))
    doc = {
        "schema": SHIPPED_SCHEMA,
        "generator": "export/apps/fixtures.py (" + SHIPPED_COMMAND + ")",
        "notes": SHIPPED_NOTES,
        "tolerances": {k: v for k, v in TOLERANCES.items() if k.startswith(("model_", "coreml_"))},
        "models": models,
    }
    text = json.dumps(doc, indent=1) + "\n"
    paths = []
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        (d / SHIPPED_FILE).write_text(text)
        paths.append(d / SHIPPED_FILE)
    return paths


# --------------------------------------------------------------------------------------------
# the writer


def write_golden_fixtures(out_dir, contract: PreprocessContract | None = None) -> Path:
    """Write the golden fixtures into ``out_dir``; returns the path of ``fixtures.json``.

    ``contract``: an extra contract to cover besides the built-in small ones (``FIXTURE_CONTRACTS``),
    typically the shipped model's; it gets checksums (no inlined pixels when it is large). The
    models' own outputs are recorded separately, from the installed artifacts (``write_shipped_fixtures``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    images = _synthetic_images()
    image_paths: dict[str, Path] = {}
    image_records = []
    for name, img in images.items():
        path = out / name
        _save(img, path)
        image_paths[name] = path
        rgba, rotation = _stored_rgba(path)
        raw_name = Path(name).stem + ".rgba"
        (out / raw_name).write_bytes(rgba.tobytes())
        upright = np.asarray(load_rgb(path))  # the contract's own decoder, EXIF applied
        image_records.append(
            {
                "file": name,
                "raw": raw_name,
                "width": rgba.shape[1],
                "height": rgba.shape[0],
                "rotation_degrees": rotation,
                "mode": img.mode,
                "upright_width": upright.shape[1],
                "upright_height": upright.shape[0],
            }
        )

    contracts = dict(FIXTURE_CONTRACTS)
    if contract is not None:
        contracts["given"] = contract

    cases = []
    for rec in image_records:
        for cname, c in contracts.items():
            p = pixels_uint8(image_paths[rec["file"]], c)
            small = c.input_size[0] * c.input_size[1] <= 64 * 64
            cases.append(
                {
                    "image": rec["file"],
                    "contract_name": cname,
                    "contract": c.to_dict(),
                    "geometry": _geometry(rec["upright_width"], rec["upright_height"], c),
                    **_tensor_record(p, c, full_pixels=small),
                }
            )

    frames = []
    base = np.asarray(images["gradient_40x30.png"].convert("RGB"))
    for fname, layout, pad, rot in (
        ("frame_i420_rot90", "i420", 6, 90),
        ("frame_nv21_rot270", "nv21", 10, 270),
        ("frame_nv21_rot0", "nv21", 0, 0),
    ):
        data, planes, rgb = _make_yuv_frame(base, layout, pad)
        (out / f"{fname}.yuv").write_bytes(data)
        upright = np.ascontiguousarray(np.rot90(rgb, k=-(rot // 90)))
        c = FIXTURE_CONTRACTS["bilinear_24x32_meanstd_rgb"]
        p = pixels_uint8(Image.fromarray(upright, "RGB"), c)
        frames.append(
            {
                "file": f"{fname}.yuv",
                "width": base.shape[1],
                "height": base.shape[0],
                "layout": layout,
                "planes": planes,
                "rotation_degrees": rot,
                "rgb_fnv1a32": fnv1a32(rgb.tobytes()),
                "rgb_sum": int(rgb.astype(np.int64).sum()),
                "rgb_b64": _b64(rgb),
                "contract_name": "bilinear_24x32_meanstd_rgb",
                "contract": c.to_dict(),
                **_tensor_record(p, c, full_pixels=True),
            }
        )

    metas = {}
    for variant in ("float", "int8", "uint8_raw"):
        fn = f"model_meta_{variant}.json"
        (out / fn).write_text(json.dumps(example_model_meta(variant), indent=2) + "\n")
        metas[variant] = fn

    doc = {
        "schema": FIXTURE_SCHEMA,
        "generator": "export/apps/fixtures.py (python -m mvit.export.apps.fixtures)",
        "notes": {
            "raw": "*.rgba: stored pixels (before EXIF rotation), RGBA row-major; rotate clockwise by "
            "rotation_degrees to get the upright image the contract starts from",
            "pixels": "uint8 HWC RGB after resize + centre crop (model.preprocess.pixels_uint8)",
            "tensor": "float32 CHW after normalisation and channel reordering (normalize_hwc_uint8); "
            "tensor_fnv1a32 hashes its little-endian float32 bytes in CHW order",
            "samples": "chw indices are into that CHW tensor (channel index after reordering)",
            "quantized": "q = clamp(round_half_even(v / scale) + zero_point), CHW order for the hash",
            "yuv": "YUV_420_888; rgb = full-range BT.601 in 16.16 fixed point with floor shifts, "
            "chroma sampled at (y/2, x/2); then rotate clockwise by rotation_degrees",
            "checksum": "fnv1a32: 32-bit FNV-1a over the bytes",
            "topk": "ties broken by the lower class index",
        },
        "tolerances": TOLERANCES,
        "images": image_records,
        "cases": cases,
        "frames": frames,
        "postprocess": _postprocess_cases(),
        "model_meta_examples": metas,
    }
    path = out / "fixtures.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path


BENCHMARK_IMAGE = "checker_300x200.png"
BENCHMARK_FILES = ("benchmark_input.rgba", "benchmark_input.json")


def benchmark_input_files(golden_dir: Path = APP_FIXTURE_DIRS[0]) -> dict[str, bytes]:
    """The benchmark modes' fixed input, from the golden fixtures: ``BENCHMARK_FILES`` name -> bytes."""
    golden_dir = Path(golden_dir)
    images = {r["file"]: r for r in json.loads((golden_dir / "fixtures.json").read_text())["images"]}
    rec = images[BENCHMARK_IMAGE]
    doc = {
        "image": rec["file"],
        "width": rec["width"],
        "height": rec["height"],
        "rotation_degrees": rec["rotation_degrees"],
        "note": "raw RGBA of a golden fixture image (as stored, rotate clockwise by rotation_degrees); "
        "the installed models' recorded cases on it are in shipped_models.json; written by "
        "python -m mvit.export.apps.fixtures",
    }
    return {
        BENCHMARK_FILES[0]: (golden_dir / rec["raw"]).read_bytes(),
        BENCHMARK_FILES[1]: (json.dumps(doc, indent=1) + "\n").encode(),
    }


def write_benchmark_inputs(golden_dir: Path = APP_FIXTURE_DIRS[0], root=REPO) -> list[Path]:
    """Install the benchmark input into every app's model folder (``APPS[app]["dir"]``)."""
    written = []
    for spec in APPS.values():
        d = Path(root) / spec["dir"]
        d.mkdir(parents=True, exist_ok=True)
        for name, data in benchmark_input_files(golden_dir).items():
            (d / name).write_bytes(data)
            written.append(d / name)
    return written


def write_app_fixtures(dirs: Iterable[Path] = APP_FIXTURE_DIRS, **kwargs) -> list[Path]:
    """Generate once and copy the same files into every app's test resources.

    The shipped-model cases (``SHIPPED_FILE``, see ``write_shipped_fixtures``) are kept as they are.
    """
    dirs = [Path(d) for d in dirs]
    first = dirs[0]
    shipped = first / SHIPPED_FILE
    kept = shipped.read_bytes() if shipped.is_file() else None
    if first.exists():
        shutil.rmtree(first)
    write_golden_fixtures(first, **kwargs)
    if kept is not None:
        shipped.write_bytes(kept)
    for d in dirs[1:]:
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(first, d)
    return [d / "fixtures.json" for d in dirs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, action="append", help="output folder (repeatable); default: both apps' test resources"
    )
    ap.add_argument(
        "--shipped", action="store_true", help=f"only re-run the models installed in the apps ({SHIPPED_FILE})"
    )
    ap.add_argument("--no-shipped", action="store_true", help=f"only the synthetic fixtures; keep {SHIPPED_FILE}")
    ap.add_argument(
        "--app",
        action="append",
        choices=("android", "ios"),
        help="re-run only this app's installed models (repeatable; default: both)",
    )
    ap.add_argument(
        "--interpreted-images",
        "--coreml-images",
        type=int,
        default=INTERPRETED_IMAGES,
        help=f"fixture images per model run by a reference interpreter (Core ML: slow; default {INTERPRETED_IMAGES})",
    )
    args = ap.parse_args(argv)
    dirs = args.out or APP_FIXTURE_DIRS
    if not args.shipped:
        # The default contract (MVIT_DEFAULT, 256x256) is covered too, by checksums.
        for p in write_app_fixtures(dirs, contract=PreprocessContract()):
            print(p)
        if not args.out:
            for p in write_benchmark_inputs():
                print(p)
    if not args.no_shipped:
        for p in write_shipped_fixtures(dirs, apps=args.app, interpreted_images=args.interpreted_images):
            print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
