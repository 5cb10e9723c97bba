"""Re-encode an ImageFolder dataset smaller (short side, JPEG quality), keeping its layout.

Used to carry the datasets to a remote GPU machine within a transfer limit:
    python benchmarks/article/shrink_dataset.py ../shared/data/trashnet6 .devdata/trashnet6 --short 256
Images are decoded with model.preprocess.load_rgb (EXIF, CMYK, alpha handled) and written as RGB JPEG.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

from mvit.model.preprocess import ImageLoadError, list_images, load_rgb


def _one(job):
    src, dst, short, quality = job
    try:
        img = load_rgb(src)
    except ImageLoadError as e:
        return str(e)
    w, h = img.size
    s = short / min(w, h)
    if s < 1:
        img = img.resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC)
    dst.parent.mkdir(parents=True, exist_ok=True)
    img.save(dst.with_suffix(".jpg"), quality=quality)
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--short", type=int, default=256, help="short side in pixels (never upscaled)")
    p.add_argument("--quality", type=int, default=85)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    jobs = [(f, a.dst / f.relative_to(a.src), a.short, a.quality) for f in list_images(a.src)]
    with ProcessPoolExecutor(a.workers) as ex:
        errors = [e for e in ex.map(_one, jobs, chunksize=32) if e]
    for e in errors:
        print("skipped:", e, file=sys.stderr)
    print(f"{len(jobs) - len(errors)} images -> {a.dst}")


if __name__ == "__main__":
    main()
