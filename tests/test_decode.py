import io

import numpy as np
import pytest
from PIL import Image

from fsbir.sketchgen import SketchgenError, load_rgb
from tests.conftest import encode, photo


def test_rgb_jpeg_roundtrip():
    rgb, size = load_rgb(encode(photo(), "JPEG"))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8 and size == (64, 48)
    assert rgb[24, 32, 0] > 150 and rgb[24, 32, 1] < 90  # red centre survived


def test_exif_orientation_applied():
    img = photo(64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    rgb, size = load_rgb(encode(img, "JPEG", exif=exif.tobytes()))
    assert rgb.shape == (64, 48, 3)
    assert size == (64, 48)  # original_* is the stored size


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_composited_on_white(mode):
    arr = np.zeros((40, 40, 4), np.uint8)  # fully transparent black...
    arr[10:30, 10:30] = (0, 0, 255, 255)  # ...with an opaque blue square
    img = Image.fromarray(arr, "RGBA")
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        alpha_index = img.getpixel((0, 0))
        data = encode(img, "PNG", transparency=alpha_index)
        rgb, _ = load_rgb(data)
        assert (rgb[0, 0] == 255).all() and rgb[20, 20].min() < 200
        return
    rgb, _ = load_rgb(encode(img, "PNG"))
    assert (rgb[0, 0] == 255).all(), "transparent pixels must become white, not black"
    assert rgb[20, 20].min() < 200


def test_cmyk_converted():
    rgb, _ = load_rgb(encode(photo().convert("CMYK"), "JPEG"))
    assert rgb.shape == (48, 64, 3)
    assert rgb[24, 32, 0] > 150 and rgb[0, 0].min() > 230


def test_16bit_grey_scaled_not_clipped():
    ramp = (np.linspace(0, 65535, 64)[None, :].repeat(32, 0)).astype(np.uint16)
    img = Image.fromarray(ramp)
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    rgb, _ = load_rgb(data)
    grey = rgb[0, :, 0].astype(int)
    assert grey[0] < 5 and grey[-1] > 250 and grey[32] in range(110, 146)  # mid-grey, not white


def test_greyscale_and_palette():
    rgb, _ = load_rgb(encode(photo().convert("L"), "PNG"))
    assert rgb.shape == (48, 64, 3) and (rgb[..., 0] == rgb[..., 1]).all()
    rgb, _ = load_rgb(encode(photo().convert("P"), "GIF"))
    assert rgb.shape == (48, 64, 3)


def test_too_large_read_from_header():
    data = encode(Image.new("RGB", (3000, 2000), "white"), "JPEG")
    with pytest.raises(SketchgenError) as err:
        load_rgb(data, max_pixels=5_000_000)
    assert err.value.reason == "too_large"


def test_too_small():
    with pytest.raises(SketchgenError) as err:
        load_rgb(encode(photo(10, 40), "PNG"), min_side=16)
    assert err.value.reason == "too_small"


@pytest.mark.parametrize("data", [b"", b"this is not an image", None])
def test_undecodable(data):
    if data is None:  # truncated JPEG
        data = encode(photo(200, 200), "JPEG")[:300]
    with pytest.raises(SketchgenError) as err:
        load_rgb(data)
    assert err.value.reason == "decode_error"


def stroke_drawing(mode: str) -> bytes:
    """A vertical stroke on transparent (or white) paper, written in the given mode."""
    if mode == "I;16":
        arr = np.full((64, 64), 65535, np.uint16)
        arr[8:56, 30:34] = 0
        return encode(Image.fromarray(arr), "PNG")
    rgba = np.zeros((64, 64, 4), np.uint8)  # transparent black paper, as a canvas exports it
    rgba[8:56, 30:34] = (200, 0, 0, 255)  # a red pen
    img = Image.fromarray(rgba, "RGBA")
    if mode == "RGBA":
        return encode(img, "PNG")
    if mode == "LA":
        return encode(img.convert("LA"), "PNG")
    pal = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    return encode(pal, "PNG", transparency=pal.getpixel((0, 0)))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16"])
def test_decode_sketch_any_mode_gives_dark_strokes_on_white(mode):
    from fsbir.sketchgen import decode_sketch

    grey = decode_sketch(stroke_drawing(mode))
    assert grey.shape == (64, 64) and grey.dtype == np.uint8
    assert (grey[:, :20] == 255).all(), "paper must be white"
    assert grey[8:56, 30:34].max() < 128, "the stroke must stay dark, whatever its colour"


def test_decode_sketch_caps_pixels_from_the_header():
    from fsbir.sketchgen import decode_sketch

    with pytest.raises(SketchgenError) as err:
        decode_sketch(encode(Image.new("1", (5000, 5000), 1), "PNG"), max_pixels=1_000_000)
    assert err.value.reason == "too_large"
