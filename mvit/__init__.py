"""mvit: take a trained PyTorch MobileViT classifier to phones.

The public API, one function per step of the pipeline (each imports its heavy dependencies only
when called, so ``import mvit`` stays light):

    create(name, num_classes)       a model of the zoo (``mvit.model.list_models()``)
    load(path)                      a checkpoint: model, labels, preprocessing contract
    export(request)                 an ``ExportRequest`` -> verified artifacts (the package ``mvit.export``)
    bench(config)                   a ``BenchConfig`` -> the benchmark report (the package ``mvit.benchmarks``)
    predict(model, images, top)     top-k labels from any artifact or checkpoint

Packages: ``mvit.model`` (architectures, checkpoints, preprocessing, training), ``mvit.export``
(one backend per format, metadata, parity), ``mvit.quant`` (int8 engine), ``mvit.benchmarks``
(latency and accuracy), ``mvit.export.apps`` (the demo apps' Python side).
"""

from __future__ import annotations

import importlib

__all__ = ["create", "load", "export", "bench", "predict"]


def create(name: str, num_classes: int = 1000, **kwargs):
    """A registered model variant with a ``num_classes`` head (weights initialised, not trained)."""
    from mvit.model import create as _create  # lazy: keeps import mvit free of torch

    return _create(name, num_classes, **kwargs)


def load(path=None):
    """Load a checkpoint (default: the shipped garbage-sorting model); returns a ``Checkpoint``."""
    from mvit.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # lazy: keeps import mvit free of torch

    return load_checkpoint(path or DEFAULT_CHECKPOINT)


# mvit.export and mvit.bench are packages, callable: mvit.export(request), mvit.bench(config).
_PACKAGES = {"export": "mvit.export", "bench": "mvit.benchmarks", "benchmarks": "mvit.benchmarks"}


def __getattr__(name: str):
    # imported on first use, so that ``import mvit`` does not import torch
    if name in _PACKAGES:
        return importlib.import_module(_PACKAGES[name])
    raise AttributeError(f"module 'mvit' has no attribute {name!r}")


def predict(model, images, top: int = 3, threads: int = 2):
    """Top-``top`` (label, probability) pairs per image, from an artifact or a checkpoint."""
    from mvit.export.cli_predict import predict as _predict  # lazy: keeps import mvit free of torch

    return _predict(model, images, top, threads)
