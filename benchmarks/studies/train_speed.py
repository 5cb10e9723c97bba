"""Training-step speed on this machine: plain fp32 vs channels_last vs bf16 autocast (+channels_last).

    python benchmarks/studies/train_speed.py --model mobilevit_xxs --sizes 256,192 --batch 32 --rounds 3

Each configuration runs a few full training steps (forward, backward, AdamW) on random data; the
configurations are interleaved round by round and the median images/s is reported with its ratio to
plain fp32, so a busy machine slows every column alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import mvit.model as zoo

CONFIGS = {
    "fp32": (False, None),
    "channels_last": (True, None),
    "bf16": (False, torch.bfloat16),
    "bf16+channels_last": (True, torch.bfloat16),
}


def make_step(name: str, size: int, batch: int, channels_last: bool, amp, classes: int = 6):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = zoo.create(name, classes).train().to(memory_format=fmt)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, classes, (batch,))

    def step():
        with torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
            loss = torch.nn.functional.cross_entropy(net(x).float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mobilevit_xxs")
    p.add_argument("--sizes", default="256,192")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=2, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--configs", default=",".join(CONFIGS))
    a = p.parse_args(argv)
    torch.set_flush_denormal(True)
    names = a.configs.split(",")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; {a.model}, batch {a.batch}, median of {a.rounds} rounds"
    )
    rows = []
    for size in (int(s) for s in a.sizes.split(",")):
        steps = {c: make_step(a.model, size, a.batch, *CONFIGS[c]) for c in names}
        for c in names:  # warm-up
            steps[c]()
        times = {c: [] for c in names}
        for _ in range(a.rounds):
            for c in names:
                t = time.perf_counter()
                for _ in range(a.steps):
                    steps[c]()
                times[c].append(a.batch * a.steps / (time.perf_counter() - t))
        med = {c: statistics.median(v) for c, v in times.items()}
        for c in names:
            rows.append((size, c, med[c], med[c] / med[names[0]]))
    print(f"\n| size | configuration | images/s | vs {names[0]} |\n|---|---|---|---|")
    for size, c, v, r in rows:
        print(f"| {size} | {c} | {v:.1f} | {r:.2f} |")


if __name__ == "__main__":
    main()
