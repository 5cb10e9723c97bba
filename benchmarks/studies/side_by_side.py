"""Latency of model files side by side: one process, rows interleaved, medians and ratios to a baseline.

Each mvit artifact (.tflite, .onnx, .pte, with its metadata) runs in the runner the parity check uses,
on a black image, is warmed up, then timed in rounds whose starting file
rotates (``mvit.benchmarks.latency.interleaved_medians``), so a noisy neighbour slows every row alike.
A row named ``GROUP:fp32`` is the baseline of the other ``GROUP:...`` rows.

    taskset -c 0,1 python benchmarks/studies/side_by_side.py --threads 2 \
        tflite:fp32=A.tflite tflite:int8=B.tflite onnx:fp32=C.onnx onnx:int8=D.onnx --out report.md
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from mvit.benchmarks.latency import interleaved_medians
from mvit.benchmarks.matrix import cpu_info
from mvit.benchmarks.script_args import emit_report
from mvit.export.api import load_artifact_runner


def on_zeros(path: str, threads: int):
    """One batch-1 ``invoke`` of the artifact's own runner (``mvit.export.load_artifact_runner``) on a black
    image in its native input: a zero-argument callable."""
    runner = load_artifact_runner(path, threads)
    h, w = runner.contract.input_size
    x = runner.prepare(np.zeros((1, h, w, 3), np.uint8))
    return lambda: runner.invoke(x)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="+", help="NAME=FILE (an mvit artifact); GROUP:fp32 is its group's baseline")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    calls = {}
    for row in args.rows:
        name, path = row.split("=", 1)
        calls[name] = on_zeros(path, args.threads)
    med = interleaved_medians(calls, args.rounds, args.per_round)
    lines = [
        f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_info()[0]}, {os.cpu_count()} CPUs ({' '.join(cpu_info()[1])}), "
        f"{args.threads} threads, "
        f"{args.rounds} rounds x {args.per_round} runs, rows interleaved, load average before "
        f"{load:.2f}",
        "",
        "| row | file | median ms | ratio to its fp32 |",
        "|---|---|---:|---:|",
    ]
    for row in args.rows:
        name, path = row.split("=", 1)
        base = med.get(name.split(":")[0] + ":fp32")
        lines.append(
            f"| {name} | `{path}` | {med[name]:.2f} | {med[name] / base:.2f}x |"
            if base
            else f"| {name} | `{path}` | {med[name]:.2f} | |"
        )
    emit_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
