import os
import sys
from pathlib import Path

import pytest

# Under pytest-xdist each worker gets its share of the cores: torch's OpenMP threads (and the converters' and
# runtimes' threads that read OMP_NUM_THREADS, subprocesses included) oversubscribing the cores made small
# steps far slower than alone (tests/README.md).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import torch  # noqa: E402  (after OMP_NUM_THREADS: OpenMP reads it when torch loads)

ROOT = Path(__file__).resolve().parents[1]
# The one-off studies are scripts run by path (not installed): import them as their scripts import each other.
sys.path.insert(0, str(ROOT / "benchmarks" / "studies"))
# Untrained weights produce denormal activations that make torchao's convert_pt2e ~200x slower.
torch.set_flush_denormal(True)
torch.set_num_threads(THREADS)

# The phone of the adb recordings (tests/adb_recordings/getprop.txt) and of the sample phone result files:
# its device block in mvit.device_results/1.
PIXEL_8 = {
    "manufacturer": "Google",
    "model": "Pixel 8",
    "soc": "Tensor G3",
    "os": "Android",
    "os_version": "15",
    "abi": "arm64-v8a",
}


def tflite_op_input_types(model) -> list[tuple[str, str]]:
    """(op name, first input's tensor type) per operator of a .tflite file (path or bytes)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    data = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    m = fb.read_model_from_bytearray(bytearray(data))
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    g = m.subgraphs[0]
    return [
        (
            ops[fb.get_builtin_code_from_operator_code(m.operatorCodes[op.opcodeIndex])],
            types[g.tensors[op.inputs[0]].type],
        )
        for op in g.operators
    ]


def make_image_folder(root: Path, classes=("a", "b", "c"), per_class=4, size=(48, 40), seed=0):
    """Write a small ImageFolder tree of coloured noise JPEGs; each class has its own tint."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for ci, c in enumerate(classes):
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.zeros((size[1], size[0], 3), np.float32)
            base[..., ci % 3] = 160
            img = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{c}_{i}.jpg", quality=90)
    return root


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "images")


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory):
    """A 3-class folder of 72x72 images (8 per class) for quantization tests."""
    from export_fixtures import CLASSES

    return make_image_folder(tmp_path_factory.mktemp("small_data"), classes=CLASSES, per_class=8, size=(72, 72))


@pytest.fixture(scope="session")
def small_ckpt(small_data_dir, tmp_path_factory):
    """A tiny MobileViT trained briefly on ``small_data_dir`` (trained weights: realistic int8 ranges)."""
    from export_fixtures import train_tiny_checkpoint

    return train_tiny_checkpoint(small_data_dir, tmp_path_factory.mktemp("small_ckpt") / "tiny.safetensors", steps=30)
