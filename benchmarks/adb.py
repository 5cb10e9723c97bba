"""Latency on the user's Android phone over adb: LiteRT's ``benchmark_model`` and ExecuTorch's
``executor_runner``, their output parsed into ``mvit.device_results/1`` rows.

Both tools are the vendors' own command-line benchmarks, pushed with the model to
``/data/local/tmp/mvit`` and run through ``adb shell``. Rows carry the device (``getprop``: model,
SoC, Android version, ABI), the thread count the tool reports using, and what the delegate took.
Where each output format comes from (the tools' sources) is cited next to its parser; the test
suite replays recordings of exactly these formats through a fake ``adb``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..export.backends import format_of
from .device_results import SCHEMA, problems
from .files import sha256
from .matrix import BenchError

DEVICE_DIR = "/data/local/tmp/mvit"


class AdbError(BenchError):
    """adb, the phone or a benchmark binary is not usable: one line saying what and what to do."""


@dataclass
class AdbConfig:
    files: list[Path]
    binaries: dict[str, Path]  # format -> local path of its benchmark binary (RUNNERS)
    serial: str | None = None
    threads: int = 4
    runs: int = 50
    warmup: int = 10
    gpu: bool = False  # also run .tflite files on LiteRT's GPU delegate
    adb: str = "adb"
    timeout: float = 900.0
    rejected: list[str] = field(default_factory=list)  # filled by ``run``: one line per refused file


def parse_binary_args(items: list[str]) -> dict[str, Path]:
    """``--adb-benchmark-binary [tflite=|executorch=]PATH`` values -> {format: path}; a bare path is
    recognised by its file name (``benchmark_model``, ``executor_runner``)."""
    out: dict[str, Path] = {}
    for item in items:
        kind, sep, path = item.partition("=")
        if not sep or kind not in RUNNERS:
            path, kind = item, next((f for f, (tool, _, _) in RUNNERS.items() if tool in Path(item).name), None)
            if kind is None:
                raise AdbError(
                    f"--adb-benchmark-binary {item}: name it tflite=PATH (LiteRT's benchmark_model) "
                    f"or executorch=PATH (ExecuTorch's executor_runner)"
                )
        p = Path(path)
        if not p.is_file():
            raise AdbError(f"--adb-benchmark-binary {item}: no such file")
        out[kind] = p
    return out


# ------------------------------------------------------------------------------------------ adb


class Adb:
    """Runs adb commands for one device; every failure becomes one ``AdbError`` line."""

    def __init__(self, exe: str, serial: str | None, timeout: float):
        self.exe, self.serial, self.timeout = exe, serial, timeout

    def run(self, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
        cmd = [self.exe] + (["-s", self.serial] if self.serial else []) + list(args)
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or self.timeout)
        except FileNotFoundError:
            raise AdbError(f"adb not found ({self.exe}): install Android platform-tools or pass --adb-path") from None
        except subprocess.TimeoutExpired:
            raise AdbError(f"adb {' '.join(args[:2])} gave no answer in {timeout or self.timeout:.0f} s") from None
        if check and r.returncode != 0:
            msg = (r.stderr.strip() or r.stdout.strip() or f"exit status {r.returncode}").splitlines()[0]
            raise AdbError(f"adb {' '.join(args[:2])} failed: {msg}")
        return r

    def shell(self, command: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
        return self.run("shell", command, check=check, timeout=timeout)


def parse_devices(text: str) -> list[tuple[str, str]]:
    """``adb devices`` -> [(serial, state)]. adb prints ``List of devices attached`` and then one
    ``SERIAL<TAB>STATE`` line per device (adb/transport.cpp, ``append_transport``); states include
    device, unauthorized, offline, no permissions, recovery, bootloader, sideload."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*")):
            continue
        serial, _, state = line.partition("\t")
        out.append((serial.strip(), state.strip().split(" (")[0] or "unknown"))
    return out


def choose_device(devices: list[tuple[str, str]], serial: str | None) -> str:
    """The serial to use, or an ``AdbError`` for no device, an unauthorised or offline one, or an
    ambiguous choice."""
    if serial:
        state = dict(devices).get(serial)
        if state is None:
            listed = ", ".join(s for s, _ in devices) or "none"
            raise AdbError(f"device {serial} is not connected (adb devices lists: {listed})")
    else:
        if not devices:
            raise AdbError("no Android device connected: plug one in with USB debugging on (adb devices lists none)")
        if len(devices) > 1:
            raise AdbError(
                f"{len(devices)} devices connected ({', '.join(s for s, _ in devices)}): "
                f"pass the one to use, --adb SERIAL"
            )
        serial, state = devices[0]
    if state == "unauthorized":
        raise AdbError(f"device {serial} is unauthorized: unlock it and accept the 'Allow USB debugging?' prompt")
    if state != "device":
        raise AdbError(f"device {serial} is {state}, not ready: reconnect it (adb reconnect) and check USB debugging")
    return serial


def parse_getprop(text: str) -> dict[str, str]:
    """``getprop`` with no arguments prints ``[name]: [value]`` per property (AOSP toolbox getprop)."""
    return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, flags=re.M))


def device_info(props: dict[str, str]) -> dict:
    """The ``device`` object of a device_results file from ``getprop`` properties."""
    return {
        "manufacturer": props.get("ro.product.manufacturer") or "unknown",
        "model": props.get("ro.product.model") or "unknown",
        "soc": props.get("ro.soc.model") or props.get("ro.board.platform") or None,
        "os": "Android",
        "os_version": props.get("ro.build.version.release") or "unknown",
        "abi": props.get("ro.product.cpu.abi") or None,
    }


# ------------------------------------------------------------------------------------------ benchmark_model


def _us(text: str, key: str) -> float | None:
    m = re.search(rf"\b{key}=([0-9.eE+-]+)", text)
    return float(m.group(1)) if m else None


def parse_benchmark_model(out: str) -> dict:
    """Timings from LiteRT's ``benchmark_model`` output.

    Formats (google-ai-edge/LiteRT tflite/tools/benchmark/benchmark_model.cc and
    benchmark_tflite_model.cc; ``TFLITE_LOG(INFO)`` prefixes ``INFO: ``, tools/logging.h):
    ``Running benchmark for at least N iterations ...`` precedes each of the two stats lines (warm-up,
    then the timed runs), written by ``StatWithPercentiles::OutputToStream`` (tsl stats_calculator.h)
    as ``count=50 first=.. curr=.. min=.. max=.. avg=.. std=.. p5=.. median=.. p95=..`` in
    microseconds; ``Inference timings in us: Init: .., First inference: .., Warmup (avg): ..,
    Inference (avg): ..``; ``Num threads: [4]``; ``Explicitly applied XNNPACK delegate, and the
    model graph will be completely executed by the delegate.`` (or ``partially executed ... w/ N
    delegate kernels``, or ``Though GPU delegate is explicitly applied, the model graph will not be
    executed by the delegate.``); optionally ``Memory footprint delta from the start of the tool
    (MB): init=.. overall=..`` and ``Overall peak memory footprint (MB) via periodic monitoring: ..``.
    """
    stats = re.findall(r"^(?:INFO: )?(count=\d+.*)$", out, flags=re.M)
    timings = re.search(
        r"Inference timings in us: Init: ([0-9.eE+-]+), First inference: ([0-9.eE+-]+), "
        r"Warmup \(avg\): ([0-9.eE+-]+), Inference \(avg\): ([0-9.eE+-]+)",
        out,
    )
    if len(stats) < 2 or not timings:
        raise ValueError("no 'count=...' statistics or 'Inference timings' line in benchmark_model's output")
    warm, runs = stats[-2], stats[-1]
    count = int(_us(runs, "count"))
    if _us(runs, "median") is None:
        raise ValueError("benchmark_model printed no median (builds before percentiles were added are not supported)")
    lat = {
        "runs": count,
        "warmup": int(_us(warm, "count")),
        "median_ms": _us(runs, "median") / 1e3,
        "p90_ms": None,
        "p95_ms": _us(runs, "p95") / 1e3,
        "p5_ms": _us(runs, "p5") / 1e3,
        "min_ms": (_us(runs, "min") or _us(runs, "curr")) / 1e3,
        "mean_ms": float(timings.group(4)) / 1e3,
        "std_ms": (_us(runs, "std") or 0.0) / 1e3,
    }
    threads = re.search(r"Num threads: \[(-?\d+)\]", out)
    delegate = re.search(
        r"Explicitly applied (\S+) delegate, and the model graph will be (completely|partially) "
        r"executed by the delegate(?: w/ (\d+) delegate kernels)?",
        out,
    )
    ignored = re.search(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed", out)
    memory = re.search(
        r"Memory footprint delta from the start of the tool \(MB\): init=([0-9.]+) overall=([0-9.]+)", out
    )
    peak = re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([0-9.]+)", out)
    return {
        "latency": lat,
        "load_ms": float(timings.group(1)) / 1e3,
        "first_ms": float(timings.group(2)) / 1e3,
        "threads": int(threads.group(1)) if threads and int(threads.group(1)) > 0 else None,
        "delegate": delegate.group(1) if delegate else None,
        "delegation": (delegate.group(2) + (f", {delegate.group(3)} delegate kernels" if delegate.group(3) else ""))
        if delegate
        else ("none: " + ignored.group(1) + " took no op" if ignored else None),
        "memory_mb": {"init": float(memory.group(1)), "overall": float(memory.group(2))} if memory else None,
        "peak_memory_mb": float(peak.group(1)) if peak else None,
    }


def rejection(out: str) -> str:
    """The line that says why a tool refused a model: its first ERROR/Error line, else its last line."""
    for line in out.splitlines():
        s = line.strip()
        m = re.match(r"^(?:ERROR: |[EF] \d\d:\d\d:\d\d\.\d+ executorch:\S+\] |.* [EF] ExecuTorch: )(.*)", s)
        if m and m.group(1) and "Benchmarking failed" not in m.group(1):
            return m.group(1).strip()
    lines = [l.strip() for l in out.splitlines() if l.strip()]
    return lines[-1] if lines else "no output"


# ------------------------------------------------------------------------------------------ executor_runner

_ET_LINE = r"(?:^[IDEWF] \d\d:\d\d:\d\d\.\d+ executorch:\S+\] |\bExecuTorch: |^)"


def parse_executor_runner(out: str, warmup: int) -> dict:
    """Timings from ExecuTorch's ``executor_runner`` log (pytorch/executorch
    examples/portable/executor_runner/executor_runner.cpp: ``Model loaded in %f ms.``, ``Resetting
    threadpool with num threads = %d``, ``Iteration %u of %u: %f ms`` per execution, ``Model executed
    successfully %u time(s) in %f ms.``). ``ET_LOG`` writes ``I 00:00:00.123456
    executorch:file.cpp:123] message`` to stderr with the POSIX platform layer
    (runtime/platform/default/posix.cpp) and to logcat under the tag ``ExecuTorch`` with the Android
    one (android.cpp), which ``adb logcat -d -s ExecuTorch:I`` prints as ``MM-DD HH:MM:SS.mmm PID TID I
    ExecuTorch: message``. The first ``warmup`` iterations are the warm-up (the runner has none of its own).
    """
    iters = [float(x) for x in re.findall(_ET_LINE + r"Iteration \d+ of \d+: ([0-9.]+) ms", out, flags=re.M)]
    loaded = re.search(r"Model loaded in ([0-9.]+) ms", out)
    done = re.search(r"Model executed successfully (\d+) time\(s\) in ([0-9.]+) ms", out)
    threads = re.search(r"Resetting threadpool with num threads = (-?\d+)", out)
    if not done:
        raise ValueError("no 'Model executed successfully' line in executor_runner's output")
    if len(iters) <= warmup:
        raise ValueError(
            f"executor_runner printed {len(iters)} 'Iteration' times, expected more than the {warmup} "
            f"warm-up runs (executor_runner from ExecuTorch 1.3 or later prints one per execution)"
        )
    timed = np.asarray(iters[warmup:], np.float64)
    lat = {
        "runs": int(timed.size),
        "warmup": warmup,
        "median_ms": float(np.median(timed)),
        "p90_ms": float(np.percentile(timed, 90)),
        "min_ms": float(timed.min()),
        "mean_ms": float(timed.mean()),
        "std_ms": float(timed.std(ddof=1)) if timed.size > 1 else 0.0,
    }
    return {
        "latency": lat,
        "load_ms": float(loaded.group(1)) if loaded else None,
        "first_ms": iters[0],
        "threads": int(threads.group(1)) if threads and int(threads.group(1)) > 0 else None,
        "delegate": None,
        "delegation": None,
        "memory_mb": None,
        "peak_memory_mb": None,
    }


# ------------------------------------------------------------------------------------------ run


def cannot_execute(r: subprocess.CompletedProcess) -> bool:
    """The phone's shell could not start the binary: exit 126/127 (``inaccessible or not found``,
    ``can't execute``, a wrong-ABI ``not executable``) or the dynamic linker refused it
    (``CANNOT LINK EXECUTABLE``, a missing shared library)."""
    return r.returncode in (126, 127) or "CANNOT LINK EXECUTABLE" in r.stdout + r.stderr


def _benchmark_model(adb: Adb, tool: str, model: str, acc: str, cfg: AdbConfig):
    flags = [
        f"--graph={model}",
        f"--num_threads={cfg.threads}",
        f"--num_runs={cfg.runs}",
        f"--warmup_runs={cfg.warmup}",
        "--use_gpu=true" if acc == "gpu" else "--use_xnnpack=true",
    ]
    r = adb.shell(" ".join([tool] + [shlex.quote(x) for x in flags]), check=False)
    return r, r.stdout + r.stderr, lambda out: parse_benchmark_model(out)


def _executor_runner(adb: Adb, tool: str, model: str, acc: str, cfg: AdbConfig):
    adb.run("logcat", "-c", check=False)  # Android builds log to logcat: read what this run wrote
    flags = [f"--model_path={model}", f"--cpu_threads={cfg.threads}", f"--num_executions={cfg.warmup + cfg.runs}"]
    r = adb.shell(" ".join([tool] + [shlex.quote(x) for x in flags]), check=False)
    log = adb.run("logcat", "-d", "-s", "ExecuTorch:I", check=False).stdout
    return r, r.stdout + r.stderr + log, lambda out: parse_executor_runner(out, cfg.warmup)


# format -> (tool, how to run and parse it, accelerators it can ask for)
RUNNERS = {
    "tflite": ("benchmark_model", _benchmark_model, ("cpu", "gpu")),
    "executorch": ("executor_runner", _executor_runner, ("cpu",)),
}


def run(cfg: AdbConfig, say=None, describe=None) -> list[dict]:
    """Benchmark ``cfg.files`` on the phone; returns validated ``mvit.device_results/1`` dictionaries,
    one per tool used.

    ``describe(path) -> (model name, precision, note)`` names each file (from its metadata). Device
    problems (adb missing, no device, unauthorised, a binary missing or not runnable there) raise
    ``AdbError`` (none is half-done: those about the files come before anything runs); a model the
    phone's runtime refuses is skipped, its one-line reason added to ``cfg.rejected``.
    """

    say = say or (lambda m: None)
    fmts = {}
    for f in cfg.files:
        try:
            fmt = format_of(f)
        except ValueError:
            raise AdbError(f"{f}: not a .tflite or .pte file") from None
        if fmt not in RUNNERS:
            raise AdbError(f"{f}: --adb runs .tflite (benchmark_model) and .pte (executor_runner) files, not {fmt}")
        if fmt not in cfg.binaries:
            raise AdbError(
                f"{f}: no {RUNNERS[fmt][0]} binary given: pass --adb-benchmark-binary "
                f"{fmt}=PATH/TO/{RUNNERS[fmt][0]} (built for the phone, e.g. arm64-v8a)"
            )
        fmts[f] = fmt
    adb = Adb(cfg.adb, None, cfg.timeout)
    adb.serial = choose_device(parse_devices(adb.run("devices").stdout), cfg.serial)
    device = device_info(parse_getprop(adb.shell("getprop").stdout))
    where = f"{device['manufacturer']} {device['model']}"
    say(f"adb: {adb.serial}: {where} ({device['soc']}, Android {device['os_version']})")
    adb.shell(f"mkdir -p {DEVICE_DIR}")
    tools = {}
    for fmt in sorted(set(fmts.values())):
        tools[fmt] = f"{DEVICE_DIR}/{cfg.binaries[fmt].name}"
        adb.run("push", str(cfg.binaries[fmt]), tools[fmt])
        adb.shell(f"chmod 755 {tools[fmt]}")
    by_tool: dict[str, list] = {}
    for f in cfg.files:
        fmt, path = fmts[f], Path(f)
        tool_name, runner, accelerators = RUNNERS[fmt]
        name, precision, note = describe(path) if describe else (path.stem, "fp32", "")
        remote = f"{DEVICE_DIR}/{path.name}"
        adb.run("push", str(path), remote)
        for acc in accelerators if cfg.gpu else accelerators[:1]:
            say(f"adb: {path.name} on {acc} ({tool_name}) ...")
            r, out, parse = runner(adb, tools[fmt], remote, acc, cfg)
            if cannot_execute(r):
                raise AdbError(
                    f"{tool_name} does not run on {where}: {rejection(r.stdout + r.stderr)} (is {cfg.binaries[fmt]} "
                    f"built for {device['abi'] or 'its ABI'}?)"
                )
            try:
                if r.returncode != 0:
                    raise ValueError(rejection(out))
                res = parse(out)
            except ValueError as e:
                cfg.rejected.append(f"{path}: {tool_name} rejected it on {where} ({acc}): {e}")
                continue
            by_tool.setdefault(tool_name, []).append(_row(path, fmt, name, precision, note, acc, res, sha256(path)))
        adb.shell(f"rm -f {remote}", check=False)
    results = []
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for tool_name, rows in by_tool.items():
        result = {
            "schema": SCHEMA,
            "created": created,
            "source": f"adb:{tool_name}",
            "device": device,
            "serial": adb.serial,
            "rows": rows,
        }
        problem = problems(result)
        if problem:  # the parser and the schema disagree: a bug here, not the user's input
            raise RuntimeError(f"adb results break the device_results schema: {problem}")
        results.append(result)
    return results


def _row(path: Path, fmt: str, name: str, precision: str, note: str, acc: str, res: dict, sha: str) -> dict:
    notes = [note] if note else []
    used = acc
    if res.get("delegation"):
        notes.append(
            f"{res['delegate']} delegate: {res['delegation']}"
            if res.get("delegate")
            else f"delegate: {res['delegation']}"
        )
        if res["delegation"].startswith("none"):
            used = "cpu"
    if res["latency"].get("p90_ms") is None:
        notes.append("benchmark_model reports p5/median/p95, not p90")
    if res.get("peak_memory_mb"):
        notes.append(f"peak memory {res['peak_memory_mb']:.1f} MB")
    return {
        "model": name,
        "artifact": path.name,
        "artifact_sha256": sha,
        "format": fmt,
        "precision": precision,
        "accelerator": acc,
        "accelerator_used": used,
        "threads": res.get("threads"),
        "latency": res["latency"],
        "load_ms": res.get("load_ms"),
        "first_ms": res.get("first_ms"),
        "top3": None,
        "note": "; ".join(notes),
    }
