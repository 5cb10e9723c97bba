"""mvit.benchmarks: latency, size and accuracy of exported models, and their reports.

``mvit.benchmarks(config)`` (this package is callable) runs the benchmark matrix for a
``mvit.benchmarks.matrix.BenchConfig`` and returns the report dictionary (what bench.json holds).
"""

import sys
import types


class _Callable(types.ModuleType):
    def __call__(self, config, say=None):
        """Run the benchmark matrix for ``config``; returns the report dictionary."""
        # lazy: every bench worker (python -m mvit.benchmarks.worker) imports this package, and a torch row
        # must not load mvit.export
        from .matrix import run

        return run(config, say)


sys.modules[__name__].__class__ = _Callable
