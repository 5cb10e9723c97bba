"""Training engine behind ``mvit-train``: image folders in, safetensors checkpoints out.

Recipe: random-resized-crop + flip + light colour jitter (batched tensor ops, see ``model.data``),
AdamW (no weight decay on norms, biases and embeddings), linear warmup then cosine decay, label
smoothing, optional EMA of the weights. Evaluation feeds the model exactly what the checkpoint's
preprocessing contract defines.

Speed: every image is decoded once (in worker processes) into a uint8 cache that lives on the
training device; channels_last is on by default; bf16 autocast is used where it pays off (CUDA; CPUs with native
bf16); ``--progressive`` trains the early epochs at smaller sizes. Under ``torchrun`` the same code
runs data-parallel (DDP; gloo on CPU, nccl on GPUs).

Reproducibility: all randomness of epoch ``e`` is derived from ``(seed, e)``, and the last checkpoint
is written with the optimizer and EMA state after every epoch, so ``--resume`` continues a killed run
exactly as if it had never stopped.
"""
from __future__ import annotations

import copy
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mvit.model as zoo
from mvit.model.checkpoint import CheckpointMeta, atomic_write, save_checkpoint
from mvit.model.contract import PreprocessContract
from mvit.model.data import AugmentConfig, DatasetError, augment_batch, decode_split, eval_batch, find_splits

STATE_SCHEMA = "mvit.train_state/1"


class TrainError(ValueError):
    """A training run that cannot start or continue; the message is one line."""


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str = "mobilevit_xxs"
    img_size: int = 256
    epochs: int = 30
    batch_size: int = 48
    lr: float = 2e-3
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    warmup_epochs: float = 3.0
    label_smoothing: float = 0.1
    ema: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    workers: int = 0
    val_fraction: float = 0.15
    progressive: bool = False
    crop_fraction: float = 1.0
    interpolation: str = "bilinear"
    cache_scale: float = 1.125
    min_crop: float = 0.35
    jitter: float = 0.2
    eval_train: bool = True
    resume: bool = False
    stop_after_epochs: int | None = None  # stop early as if killed (tests of --resume)
    command: str = ""
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# helpers

def cpu_has_native_bf16() -> bool:
    """True on CPUs whose matrix units compute bf16 natively (AVX-512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError("--device cuda: no CUDA device is available")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    if name != "cpu":
        raise TrainError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device("cpu")


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp != "auto":
        raise TrainError(f"--amp must be auto, bf16 or off, got {amp!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_native_bf16() else None


def resolve_channels_last(opt: str, device: torch.device) -> bool:
    if opt in ("on", "off"):
        return opt == "on"
    if opt != "auto":
        raise TrainError(f"--channels-last must be auto, on or off, got {opt!r}")
    # measured side by side (docs/training.md): +4-10% per training step on this AVX2 CPU, a win on CUDA
    return True


def lr_at(step: int, total: int, warmup: int, base: float, min_ratio: float) -> float:
    """Linear warmup from 0 to ``base`` over ``warmup`` steps, then cosine down to ``base*min_ratio``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def progressive_sizes(img_size: int, epochs: int, divisor: int) -> list[int]:
    """Image size per epoch: first 30% at ~1/2, next 30% at ~3/4, the rest at full size."""
    def snap(s):
        return max(divisor, int(round(s / divisor)) * divisor)
    out = []
    for e in range(epochs):
        f = e / max(1, epochs)
        out.append(snap(img_size * 0.5) if f < 0.3 else snap(img_size * 0.75) if f < 0.6 else img_size)
    return out


def epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7919 + salt) % (2**63 - 1)


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU ({name}, {torch.get_num_threads()} threads)"


def param_groups(net: nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Progress:
    """One line per epoch; redrawn in place on a terminal."""

    def __init__(self, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.last = 0.0

    def update(self, text: str, done: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty and (done or now - self.last > 0.2):
            self.stream.write("\r" + text.ljust(110)[:110] + ("\n" if done else ""))
            self.stream.flush()
            self.last = now
        elif done and not self.tty:
            self.stream.write(text + "\n")
            self.stream.flush()


def bar(frac: float, width: int = 20) -> str:
    n = int(round(frac * width))
    return "[" + "#" * n + "." * (width - n) + "]"


# ---------------------------------------------------------------------------------------------
# resume state: model + EMA + optimizer in one safetensors file, JSON for the scalars

def save_state(path: Path, net: nn.Module, ema: nn.Module | None, opt: torch.optim.Optimizer, info: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    sd = opt.state_dict()
    scalars = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"opt.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = val
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in sd["param_groups"]]
    meta = {"schema": STATE_SCHEMA, "info": info, "param_groups": groups, "opt_scalars": scalars}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"mvit_train_state": json.dumps(meta)}))


def load_state(path: Path, net: nn.Module, ema: nn.Module | None, opt: torch.optim.Optimizer) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("mvit_train_state", "{}"))
    if meta.get("schema") != STATE_SCHEMA:
        raise TrainError(f"{path}: not an mvit training state")
    tensors = load_file(str(path))
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None:
        ema_sd = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        ema.load_state_dict(ema_sd if ema_sd else net.state_dict())
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for k, v in meta["opt_scalars"].items():
        idx, key = k.split(".", 1)
        state.setdefault(int(idx), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["info"]


# ---------------------------------------------------------------------------------------------

def build_model(cfg: TrainConfig, num_classes: int) -> tuple[nn.Module, dict]:
    if cfg.model not in zoo.list_models():
        raise TrainError(f"unknown model {cfg.model!r}; known: {', '.join(zoo.list_models())}")
    kwargs = {"img_size": cfg.img_size} if cfg.model.startswith("vit") else {}
    return zoo.create(cfg.model, num_classes=num_classes, **kwargs), kwargs


def size_divisor(cfg: TrainConfig) -> int:
    if cfg.model.startswith("vit"):
        return 16
    return 64 if cfg.model.startswith("mobilevit") and not cfg.model.startswith("mobilevitv2") else 32


def train(cfg: TrainConfig, log=None) -> dict:
    """Run (or resume) one training run; returns the summary (also written to ``out/summary.json``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.device, local_rank)
    is_main = rank == 0
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    say = log if is_main else (lambda msg: None)

    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if cfg.img_size % size_divisor(cfg):
        raise TrainError(f"--img-size {cfg.img_size}: {cfg.model} needs a multiple of {size_divisor(cfg)}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise TrainError("--epochs and --batch-size must be at least 1")
    out = Path(cfg.out)
    state_path = out / "last.state.safetensors"
    if cfg.resume and not state_path.exists():
        raise TrainError(f"--resume: {state_path} does not exist (nothing to resume)")
    if not cfg.resume and state_path.exists():
        raise TrainError(f"{out} already holds a run; pass --resume to continue it or choose another --out")

    splits = find_splits(cfg.data, cfg.val_fraction, cfg.seed)
    classes = splits.classes
    contract = PreprocessContract(input_size=(cfg.img_size, cfg.img_size), crop_fraction=cfg.crop_fraction,
                                  interpolation=cfg.interpolation)
    t0 = time.monotonic()
    cache_size = int(round(cfg.img_size * cfg.cache_scale))
    train_px = decode_split(splits.train, cache_size, workers=cfg.workers, log=say)
    val_px = decode_split(splits.val, cfg.img_size, contract=contract, workers=cfg.workers, log=say)
    skipped = train_px.skipped + val_px.skipped
    counts = [0] * len(classes)
    for lab in train_px.labels.tolist():
        counts[lab] += 1
    if any(c == 0 for c in counts):
        empty = [c for c, n in zip(classes, counts) if n == 0]
        raise DatasetError(f"class(es) {', '.join(empty)} have no readable training images")
    say(f"data: {splits.root} ({splits.layout}): {len(classes)} classes, {len(train_px)} train / "
        f"{len(val_px)} val images, {len(skipped)} unreadable skipped; decoded in {time.monotonic() - t0:.1f}s")
    train_px, val_px = train_px.to(device), val_px.to(device)

    torch.manual_seed(cfg.seed)
    net, model_kwargs = build_model(cfg, len(classes))
    net.to(device)
    amp_dtype = resolve_amp(cfg.amp, device)
    channels_last = resolve_channels_last(cfg.channels_last, device)
    mem_fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=mem_fmt)
    ema = copy.deepcopy(net).eval() if cfg.ema > 0 else None
    if ema is not None:
        for p in ema.parameters():
            p.requires_grad_(False)
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(param_groups(net, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999), **fused)
    n_params = sum(p.numel() for p in net.parameters())

    sizes = progressive_sizes(cfg.img_size, cfg.epochs, size_divisor(cfg)) if cfg.progressive and \
        not cfg.model.startswith("vit") else [cfg.img_size] * cfg.epochs
    global_batch = cfg.batch_size * world
    n_train = len(train_px)
    steps_per_epoch = max(1, n_train // global_batch)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = min(total_steps // 2, int(round(cfg.warmup_epochs * steps_per_epoch)))

    start_epoch, step, best_acc, best_epoch, train_time = 0, 0, -1.0, -1, 0.0
    metrics_path = out / "metrics.jsonl"
    if cfg.resume:
        info = load_state(state_path, net, ema, opt)
        for key in ("model", "img_size", "batch_size", "seed", "epochs"):
            if info["config"].get(key) != getattr(cfg, key):
                raise TrainError(f"--resume: {key} was {info['config'].get(key)!r} in {out}, now "
                                 f"{getattr(cfg, key)!r}; resume with the same settings")
        if info.get("world_size", 1) != world:
            raise TrainError(f"--resume: the run used {info.get('world_size', 1)} processes, now {world}")
        start_epoch, step = info["epoch"] + 1, info["step"]
        best_acc, best_epoch, train_time = info["best_val_acc"], info["best_epoch"], info["train_time_s"]
        if is_main and metrics_path.exists():  # drop records written after the state we resume from
            keep = [ln for ln in metrics_path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("epoch", -1) <= info["epoch"]]
            atomic_write(metrics_path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in keep)))
        say(f"resuming {out} after epoch {start_epoch} of {cfg.epochs}")
    elif is_main:
        out.mkdir(parents=True, exist_ok=True)
        if metrics_path.exists():
            metrics_path.unlink()

    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        ddp = net
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    aug = AugmentConfig(scale=(cfg.min_crop, 1.0), brightness=cfg.jitter, contrast=cfg.jitter,
                        saturation=cfg.jitter)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else \
        (lambda: torch.autocast(device.type, enabled=False))
    say(f"model: {cfg.model} ({n_params:,} parameters) on {device_name(device)}; amp "
        f"{amp_dtype or 'off'}, channels_last {'on' if channels_last else 'off'}, {world} process(es), "
        f"batch {cfg.batch_size} per process, {steps_per_epoch} steps/epoch")
    progress = Progress(is_main)
    provenance_base = {
        "command": cfg.command, "dataset": Path(cfg.data).name, "dataset_layout": splits.layout,
        "train_images": len(train_px), "val_images": len(val_px), "epochs": cfg.epochs, "seed": cfg.seed,
        "device": device_name(device), "processes": world, "torch": torch.__version__,
        "git_commit": git_commit(), "recipe": {
            "batch_size": cfg.batch_size, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
            "warmup_epochs": cfg.warmup_epochs, "schedule": "warmup+cosine",
            "label_smoothing": cfg.label_smoothing, "ema": cfg.ema, "min_crop": cfg.min_crop,
            "jitter": cfg.jitter, "progressive": cfg.progressive, "amp": str(amp_dtype or "off"),
            "channels_last": channels_last}} | cfg.extra

    def evaluate(m: nn.Module, px, limit=None) -> tuple[float, float]:
        m.eval()
        n = len(px) if limit is None else min(limit, len(px))
        idx = torch.arange(rank, n, world, device=device)
        tot = torch.zeros(3, dtype=torch.float64, device=device)
        with torch.no_grad(), autocast():
            for i in range(0, len(idx), 128):
                j = idx[i:i + 128]
                x = eval_batch(px.pixels[j], contract).contiguous(memory_format=mem_fmt)
                logits = m(x).float()
                tot[0] += F.cross_entropy(logits, px.labels[j], reduction="sum").double()
                tot[1] += (logits.argmax(1) == px.labels[j]).sum().double()
                tot[2] += len(j)
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(tot)
        return float(tot[0] / tot[2]), float(tot[1] / tot[2])

    def params_digest(m: nn.Module) -> torch.Tensor:
        flat = torch.cat([p.detach().double().flatten() for p in m.parameters()])
        return torch.stack([flat.sum(), (flat * flat).sum(), (flat * torch.arange(len(flat), device=flat.device,
                                                                                    dtype=torch.float64)).sum()])

    def write_checkpoint(path: Path, weights: nn.Module, extra: dict) -> None:
        meta = CheckpointMeta(cfg.model, list(classes), contract, provenance_base | extra, model_kwargs)
        save_checkpoint(path, weights, meta)

    record = {}
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        size = sizes[epoch]
        torch.manual_seed(epoch_seed(cfg.seed, epoch, 1))  # dropout etc.
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch))
        perm = torch.randperm(n_train, generator=gen)
        ddp.train()
        tot_loss = torch.zeros((), dtype=torch.float64, device=device)
        tot_correct = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        t_epoch = time.monotonic()
        for s in range(steps_per_epoch):
            chunk = perm[s * global_batch:(s + 1) * global_batch]
            mine = chunk[rank::world].to(device)
            x = augment_batch(train_px.pixels[mine], size, contract, aug, gen).contiguous(memory_format=mem_fmt)
            y = train_px.labels[mine]
            lr = lr_at(step, total_steps, warmup, cfg.lr, cfg.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = lr
            with autocast():
                logits = ddp(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if ema is not None:
                d = min(cfg.ema, (1 + step) / (10 + step))
                with torch.no_grad():
                    ep, mp = list(ema.parameters()), list(net.parameters())
                    torch._foreach_lerp_(ep, mp, 1.0 - d)
                    for eb, mb in zip(ema.buffers(), net.buffers()):
                        eb.copy_(mb)
            tot_loss += loss.detach().double() * len(mine)
            tot_correct += (logits.detach().argmax(1) == y).sum().double()
            seen += len(mine)
            if progress.tty:
                el = time.monotonic() - t_epoch
                progress.update(f"epoch {epoch + 1}/{cfg.epochs} {bar((s + 1) / steps_per_epoch)} "
                                f"loss {float(tot_loss) / seen:.3f} acc {100 * float(tot_correct) / seen:.1f}% "
                                f"{seen * world / max(el, 1e-9):.1f} img/s")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_time = time.monotonic() - t_epoch
        train_time += epoch_time
        sums = torch.stack([tot_loss, tot_correct, torch.tensor(float(seen), dtype=torch.float64, device=device)])
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(sums)
        train_loss, train_acc = float(sums[0] / sums[2]), float(sums[1] / sums[2])
        eval_model = ema if ema is not None else net
        val_loss, val_acc = evaluate(eval_model, val_px)
        record = {"epoch": epoch, "img_size": size, "lr": lr, "train_loss": round(train_loss, 6),
                  "train_acc": round(train_acc, 6), "val_loss": round(val_loss, 6), "val_acc": round(val_acc, 6),
                  "images_per_s": round(float(sums[2]) / epoch_time, 2), "epoch_time_s": round(epoch_time, 3),
                  "train_time_s": round(train_time, 2)}
        if world > 1:
            import torch.distributed as dist

            dig = params_digest(net)
            alld = [torch.zeros_like(dig) for _ in range(world)]
            dist.all_gather(alld, dig)
            diff = max(float((a - alld[0]).abs().max()) for a in alld)
            record["ranks_in_sync"] = diff == 0.0
            record["ranks_max_digest_diff"] = diff
        progress.update(f"epoch {epoch + 1}/{cfg.epochs} size {size} loss {train_loss:.3f} acc {100 * train_acc:.1f}% "
                        f"val_loss {val_loss:.3f} val_acc {100 * val_acc:.2f}% "
                        f"{record['images_per_s']:.1f} img/s ({epoch_time:.1f}s)", done=True)
        if is_main:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            improved = val_acc > best_acc
            if improved:
                best_acc, best_epoch = val_acc, epoch
            ck = {"epoch": epoch, "val_acc": val_acc, "train_acc": train_acc, "train_time_s": round(train_time, 1)}
            if improved:
                write_checkpoint(out / "best.safetensors", eval_model, ck)
            write_checkpoint(out / "last.safetensors", eval_model, ck)
            info = {"epoch": epoch, "step": step, "best_val_acc": best_acc, "best_epoch": best_epoch,
                    "train_time_s": train_time, "world_size": world, "config": asdict(cfg)}
            save_state(state_path, net, ema, opt, info)
        if world > 1:
            import torch.distributed as dist

            best_t = torch.tensor([best_acc, float(best_epoch)], dtype=torch.float64, device=device)
            dist.broadcast(best_t, 0)
            best_acc, best_epoch = float(best_t[0]), int(best_t[1])
            dist.barrier()
        if cfg.stop_after_epochs is not None and epoch + 1 >= cfg.stop_after_epochs and epoch + 1 < cfg.epochs:
            stopped_early = True
            say(f"stopping after epoch {epoch + 1} as asked (--stop-after-epochs); continue with --resume")
            break

    summary = {"model": cfg.model, "parameters": n_params, "dataset": Path(cfg.data).name, "classes": classes,
               "img_size": cfg.img_size, "epochs": cfg.epochs, "completed": not stopped_early,
               "best_val_acc": best_acc, "best_epoch": best_epoch, "train_time_s": round(train_time, 1),
               "device": device_name(device), "processes": world, "skipped_images": skipped,
               "out": str(out)}
    if record:
        summary |= {"last_val_acc": record["val_acc"], "last_train_acc_augmented": record["train_acc"]}
    if not stopped_early and cfg.eval_train:
        eval_model = ema if ema is not None else net
        summary["last_train_acc_clean"] = evaluate(eval_model, train_eval_view(train_px, contract, device))[1]
    if is_main:
        atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1) + "\n"))
        say(f"done: best val_acc {100 * best_acc:.2f}% (epoch {best_epoch + 1}); checkpoints in {out}")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return summary


def train_eval_view(train_px, contract: PreprocessContract, device):
    """Training images as the contract would crop them (centre crop, resized to the input size)."""
    from mvit.model.data import DecodedImages

    h, w = contract.input_size
    px = train_px.pixels
    if px.shape[-1] != w or px.shape[-2] != h:
        px = torch.cat([F.interpolate(c.float(), size=(h, w), mode="bilinear", antialias=True,
                                      align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
                        for c in px.split(256)])
    return DecodedImages(px, train_px.labels, [])


def command_line() -> str:
    return "mvit-train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
