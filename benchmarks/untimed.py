"""Numerics of a model file that cannot be timed here but whose runner runs (``Capabilities.untimed_numerics``;
e.g. a Core AI ``.aimodel`` on coreai-core's bundled CPU runtime) (``mvit-bench FILE``; the matrix does the same through ``matrix._untimed_eval``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .matrix import first_line, quiet


def untimed_scores(entry, eval_pixels: Path, threads: int, log: Path, say) -> dict:
    """Run the file's own runner on the evaluation pixels (saved at ``eval_pixels``) in this process;
    returns {"scores": path of the scores beside them, "numerics", "eval_seconds"} or {"error": line}."""
    px = np.load(eval_pixels)
    say(f"{entry.name}: evaluating on {len(px)} images without a native runtime ...")
    t0 = time.perf_counter()
    runner = None
    try:
        with quiet(log):
            runner = entry.backend.load_runner(entry.path, threads, entry.meta)
            scores = runner.run(px)
    except Exception as e:  # noqa: BLE001 - a runtime refusing the file is a row's note, not a crash
        return {"error": f"the runtime could not run it: {first_line(e)}"}
    finally:
        if runner is not None:
            runner.close()
    out = eval_pixels.with_name(eval_pixels.stem + ".scores.npy")
    np.save(out, scores)
    return {
        "scores": str(out),
        "numerics": getattr(runner, "numerics", ""),
        "eval_seconds": round(time.perf_counter() - t0, 1),
    }
