"""Latency rows measured on phones (schema ``mvit.device_results/1``, docs/device_results.md).

The demo apps' benchmark mode and ``mvit-bench --adb`` write such files; ``read_device_results``
validates one, and ``merge`` adds its rows to a benchmark report so the Markdown table and the plot
show the PC and the phones side by side.
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime
from pathlib import Path

SCHEMA = "mvit.device_results/1"
SOURCES = ("android-app", "ios-app", "adb:benchmark_model", "adb:executor_runner")
FORMATS = ("tflite", "coreml", "onnx", "executorch")
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
ACCELERATORS = ("cpu", "gpu", "npu", "npu+cpu", "cpu_only", "cpu_and_gpu", "cpu_and_ne", "all", "unknown")


class DeviceResultsError(ValueError):
    """A device results file that does not follow the schema: one line naming the file and the problem."""


def read_device_results(path) -> dict:
    """Load and validate a ``mvit.device_results/1`` file; returns its dictionary.

    Raises ``DeviceResultsError`` (a ``ValueError``) with one line naming the first problem
    (``FILE: rows[0].latency.p90_ms ...``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeviceResultsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DeviceResultsError(
            f"{path}: cannot read it ({getattr(e, 'strerror', None) or type(e).__name__})"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DeviceResultsError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    problem = problems(data)
    if problem:
        raise DeviceResultsError(f"{path}: {problem}")
    return data


def problems(data) -> str | None:
    """The first way ``data`` breaks the schema, or None."""
    if not isinstance(data, dict):
        return "the top level must be a JSON object"
    if data.get("schema") != SCHEMA:
        return f"schema is {data.get('schema')!r}, expected {SCHEMA!r}"
    if not isinstance(data.get("created"), str) or not _iso(data["created"]):
        return f"created {data.get('created')!r} is not an ISO-8601 time"
    if data.get("source") not in SOURCES:
        return f"source {data.get('source')!r} is not one of {', '.join(SOURCES)}"
    dev = data.get("device")
    if not isinstance(dev, dict):
        return "device must be an object"
    for key in ("manufacturer", "model", "os", "os_version"):
        if not _text(dev.get(key)):
            return f"device.{key} must be a non-empty string"
    for key in ("soc", "abi"):
        if dev.get(key) is not None and not _text(dev.get(key)):
            return f"device.{key} must be a non-empty string or null"
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        return "rows must be a non-empty list"
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"rows[{i}] must be an object"
        p = _row_problem(row)
        if p:
            return f"rows[{i}].{p}"
    return None


def _row_problem(row) -> str | None:
    for key in ("model", "artifact"):
        if not _text(row.get(key)):
            return f"{key} must be a non-empty string"
    sha = row.get("artifact_sha256")
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        return "artifact_sha256 must be 64 lowercase hex digits or null"
    for key, choices in (
        ("format", FORMATS),
        ("precision", PRECISIONS),
        ("accelerator", ACCELERATORS),
        ("accelerator_used", ACCELERATORS),
    ):
        if row.get(key) not in choices:
            return f"{key} {row.get(key)!r} is not one of {', '.join(choices)}"
    t = row.get("threads")
    if t is not None and not (_int(t) and t > 0):
        return "threads must be an integer > 0 or null"
    p = _latency_problem(row.get("latency"))
    if p:
        return p
    for key in ("load_ms", "first_ms"):
        if row.get(key) is not None and not (_num(row[key]) and row[key] >= 0):
            return f"{key} must be a number >= 0 or null"
    top3 = row.get("top3")
    if top3 is not None:
        if not isinstance(top3, list) or len(top3) > 3:
            return "top3 must be a list of at most 3 entries or null"
        for j, e in enumerate(top3):
            if not (isinstance(e, dict) and _text(e.get("label")) and _num(e.get("score"))):
                return f"top3[{j}] must be {{label: string, score: number}}"
    if not isinstance(row.get("note", ""), str):
        return "note must be a string"
    return _checks_problem(row)


def _checks_problem(row) -> str | None:
    """The optional fields of a benchmark that survives a phone: rounds, thermal state, golden check."""
    r = row.get("rounds")
    if r is not None and not (_int(r) and r >= 1):
        return "rounds must be an integer >= 1 or null"
    for key in ("thermal_before", "thermal_after"):
        if row.get(key) is not None and not _text(row[key]):
            return f"{key} must be a non-empty string or null"
    if row.get("throttled") not in (None, True, False):
        return "throttled must be true, false or null"
    g = row.get("golden")
    if g is None:
        return None
    exp = g.get("expected") if isinstance(g, dict) else None
    if not (
        isinstance(exp, list)
        and 1 <= len(exp) <= 3
        and all(_text(x) for x in exp)
        and _int(g.get("checked"))
        and 1 <= g["checked"] <= len(exp)
        and isinstance(g.get("passed"), bool)
    ):
        return "golden must be {expected: 1 to 3 labels, checked: 1 to that many, passed: true or false} or null"
    return None


def row_checks(row: dict) -> str:
    """What the report shows of a row's rounds, thermal state and golden check (``-`` when none)."""
    parts = []
    g = row.get("golden")
    if g is not None:
        parts.append(
            f"golden top-{g['checked']} ok"
            if g["passed"]
            else f"FAILED: top-{g['checked']} is not {', '.join(g['expected'][: g['checked']])}"
        )
    if row.get("throttled"):
        parts.append("THROTTLED")
    before, after = row.get("thermal_before"), row.get("thermal_after")
    if before or after:
        parts.append(f"thermal {before or '?'} to {after or '?'}")
    if row.get("rounds"):
        parts.append(f"{row['rounds']} rounds")
    return ", ".join(parts) or "–"


def _latency_problem(lat) -> str | None:
    if not isinstance(lat, dict):
        return "latency must be an object"
    if not (_int(lat.get("runs")) and lat["runs"] > 0):
        return "latency.runs must be an integer > 0"
    if not (_int(lat.get("warmup")) and lat["warmup"] >= 0):
        return "latency.warmup must be an integer >= 0"
    tail = "p90_ms"
    if lat.get("p90_ms") is None and lat.get("p95_ms") is not None:
        tail = "p95_ms"  # LiteRT's benchmark_model prints p5/median/p95, no p90
    for key in ("median_ms", tail, "min_ms", "mean_ms"):
        if not (_num(lat.get(key)) and lat[key] > 0):
            return f"latency.{key} must be a number > 0"
    if not lat["min_ms"] <= lat["median_ms"] <= lat[tail]:
        return f"latency needs min_ms <= median_ms <= {tail} (got {lat['min_ms']}, {lat['median_ms']}, {lat[tail]})"
    return None


def _text(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def device_label(device: dict) -> str:
    """``Google Pixel 8 (Tensor G3, Android 15)``."""
    name = (
        device["model"]
        if device["model"].lower().startswith(device["manufacturer"].lower())
        else f"{device['manufacturer']} {device['model']}"
    )
    inner = ", ".join(x for x in (device.get("soc"), f"{device['os']} {device['os_version']}") if x)
    return f"{name} ({inner})"


def merge(report: dict, results: list[dict], sources: list[str] | None = None) -> dict:
    """Add the rows of validated device result files to ``report`` (under ``device_runs``)."""
    runs = report.setdefault("device_runs", [])
    for i, r in enumerate(results):
        runs.append(
            {
                "file": sources[i] if sources else None,
                "source": r["source"],
                "created": r["created"],
                "device": r["device"],
                "device_label": device_label(r["device"]),
                "rows": r["rows"],
            }
        )
    return report


def empty_report(machine: dict | None = None) -> dict:
    """A report holding no PC rows (``mvit-bench --device-results`` alone)."""
    return {
        "schema": "mvit.bench/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": 0.0,
        "machine": machine,
        "settings": {},
        "models": [],
    }
