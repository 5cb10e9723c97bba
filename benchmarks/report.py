"""Reports of a benchmark run: JSON, a Markdown table, a PNG plot, and metric floors for CI."""
from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path

# Metric names users give to --fail-below / --fail-above, and where each lives in a row.
METRICS = {
    "top1": ("top1",), "accuracy": ("top1",), "top5": ("top5",), "agreement": ("agreement",),
    "cosine": ("cosine",), "kl": ("kl_mean",), "top1_drop": ("top1_drop_points",),
    "latency_ms": ("latency", "median_ms"), "p90_ms": ("latency", "p90_ms"), "throughput": ("latency", "throughput_ips"),
    "latency_vs_eager": ("latency_vs_eager",), "size_mb": ("size_mb",), "size_vs_fp32": ("size_vs_fp32",),
    "peak_rss_mb": ("memory", "peak_rss_mb"),
}
LATENCY_METRICS = {"latency_ms", "p90_ms", "throughput", "latency_vs_eager", "peak_rss_mb"}


def value(row: dict, metric: str):
    v = row
    for k in METRICS[metric]:
        if not isinstance(v, dict) or v.get(k) is None:
            return None
        v = v[k]
    return v


def row_id(row: dict) -> str:
    return f"{row['format']}-{row['precision']}"


# --------------------------------------------------------------------------------------------- floors

def parse_floor(text: str) -> tuple[str, str, float]:
    """``[ROWS:]METRIC=VALUE`` -> (row glob, metric, value). ROWS is e.g. ``tflite-int8``, ``*-int8``."""
    rows, _, rest = text.rpartition(":")
    metric, eq, num = rest.partition("=")
    metric = metric.strip()
    if not eq or metric not in METRICS:
        raise ValueError(f"{text!r}: expected [ROWS:]METRIC=VALUE with METRIC one of {', '.join(METRICS)}")
    try:
        val = float(num)
    except ValueError:
        raise ValueError(f"{text!r}: {num!r} is not a number") from None
    return (rows.strip() or "*"), metric, val


def check_floors(report: dict, below: list[str], above: list[str]) -> list[str]:
    """Violations of ``--fail-below`` floors and ``--fail-above`` ceilings (the baseline row is not
    checked unless a row glob names it: ``torch-fp32``)."""
    problems = []
    for kind, specs in (("below", below), ("above", above)):
        for spec in specs:
            glob, metric, limit = parse_floor(spec)
            matched = 0
            for m in report["models"]:
                for r in m["rows"]:
                    rid = row_id(r)
                    if r["format"] == "torch" and glob != rid:
                        continue
                    if not fnmatch.fnmatch(rid, glob):
                        continue
                    matched += 1
                    v = value(r, metric)
                    where = f"{m['architecture']} {rid}"
                    if v is None:
                        if r["status"] == "failed":
                            problems.append(f"{where}: {metric} unavailable ({r.get('reason')}), floor {spec}")
                        elif metric not in LATENCY_METRICS:  # e.g. accuracy without labels
                            problems.append(f"{where}: {metric} unavailable, floor {spec}")
                        continue
                    if (kind == "below" and v < limit) or (kind == "above" and v > limit):
                        problems.append(f"{where}: {metric} {v:.4g} {'<' if kind == 'below' else '>'} {limit:g}")
            if matched == 0:
                problems.append(f"--fail-{kind} {spec}: no row matches {glob!r}")
    return problems


# --------------------------------------------------------------------------------------------- Markdown

def _f(v, fmt="{:.2f}", none="–"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    return fmt.format(v)


def markdown(report: dict) -> str:
    mach = report["machine"]
    s = report["settings"]
    libs = ", ".join(f"{k} {v}" for k, v in mach["libraries"].items() if v)
    out = ["# mvit-bench results",
           "",
           f"- Machine: {mach['cpu']} ({mach['cores_available']} of {mach['cores']} cores available; "
           f"{' '.join(mach['isa'])}), {mach['os']}",
           f"- Threads: {s['threads']}; batch 1; latency of `invoke` on a prepared input, rows interleaved "
           f"(>= {s['min_runs']} runs and >= {s['min_time_s']:g} s per row); load average at start/end: "
           f"{_loads(report.get('load_average_start_end'))}",
           f"- Data: {s['data']}; int8 calibration: {s['calibration']} ({s['calibration_images']} images)",
           f"- Libraries: {libs}",
           f"- Run: {report['created']}, {report['seconds']:.0f} s", ""]
    for m in report["models"]:
        out += [f"## {m['architecture']} ({m['input_size'][0]}x{m['input_size'][1]})", "",
                f"Checkpoint `{Path(m['checkpoint']).name}` (sha256 {m['checkpoint_sha256'][:12]}); evaluation: "
                f"{m['evaluation']}. Agreement = same top-1 as PyTorch fp32; KL = mean KL(float || artifact) of the "
                f"softmax; cosine of logits (of log-probabilities for Core ML, whose output is probabilities).", "",
                "| format | precision | status | size MB | top-1 % | top-5 % | agreement % | KL | cosine | "
                "median ms | p90 ms | min ms | std ms | img/s | vs eager | load ms | first ms | peak MB |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        notes = []
        for r in m["rows"]:
            lat = r.get("latency") or {}
            mem = r.get("memory") or {}
            status = r["status"]
            if r.get("reason") or r.get("latency_note"):
                notes.append(f"{r['format']} {r['precision']}: {r.get('reason') or r.get('latency_note')}")
                status += f" [{len(notes)}]"
            out.append("| " + " | ".join([
                "PyTorch eager" if r["format"] == "torch" else r["format"], r["precision"], status,
                _f(r.get("size_mb")), _f(_pct(r.get("top1")), "{:.1f}"), _f(_pct(r.get("top5")), "{:.1f}"),
                _f(_pct(r.get("agreement")), "{:.1f}"), _f(r.get("kl_mean"), "{:.4f}"), _f(r.get("cosine"), "{:.4f}"),
                _f(lat.get("median_ms")), _f(lat.get("p90_ms")), _f(lat.get("min_ms")), _f(lat.get("std_ms")),
                _f(lat.get("throughput_ips"), "{:.0f}"), _f(r.get("latency_vs_eager"), "{:.2f}x"),
                _f(lat.get("load_ms"), "{:.0f}"), _f(lat.get("first_ms"), "{:.1f}"), _f(mem.get("peak_rss_mb"), "{:.0f}"),
            ]) + " |")
        out.append("")
        for i, n in enumerate(notes, 1):
            out.append(f"[{i}] {n}  ")
        if notes:
            out.append("")
        out.append("Size of the PyTorch row: parameters and buffers in memory. Peak MB: peak resident memory "
                   "of the row's own process (Python, numpy, torch imported; see bench.json for the memory "
                   "before the model was loaded).")
        out.append("")
        for lr in m.get("layer_reports", []):
            out += _layer_md(lr)
    return "\n".join(out) + "\n"


def _loads(pair):
    if not pair or not pair[0]:
        return "n/a"
    return " / ".join(f"{p[0]:.1f}" for p in pair if p)


def _pct(v):
    return None if v is None else 100.0 * v


def _layer_md(lr: dict, top: int = 10) -> list[str]:
    out = [f"### Where the int8 error comes from: {lr['artifact']}", ""]
    if "error" in lr:
        return out + [f"Not available: {lr['error']}", ""]
    out += [f"{lr['method']}; {lr['images']} calibration images. Local SQNR: the tensor against its own "
            f"int8 quantize-dequantize (the error this layer adds); model SQNR: float model vs quantized "
            f"model at this point (accumulated). Worst {top} of {len(lr['layers'])} by local SQNR:", "",
            "| # | keep-float name | op | module | local SQNR dB | model SQNR dB |", "|---:|---|---|---|---:|---:|"]
    for i, r in enumerate(lr["layers"][:top], 1):
        out.append(f"| {i} | `{r.get('keep_float_name') or '–'}` | {r['op']} | {r.get('module') or '–'} | "
                   f"{r['local_sqnr_db']:.1f} | {_f(r.get('model_sqnr_db'), '{:.1f}')} |")
    drops = sorted((r for r in lr["layers"] if r.get("drop_db") is not None), key=lambda r: -r["drop_db"])[:5]
    if drops:
        out += ["", "Largest jumps in accumulated error (model SQNR of the layer's inputs minus of its output):", "",
                "| keep-float name | op | module | drop dB | model SQNR dB |", "|---|---|---|---:|---:|"]
        for r in drops:
            out.append(f"| `{r.get('keep_float_name') or '–'}` | {r['op']} | {r.get('module') or '–'} | "
                       f"{r['drop_db']:.1f} | {_f(r.get('model_sqnr_db'), '{:.1f}')} |")
    sug = lr.get("suggested_keep_float") or []
    if sug:
        fmt = lr["artifact"].split()[0]
        flags = " ".join(f"--keep-float {s}" for s in sug)
        out += ["", f"To try keeping the worst layers in float: `mvit-export --format {fmt} --quantize int8 {flags}`"]
    return out + [""]


# --------------------------------------------------------------------------------------------- plot

MARKERS = {"torch": "*", "onnx": "o", "tflite": "s", "coreml": "^"}
COLORS = {"fp32": "tab:blue", "fp16": "tab:green", "dynamic": "tab:orange", "int8": "tab:red"}


def plot(report: dict, path: Path) -> str | None:
    """Accuracy (top-1, else agreement) against median latency, per format (marker) and precision
    (colour). Returns a note about rows left out, or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    models = report["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6.4 * len(models), 4.8), squeeze=False)
    left_out = []
    for ax, m in zip(axes[0], models):
        metric = "top1" if m["labelled"] else "agreement"
        for r in m["rows"]:
            lat = (r.get("latency") or {}).get("median_ms")
            y = r.get(metric)
            if lat is None or y is None:
                left_out.append(f"{m['architecture']} {r['format']} {r['precision']}")
                continue
            ax.scatter(lat, 100 * y, marker=MARKERS.get(r["format"], "o"), s=140 if r["format"] == "torch" else 60,
                       color="black" if r["format"] == "torch" else COLORS.get(r["precision"], "grey"), zorder=3)
            ax.annotate(f"{'eager' if r['format'] == 'torch' else r['format']} {r['precision']}", (lat, 100 * y),
                        textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(f"median latency, ms, log scale (batch 1, {report['settings']['threads']} threads)")
        ax.set_ylabel("top-1 accuracy, %" if metric == "top1" else "top-1 agreement with PyTorch fp32, %")
        ax.set_title(f"{m['architecture']}: {m['evaluation']}", fontsize=9)
        ax.grid(True, alpha=0.3)
    shown = sorted({r["format"] for m in models for r in m["rows"] if r["format"] != "torch"})
    handles = [Line2D([], [], marker=MARKERS.get(f, "o"), linestyle="", color="grey", label=f) for f in shown]
    handles += [Line2D([], [], marker="*", linestyle="", color="black", markersize=10, label="PyTorch eager")]
    handles += [Line2D([], [], marker="o", linestyle="", color=c, label=p) for p, c in COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=(len(handles) + 1) // 2, fontsize=8, frameon=False)
    cpu = report["machine"]["cpu"]
    fig.suptitle(f"mvit-bench on {cpu}", fontsize=10)
    if left_out:
        fig.text(0.01, 0.005, "no latency here: " + ", ".join(left_out), fontsize=6, color="grey")
    fig.tight_layout(rect=(0, 0.1, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"not plotted (no latency or accuracy): {', '.join(left_out)}" if left_out else None


def write_reports(report: dict, out: Path, plot_png: bool = True) -> dict:
    """bench.json, bench.md and bench.png in ``out``; returns their paths."""
    out = Path(out)
    paths = {"json": out / "bench.json", "md": out / "bench.md"}
    if plot_png:
        paths["png"] = out / "bench.png"
        note = plot(report, paths["png"])
        if note:
            report["plot_note"] = note
    paths["md"].write_text(markdown(report))
    paths["json"].write_text(json.dumps(report, indent=1, default=str) + "\n")
    return paths
