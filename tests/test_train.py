"""mvit-train end to end on a tiny generated dataset: checkpoints, resume, errors, 2-process DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mvit.model.checkpoint import load_checkpoint, read_meta
from mvit.quant.cli_train import main

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--model",
    "mobilevit_test",
    "--img-size",
    "64",
    "--batch-size",
    "8",
    "--workers",
    "1",
    "--device",
    "cpu",
    "--no-train-eval",
]


def make_dataset(root: Path, classes=("cat", "dog", "eel"), n_train=8, n_val=3, val=True) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)) if val else (("train", n_train),):
        for ci, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = (rng.random((36, 48, 3)) * 80 + ci * 80).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i}.jpg" if i % 2 else d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("ds"))
    (root / "train" / "cat" / "corrupt.jpg").write_bytes(b"not a jpeg")
    return root


def _state(path):
    ck = load_checkpoint(path)
    return {k: v.clone() for k, v in ck.model.state_dict().items()}


def test_train_writes_checkpoints_metrics_and_loads_through_the_zoo(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--data", str(data), "--out", str(out), "--epochs", "2", "--ema", "0.9"] + ARGS) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image" in err and "corrupt.jpg" in err and "img/s" in err
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert {"train_loss", "train_acc", "val_acc", "images_per_s", "lr"} <= set(rows[0])
    for name in ("best.safetensors", "last.safetensors"):
        ck = load_checkpoint(out / name, architecture="mobilevit_test")
        assert ck.meta.labels == ["cat", "dog", "eel"] and ck.meta.contract.input_size == (64, 64)
        assert ck.model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    prov = read_meta(out / "last.safetensors").provenance
    assert prov["epochs"] == 2 and prov["seed"] == 0 and "mvit-train" in prov["command"]
    assert not list(out.glob(".*.tmp"))  # atomic writes leave nothing behind
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] and len(summary["skipped_images"]) == 1


def test_resume_continues_exactly(data, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    common = ["--data", str(data), "--epochs", "3", "--seed", "7", "--ema", "0.9"] + ARGS
    assert main(common + ["--out", str(full)]) == 0
    assert main(common + ["--out", str(part), "--stop-after-epochs", "1"]) == 0  # "killed" after epoch 1
    assert main(common + ["--out", str(part)]) == 2  # refuses to overwrite a run
    assert main(common + ["--out", str(part), "--resume"]) == 0
    a = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    keys = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    sa, sb = _state(full / "last.safetensors"), _state(part / "last.safetensors")
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-6)


def test_same_seed_same_run(data, tmp_path):
    for name in ("a", "b"):
        assert main(["--data", str(data), "--out", str(tmp_path / name), "--epochs", "1"] + ARGS) == 0
    sa, sb = _state(tmp_path / "a" / "last.safetensors"), _state(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such dataset folder"),
        ("single", "only one class"),
        ("empty", "has no images"),
        ("resume", "nothing to resume"),
        ("size", "multiple of 64"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, kind, message):
    root = tmp_path / "ds"
    extra = []
    if kind == "single":
        make_dataset(root, classes=("only",))
    elif kind == "empty":
        make_dataset(root)
        (root / "train" / "zzz").mkdir()
    elif kind in ("resume", "size"):
        make_dataset(root)
        extra = ["--resume"] if kind == "resume" else ["--img-size", "96"]
    assert main(["--data", str(root), "--out", str(tmp_path / "o"), "--epochs", "1"] + ARGS + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mvit-train: error:") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_no_val_folder_uses_a_seeded_split(tmp_path):
    root = make_dataset(tmp_path / "ds", n_train=6, val=False)
    out = tmp_path / "o"
    assert main(["--data", str(root), "--out", str(out), "--epochs", "1", "--val-fraction", "0.34"] + ARGS) == 0
    assert "seeded split" in read_meta(out / "last.safetensors").provenance["dataset_layout"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_stay_in_sync(data, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "mvit.quant.cli_train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "4",
    ] + [a for a in ARGS if a not in ("--batch-size", "8")]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["ranks_in_sync"] and r["ranks_max_digest_diff"] == 0.0 for r in rows)
    assert read_meta(out / "last.safetensors").provenance["processes"] == 2
