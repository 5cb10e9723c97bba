"""One benchmark row in its own process: load a runner, time it on command, report peak memory.

The parent (``mvit.benchmarks.latency``) starts one worker per row and drives them round-robin, one at a
time, so every row is timed under the same conditions (interleaved) while each row's peak resident
memory (``ru_maxrss``) belongs to that row alone.

Protocol: one JSON object per line on stdin; one JSON reply per line on the protocol pipe (the
original stdout; native libraries' chatter is redirected to stderr). Commands:

    {"cmd": "load"}                                  -> load_ms, rss_before_mb, rss_after_mb
    {"cmd": "first"}                                 -> prepare_ms, first_ms
    {"cmd": "burst", "seconds": s, "max": n}         -> times_ms: [...]
    {"cmd": "memory"}                                -> peak_rss_mb, rss_mb
    {"cmd": "eval", "pixels": p, "out": o}           -> seconds (scores saved to o as .npy)
    {"cmd": "quit"}

The worker imports torch and the project's modules inside its functions (TorchEager, _preimport, main),
on purpose: they load after main() has pointed stdout at stderr, so nothing they print reaches the
protocol, and a torch row never loads mvit.export.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time

import numpy as np


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux
        return float("nan")


def _peak_mb() -> float:
    """Peak resident memory of this process. On Linux VmHWM of /proc/self/status: ``ru_maxrss``
    survives exec, so a freshly spawned worker would report its parent's high-water mark."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class TorchEager:
    """PyTorch eager fp32, the baseline: the contract's normalisation, then ``model(x)``."""

    def __init__(self, weights: str, threads: int):
        import torch  # lazy: see the module docstring

        from ..model.checkpoint import load_checkpoint  # lazy: see the module docstring

        torch.set_num_threads(threads)
        self.torch = torch
        self.ckpt = load_checkpoint(weights)
        self.model = self.ckpt.model.eval()
        self.contract = self.ckpt.meta.contract

    def prepare(self, pixels: np.ndarray):
        from ..model.preprocess import normalize_hwc_uint8  # lazy: see the module docstring

        return self.torch.from_numpy(normalize_hwc_uint8(pixels, self.contract))

    def invoke(self, x):
        with self.torch.inference_mode():
            return self.model(x)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        return self.invoke(self.prepare(pixels)).float().numpy()


def _preimport(spec: dict) -> None:
    """Import the runtime before timing the load, so load time is the model's, not Python's."""
    if spec["kind"] == "torch":
        import torch  # noqa: F401

        import mvit.model  # noqa: F401
    else:
        from ..export.backends import format_of, get_backend  # lazy: see the module docstring

        for name in get_backend(format_of(spec["path"])).RUNTIME_MODULES:
            importlib.import_module(name)


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    spec = json.loads(sys.stdin.readline())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _preimport(spec)
    pixels = np.load(spec["pixels"])
    runner, native = None, None

    def reply(**kw):
        proto.write(json.dumps(kw) + "\n")

    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        try:
            if cmd == "load":
                before = _rss_mb()
                t0 = time.perf_counter()
                if spec["kind"] == "torch":
                    runner = TorchEager(spec["weights"], spec["threads"])
                elif spec.get("meta") is not None:  # a file described by the caller (mvit.benchmarks.files)
                    from ..export.backends import format_of, get_backend  # lazy: see the module docstring

                    runner = get_backend(format_of(spec["path"])).load_runner(
                        spec["path"], spec["threads"], spec["meta"]
                    )
                else:
                    from ..export.api import load_artifact_runner  # lazy: see the module docstring

                    runner = load_artifact_runner(spec["path"], spec["threads"])
                reply(load_ms=(time.perf_counter() - t0) * 1e3, rss_before_mb=before, rss_after_mb=_rss_mb())
            elif cmd == "first":
                prep = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    native = runner.prepare(pixels)
                    prep.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                runner.invoke(native)
                first = (time.perf_counter() - t0) * 1e3
                for _ in range(2):  # warm-up, not counted
                    runner.invoke(native)
                reply(prepare_ms=float(np.median(prep)), first_ms=first)
            elif cmd == "burst":
                times, deadline, limit = [], time.perf_counter() + msg["seconds"], msg.get("max", 10**9)
                invoke = runner.invoke
                while len(times) < limit:
                    t0 = time.perf_counter_ns()
                    invoke(native)
                    t1 = time.perf_counter_ns()
                    times.append((t1 - t0) / 1e6)
                    if t1 / 1e9 >= deadline:
                        break
                reply(times_ms=times)
            elif cmd == "memory":
                reply(peak_rss_mb=_peak_mb(), rss_mb=_rss_mb())
            elif cmd == "eval":
                if runner is None:
                    raise RuntimeError("eval before load")
                data = np.load(msg["pixels"])
                t0 = time.perf_counter()
                scores = np.concatenate([runner.run(data[i : i + 1]) for i in range(len(data))])
                np.save(msg["out"], scores.astype(np.float32))
                reply(seconds=time.perf_counter() - t0)
            elif cmd == "quit":
                reply(ok=True)
                return 0
            else:
                reply(error=f"unknown command {cmd!r}")
        except Exception as e:  # report and stay alive: the parent decides
            reply(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
