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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from .. import model as zoo
from .checkpoint import CheckpointMeta, atomic_write, save_checkpoint
from .contract import PreprocessContract
from .data import AugmentConfig, DatasetError, DecodedImages, augment_batch, decode_split, eval_batch, find_splits

STATE_SCHEMA = "mvit.train_state/1"
STATE_FILE = "last.state.safetensors"
METRICS_FILE = "metrics.jsonl"
LOG_EVERY_S = 300.0  # without a terminal (a log file), a progress line this often within long epochs


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
    qat: bool = False  # quantization-aware fine-tuning of ``init`` (mvit.quant.qat)
    init: str | None = None  # checkpoint to fine-tune (with ``qat``)
    distill: float = 1.0  # QAT: weight of distillation from ``init``'s float model (0: labels only)
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
    # a win per training step on CPU and CUDA alike, measured side by side in docs/training.md
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
        r = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
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


# ---------------------------------------------------------------------------------------------
# resume state: model + EMA + optimizer in one safetensors file, JSON for the scalars


def save_state(path: Path, net: nn.Module, ema: nn.Module | None, opt: torch.optim.Optimizer, info: dict) -> None:
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    tensors = _unshared(tensors)
    sd = opt.state_dict()
    scalars = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"opt.{idx}.{key}"] = val.detach().cpu().contiguous().clone()
            else:
                scalars[f"{idx}.{key}"] = val
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in sd["param_groups"]]
    meta = {"schema": STATE_SCHEMA, "info": info, "param_groups": groups, "opt_scalars": scalars}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"mvit_train_state": json.dumps(meta)}))


def _unshared(tensors: dict) -> dict:
    """CPU, contiguous, and no two sharing memory (safetensors refuses that; a QAT graph's fixed-parameter
    fake quantizers share their scale with their observer)."""
    out, seen = {}, set()
    for k, v in tensors.items():
        v = v.detach().cpu().contiguous()
        if v.numel() and v.untyped_storage().data_ptr() in seen:
            v = v.clone()
        if v.numel():
            seen.add(v.untyped_storage().data_ptr())
        out[k] = v
    return out


def load_state(path: Path, net: nn.Module, ema: nn.Module | None, opt: torch.optim.Optimizer) -> dict:
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


# ---------------------------------------------------------------------------------------------
# the steps of a run: runtime, data, what is trained, schedule, epochs, evaluation, checkpoints


@dataclass
class Runtime:
    """Where this process trains: its device and, under torchrun, its rank among ``world`` processes."""

    device: torch.device
    world: int = 1
    rank: int = 0
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def say(self, msg: str) -> None:
        """A message from the main process only."""
        if self.is_main:
            self.log(msg)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over all processes, in place."""
        if self.world > 1:
            dist.all_reduce(t)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def start_runtime(cfg: TrainConfig, log=None) -> Runtime:
    """Device and process group (under ``torchrun``: gloo on CPU, nccl on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    rt = Runtime(device, world, rank, **({"log": log} if log else {}))
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return rt


def check_run_folder(cfg: TrainConfig) -> Path:
    """The run folder, after checking the options that need no data; refuses to overwrite a run."""
    if cfg.img_size % size_divisor(cfg):
        raise TrainError(f"--img-size {cfg.img_size}: {cfg.model} needs a multiple of {size_divisor(cfg)}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise TrainError("--epochs and --batch-size must be at least 1")
    check_numbers(cfg)
    out = Path(cfg.out)
    state_path = out / STATE_FILE
    if cfg.resume and not state_path.exists():
        raise TrainError(f"--resume: {state_path} does not exist (nothing to resume)")
    if not cfg.resume and state_path.exists():
        raise TrainError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    return out


def _ranges(cfg: TrainConfig):
    """(option, value, lowest, highest or None, lowest allowed, highest allowed) per numeric option."""
    return (
        ("--lr", cfg.lr, 0.0, None, False, True),
        ("--min-lr-ratio", cfg.min_lr_ratio, 0.0, 1.0, True, True),
        ("--weight-decay", cfg.weight_decay, 0.0, None, True, True),
        ("--warmup-epochs", cfg.warmup_epochs, 0.0, None, True, True),
        ("--label-smoothing", cfg.label_smoothing, 0.0, 1.0, True, False),
        ("--ema", cfg.ema, 0.0, 1.0, True, False),
        ("--val-fraction", cfg.val_fraction, 0.0, 1.0, False, False),
        ("--crop-fraction", cfg.crop_fraction, 0.0, 1.0, False, True),
        ("--min-crop", cfg.min_crop, 0.0, 1.0, False, True),
        ("--jitter", cfg.jitter, 0.0, 1.0, True, True),
        ("--workers", cfg.workers, 0, None, True, True),
        ("--cache-scale", cfg.cache_scale, 1.0, None, True, True),
        ("--distill", cfg.distill, 0.0, 1.0, True, True),
    )


def check_numbers(cfg: TrainConfig) -> None:
    """Every numeric option inside its range (NaN included), else one line naming it."""
    for name, v, lo, hi, lo_ok, hi_ok in _ranges(cfg):
        bad = (
            not math.isfinite(v)
            or (v < lo if lo_ok else v <= lo)
            or (hi is not None and (v > hi if hi_ok else v >= hi))
        )
        if bad:
            lo_s, hi_s = (
                ("[" if lo_ok else "(") + f"{lo}",
                (f"{hi}" + ("]" if hi_ok else ")")) if hi is not None else "inf)",
            )
            raise TrainError(f"{name} must be in {lo_s}, {hi_s}, got {v}")


@dataclass
class RunData:
    """The decoded images of a run: training images cached at ``cache_scale`` x the input size,
    validation images exactly as the contract feeds them to the model."""

    splits: object
    contract: PreprocessContract
    train_px: object
    val_px: object
    skipped: list[str]
    classes: list[str] = field(default_factory=list)  # label i is classes[i]

    def __post_init__(self):
        self.classes = list(self.classes or self.splits.classes)

    def reorder(self, classes: list[str]) -> None:
        """Renumber the labels so that label i is ``classes[i]`` (the same names in another order, e.g.
        a checkpoint's); raises ``DatasetError`` if the names differ."""
        if sorted(classes) != sorted(self.classes):
            raise DatasetError(
                f"the dataset's classes ({', '.join(self.classes)}) are not the model's ({', '.join(classes)})"
            )
        new = torch.tensor([list(classes).index(c) for c in self.classes])
        for px in (self.train_px, self.val_px):
            px.labels = new.to(px.labels.device)[px.labels]
        self.classes = list(classes)


def load_data(cfg: TrainConfig, rt: Runtime, contract: PreprocessContract) -> RunData:
    """Find the splits, decode every image once (worker processes) and move them to the device."""
    splits = find_splits(cfg.data, cfg.val_fraction, cfg.seed)
    t0 = time.monotonic()
    cache_size = int(round(cfg.img_size * cfg.cache_scale))
    train_px = decode_split(splits.train, cache_size, workers=cfg.workers, log=rt.say)
    val_px = decode_split(splits.val, cfg.img_size, contract=contract, workers=cfg.workers, log=rt.say)
    counts = [0] * len(splits.classes)
    for lab in train_px.labels.tolist():
        counts[lab] += 1
    if any(c == 0 for c in counts):
        empty = [c for c, n in zip(splits.classes, counts) if n == 0]
        raise DatasetError(f"class(es) {', '.join(empty)} have no readable training images")
    skipped = train_px.skipped + val_px.skipped
    rt.say(
        f"data: {splits.root} ({splits.layout}): {len(splits.classes)} classes, {len(train_px)} train / "
        f"{len(val_px)} val images, {len(skipped)} unreadable skipped; decoded in {time.monotonic() - t0:.1f}s"
    )
    return RunData(splits, contract, train_px.to(rt.device), val_px.to(rt.device), skipped)


@dataclass
class Trainee:
    """What a run trains and how it is saved: the module whose parameters the optimizer steps, the
    optimizer, an optional EMA copy, the loss, and the function that writes a checkpoint."""

    net: nn.Module
    opt: torch.optim.Optimizer
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, x, y) -> scalar
    save: Callable[[Path, nn.Module, CheckpointMeta], None]  # (path, weights, meta)
    model_kwargs: dict = field(default_factory=dict)
    ema: nn.Module | None = None
    ema_decay: float = 0.0
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    begin_epoch: Callable[[int], None] = lambda epoch: None  # e.g. freeze QAT observers for the last epoch
    val_references: dict = field(default_factory=dict)  # name -> top-1 per val image to report agreement with
    recipe: dict = field(default_factory=dict)  # extra provenance for the checkpoints

    @property
    def mem_fmt(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def eval_model(self) -> nn.Module:
        return self.ema if self.ema is not None else self.net

    def autocast(self, device: torch.device):
        if self.amp_dtype:
            return torch.autocast(device.type, dtype=self.amp_dtype)
        return torch.autocast(device.type, enabled=False)

    def update_ema(self, step: int) -> None:
        if self.ema is None:
            return
        d = min(self.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.net.parameters()), 1.0 - d)
            for eb, mb in zip(self.ema.buffers(), self.net.buffers()):
                eb.copy_(mb)


class Recipe:
    """Float training from scratch. Other kinds of training subclass it (quantization-aware
    fine-tuning: ``mvit.quant.qat.QatRecipe``) and change what is trained, not the loop."""

    name = "float"

    def contract(self, cfg: TrainConfig) -> PreprocessContract:
        """The preprocessing contract the checkpoints will carry (and validation uses)."""
        return PreprocessContract(
            input_size=(cfg.img_size, cfg.img_size), crop_fraction=cfg.crop_fraction, interpolation=cfg.interpolation
        )

    def build(self, cfg: TrainConfig, rt: Runtime, data: RunData) -> Trainee:
        """A fresh model (seeded), AdamW without decay on norms and biases, an optional EMA."""
        torch.manual_seed(cfg.seed)
        net, model_kwargs = build_model(cfg, len(data.classes))
        net.to(rt.device)
        amp_dtype = resolve_amp(cfg.amp, rt.device)
        channels_last = resolve_channels_last(cfg.channels_last, rt.device)
        net = net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        ema = copy.deepcopy(net).eval() if cfg.ema > 0 else None
        if ema is not None:
            for p in ema.parameters():
                p.requires_grad_(False)
        fused = {"fused": True} if rt.device.type == "cuda" else {}
        opt = torch.optim.AdamW(param_groups(net, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999), **fused)
        ce = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        return Trainee(
            net,
            opt,
            lambda logits, x, y: ce(logits.float(), y),
            save_checkpoint,
            model_kwargs,
            ema,
            cfg.ema,
            amp_dtype,
            channels_last,
        )


@dataclass
class Schedule:
    """Steps, image size per epoch and the learning rate at each step."""

    sizes: list[int]
    global_batch: int
    steps_per_epoch: int
    total_steps: int
    warmup: int
    lr: float
    min_lr_ratio: float

    def lr_at(self, step: int) -> float:
        return lr_at(step, self.total_steps, self.warmup, self.lr, self.min_lr_ratio)


def plan_schedule(cfg: TrainConfig, world: int, n_train: int) -> Schedule:
    """Every epoch has ``n_train // (batch * world)`` full steps; warmup then cosine over all of them."""
    sizes = (
        progressive_sizes(cfg.img_size, cfg.epochs, size_divisor(cfg))
        if cfg.progressive and not cfg.model.startswith("vit")
        else [cfg.img_size] * cfg.epochs
    )
    global_batch = cfg.batch_size * world
    steps_per_epoch = max(1, n_train // global_batch)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = min(total_steps // 2, int(round(cfg.warmup_epochs * steps_per_epoch)))
    return Schedule(sizes, global_batch, steps_per_epoch, total_steps, warmup, cfg.lr, cfg.min_lr_ratio)


@dataclass
class RunState:
    """How far a run has come; saved after every epoch, restored by ``--resume``."""

    start_epoch: int = 0
    step: int = 0
    best_acc: float = -1.0
    best_epoch: int = -1
    train_time: float = 0.0


RESUME_MUST_MATCH = ("model", "img_size", "batch_size", "seed", "epochs", "qat", "init")


def open_run(cfg: TrainConfig, rt: Runtime, trainee: Trainee, out: Path) -> RunState:
    """A fresh run folder, or (``--resume``) the state of the last completed epoch: weights, EMA,
    optimizer, step and best accuracy, with metrics written after that epoch dropped."""
    metrics_path = out / METRICS_FILE
    if not cfg.resume:
        if rt.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if metrics_path.exists():
                metrics_path.unlink()
        return RunState()
    info = load_state(out / STATE_FILE, trainee.net, trainee.ema, trainee.opt)
    defaults = asdict(TrainConfig(data="", out=""))
    for key in RESUME_MUST_MATCH:
        was = info["config"].get(key, defaults[key])
        if was != getattr(cfg, key):
            raise TrainError(
                f"--resume: {key} was {was!r} in {out}, now {getattr(cfg, key)!r}; resume with the same settings"
            )
    if info.get("world_size", 1) != rt.world:
        raise TrainError(f"--resume: the run used {info.get('world_size', 1)} processes, now {rt.world}")
    state = RunState(info["epoch"] + 1, info["step"], info["best_val_acc"], info["best_epoch"], info["train_time_s"])
    if rt.is_main and metrics_path.exists():  # drop records written after the state we resume from
        keep = [
            ln
            for ln in metrics_path.read_text().splitlines()
            if ln.strip() and json.loads(ln).get("epoch", -1) <= info["epoch"]
        ]
        atomic_write(metrics_path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in keep)))
    rt.say(f"resuming {out} after epoch {state.start_epoch} of {cfg.epochs}")
    return state


def wrap_ddp(net: nn.Module, rt: Runtime) -> nn.Module:
    if rt.world == 1:
        return net
    return DDP(net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)


@dataclass
class EpochStats:
    loss: float
    acc: float
    images: int
    seconds: float
    lr: float


def train_one_epoch(
    cfg: TrainConfig,
    rt: Runtime,
    trainee: Trainee,
    model: nn.Module,
    data: RunData,
    sched: Schedule,
    state: RunState,
    epoch: int,
    aug: AugmentConfig,
) -> EpochStats:
    """One pass over the training images in the epoch's seeded order; advances ``state.step``.

    All randomness (order, crops, jitter, dropout) derives from ``(cfg.seed, epoch)``, so a resumed
    run repeats exactly what an uninterrupted one would have done.
    """
    size = sched.sizes[epoch]
    torch.manual_seed(epoch_seed(cfg.seed, epoch, 1))  # dropout etc.
    gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch))
    perm = torch.randperm(len(data.train_px), generator=gen)
    trainee.begin_epoch(epoch)
    model.train()
    device = rt.device
    tot_loss = torch.zeros((), dtype=torch.float64, device=device)
    tot_correct = torch.zeros((), dtype=torch.float64, device=device)
    seen, lr = 0, sched.lr_at(state.step)
    t0 = last_line = time.monotonic()
    steps = tqdm(
        range(sched.steps_per_epoch),
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        leave=False,
        disable=not (rt.is_main and sys.stderr.isatty()),
        dynamic_ncols=True,
    )
    for s in steps:
        chunk = perm[s * sched.global_batch : (s + 1) * sched.global_batch]
        mine = chunk[rt.rank :: rt.world].to(device)
        x = augment_batch(data.train_px.pixels[mine], size, data.contract, aug, gen)
        x = x.contiguous(memory_format=trainee.mem_fmt)
        y = data.train_px.labels[mine]
        lr = sched.lr_at(state.step)
        for g in trainee.opt.param_groups:
            g["lr"] = lr
        with trainee.autocast(device):
            logits = model(x)
        loss = trainee.loss(logits, x, y)
        trainee.opt.zero_grad(set_to_none=True)
        loss.backward()
        trainee.opt.step()
        state.step += 1
        trainee.update_ema(state.step)
        tot_loss += loss.detach().double() * len(mine)
        tot_correct += (logits.detach().argmax(1) == y).sum().double()
        seen += len(mine)
        now = time.monotonic()
        status = (
            f"loss {float(tot_loss) / seen:.3f} acc {100 * float(tot_correct) / seen:.1f}% "
            f"{seen * rt.world / max(now - t0, 1e-9):.1f} img/s"
        )
        if not steps.disable:
            steps.set_postfix_str(status, refresh=False)
        elif now - last_line >= LOG_EVERY_S and s + 1 < sched.steps_per_epoch:  # a log file: a line now and then
            rt.say(f"epoch {epoch + 1}/{cfg.epochs} step {s + 1}/{sched.steps_per_epoch} {status}")
            last_line = now
    steps.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.monotonic() - t0
    sums = rt.all_reduce(
        torch.stack([tot_loss, tot_correct, torch.tensor(float(seen), dtype=torch.float64, device=device)])
    )
    return EpochStats(float(sums[0] / sums[2]), float(sums[1] / sums[2]), int(sums[2]), seconds, lr)


def evaluate(
    model: nn.Module, px, contract: PreprocessContract, rt: Runtime, trainee: Trainee, references: dict | None = None
) -> dict:
    """Mean cross-entropy (``loss``) and top-1 accuracy (``acc``) over ``px``, and for each of
    ``references`` (name -> a top-1 per image) how often the model's top-1 agrees with it; batches of
    128, shared between processes."""
    model.eval()
    refs = references or {}
    idx = torch.arange(rt.rank, len(px), rt.world, device=rt.device)
    tot = torch.zeros(3 + len(refs), dtype=torch.float64, device=rt.device)
    with torch.no_grad(), trainee.autocast(rt.device):
        for i in range(0, len(idx), 128):
            j = idx[i : i + 128]
            x = eval_batch(px.pixels[j], contract).contiguous(memory_format=trainee.mem_fmt)
            logits = model(x).float()
            top1 = logits.argmax(1)
            tot[0] += F.cross_entropy(logits, px.labels[j], reduction="sum").double()
            tot[1] += (top1 == px.labels[j]).sum().double()
            tot[2] += len(j)
            for k, ref in enumerate(refs.values()):
                tot[3 + k] += (top1 == ref[j]).sum().double()
    rt.all_reduce(tot)
    return {"loss": float(tot[0] / tot[2]), "acc": float(tot[1] / tot[2])} | {
        name: float(tot[3 + k] / tot[2]) for k, name in enumerate(refs)
    }


def params_digest(m: nn.Module) -> torch.Tensor:
    """Three sums over all parameters: equal on every DDP process when they are in sync."""
    flat = torch.cat([p.detach().double().flatten() for p in m.parameters()])
    return torch.stack(
        [
            flat.sum(),
            (flat * flat).sum(),
            (flat * torch.arange(len(flat), device=flat.device, dtype=torch.float64)).sum(),
        ]
    )


def ranks_in_sync(net: nn.Module, rt: Runtime) -> dict:
    """DDP check for the metrics: whether every process holds the same parameters."""
    dig = params_digest(net)
    alld = [torch.zeros_like(dig) for _ in range(rt.world)]
    dist.all_gather(alld, dig)
    diff = max(float((a - alld[0]).abs().max()) for a in alld)
    return {"ranks_in_sync": diff == 0.0, "ranks_max_digest_diff": diff}


def save_epoch(
    cfg: TrainConfig, rt: Runtime, trainee: Trainee, state: RunState, record: dict, out: Path, meta_for
) -> None:
    """After an epoch: its metrics line, ``best``/``last`` checkpoints and the resume state (main
    process), then the best accuracy shared with the other processes."""
    epoch, val_acc = record["epoch"], record["val_acc"]
    if rt.is_main:
        with open(out / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        improved = val_acc > state.best_acc
        if improved:
            state.best_acc, state.best_epoch = val_acc, epoch
        ck = {
            "epoch": epoch,
            "val_acc": val_acc,
            "train_acc": record["train_acc"],
            "train_time_s": round(state.train_time, 1),
        }
        if improved:
            trainee.save(out / "best.safetensors", trainee.eval_model, meta_for(ck))
        trainee.save(out / "last.safetensors", trainee.eval_model, meta_for(ck))
        info = {
            "epoch": epoch,
            "step": state.step,
            "best_val_acc": state.best_acc,
            "best_epoch": state.best_epoch,
            "train_time_s": state.train_time,
            "world_size": rt.world,
            "config": asdict(cfg),
        }
        save_state(out / STATE_FILE, trainee.net, trainee.ema, trainee.opt, info)
    if rt.world > 1:
        best_t = torch.tensor([state.best_acc, float(state.best_epoch)], dtype=torch.float64, device=rt.device)
        dist.broadcast(best_t, 0)
        state.best_acc, state.best_epoch = float(best_t[0]), int(best_t[1])
        dist.barrier()


def provenance(cfg: TrainConfig, rt: Runtime, data: RunData, trainee: Trainee) -> dict:
    """What every checkpoint of the run records about how it was made."""
    return {
        "command": cfg.command,
        "dataset": Path(cfg.data).name,
        "dataset_layout": data.splits.layout,
        "train_images": len(data.train_px),
        "val_images": len(data.val_px),
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "device": device_name(rt.device),
        "processes": rt.world,
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "recipe": {
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "warmup_epochs": cfg.warmup_epochs,
            "schedule": "warmup+cosine",
            "label_smoothing": cfg.label_smoothing,
            "ema": cfg.ema,
            "min_crop": cfg.min_crop,
            "jitter": cfg.jitter,
            "progressive": cfg.progressive,
            "amp": str(trainee.amp_dtype or "off"),
            "channels_last": trainee.channels_last,
        }
        | trainee.recipe,
    } | cfg.extra


def train(cfg: TrainConfig, log=None, recipe: Recipe | None = None) -> dict:
    """Run (or resume) one training run; returns the summary (also written to ``out/summary.json``).

    ``recipe`` says what is trained (default: a fresh model of ``cfg.model``); the loop is the same
    for every recipe: data, model and optimizer, then per epoch train, evaluate, checkpoint.
    """
    recipe = recipe or Recipe()
    rt = start_runtime(cfg, log)
    out = check_run_folder(cfg)
    data = load_data(cfg, rt, recipe.contract(cfg))
    trainee = recipe.build(cfg, rt, data)
    n_params = sum(p.numel() for p in trainee.net.parameters())
    sched = plan_schedule(cfg, rt.world, len(data.train_px))
    state = open_run(cfg, rt, trainee, out)
    model = wrap_ddp(trainee.net, rt)
    aug = AugmentConfig(scale=(cfg.min_crop, 1.0), brightness=cfg.jitter, contrast=cfg.jitter, saturation=cfg.jitter)
    rt.say(
        f"model: {cfg.model} ({n_params:,} parameters{', ' + recipe.name if recipe.name != 'float' else ''}) "
        f"on {device_name(rt.device)}; amp {trainee.amp_dtype or 'off'}, channels_last "
        f"{'on' if trainee.channels_last else 'off'}, {rt.world} process(es), batch {cfg.batch_size} per "
        f"process, {sched.steps_per_epoch} steps/epoch"
    )
    prov = provenance(cfg, rt, data, trainee)

    def meta_for(extra: dict) -> CheckpointMeta:
        return CheckpointMeta(cfg.model, list(data.classes), data.contract, prov | extra, trainee.model_kwargs)

    record: dict = {}
    stopped_early = False
    for epoch in range(state.start_epoch, cfg.epochs):
        stats = train_one_epoch(cfg, rt, trainee, model, data, sched, state, epoch, aug)
        state.train_time += stats.seconds
        val = evaluate(trainee.eval_model, data.val_px, data.contract, rt, trainee, trainee.val_references)
        val_loss, val_acc = val.pop("loss"), val.pop("acc")
        record = (
            {
                "epoch": epoch,
                "img_size": sched.sizes[epoch],
                "lr": stats.lr,
                "train_loss": round(stats.loss, 6),
                "train_acc": round(stats.acc, 6),
                "val_loss": round(val_loss, 6),
                "val_acc": round(val_acc, 6),
            }
            | {k: round(v, 6) for k, v in val.items()}
            | {
                "images_per_s": round(stats.images / stats.seconds, 2),
                "epoch_time_s": round(stats.seconds, 3),
                "train_time_s": round(state.train_time, 2),
            }
        )
        if rt.world > 1:
            record |= ranks_in_sync(trainee.net, rt)
        rt.say(
            f"epoch {epoch + 1}/{cfg.epochs} size {sched.sizes[epoch]} loss {stats.loss:.3f} acc "
            f"{100 * stats.acc:.1f}% val_loss {val_loss:.3f} val_acc {100 * val_acc:.2f}% "
            + "".join(f"{k} {100 * v:.2f}% " for k, v in val.items())
            + f"{record['images_per_s']:.1f} img/s ({stats.seconds:.1f}s)"
        )
        save_epoch(cfg, rt, trainee, state, record, out, meta_for)
        if cfg.stop_after_epochs is not None and epoch + 1 >= cfg.stop_after_epochs and epoch + 1 < cfg.epochs:
            stopped_early = True
            rt.say(f"stopping after epoch {epoch + 1} as asked (--stop-after-epochs); continue with --resume")
            break
    return finish(cfg, rt, trainee, data, state, record, stopped_early, n_params, out)


def finish(
    cfg: TrainConfig,
    rt: Runtime,
    trainee: Trainee,
    data: RunData,
    state: RunState,
    record: dict,
    stopped_early: bool,
    n_params: int,
    out: Path,
) -> dict:
    """The run's summary (``summary.json``), with the clean training accuracy unless stopped early."""
    summary = {
        "model": cfg.model,
        "parameters": n_params,
        "dataset": Path(cfg.data).name,
        "classes": data.classes,
        "img_size": cfg.img_size,
        "epochs": cfg.epochs,
        "completed": not stopped_early,
        "best_val_acc": state.best_acc,
        "best_epoch": state.best_epoch,
        "train_time_s": round(state.train_time, 1),
        "device": device_name(rt.device),
        "processes": rt.world,
        "skipped_images": data.skipped,
        "out": str(out),
    }
    if record:
        summary |= {"last_val_acc": record["val_acc"], "last_train_acc_augmented": record["train_acc"]}
    if not stopped_early and cfg.eval_train:
        view = train_eval_view(data.train_px, data.contract, rt.device)
        summary["last_train_acc_clean"] = evaluate(trainee.eval_model, view, data.contract, rt, trainee)["acc"]
    if rt.is_main:
        atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1) + "\n"))
        rt.say(f"done: best val_acc {100 * state.best_acc:.2f}% (epoch {state.best_epoch + 1}); checkpoints in {out}")
    rt.barrier()
    return summary


def train_eval_view(train_px, contract: PreprocessContract, device):
    """Training images as the contract would crop them (centre crop, resized to the input size)."""

    h, w = contract.input_size
    px = train_px.pixels
    if px.shape[-1] != w or px.shape[-2] != h:
        px = torch.cat(
            [
                F.interpolate(c.float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
                .round_()
                .clamp_(0, 255)
                .to(torch.uint8)
                for c in px.split(256)
            ]
        )
    return DecodedImages(px, train_px.labels, [])


def command_line() -> str:
    return "mvit-train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
