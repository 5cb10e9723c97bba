"""Split a class-folder image set into two disjoint halves of symlinks, every other file per class:
``DST/search`` (even positions in sorted order) and ``DST/verify`` (odd), for an int8 search that
must not see the verification images (benchmarks/results/int8_search.md).

    python benchmarks/studies/split_halves.py ../shared/data/trashnet6/val /tmp/valsplit
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def split_halves(src: Path, dst: Path) -> dict[str, int]:
    """Make the two halves under ``dst``; returns the file count of each."""
    counts = {"search": 0, "verify": 0}
    for cls in sorted(p for p in Path(src).iterdir() if p.is_dir()):
        for i, f in enumerate(sorted(p for p in cls.iterdir() if p.is_file())):
            half = "search" if i % 2 == 0 else "verify"
            link = Path(dst) / half / cls.name / f.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            os.symlink(f.resolve(), link)
            counts[half] += 1
    return counts


def main(argv=None) -> int:
    """Print the two halves' sizes."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="class-folder image set")
    ap.add_argument("dst", type=Path, help="where DST/search and DST/verify are made")
    args = ap.parse_args(argv)
    print(split_halves(args.src, args.dst))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
