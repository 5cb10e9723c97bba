"""Interleaved latency measurement: one worker process per row, driven round-robin.

Every row gets a load, a first run, then bursts of warm runs in rotating order until each row has
at least ``min_time`` seconds and ``runs`` timed invocations. Only one worker runs at a time, at the
same thread count, so rows see the same machine state; each row's peak memory is its own process's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class WorkerError(RuntimeError):
    """A worker that died or answered with an error."""


@dataclass
class Worker:
    key: str
    spec: dict
    log: Path
    proc: subprocess.Popen | None = None
    times: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    error: str | None = None

    def start(self) -> None:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS=str(self.spec["threads"]))
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mvit.benchmarks.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
            bufsize=1,
        )
        self.proc.stdin.write(json.dumps(self.spec) + "\n")
        self.proc.stdin.flush()

    def ask(self, **msg) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            raise WorkerError(f"worker exited (code {self.proc.returncode if self.proc else '?'}); see {self.log}")
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise WorkerError(f"worker died (code {self.proc.returncode}); see {self.log}")
        out = json.loads(line)
        if "error" in out:
            raise WorkerError(out["error"])
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.ask(cmd="quit")
            except (WorkerError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


def interleaved_medians(calls: dict, rounds: int, per_round: int, warmup: int = 3) -> dict:
    """Median ms of each zero-argument callable, timed in one process: ``rounds`` rounds of ``per_round``
    calls each, the starting callable rotating every round (for in-process side-by-side comparisons)."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    keys, times = list(calls), {k: [] for k in calls}
    for r in range(rounds):
        k = r % len(keys)
        for key in keys[k:] + keys[:k]:
            for _ in range(per_round):
                t0 = time.perf_counter()
                calls[key]()
                times[key].append((time.perf_counter() - t0) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def tflite_on_zeros(model, threads: int):
    """``invoke`` of an ai-edge-litert interpreter for ``model`` (a .tflite path or its bytes) whose
    inputs are set to zeros: a zero-argument callable for ``interleaved_medians``."""
    from ai_edge_litert.interpreter import Interpreter  # lazy: loaded only when a TFLite file is timed

    kw = {"model_content": model} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    it = Interpreter(num_threads=threads, **kw)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    return it.invoke


def summarize(times_ms: list[float]) -> dict:
    """Median, p90, min, mean, std and throughput of warm-run times."""
    t = np.asarray(times_ms, np.float64)
    return {
        "runs": int(t.size),
        "median_ms": float(np.median(t)),
        "p90_ms": float(np.percentile(t, 90)),
        "min_ms": float(t.min()),
        "mean_ms": float(t.mean()),
        "std_ms": float(t.std(ddof=1) if t.size > 1 else 0.0),
        "throughput_ips": float(1000.0 / t.mean()),
        "total_s": float(t.sum() / 1000.0),
    }


def measure(
    workers: list[Worker],
    runs: int,
    min_time: float,
    burst: float = 0.25,
    max_rounds: int = 400,
    eval_pixels: Path | None = None,
    eval_dir: Path | None = None,
    progress=None,
) -> None:
    """Load every worker, time them interleaved, then (optionally) evaluate each on ``eval_pixels``.

    Results land in each worker's ``info`` (load, first run, latency summary, memory, eval file) or
    ``error``. Workers are stopped at the end.
    """
    say = progress or (lambda msg: None)
    try:
        for w in workers:
            w.start()
        for w in workers:
            try:
                w.info.update(w.ask(cmd="load"))
                w.info.update(w.ask(cmd="first"))
                say(f"loaded {w.key}: load {w.info['load_ms']:.0f} ms, first run {w.info['first_ms']:.1f} ms")
            except WorkerError as e:
                w.error = f"runtime failed: {e}"
                say(f"{w.key}: {w.error}")
        live = [w for w in workers if w.error is None]
        for rnd in range(max_rounds):
            pending = [w for w in live if w.error is None and (len(w.times) < runs or sum(w.times) < min_time * 1e3)]
            if not pending:
                break
            k = rnd % len(pending)
            for w in pending[k:] + pending[:k]:  # rotate the order: no row is always first after another
                try:
                    w.times += w.ask(cmd="burst", seconds=burst)["times_ms"]
                except WorkerError as e:
                    w.error = f"runtime failed while timing: {e}"
            if progress and rnd % 4 == 3:
                done = sum(min(1.0, sum(w.times) / max(1e-9, min_time * 1e3), len(w.times) / runs) for w in live)
                say(
                    f"timing {len(live)} rows interleaved: {done / max(1, len(live)):.0%} "
                    f"(slowest: {min(len(w.times) for w in live)} runs)"
                )
        for w in live:
            if w.error is None:
                w.info["latency"] = summarize(w.times)
                try:
                    w.info.update(w.ask(cmd="memory"))
                except WorkerError as e:
                    w.error = f"runtime failed: {e}"
        for w in workers:
            pixels = w.spec.get("eval_pixels", eval_pixels)  # a worker's own images, or everyone's
            if pixels is not None and w.error is None and w.spec["kind"] != "torch":
                out = eval_dir / f"{w.key.replace('/', '_').replace(':', '_')}.npy"
                try:
                    w.info["eval_seconds"] = w.ask(cmd="eval", pixels=str(pixels), out=str(out))["seconds"]
                    w.info["scores"] = str(out)
                    say(f"evaluated {w.key} in {w.info['eval_seconds']:.1f} s")
                except WorkerError as e:
                    w.error = f"runtime failed on the evaluation images: {e}"
    finally:
        for w in workers:
            w.stop()
