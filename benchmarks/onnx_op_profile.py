"""Where an .onnx model's time goes in onnxruntime: kernel time per node, summed by op type.

onnxruntime's own profiler records every node's kernel time in whole-model runs, after its graph
optimisations (fusions, layout changes), so the op types are the ones the CPU execution provider
runs (QLinearConv, QGemm, the Transposes its NHWC int8 layout adds), not the file's. Profiling adds a
little time per node, so sums exceed the whole model's wall time; compare models side by side (they
run interleaved, one run each in turn, thread spinning off):

    python -m mvit.benchmarks.onnx_op_profile runs/x/fp32/model.onnx runs/x/int8/model.onnx
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..export.backends.onnx_backend import session
from .matrix import cpu_line
from .script_args import emit_report, fail, op_profile_args, op_profile_parser

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(float16)": np.float16,
}


def _feed(sess) -> dict:
    """One random input per graph input, of its type (dynamic dims as 1)."""
    rng = np.random.default_rng(0)
    feed = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        dtype = _DTYPES.get(i.type)
        if dtype is None:
            raise ValueError(f"input {i.name!r} has type {i.type}, which this profile does not generate")
        x = rng.random(shape) if dtype in (np.float32, np.float16) else rng.integers(0, 256, shape)
        feed[i.name] = x.astype(dtype)
    return feed


def profile_all(paths: list[Path], threads: int = 2, runs: int = 30, warmup: int = 5) -> dict[Path, list[dict]]:
    """Per model, per node (in execution order): op type, node name and mean kernel ms per run. The
    models run interleaved, one run each in rotating order, so a noisy moment costs them alike."""

    with tempfile.TemporaryDirectory() as tmp:
        sessions, feeds = [], []
        for k, path in enumerate(paths):
            sessions.append(session(path, threads, spinning=False, profile_prefix=Path(tmp) / f"prof{k}"))
            feeds.append(_feed(sessions[-1]))
        for r in range(warmup + runs):
            for k in [(r + i) % len(sessions) for i in range(len(sessions))]:
                sessions[k].run(None, feeds[k])
        return {
            path: _node_times(json.loads(Path(sess.end_profiling()).read_text()), warmup)
            for path, sess in zip(paths, sessions)
        }


def profile(path: Path, threads: int = 2, runs: int = 30, warmup: int = 5) -> list[dict]:
    """``profile_all`` of one model."""
    return profile_all([path], threads, runs, warmup)[path]


def _node_times(events: list[dict], warmup: int) -> list[dict]:
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    skip_before = runs_seen[warmup]["ts"] if len(runs_seen) > warmup else 0
    order: dict = {}
    times: dict = defaultdict(float)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < skip_before:
            continue
        name = e["name"][: -len("_kernel_time")]
        order.setdefault(name, (len(order), e["args"].get("op_name", "?")))
        times[name] += e["dur"] / 1000.0
    counted = max(1, len(runs_seen) - warmup)
    return [
        {"index": i, "node": name, "op": op, "ms": times[name] / counted}
        for name, (i, op) in sorted(order.items(), key=lambda kv: kv[1][0])
    ]


def by_type(rows: list[dict]) -> dict[str, tuple[int, float]]:
    """op type -> (node count, summed ms per run)."""
    agg: dict = defaultdict(lambda: [0, 0.0])
    for r in rows:
        agg[r["op"]][0] += 1
        agg[r["op"]][1] += r["ms"]
    return {k: (n, ms) for k, (n, ms) in agg.items()}


def render(profiles: dict[str, list[dict]], threads: int, runs: int, top: int = 10) -> str:
    """Markdown: per model, the op types by summed time, then the slowest nodes."""

    lines = [
        f"# Per-op time in onnxruntime (CPU EP, {threads} threads, mean of {runs} profiled runs, models interleaved)",
        "",
        f"CPU: {cpu_line(threads)}; thread spinning off (one session runs at a time).",
        "",
        "Kernel time of every node as onnxruntime's profiler records it in whole-model runs, after graph "
        "optimisation; profiling adds time per node, so sums exceed the wall time. Command: "
        f"`python -m mvit.benchmarks.onnx_op_profile {' '.join(profiles)} --threads {threads} --runs {runs}`",
        "",
    ]
    for name, rows in profiles.items():
        total = sum(r["ms"] for r in rows)
        lines += [
            f"## {name}: {len(rows)} nodes, {total:.2f} ms summed",
            "",
            "| op | nodes | ms | share |",
            "|---|---:|---:|---:|",
        ]
        for op, (n, ms) in sorted(by_type(rows).items(), key=lambda kv: -kv[1][1]):
            lines.append(f"| {op} | {n} | {ms:.3f} | {100 * ms / max(total, 1e-9):.1f}% |")
        lines += ["", f"Slowest {top}:", "", "| # | op | node | ms |", "|---:|---|---|---:|"]
        for r in sorted(rows, key=lambda r: -r["ms"])[:top]:
            lines.append(f"| {r['index']} | {r['op']} | {r['node']} | {r['ms']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Profile each model given and print (or write) the report."""

    args = op_profile_args(op_profile_parser(__doc__, ".onnx files", runs=30), "onnx_op_profile", argv)
    try:
        by_path = profile_all([Path(m) for m in args.models], args.threads, args.runs)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises assorted errors on foreign bytes
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        fail("onnx_op_profile", f"cannot profile {' '.join(args.models)}: {first}")
    emit_report(render({m: by_path[Path(m)] for m in args.models}, args.threads, args.runs, args.top), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
