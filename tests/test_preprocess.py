"""The preprocessing contract and its one implementation."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mvit.model.contract import PreprocessContract
from mvit.model.preprocess import (
    ImageLoadError,
    list_images,
    load_rgb,
    normalize_hwc_uint8,
    normalize_tensor,
    pixels_uint8,
    preprocess_file,
)


def test_contract_roundtrip_and_validation():
    c = PreprocessContract(
        input_size=(224, 256),
        crop_fraction=0.875,
        interpolation="bicubic",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        channel_order="BGR",
    )
    d = c.to_dict()
    assert d["resize_short"] == 256 and d["layout"] == "NCHW"
    assert PreprocessContract.from_dict(d) == c
    with pytest.raises(ValueError, match="channel_order"):
        PreprocessContract(channel_order="RGBA")
    with pytest.raises(ValueError, match="crop_fraction"):
        PreprocessContract(crop_fraction=0)


def test_resize_short_side_then_centre_crop():
    # 40x20 image, left half red, right half blue; crop to 10x10 after resizing the short side to 10
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20, 0] = 255
    arr[:, 20:, 2] = 255
    c = PreprocessContract(input_size=(10, 10), interpolation="nearest")
    px = pixels_uint8(Image.fromarray(arr), c)
    assert px.shape == (10, 10, 3)
    assert (px[:, :5, 0] == 255).all() and (px[:, 5:, 2] == 255).all()


def test_normalisation_and_bgr_order():
    px = np.array([[[255, 0, 51]]], np.uint8)
    c = PreprocessContract(input_size=(1, 1), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), channel_order="BGR")
    x = normalize_hwc_uint8(px, c)
    assert x.shape == (3, 1, 1)
    np.testing.assert_allclose(x[:, 0, 0], [(0.2 - 0.5) / 0.5, -1.0, 1.0], rtol=1e-6)


def test_numpy_and_torch_normalisation_agree():
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    c = PreprocessContract(input_size=(8, 8), mean=(0.1, 0.2, 0.3), std=(0.9, 0.8, 0.7), channel_order="BGR")
    ref = normalize_hwc_uint8(px, c)
    t = normalize_tensor(torch.from_numpy(px).permute(0, 3, 1, 2).float() / 255, c)
    np.testing.assert_allclose(t.numpy(), ref, atol=1e-6)


def _jpeg_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    assert load_rgb(_jpeg_bytes(img, exif=exif)).size == (20, 40)


def test_greyscale_cmyk_palette_and_alpha_become_rgb(tmp_path):
    grey = load_rgb(_jpeg_bytes(Image.new("L", (8, 8), 128)))
    assert grey.mode == "RGB" and abs(int(np.asarray(grey)[0, 0, 1]) - 128) <= 2
    cmyk = load_rgb(_jpeg_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0))))
    r, g, b = np.asarray(cmyk)[4, 4]
    assert r > 200 and g < 60 and b < 60  # pure red in CMYK
    rgba = Image.new("RGBA", (8, 8), (0, 0, 255, 0))  # fully transparent blue -> white background
    rgba.save(tmp_path / "a.png")
    assert tuple(np.asarray(load_rgb(tmp_path / "a.png"))[0, 0]) == (255, 255, 255)
    pal = Image.new("P", (8, 8), 3)
    pal.save(tmp_path / "p.gif")
    assert load_rgb(tmp_path / "p.gif").mode == "RGB"


def test_unreadable_inputs_give_one_clear_error(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ImageLoadError, match="notes.jpg: not an image file"):
        load_rgb(tmp_path / "notes.jpg")
    with pytest.raises(ImageLoadError, match="no such file"):
        load_rgb(tmp_path / "missing.jpg")
    good = _jpeg_bytes(Image.new("RGB", (64, 64), (1, 2, 3)))
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 3])
    with pytest.raises(ImageLoadError, match="cut.jpg: unreadable image"):
        load_rgb(tmp_path / "cut.jpg")


def test_preprocess_file_shape_and_listing(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (50, 30), (10, 20, 30)).save(tmp_path / "sub" / "x.PNG")
    (tmp_path / "readme.txt").write_text("hi")
    files = list_images(tmp_path)
    assert [f.name for f in files] == ["x.PNG"]
    x = preprocess_file(files[0], PreprocessContract(input_size=(16, 24)))
    assert x.shape == (3, 16, 24) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 5, 5], np.array([10, 20, 30]) / 255, atol=1e-6)
