"""load_image: PNG/JPEG/grey/RGBA/palette/16-bit/animated inputs converted to a net's shape with notes saying
what was done; non-images, decompression bombs and impossible nets refused before decoding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.errors import DataError
from explorer.inspect.images import MAX_PIXELS, ImageInput, load_image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width×height RGB, with almost no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def test_png_of_the_right_size_is_taken_as_is() -> None:
    array = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    result = load_image(encode(Image.fromarray(array)), (3, 32, 32))
    assert isinstance(result, ImageInput)
    assert result.pixels.dtype == torch.uint8 and tuple(result.pixels.shape) == (3, 32, 32)
    assert torch.equal(result.pixels, torch.from_numpy(array).permute(2, 0, 1))
    assert result.notes == []
    assert (result.source_size, result.source_mode, result.source_format) == ((32, 32), "RGB", "PNG")


def test_jpeg_photo_is_centre_cropped_and_resized() -> None:
    # Left 80 columns red, the centre 480 green, right 80 blue: the centre crop keeps only the green.
    array = np.zeros((480, 640, 3), dtype=np.uint8)
    array[:, :80] = (255, 0, 0)
    array[:, 80:560] = (0, 255, 0)
    array[:, 560:] = (0, 0, 255)
    result = load_image(encode(Image.fromarray(array), "JPEG", quality=95), (3, 32, 32))
    assert tuple(result.pixels.shape) == (3, 32, 32)
    assert result.notes == ["cropped the centre 480×480 of 640×480 (the net's images are 32×32)",
                            "resized 480×480 → 32×32"]
    mean = result.pixels.float().mean(dim=(1, 2))
    assert mean[1] > 240 and mean[0] < 15 and mean[2] < 15
    assert result.source_format == "JPEG"


def test_non_square_net_gets_its_own_aspect() -> None:
    result = load_image(encode(Image.new("RGB", (100, 100), (9, 9, 9))), (3, 20, 40))
    assert tuple(result.pixels.shape) == (3, 20, 40)
    assert result.notes[0] == "cropped the centre 100×50 of 100×100 (the net's images are 40×20)"


def test_grey_image_for_a_colour_net_is_repeated_over_three_channels() -> None:
    result = load_image(encode(Image.new("L", (28, 28), 100)), (3, 28, 28))
    assert tuple(result.pixels.shape) == (3, 28, 28)
    assert result.pixels.unique().tolist() == [100]
    assert result.notes == ["converted grey → RGB (the grey repeated over 3 channels; the net takes colour)"]


def test_colour_image_for_a_grey_net_is_converted_to_grey() -> None:
    result = load_image(encode(Image.new("RGB", (28, 28), (255, 0, 0))), (1, 28, 28))
    assert tuple(result.pixels.shape) == (1, 28, 28)
    assert result.pixels.unique().tolist() == [76]  # ITU-R 601 luma of pure red: 0.299 * 255
    assert result.notes == ["converted RGB → grey (the net takes 1 channel)"]


def test_small_grey_image_is_enlarged_with_a_warning_note() -> None:
    result = load_image(encode(Image.new("L", (14, 14), 7)), (1, 28, 28))
    assert tuple(result.pixels.shape) == (1, 28, 28)
    assert result.notes == ["resized 14×14 → 28×28 (enlarged: a small image gives the net little to go on)"]


def test_rgba_transparency_goes_on_white() -> None:
    array = np.zeros((32, 32, 4), dtype=np.uint8)
    array[:, :16] = (0, 0, 0, 255)  # left half opaque black, right half fully transparent
    result = load_image(encode(Image.fromarray(array, "RGBA")), (3, 32, 32))
    assert result.pixels[:, :, :16].unique().tolist() == [0]
    assert result.pixels[:, :, 16:].unique().tolist() == [255]
    assert result.notes == ["put the transparent pixels on white", "converted RGBA → RGB"]


def test_opaque_rgba_only_drops_alpha() -> None:
    result = load_image(encode(Image.new("RGBA", (32, 32), (10, 20, 30, 255))), (3, 32, 32))
    assert result.pixels[:, 0, 0].tolist() == [10, 20, 30]
    assert result.notes == ["dropped the alpha channel (every pixel is opaque)", "converted RGBA → RGB"]


def test_palette_image_is_converted_with_its_colours() -> None:
    palette_image = Image.new("RGB", (40, 40), (200, 30, 60)).convert("P", palette=Image.Palette.ADAPTIVE)
    result = load_image(encode(palette_image), (3, 32, 32))
    assert tuple(result.pixels.shape) == (3, 32, 32)
    assert result.pixels[:, 16, 16].tolist() == [200, 30, 60]
    assert result.source_mode == "P"
    assert result.notes == ["converted palette (P) → RGB", "resized 40×40 → 32×32"]


def test_palette_with_transparency_is_flattened() -> None:
    palette_image = Image.new("RGB", (32, 32), (0, 0, 0)).convert("P")
    result = load_image(encode(palette_image, transparency=palette_image.getpixel((0, 0))), (1, 32, 32))
    assert result.pixels.unique().tolist() == [255]
    assert result.notes == ["put the transparent pixels on white",
                            "converted palette (P) → grey (the net takes 1 channel)"]


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    array = np.full((28, 28), 32896, dtype=np.uint16)  # 32896 / 65535 * 255 = 128.0
    result = load_image(encode(Image.fromarray(array)), (1, 28, 28))
    assert result.pixels.unique().tolist() == [128]
    assert result.notes[0] == "scaled I;16 pixel values (0–65535) to 8-bit grey"


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    result = load_image(data, (3, 32, 32))
    assert result.pixels[:, 0, 0].tolist() == [255, 0, 0]
    assert result.notes[0] == "used the first of 3 frames"


def test_exif_orientation_is_applied() -> None:
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = 255  # left half white: stored landscape, shown rotated a quarter turn
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    result = load_image(encode(image, "JPEG", exif=exif, quality=95), (3, 40, 20))
    assert result.notes == ["rotated/flipped per the EXIF orientation tag (6)"]
    # After a clockwise quarter turn the white left half is on top.
    assert result.pixels[:, :20].float().mean() > 240 and result.pixels[:, 20:].float().mean() < 15


@pytest.mark.parametrize("data, words", [
    (b"just some text, not a picture", "it looks like text"),
    (b'{"arch": {}}', "it looks like JSON"),
    (b"%PDF-1.7 ...", "it is a PDF"),
    (bytes(range(256)) * 4, "1,024 bytes of unknown format"),
])
def test_non_images_are_refused_in_one_line(data: bytes, words: str) -> None:
    with pytest.raises(DataError) as err:
        load_image(data, (3, 32, 32))
    message = str(err.value)
    assert "not an image Pillow can read" in message and words in message and "\n" not in message


def test_empty_upload_is_refused() -> None:
    with pytest.raises(DataError, match="empty"):
        load_image(b"", (3, 32, 32))


@pytest.mark.parametrize("size, shown", [((30000, 30000), "900,000,000 pixels"),
                                         ((9000, 9000), "9,000×9,000 = 81,000,000 pixels")])
def test_decompression_bomb_is_refused_from_its_header(size, shown) -> None:
    data = png_header_only(*size)
    assert len(data) < 200  # nothing behind the header: refusing must not need the pixels
    with pytest.raises(DataError) as err:
        load_image(data, (3, 32, 32))
    assert shown in str(err.value) and f"{MAX_PIXELS:,}" in str(err.value)
    assert "decompression bomb" in str(err.value)


def test_own_pixel_limit_applies() -> None:
    with pytest.raises(DataError, match="100×100 = 10,000 pixels, over the limit of 5,000"):
        load_image(encode(Image.new("RGB", (100, 100))), (3, 32, 32), max_pixels=5000)


def test_truncated_image_is_refused() -> None:
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(DataError, match="damaged or truncated"):
        load_image(data[:len(data) // 2], (3, 32, 32))


@pytest.mark.parametrize("channels", [2, 4])
def test_nets_that_take_neither_grey_nor_rgb_are_refused(channels: int) -> None:
    with pytest.raises(DataError, match=f"this net takes {channels}-channel input.*1 \\(grey\\) or 3 \\(RGB\\)"):
        load_image(encode(Image.new("RGB", (32, 32))), (channels, 32, 32))
