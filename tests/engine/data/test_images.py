import io
import warnings

import numpy as np
import pytest
from PIL import Image

from cardinal.engine.data.images import iter_image_files, load_image, to_rgb
from cardinal.engine.errors import ImageLoadError


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def quadrants(width: int = 40, height: int = 20) -> Image.Image:
    """An asymmetric picture: red top-left, green top-right, blue bottom-left, white bottom-right."""
    array = np.zeros((height, width, 3), np.uint8)
    array[: height // 2, : width // 2] = (255, 0, 0)
    array[: height // 2, width // 2 :] = (0, 255, 0)
    array[height // 2 :, : width // 2] = (0, 0, 255)
    array[height // 2 :, width // 2 :] = (255, 255, 255)
    return Image.fromarray(array)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_allowed_format_decodes_to_rgb(fmt, tmp_path):
    path = tmp_path / f"picture.{fmt.lower()}"
    path.write_bytes(encode(quadrants(), fmt))
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (40, 20)
    red = np.asarray(image)[2, 2].astype(int)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_renamed_unsupported_format_is_refused_with_its_name(tmp_path):
    path = tmp_path / "icon.png"
    path.write_bytes(encode(Image.new("RGB", (16, 16)), "ICO"))
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.path == str(path)
    assert "ICO images are not supported" in info.value.reason


def test_zero_bytes(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty file"):
        load_image(path)


def test_text_renamed_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: eggs, milk\n")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path, fmt):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8))
    data = encode(noisy, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(path)


def test_decompression_bomb_is_an_error_not_a_warning(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(encode(Image.new("1", (4000, 3000)), "PNG"))  # tiny file, 12 MP
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path, max_pixels=10_000_000)
    assert load_image(path).size == (4000, 3000)  # under the default limit it is fine


def test_pillow_hard_bomb_limit_becomes_image_load_error(tmp_path):
    # Above twice Pillow's limit Pillow itself raises during open; that too must be our typed error.
    path = tmp_path / "huge.gif"
    path.write_bytes(encode(Image.new("1", (14000, 14000)), "GIF"))
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path)


MODES = {
    "P": lambda: Image.new("RGB", (8, 8), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE),
    "PA": lambda: Image.new("RGBA", (8, 8), (10, 200, 30, 0)).convert("PA"),
    "L": lambda: Image.new("L", (8, 8), 128),
    "LA": lambda: Image.new("LA", (8, 8), (0, 0)),
    "RGBA": lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 0)),
    "CMYK": lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0)),
    "I;16": lambda: Image.fromarray(np.full((8, 8), 65535, np.uint16)),
    "I": lambda: Image.fromarray(np.full((8, 8), 40000, np.int32)),
    "F": lambda: Image.fromarray(np.full((8, 8), 0.5, np.float32)),
    "1": lambda: Image.new("1", (8, 8), 1),
}
EXPECTED_PIXEL = {
    "P": (10, 200, 30),
    "PA": (255, 255, 255),  # fully transparent: the white background shows
    "L": (128, 128, 128),
    "LA": (255, 255, 255),
    "RGBA": (255, 255, 255),
    "CMYK": (255, 0, 0),
    "I;16": (255, 255, 255),  # 16-bit full scale is white, not clipped garbage
    "I": (156, 156, 156),  # 40000 / 257
    "F": (128, 128, 128),  # 0.5 of 0..1
    "1": (255, 255, 255),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_becomes_rgb(mode, tmp_path):
    image = MODES[mode]()
    assert image.mode == mode
    if mode == "PA":  # no format Pillow writes stores PA; decoders can still produce it
        loaded = to_rgb(image)
    else:
        # PNG keeps these modes as they are; TIFF keeps the rest (CMYK, 32-bit integer, float).
        fmt = "PNG" if mode in ("P", "LA", "RGBA", "1", "L", "I;16") else "TIFF"
        data = encode(image, fmt)
        assert Image.open(io.BytesIO(data)).mode == mode
        loaded = load_image(data, name=f"{mode}.{fmt.lower()}")
    assert loaded.mode == "RGB"
    pixel = np.asarray(loaded)[4, 4].astype(int)
    assert np.abs(pixel - np.array(EXPECTED_PIXEL[mode])).max() <= 2, (mode, pixel)


def test_palette_with_transparent_index_is_white_there():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    pixels = np.asarray(load_image(encode(image, "PNG", transparency=0)))
    assert tuple(pixels[0, 0]) == (255, 0, 0)
    assert tuple(pixels[2, 2]) == (255, 255, 255)


def test_half_transparent_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    pixel = np.asarray(load_image(encode(image, "PNG")))[0, 0]
    assert 125 <= pixel[0] <= 129


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (10, 10), color) for color in [(255, 0, 0), (0, 0, 255)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    pixel = np.asarray(load_image(buffer.getvalue()))[5, 5]
    assert pixel[0] > 200 and pixel[2] < 50


# EXIF orientation -> how the stored pixels relate to the upright picture (the EXIF 2.3 table).
STORED_FROM_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # stored turned 90 deg counter-clockwise; viewer turns it clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", sorted(STORED_FROM_UPRIGHT))
def test_exif_orientation_is_applied(orientation):
    upright = quadrants()
    op = STORED_FROM_UPRIGHT[orientation]
    stored = upright if op is None else upright.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    loaded = load_image(encode(stored, "PNG", exif=exif))
    assert loaded.size == upright.size
    assert np.array_equal(np.asarray(loaded), np.asarray(upright))


def test_exif_orientation_in_jpeg():
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = quadrants().transpose(Image.Transpose.ROTATE_90)
    loaded = np.asarray(load_image(encode(stored, "JPEG", exif=exif, quality=95))).astype(int)
    assert loaded.shape == (20, 40, 3)
    assert loaded[2, 2, 0] > 200 and loaded[2, 2, 1] < 60  # red is top-left again


def test_draft_decodes_large_jpeg_smaller_but_not_below_request():
    data = encode(Image.new("RGB", (2400, 1600), (0, 128, 0)), "JPEG")
    small = load_image(data, draft_size=232)
    assert min(small.size) >= 232 and small.size[0] < 2400


def test_iter_image_files_recurses_sorted_and_skips_hidden(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for rel in ["b/2.png", "a.JPG", "b/1.webp", ".hidden/x.png", "notes.txt"]:
        (tmp_path / rel).write_bytes(b"x")
    named = tmp_path / "named.txt"
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path, named])]
    assert found == ["a.JPG", "b/1.webp", "b/2.png", "named.txt"]


def test_all_nan_float_tiff_loads_black_without_a_warning():
    data = encode(Image.fromarray(np.full((8, 8), np.nan, np.float32)), "TIFF")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_image(data, name="nan.tiff")
    assert loaded.mode == "RGB" and loaded.size == (8, 8)
    assert not np.asarray(loaded).any()  # no data anywhere reads as black, like a single NaN pixel does


def test_float_tiff_with_some_nan_keeps_its_range_and_blacks_out_the_gaps():
    values = np.full((8, 8), 0.5, np.float32)
    values[0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels = np.asarray(load_image(encode(Image.fromarray(values), "TIFF"), name="gaps.tiff")).astype(int)
    assert tuple(pixels[0, 0]) == (0, 0, 0)
    assert abs(pixels[4, 4, 0] - 128) <= 1


@pytest.mark.parametrize("cut", [5, 40])  # inside the tag table ("Corrupt EXIF data"), inside a tag's value
def test_damaged_exif_loads_the_image_without_a_warning(cut):
    exif = Image.Exif()
    exif[0x010E] = "a description long enough to be stored after the tag table"
    exif[0x0112] = 6  # rotated: a reader who could read it would turn the image
    header = len(b"Exif\0\0") + 8 + 2  # then the first tag's 12 bytes
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, "JPEG", exif=exif.tobytes()[: header + cut])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(buffer.getvalue(), name="damaged-exif.jpg")
    assert [str(w.message) for w in caught] == []
    assert image.size in ((40, 30), (30, 40))  # as stored: the orientation cannot be read
