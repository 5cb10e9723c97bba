"""Run the article comparison (and the default model) on one GPU within a fixed wall-clock budget.

    PYTHONPATH=. python3 benchmarks/article/gpu_runs.py --data .devdata --out $OUT --budget 470

1. Probe: training images/s of each model at each resolution (bf16, channels_last, batch 128), one
   model at a time.
2. Choose the epochs so that all runs, run one after the other at the probed speeds, would fit in the
   budget (each model gets the same epochs on a dataset: the same budget); cap at --max-epochs.
3. Launch every run at once on the GPU (``mvit-train`` processes), wait, stop any run still going at
   the deadline (its per-epoch checkpoints and metrics stay), and pack results as tar files of at
   most 15 MB each (what a remote machine can hand back).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

import mvit.model as zoo
from mvit.model.preprocess import list_images

MODELS = ("mobilevit_xxs", "mobilenet_v2", "mobilevit_xs", "vit_tiny")
DATASETS = {"trashnet6": 256, "imagenette10": 192}  # training resolution per dataset
CLASSES = {"trashnet6": 6, "imagenette10": 10}
EPOCH_RATIO = {"trashnet6": 1.0, "imagenette10": 0.5}  # imagenette epochs = ratio * trashnet epochs


def probe(model_name: str, size: int, classes: int, batch: int, device: str, steps: int = 10) -> float:
    kw = {"img_size": size} if model_name.startswith("vit") else {}
    net = zoo.create(model_name, classes, **kw).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=device.startswith("cuda"))
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)

    def step():
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def count_train(data: Path, ds: str) -> int:
    return len(list_images(data / ds / "train"))


def pack(out: Path, runs: Path, max_bytes: int = 15_000_000, max_tars: int = 7) -> None:
    """Pack metrics, summaries and logs (one tar) and best checkpoints (tars of <= max_bytes)."""
    small = [p for p in sorted(runs.rglob("*")) if p.is_file() and p.suffix in (".jsonl", ".json", ".log")]
    with tarfile.open(out / "results.tar", "w") as t:
        for p in small:
            t.add(p, arcname=str(p.relative_to(runs)))
    ckpts = []
    for p in sorted(runs.glob("*/best.safetensors")):
        if "imagenette10" in p.parent.name and not p.parent.name.startswith(("mobilevit_xxs", "mobilenet_v2")):
            continue
        if p.stat().st_size > max_bytes:
            p = to_fp16(p)
        ckpts.append(p)
    # the default model first, then by size
    ckpts.sort(key=lambda p: (not p.parent.name.startswith("mobilevit_xxs_trashnet6"), p.stat().st_size))
    bins: list[list[Path]] = []
    for p in ckpts:
        for b in bins:
            if sum(q.stat().st_size for q in b) + p.stat().st_size <= max_bytes:
                b.append(p)
                break
        else:
            if len(bins) < max_tars - 1:
                bins.append([p])
    for i, b in enumerate(bins):
        with tarfile.open(out / f"ckpt{i}.tar", "w") as t:
            for p in b:
                t.add(p, arcname=str(p.relative_to(runs)))


def to_fp16(path: Path) -> Path:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {
            k: (f.get_tensor(k).half() if f.get_tensor(k).is_floating_point() else f.get_tensor(k)) for k in f.keys()
        }
    dst = path.with_name("best_fp16.safetensors")
    save_file(tensors, str(dst), metadata=meta)
    return dst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding trashnet6/ and imagenette10/")
    p.add_argument("--out", type=Path, required=True, help="where the result tar files go")
    p.add_argument("--work", type=Path, default=Path("/tmp/mvit_gpu_runs"), help="run folders")
    p.add_argument("--budget", type=float, default=470, help="seconds from start until runs are stopped")
    p.add_argument("--fit", type=float, default=0.85, help="share of the remaining budget to plan for")
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--min-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--probe-steps", type=int, default=10)
    p.add_argument("--sizes", default="", help="override resolutions, e.g. trashnet6=64,imagenette10=64")
    p.add_argument("--extra", default="", help="extra mvit-train arguments for every run")
    a = p.parse_args(argv)
    t_start = time.monotonic()
    models = a.models.split(",")
    for item in filter(None, a.sizes.split(",")):
        k, v = item.split("=")
        DATASETS[k] = int(v)
    runs = a.work
    runs.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)

    speeds = {}
    for ds, size in DATASETS.items():
        for m in models:
            speeds[f"{m}@{size}"] = probe(m, size, CLASSES[ds], a.batch_size, a.device, a.probe_steps)
            print(f"probe {m} {size}px: {speeds[f'{m}@{size}']:.0f} train images/s", flush=True)
    n_train = {ds: count_train(a.data, ds) for ds in DATASETS}
    # seconds per trashnet epoch-unit (all runs, one after another)
    per_unit = sum(
        EPOCH_RATIO[ds] * n_train[ds] / speeds[f"{m}@{size}"] for ds, size in DATASETS.items() for m in models
    )
    left = a.budget - (time.monotonic() - t_start) - 40  # decode + start-up of the runs
    e_t = int(max(a.min_epochs, min(a.max_epochs, a.fit * left / per_unit)))
    epochs = {ds: max(a.min_epochs, int(round(e_t * EPOCH_RATIO[ds]))) for ds in DATASETS}
    plan = {
        "speeds_img_s": speeds,
        "n_train": n_train,
        "epochs": epochs,
        "sequential_estimate_s": sum(
            epochs[ds] * n_train[ds] / speeds[f"{m}@{size}"] for ds, size in DATASETS.items() for m in models
        ),
        "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else a.device,
        "torch": torch.__version__,
    }
    (runs / "plan.json").write_text(json.dumps(plan, indent=1))
    print("plan:", json.dumps(plan), flush=True)

    procs = {}
    env = dict(os.environ, PYTHONPATH=".", OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")
    for ds, size in DATASETS.items():
        for m in models:
            name = f"{m}_{ds}"
            cmd = [
                sys.executable,
                "-m",
                "mvit.quant.cli_train",
                "--data",
                str(a.data / ds),
                "--model",
                m,
                "--img-size",
                str(size),
                "--epochs",
                str(epochs[ds]),
                "--batch-size",
                str(a.batch_size),
                "--warmup-epochs",
                str(max(1, round(epochs[ds] * 0.03))),
                "--out",
                str(runs / name),
                "--device",
                a.device,
                "--workers",
                "2",
                "--seed",
                "0",
            ] + a.extra.split()
            log = open(runs / f"{name}.log", "w")
            procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    deadline = t_start + a.budget
    last_report = 0.0
    while any(pr.poll() is None for pr, _ in procs.values()) and time.monotonic() < deadline:
        time.sleep(2)
        if time.monotonic() - last_report > 60:
            last_report = time.monotonic()
            for name in procs:
                mp = runs / name / "metrics.jsonl"
                lines = mp.read_text().splitlines() if mp.exists() else []
                if lines:
                    r = json.loads(lines[-1])
                    print(
                        f"[{time.monotonic() - t_start:.0f}s] {name}: epoch {r['epoch'] + 1} "
                        f"val {r['val_acc']:.3f} {r['images_per_s']:.0f} img/s",
                        flush=True,
                    )
    for name, (pr, _log) in procs.items():
        if pr.poll() is None:
            pr.terminate()
            print(f"{name}: stopped at the deadline", flush=True)
    for pr, _log in procs.values():
        try:
            pr.wait(20)
        except subprocess.TimeoutExpired:
            pr.kill()
        log.close()
    for name in procs:
        s = runs / name / "summary.json"
        if s.exists():
            d = json.loads(s.read_text())
            print(
                f"{name}: best val {d['best_val_acc']:.4f} last val {d.get('last_val_acc')} train(clean) "
                f"{d.get('last_train_acc_clean')} time {d['train_time_s']}s",
                flush=True,
            )
        else:
            print(
                f"{name}: no summary; log tail:\n" + "".join((runs / f"{name}.log").read_text().splitlines(True)[-5:]),
                flush=True,
            )
    pack(a.out, runs)
    print(f"total {time.monotonic() - t_start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
