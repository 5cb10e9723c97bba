"""Where each demo app keeps its models: the app folders, the format each app runs, and the one table
that sends an export precision to an app slot ("float" or "int8"). The installer, ``plan_install``
and the golden-case recorder all read it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APPS = {
    "android": {
        "project": Path("android_demo"),
        "dir": Path("android_demo/app/src/main/assets"),
        "format": "tflite",
        "suffix": ".tflite",
        "names": {"float": ("model.tflite", "model_meta.json"), "int8": ("model_int8.tflite", "model_int8_meta.json")},
    },
    "ios": {
        "project": Path("ios_demo"),
        "dir": Path("ios_demo/MVitDemo/Models"),
        "format": "coreml",
        "suffix": ".mlpackage",
        "names": {
            "float": ("Model.mlpackage", "model_meta.json"),
            "int8": ("ModelInt8.mlpackage", "model_int8_meta.json"),
        },
    },
}
# The one precision -> slot table: weights-only int8 ("dynamic") is an int8 model for the apps.
SLOT_OF_PRECISION = {"fp32": "float", "fp16": "float", "dynamic": "int8", "int8": "int8"}
VARIANT_PRECISIONS = {slot: tuple(p for p, s in SLOT_OF_PRECISION.items() if s == slot) for slot in ("float", "int8")}
