"""model.data: scanning, splitting, decoding odd images, batched augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mvit.model.contract import PreprocessContract
from mvit.model.data import (
    AugmentConfig,
    DatasetError,
    augment_batch,
    augment_pixels,
    decode_split,
    eval_batch,
    find_splits,
)
from mvit.model.preprocess import pixels_uint8


def _img(path, colour, size=(40, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), np.uint8) + np.array(colour, np.uint8)
    im = Image.fromarray(arr)
    if mode == "L":
        im = im.convert("L")
    elif mode == "CMYK":
        im = im.convert("CMYK")
    elif mode == "RGBA":
        im = im.convert("RGBA")
    im.save(path)
    return path


def test_odd_images_decode_and_unreadable_is_skipped(tmp_path):
    d = tmp_path / "train"
    _img(d / "a" / "grey.jpg", (90, 90, 90), mode="L")
    _img(d / "a" / "cmyk.jpg", (200, 10, 10), mode="CMYK")
    _img(d / "b" / "alpha.png", (10, 200, 10), mode="RGBA")
    # EXIF orientation 6 (rotate 90): a 40x30 landscape file shows as 30x40 portrait
    im = Image.fromarray(np.zeros((30, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    (d / "b").mkdir(parents=True, exist_ok=True)
    im.save(d / "b" / "rot.jpg", exif=exif)
    (d / "b" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    _img(tmp_path / "val" / "a" / "v.png", (1, 2, 3))
    s = find_splits(tmp_path)
    assert s.classes == ["a", "b"] and s.layout == "train/val folders"
    logged = []
    px = decode_split(s.train, 32, workers=1, log=logged.append)
    assert px.pixels.shape == (4, 3, 32, 32) and px.pixels.dtype == torch.uint8
    assert len(px.skipped) == 1 and "broken.jpg" in px.skipped[0] and len(logged) == 1
    c = PreprocessContract(input_size=(16, 16))
    val = decode_split(s.val, 16, contract=c, workers=1)
    assert torch.equal(val.pixels[0].permute(1, 2, 0), torch.from_numpy(pixels_uint8(s.val.paths[0], c).copy()))


def test_seeded_split_without_val_is_fixed(tmp_path):
    for c in ("x", "y"):
        for i in range(10):
            _img(tmp_path / c / f"{i}.png", (i, i, i))
    a, b = find_splits(tmp_path, 0.2, seed=3), find_splits(tmp_path, 0.2, seed=3)
    assert a.val.paths == b.val.paths and len(a.val.paths) == 4 and len(a.train.paths) == 16
    assert not set(a.val.paths) & set(a.train.paths)
    assert find_splits(tmp_path, 0.2, seed=4).val.paths != a.val.paths


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda r: None, "no such dataset folder"),
        (lambda r: (r / "only").mkdir(parents=True) or _img(r / "only" / "1.png", (0, 0, 0)), "only one class"),
        (lambda r: (_img(r / "a" / "1.png", (0, 0, 0)), (r / "b").mkdir()), "has no images"),
        (lambda r: r.mkdir(), "no class folders"),
    ],
)
def test_bad_datasets_are_clear_errors(tmp_path, setup, message):
    root = tmp_path / "ds"
    setup(root)
    with pytest.raises(DatasetError, match=message):
        find_splits(root)


def test_augment_is_deterministic_and_normalised():
    px = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    c = PreprocessContract(input_size=(32, 32))
    a = augment_batch(px, 32, c, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(px, 32, c, AugmentConfig(), torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    # no crop, no flip, no jitter: the identity resampling
    ident = AugmentConfig(scale=(1, 1), ratio=(1, 1), flip=False, brightness=0, contrast=0, saturation=0)
    out = augment_batch(px, 40, c, ident, torch.Generator().manual_seed(0))
    assert torch.allclose(out, eval_batch(px, c), atol=1e-5)


def test_augment_pixels_keeps_uint8_images_and_their_size():
    px = np.random.default_rng(0).integers(0, 256, (3, 24, 40, 3), dtype=np.uint8)
    ident = AugmentConfig(scale=(1, 1), ratio=(1, 1), flip=False, brightness=0, contrast=0, saturation=0)
    same = augment_pixels(px, ident, torch.Generator().manual_seed(0))
    assert same.dtype == np.uint8 and same.shape == px.shape
    assert np.abs(same.astype(int) - px).max() <= 1  # identity resampling, rounded back to uint8
    a = augment_pixels(px, AugmentConfig(scale=(0.2, 0.6)), torch.Generator().manual_seed(3))
    b = augment_pixels(px, AugmentConfig(scale=(0.2, 0.6)), torch.Generator().manual_seed(3))
    assert a.shape == px.shape and np.array_equal(a, b) and not np.array_equal(a, px)
