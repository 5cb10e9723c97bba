"""Where each demo app keeps its models: the app folders, the format each app runs, and which export
precisions go into its float and int8 slots. The installer and the golden-case recorder both read it."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APPS = {
    "android": {
        "dir": Path("android_demo/app/src/main/assets"),
        "format": "tflite",
        "suffix": ".tflite",
        "names": {"float": ("model.tflite", "model_meta.json"), "int8": ("model_int8.tflite", "model_int8_meta.json")},
    },
    "ios": {
        "dir": Path("ios_demo/MVitDemo/Models"),
        "format": "coreml",
        "suffix": ".mlpackage",
        "names": {"float": ("Model.mlpackage", "model_meta.json"), "int8": ("ModelInt8.mlpackage", "model_int8_meta.json")},
    },
}
VARIANT_PRECISIONS = {"float": ("fp32", "fp16"), "int8": ("int8", "dynamic")}


