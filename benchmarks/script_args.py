"""Command line shared by the measurement scripts: the per-op profiles (tflite_op_profile,
onnx_op_profile) and int8_sources."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..model.checkpoint import atomic_write


def op_profile_parser(doc: str, files: str, runs: int) -> argparse.ArgumentParser:
    """A parser titled by ``doc``'s first line: model files (``files`` says which), --threads, --runs
    (default ``runs``), --top, --out; ``op_profile_args`` parses and checks it."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("models", nargs="+", help=files)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=runs, help="timed runs per op (per model for onnx_op_profile)")
    ap.add_argument("--top", type=int, default=10, help="slowest rows listed per model")
    ap.add_argument("--out", help="also write the report here")
    return ap


def op_profile_args(ap: argparse.ArgumentParser, prog: str, argv=None) -> argparse.Namespace:
    """Parsed arguments; a count out of range or a missing model file exits with one line naming it."""
    args = ap.parse_args(argv)
    for name, low in (("threads", 1), ("runs", 1), ("top", 0), ("span", 1)):
        value = getattr(args, name, low)
        if value < low:
            fail(prog, f"--{name} must be at least {low}, got {value}")
    for m in args.models:
        if not Path(m).is_file():
            fail(prog, f"no such file: {m}")
    return args


def fail(prog: str, message: str) -> None:
    """Exit with status 2 after one line on stderr: ``prog: message``."""
    sys.stderr.write(f"{prog}: {message}\n")
    raise SystemExit(2)


def emit_report(text: str, out: str | None) -> None:
    """Print ``text``; with ``out``, also write it there (whole or not at all)."""
    if out:
        atomic_write(out, lambda tmp: Path(tmp).write_text(text))
    print(text)
