"""BLAS thread count for interpreter runs.

The interpreter's matrix products are small (MobileViT attention: 16 x [256, 16] @ [16, 256]; 1x1
convs on 16x16 maps), where a multi-threaded OpenBLAS spends its time waking and synchronising
threads. On a 2-core machine with another job running, one full-size image took 3.1 s with
OpenBLAS's default threads and 0.58 s with one thread. ``blas_threads(n)`` sets numpy's OpenBLAS
to ``n`` threads for the duration of a ``with`` block and restores the previous count after.

The default count is 1; ``MVIT_COREML_INTERP_THREADS`` overrides it (0 leaves OpenBLAS alone).
Only OpenBLAS found in the process (``/proc/self/maps``, Linux) is handled; elsewhere (macOS
Accelerate, MKL) this is a no-op. Results do not depend on the thread count beyond summation order.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

# (getter, setter) names: plain OpenBLAS, and the 64-bit-integer builds numpy/scipy wheels ship
_SYMBOLS = (
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
)
_found: list | None = None


def _openblas() -> list:
    """[(get, set)] for every OpenBLAS loaded in this process (found once)."""
    global _found
    if _found is None:
        import numpy  # noqa: F401 - make sure numpy's OpenBLAS is loaded before looking

        _found = []
        try:
            with open("/proc/self/maps") as f:
                paths = sorted({line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1].lower()})
        except OSError:
            paths = []
        for p in paths:
            try:
                lib = ctypes.CDLL(p)
            except OSError:
                continue
            for get, set_ in _SYMBOLS:
                if hasattr(lib, get) and hasattr(lib, set_):
                    g, s = getattr(lib, get), getattr(lib, set_)
                    g.restype, s.restype, s.argtypes = ctypes.c_int, None, [ctypes.c_int]
                    _found.append((g, s))
                    break
    return _found


def default_threads() -> int:
    try:
        return max(0, int(os.environ.get("MVIT_COREML_INTERP_THREADS", "1")))
    except ValueError:
        return 1


@contextmanager
def blas_threads(n: int | None = None):
    """Within the block numpy's OpenBLAS uses ``n`` threads (default: :func:`default_threads`)."""
    n = default_threads() if n is None else n
    libs = _openblas() if n > 0 else []
    saved = []
    for get, set_ in libs:
        old = get()
        if old != n:
            set_(n)
            saved.append((set_, old))
    try:
        yield
    finally:
        for set_, old in saved:
            set_(old)
