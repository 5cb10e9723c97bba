"""Reports of a benchmark run: JSON, a Markdown table, a PNG plot, and metric floors for CI."""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path

from .census import headline_line
from .device_results import row_checks

# Metric names users give to --fail-below / --fail-above, and where each lives in a row.
METRICS = {
    "top1": ("top1",),
    "accuracy": ("top1",),
    "top5": ("top5",),
    "agreement": ("agreement",),
    "cosine": ("cosine",),
    "kl": ("kl_mean",),
    "top1_drop": ("top1_drop_points",),
    "latency_ms": ("latency", "median_ms"),
    "p90_ms": ("latency", "p90_ms"),
    "throughput": ("latency", "throughput_ips"),
    "latency_vs_eager": ("latency_vs_eager",),
    "size_mb": ("size_mb",),
    "size_vs_fp32": ("size_vs_fp32",),
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


def _pct(v):
    return None if v is None else 100.0 * v


def _measured(r: dict, part: str, key: str):
    return (r.get(part) or {}).get(key)


# The measured columns of the results tables: header -> the cell of a row.
_CELLS = {
    "size MB": lambda r: _f(r.get("size_mb")),
    "top-1 %": lambda r: _f(_pct(r.get("top1")), "{:.1f}"),
    "top-5 %": lambda r: _f(_pct(r.get("top5")), "{:.1f}"),
    "agreement %": lambda r: _f(_pct(r.get("agreement")), "{:.1f}"),
    "KL": lambda r: _f(r.get("kl_mean"), "{:.4f}"),
    "cosine": lambda r: _f(r.get("cosine"), "{:.4f}"),
    "median ms": lambda r: _f(_measured(r, "latency", "median_ms")),
    "p90 ms": lambda r: _f(_measured(r, "latency", "p90_ms")),
    "min ms": lambda r: _f(_measured(r, "latency", "min_ms")),
    "std ms": lambda r: _f(_measured(r, "latency", "std_ms")),
    "img/s": lambda r: _f(_measured(r, "latency", "throughput_ips"), "{:.0f}"),
    "vs eager": lambda r: _f(r.get("latency_vs_eager"), "{:.2f}x"),
    "load ms": lambda r: _f(_measured(r, "latency", "load_ms"), "{:.0f}"),
    "first ms": lambda r: _f(_measured(r, "latency", "first_ms"), "{:.1f}"),
    "peak MB": lambda r: _f(_measured(r, "memory", "peak_rss_mb"), "{:.0f}"),
}
MATRIX_COLUMNS = tuple(_CELLS)  # the matrix's table: all of them
# the table of model files: all but top-5, the spread, the throughput and the speed-up against PyTorch eager
FILE_COLUMNS = tuple(c for c in _CELLS if c not in ("top-5 %", "std ms", "img/s", "vs eager"))


def _table_head(first: list[str], measured: tuple[str, ...], last: tuple[str, ...] = ()) -> list[str]:
    """A results table's header and alignment rows: ``first`` and ``last`` text, ``measured`` numbers."""
    names = [*first, *measured, *last]
    align = ["---"] * len(first) + ["---:"] * len(measured) + ["---"] * len(last)
    return [f"| {' | '.join(names)} |", f"|{'|'.join(align)}|"]


def _table_row(first: list[str], r: dict, measured: tuple[str, ...], last: tuple[str, ...] = ()) -> str:
    """A results table's row: ``first`` and ``last`` cells as given, ``measured`` from the row ``r``."""
    return "| " + " | ".join([*first, *(_CELLS[c](r) for c in measured), *last]) + " |"


def markdown(report: dict) -> str:
    """bench.md: the machine and settings, one table per model (or of model files), the phones' rows."""
    out = ["# mvit-bench results", ""]
    mach, s = report.get("machine"), report.get("settings") or {}
    if mach and report["models"]:
        libs = ", ".join(f"{k} {v}" for k, v in mach["libraries"].items() if v)
        out += [
            f"- Machine: {mach['cpu']} ({mach['cores_available']} of {mach['cores']} cores available; "
            f"{' '.join(mach['isa'])}), {mach['os']}",
            f"- Threads: {s['threads']}; batch 1; latency of `invoke` on a prepared input, rows interleaved "
            f"(>= {s['min_runs']} runs and >= {s['min_time_s']:g} s per row); load average at start/end: "
            f"{_loads(report.get('load_average_start_end'))}",
        ]
        if "calibration" in s:
            out.append(f"- Data: {s['data']}; int8 calibration: {s['calibration']} ({s['calibration_images']} images)")
        out += [f"- Libraries: {libs}", f"- Run: {report['created']}, {report['seconds']:.0f} s", ""]
    out += _side_by_side_md(report)
    for m in report["models"]:
        if m.get("kind") == "files":
            out += _files_md(m)
            for lr in m.get("layer_reports", []):
                out += _layer_md(lr)
            continue
        out += [
            f"## {m['architecture']} ({m['input_size'][0]}x{m['input_size'][1]})",
            "",
            f"Checkpoint `{Path(m['checkpoint']).name}` (sha256 {m['checkpoint_sha256'][:12]}); evaluation: "
            f"{m['evaluation']}. Agreement = same top-1 as PyTorch fp32; KL = mean KL(float || artifact) of the "
            f"softmax; cosine of logits (of log-probabilities for Core ML, whose output is probabilities).",
            "",
            *_table_head(["format", "precision", "status"], MATRIX_COLUMNS),
        ]
        notes = []
        for r in m["rows"]:
            status = r["status"]
            if r.get("reason") or r.get("latency_note"):
                notes.append(f"{r['format']} {r['precision']}: {r.get('reason') or r.get('latency_note')}")
                status += f" [{len(notes)}]"
            name = "PyTorch eager" if r["format"] == "torch" else r["format"]
            out.append(_table_row([name, r["precision"], status], r, MATRIX_COLUMNS))
        out.append("")
        for i, n in enumerate(notes, 1):
            out.append(f"[{i}] {n}  ")
        if notes:
            out.append("")
        out += [f"{v}  " for v in int8_verdicts(m["rows"], (mach or {}).get("isa") or [])]
        out.append(
            "Size of the PyTorch row: parameters and buffers in memory. Peak MB: peak resident memory "
            "of the row's own process (Python, numpy, torch imported; see bench.json for the memory "
            "before the model was loaded)."
        )
        out.append("")
        for lr in m.get("layer_reports", []):
            out += _layer_md(lr)
    for run in report.get("device_runs", []):
        out += _device_md(run)
    return "\n".join(out) + "\n"


def _loads(pair):
    if not pair or not pair[0]:
        return "n/a"
    return " / ".join(f"{p[0]:.1f}" for p in pair if p)


def _files_md(m: dict) -> list[str]:
    """The table of model files (``mvit-bench FILE ...``) and each file's op census."""
    out = [
        f"## Model files ({m['evaluation']})",
        "",
        "Metadata: where labels and preprocessing came from (the file's mvit metadata, the command's options, "
        "or none: latency on a generated image only). Agreement, KL and cosine against the --reference model.",
        "",
        *_table_head(["file", "format", "precision", "metadata", "status"], FILE_COLUMNS, ("ops (XNNPACK)",)),
    ]
    notes = []
    for r in m["rows"]:
        c = r.get("census") or {}
        status = r["status"]
        for n in ([r["reason"]] if r.get("reason") else []) + list(r.get("notes") or []):
            notes.append(f"{r.get('name') or Path(r['file']).name}: {n}")
            status += f" [{len(notes)}]"
        ops = (
            "–"
            if "ops_total" not in c
            else (
                f"{c['ops_total']}"
                + (
                    f" ({c['ops_delegated']} in {c['delegate_partitions']} partition"
                    f"{'s' if c['delegate_partitions'] != 1 else ''})"
                    if c.get("delegate")
                    else ""
                )
            )
        )
        file = [f"`{r.get('name') or Path(r['file']).name}`", r["format"], r.get("precision") or "–"]
        out.append(_table_row([*file, r.get("metadata", "–"), status], r, FILE_COLUMNS, (ops,)))
    out.append("")
    out += [f"[{i}] {n}  " for i, n in enumerate(notes, 1)] + ([""] if notes else [])
    for r in m["rows"]:
        out += _census_md(r.get("name") or Path(r["file"]).name, r.get("census") or {})
    return out


def _census_md(name: str, c: dict, top: int = 12) -> list[str]:
    out = [f"### Op census: `{name}`", ""]
    if "error" in c:
        return out + [f"Not available: {c['error']}", ""]
    line = f"{c.get('runtime')}: {c.get('ops_total')} ops"
    if c.get("delegate"):
        line += (
            f", {c['ops_delegated']} run by the {c['delegate']} delegate in {c['delegate_partitions']} "
            f"partition{'s' if c['delegate_partitions'] != 1 else ''}"
        )
        fb = c.get("fallback") or {}
        line += f"; outside it: {', '.join(f'{k} x{v}' for k, v in fb.items())}" if fb else "; nothing falls back"
    if "file_nodes" in c:
        line += f" (the file holds {c['file_nodes']} nodes before onnxruntime's optimisation)"
    out += [line + f". {c.get('dtype_note', '')}", ""]
    if "int8" in c:
        out += [f"**int8:** {headline_line(c['int8'])}.", ""]
    if c.get("integer"):
        out += [_integer_line(c["integer"]), ""]
    ops = c.get("ops") or []
    delegated = any("delegated" in o for o in ops)
    out += [
        "| op | dtype | count |" + (" delegated |" if delegated else ""),
        "|---|---|---:|" + ("---:|" if delegated else ""),
    ]
    for o in ops[:top]:
        out.append(
            f"| {o['op']} | {o['dtype']} | {o['count']} |" + (f" {o.get('delegated', 0)} |" if delegated else "")
        )
    if len(ops) > top:
        out.append(
            f"| ({len(ops) - top} more kinds in bench.json) | | {sum(o['count'] for o in ops[top:])} |"
            + (" |" if delegated else "")
        )
    return out + [""]


def _integer_line(h: dict) -> str:
    """The headline of an ONNX census: the integer share of the multiply-accumulate ops and the
    conversions onnxruntime still runs after its optimisation."""
    conv = h.get("conversions") or {}
    conv_text = ", ".join(f"{v} {k}" for k, v in conv.items()) or "none"
    return (
        f"**Integer: {h['integer_mac_ops']} of {h['mac_ops']} multiply-accumulate ops "
        f"({h['integer_share']:.0%} by count); conversions after optimisation: {sum(conv.values())} "
        f"({conv_text}).**"
    )


def _device_md(run: dict) -> list[str]:
    """One phone run (a device_results file or an --adb session)."""
    out = [
        f"## Phone: {run['device_label']}",
        "",
        f"Source: {run['source']}{' (' + Path(run['file']).name + ')' if run.get('file') else ''}, "
        f"measured {run['created']}. Only the inference is timed, on a prepared input.",
        "",
        "| model | artifact | format | precision | accelerator (used) | threads | median ms | p90 ms | min ms | "
        "mean ms | runs | load ms | first ms | top-1 on the fixed input | checks | note |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in run["rows"]:
        lat = r["latency"]
        p90 = _f(lat.get("p90_ms")) if lat.get("p90_ms") is not None else f"p95 {_f(lat.get('p95_ms'))}"
        top = r.get("top3") or []
        out.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    f"`{r['artifact']}`",
                    r["format"],
                    r["precision"],
                    r["accelerator"]
                    + ("" if r["accelerator_used"] == r["accelerator"] else f" ({r['accelerator_used']})"),
                    _f(r.get("threads"), "{}"),
                    _f(lat["median_ms"]),
                    p90,
                    _f(lat["min_ms"]),
                    _f(lat["mean_ms"]),
                    str(lat["runs"]),
                    _f(r.get("load_ms"), "{:.0f}"),
                    _f(r.get("first_ms"), "{:.1f}"),
                    f"{top[0]['label']} {top[0]['score']:.2f}" if top else "–",
                    row_checks(r),
                    (r.get("note") or "").replace("|", "/"),
                ]
            )
            + " |"
        )
    return out + [""]


def latency_points(report: dict) -> list[dict]:
    """Every row with a median latency, from this PC and from the phones: where, what, median, p90."""
    pts = []
    cpu = (report.get("machine") or {}).get("cpu", "this PC")
    threads = (report.get("settings") or {}).get("threads")
    for m in report["models"]:
        for r in m["rows"]:
            lat = r.get("latency") or {}
            if lat.get("median_ms"):
                what = (
                    (r.get("name") or Path(r["file"]).name)
                    if r.get("file")
                    else ("PyTorch eager" if r["format"] == "torch" else r["format"]) + f" {r['precision']}"
                )
                pts.append(
                    {
                        "where": f"PC: {cpu}",
                        "what": what,
                        "format": r["format"],
                        "precision": r.get("precision"),
                        "accelerator": f"cpu, {threads} threads" if threads else "cpu",
                        "median_ms": lat["median_ms"],
                        "p90_ms": lat.get("p90_ms"),
                    }
                )
    for run in report.get("device_runs", []):
        for r in run["rows"]:
            acc = r["accelerator_used"] + (f", {r['threads']} threads" if r.get("threads") else "")
            pts.append(
                {
                    "where": run["device_label"],
                    "what": f"{r['artifact']}",
                    "format": r["format"],
                    "precision": r["precision"],
                    "accelerator": acc,
                    "median_ms": r["latency"]["median_ms"],
                    "p90_ms": r["latency"].get("p90_ms"),
                }
            )
    return pts


def int8_verdicts(rows: list[dict], isa: list[str]) -> list[str]:
    """One line per format whose timed int8 row is not faster than its timed fp32 row on this CPU, naming
    the CPU's ``isa`` flags (int8 speed depends on them: docs/int8.md)."""
    median = {(r["format"], r["precision"]): _measured(r, "latency", "median_ms") for r in rows}
    lines = []
    for (fmt, precision), ms in median.items():
        fp32 = median.get((fmt, "fp32"))
        if precision == "int8" and ms and fp32 and ms >= fp32:
            lines.append(
                f"{fmt} int8 is not faster than {fmt} fp32 on this CPU ({' '.join(isa) or 'ISA unknown'}): "
                f"{ms:.2f} ms against {fp32:.2f} ms ({ms / fp32:.2f}x); here int8 buys size, not speed."
            )
    return lines


def _side_by_side_md(report: dict) -> list[str]:
    """One table of every latency row, PC and phones, when phones are in the report."""
    if not report.get("device_runs"):
        return []
    out = [
        "## Latency, this PC and the phones side by side",
        "",
        "| where | model file / row | format | precision | runs on | median ms | p90 ms |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for p in latency_points(report):
        out.append(
            f"| {p['where']} | {p['what']} | {p['format']} | {p['precision'] or '–'} | {p['accelerator']} | "
            f"{_f(p['median_ms'])} | {_f(p['p90_ms'])} |"
        )
    return out + [""]


def _layer_md(lr: dict, top: int = 10) -> list[str]:
    out = [f"### Where the int8 error comes from: {lr['artifact']}", ""]
    if "error" in lr:
        return out + [f"Not available: {lr['error']}", ""]
    out += [
        f"{lr['method']}; {lr['images']} calibration images. Local SQNR: the tensor against its own "
        f"int8 quantize-dequantize (the error this layer adds); model SQNR: float model vs quantized "
        f"model at this point (accumulated). Worst {top} of {len(lr['layers'])} by local SQNR:",
        "",
        "| # | keep-float name | op | module | local SQNR dB | model SQNR dB | clipped % |",
        "|---:|---|---|---|---:|---:|---:|",
    ]
    for i, r in enumerate(lr["layers"][:top], 1):
        out.append(
            f"| {i} | `{r.get('keep_float_name') or '–'}` | {r['op']} | {r.get('module') or '–'} | "
            f"{r['local_sqnr_db']:.1f} | {_f(r.get('model_sqnr_db'), '{:.1f}')} | "
            f"{_f(r.get('clipped_pct'), '{:.2f}')} |"
        )
    drops = sorted((r for r in lr["layers"] if r.get("drop_db") is not None), key=lambda r: -r["drop_db"])[:5]
    if drops:
        out += [
            "",
            "Largest jumps in accumulated error (model SQNR of the layer's inputs minus of its output):",
            "",
            "| keep-float name | op | module | drop dB | model SQNR dB |",
            "|---|---|---|---:|---:|",
        ]
        for r in drops:
            out.append(
                f"| `{r.get('keep_float_name') or '–'}` | {r['op']} | {r.get('module') or '–'} | "
                f"{r['drop_db']:.1f} | {_f(r.get('model_sqnr_db'), '{:.1f}')} |"
            )
    sug = lr.get("suggested_keep_float") or []
    if sug:
        fmt = lr["artifact"].split()[0]
        flags = " ".join(f"--keep-float {s}" for s in sug)
        out += ["", f"To try keeping the worst layers in float: `mvit-export --format {fmt} --quantize int8 {flags}`"]
    return out + [""]


# --------------------------------------------------------------------------------------------- plot

MARKERS = {"torch": "*", "onnx": "o", "tflite": "s", "coreml": "^", "executorch": "D"}
COLORS = {"fp32": "tab:blue", "fp16": "tab:green", "dynamic": "tab:orange", "int8": "tab:red"}


def _label(r: dict) -> str:
    if r.get("file"):
        return r.get("name") or Path(r["file"]).name
    return f"{'eager' if r['format'] == 'torch' else r['format']} {r['precision']}"


def plot(report: dict, path: Path) -> str | None:
    """Accuracy (top-1, else agreement) against median latency, per format (marker) and precision
    (colour), one panel per model; when phones are in the report (or rows have no accuracy), a panel
    of median latencies of every row, PC and phones side by side. Returns a note about rows left
    out, or None."""
    import matplotlib  # lazy: plotting only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: plotting only
    from matplotlib.lines import Line2D  # lazy: plotting only

    def metric_of(m):
        return "top1" if m.get("labelled") else "agreement"

    scatter = [
        m
        for m in report["models"]
        if any(r.get(metric_of(m)) is not None and (r.get("latency") or {}).get("median_ms") for r in m["rows"])
    ]
    bars = latency_points(report) if report.get("device_runs") or len(scatter) < len(report["models"]) else []
    panels = len(scatter) + (1 if bars else 0)
    fig, axes = plt.subplots(
        1, max(1, panels), figsize=(6.4 * max(1, panels), 4.8 + (0.18 * len(bars) if bars else 0)), squeeze=False
    )
    left_out, formats = [], set()
    for ax, m in zip(axes[0], scatter):
        metric = metric_of(m)
        for r in m["rows"]:
            lat = (r.get("latency") or {}).get("median_ms")
            y = r.get(metric)
            if lat is None or y is None:
                left_out.append(f"{m['architecture']} {_label(r)}")
                continue
            formats.add(r["format"])
            ax.scatter(
                lat,
                100 * y,
                marker=MARKERS.get(r["format"], "o"),
                s=140 if r["format"] == "torch" else 60,
                color="black" if r["format"] == "torch" else COLORS.get(r["precision"], "grey"),
                zorder=3,
            )
            ax.annotate(_label(r), (lat, 100 * y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(f"median latency, ms, log scale (batch 1, {report['settings']['threads']} threads)")
        ax.set_ylabel("top-1 accuracy, %" if metric == "top1" else "top-1 agreement with the reference, %")
        ax.set_title(f"{m['architecture']}: {m['evaluation']}", fontsize=9)
        ax.grid(True, alpha=0.3)
    if bars:
        ax = axes[0][len(scatter)]
        names = [f"{p['what']} | {p['accelerator']} | {p['where']}" for p in bars]
        ax.barh(
            range(len(bars)), [p["median_ms"] for p in bars], color=[COLORS.get(p["precision"], "grey") for p in bars]
        )
        ax.set_yticks(range(len(bars)), names, fontsize=6)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("median latency, ms, log scale (batch 1)")
        ax.set_title("latency: this PC and the phones", fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no row has a latency", ha="center", va="center")
        axes[0][0].set_axis_off()
    handles = [
        Line2D([], [], marker=MARKERS[f], linestyle="", color="grey", label=f)
        for f in MARKERS
        if f in formats and f != "torch"
    ]
    if "torch" in formats:
        handles += [Line2D([], [], marker="*", linestyle="", color="black", markersize=10, label="PyTorch eager")]
    handles += [Line2D([], [], marker="o", linestyle="", color=c, label=p) for p, c in COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=(len(handles) + 1) // 2, fontsize=8, frameon=False)
    cpu = (report.get("machine") or {}).get("cpu")
    fig.suptitle(f"mvit-bench on {cpu}" if cpu and report["models"] else "mvit-bench", fontsize=10)
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
