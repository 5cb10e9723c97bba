"""A tiny trained checkpoint for export tests (confident predictions make int8 agreement meaningful), and
the export and mvit-bench calls the export and bench tests share."""

from pathlib import Path

import numpy as np
import torch

from mvit import model
from mvit.benchmarks.cli import main as bench_main
from mvit.benchmarks.report import row_id
from mvit.export.api import export_model
from mvit.model.checkpoint import CheckpointMeta, save_checkpoint
from mvit.model.contract import PreprocessContract
from mvit.model.preprocess import list_images, normalize_hwc_uint8, pixels_uint8

CLASSES = ("red", "green", "blue")
SIZE = (64, 64)
# mvit-bench timing for tests: a few runs, short, on the CI machine's two cores
FAST = ["--runs", "3", "--min-time", "0.05", "--threads", "2"]


TRAIN_THREADS = 2


def train_tiny_checkpoint(images: Path, out: Path, arch: str = "mobilevit_test", steps: int = 60) -> Path:
    """Train ``arch`` for a few dozen steps on ``images`` (class folders) and save a checkpoint.

    Always on TRAIN_THREADS threads: the float sums, and so the weights, depend on the thread count, and
    session fixtures train in whichever test first asks for them, after tests that set their own
    (a 1-thread small_ckpt made test_quant_ptq's planted outlier harmless under int8)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        torch.manual_seed(0)
        contract = PreprocessContract(input_size=SIZE)
        files = list_images(images)
        x = torch.from_numpy(normalize_hwc_uint8(np.stack([pixels_uint8(f, contract) for f in files]), contract))
        y = torch.tensor([CLASSES.index(f.parent.name) for f in files])
        kwargs = {"img_size": SIZE[0]} if arch.startswith("vit") else {}
        m = model.create(arch, num_classes=len(CLASSES), **kwargs)
        opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
        m.train()
        for _ in range(steps):
            idx = torch.randint(0, len(x), (16,))
            loss = torch.nn.functional.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    meta = CheckpointMeta(arch, list(CLASSES), contract, provenance={"test": "tiny"}, model_kwargs=kwargs)
    return save_checkpoint(out, m.eval(), meta)


def seed_int8_plan(checkpoint: Path, float_units, min_agreement: float = 0.995) -> None:
    """Store ``float_units`` as the checkpoint's cached int8 search result for every route, as a search
    meeting ``min_agreement`` would (exports then take it without searching)."""
    from mvit.model.checkpoint import file_sha256
    from mvit.quant.plan import ROUTES, search_cache_key
    from mvit.quant.search import SearchResult, store

    sha = file_sha256(checkpoint)
    for route in ROUTES:
        result = SearchResult(list(float_units), 1.0, min_agreement, True, 0, cosine=1.0)
        store(checkpoint, sha, search_cache_key(route, min_agreement), result, {"test": "seeded"})


def export_int8(checkpoint: Path, fmt: str, out: Path, calib: Path, calib_count: int, **options) -> list:
    """``checkpoint`` exported to ``fmt`` int8 into ``out``, calibrated on ``calib_count`` images of ``calib``
    (the rest verify, unless ``verify=False``); ``options``: export_model's other keywords."""
    return export_model(
        checkpoint=checkpoint,
        formats=(fmt,),
        precisions=("int8",),
        out=out,
        calib=calib,
        calib_count=calib_count,
        **options,
    )


def bench_matrix(weights: Path, data: Path, out: Path, *options: str) -> int:
    """``mvit-bench --weights WEIGHTS --data DATA --out OUT OPTIONS...`` (the matrix): its exit status."""
    return bench_main(["--weights", str(weights), "--data", str(data), "--out", str(out), *options])


def bench_reused(
    weights: Path, data: Path, out: Path, fmt: str, quantize: str, *options: str, artifacts: Path | None = None
) -> int:
    """``bench_matrix`` of one format at ``quantize`` (a precision or ``all``) over the exports already in
    ``artifacts`` (``--reuse``; default: mvit-bench's own, OUT/artifacts), with no layer report and no
    plot: its exit status."""
    where = ["--artifacts", str(artifacts)] if artifacts else []
    reuse = [*where, "--reuse", "--formats", fmt, "--quantize", quantize, "--no-layer-report", "--no-plot"]
    return bench_matrix(weights, data, out, *reuse, *options)


def bench_rows(report: dict) -> dict:
    """The rows of a bench.json report's first model, by ``format-precision`` in the report's order."""
    return {row_id(r): r for r in report["models"][0]["rows"]}
