"""Images from users (an upload, a file on the command line) turned into exactly what a net takes.

`load_image(data, input_shape)` decodes PNG/JPEG/GIF/WebP/... bytes of any size and mode into a uint8 C×H×W
tensor of the net's input shape and says, in `notes`, every change it made. The rules:

- The pixel count is read from the header and checked BEFORE anything is decoded (decompression bombs).
- EXIF orientation is applied (phone photos); an animated image gives its first frame.
- Transparency (RGBA, LA, palette with a transparent colour) is flattened onto white.
- Colour → grey (a 1-channel net) and grey → colour (a 3-channel net, the grey repeated) are converted.
  16-bit / 32-bit / float images are scaled to 0–255. CMYK, YCbCr, LAB... go through Pillow's RGB conversion.
- A different aspect ratio is centre-cropped to the net's, then resized (antialiased) to its H×W.
- Refused with DataError: bytes that are not an image Pillow can read, damaged or truncated files, images over
  `max_pixels`, files over MAX_IMAGE_BYTES (explorer.files), and nets whose input is neither 1 (grey) nor 3
  (RGB) channels.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from explorer.errors import DataError
from explorer.files import MAX_IMAGE_BYTES
from explorer.files import MAX_IMAGE_PIXELS as MAX_PIXELS  # a 64-Mpixel photo decodes to ~256 MB of RGBA

GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
DEEP_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # more than 8 bits per pixel: scaled, not clipped


@dataclass(frozen=True)
class ImageInput:
    """An image ready for a net: `pixels` uint8 C×H×W of the net's input shape, and what was done to get there."""

    pixels: torch.Tensor
    notes: list[str] = field(default_factory=list)
    source_size: tuple[int, int] = (0, 0)  # width, height of the file as uploaded
    source_mode: str = ""  # Pillow's mode of the file ("RGB", "RGBA", "P", "L", ...)
    source_format: str = ""  # "PNG", "JPEG", ...


def load_image(data: bytes, input_shape: tuple[int, int, int], max_pixels: int = MAX_PIXELS) -> ImageInput:
    """The image in `data` converted to `input_shape` (C, H, W); DataError (one line, what to do) if it cannot be."""
    channels, height, width = _check_shape(input_shape)
    image = _open(data, max_pixels)
    notes: list[str] = []
    size, mode, fmt = image.size, image.mode, image.format or "image"
    try:
        image = _first_frame(image, notes)
        image = _upright(image, notes)
        image = _to_channels(image, channels, notes)
        image = _fit(image, height, width, notes)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError) as err:  # Pillow raises these for damaged/truncated pixel data
        raise DataError(f"the {fmt} image is damaged or truncated ({err}); "
                        "upload another file.") from None
    array = np.asarray(image, dtype=np.uint8)
    pixels = torch.from_numpy(array.copy()).reshape(height, width, channels).permute(2, 0, 1).contiguous()
    return ImageInput(pixels, notes, size, mode, fmt)


def _check_shape(input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        channels, height, width = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise DataError(f"the net's input shape {input_shape!r} is not (channels, height, width).") from None
    if channels not in (1, 3):
        raise DataError(f"this net takes {channels}-channel input; an image can be given only to a net that takes "
                        "1 (grey) or 3 (RGB) channels. Pick another checkpoint.")
    if height < 1 or width < 1:
        raise DataError(f"the net's input shape {input_shape!r} has no pixels.")
    return channels, height, width


def _open(data: bytes, max_pixels: int):
    """The image with only its header read; refuses non-images and oversized images before any decoding."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise DataError("the upload is empty; pick a PNG or JPEG image file.")
    if len(data) > MAX_IMAGE_BYTES:
        raise DataError(f"the file is {len(data):,} bytes, over the limit of {MAX_IMAGE_BYTES:,} bytes (an "
                        f"uncompressed {MAX_PIXELS // 1_000_000}-Mpixel image); shrink it and try again.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, below
            image = Image.open(io.BytesIO(bytes(data)))
    except Image.DecompressionBombError as err:
        # Pillow's own, larger guard fired first; its message carries the pixel count.
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise _too_big(_pixel_count(str(err)), limit) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise DataError(f"the file is not an image Pillow can read ({_sniff(data)}); "
                        "upload a PNG or JPEG (or GIF, WebP, BMP, TIFF).") from None
    w, h = image.size
    if w * h > max_pixels:
        raise _too_big(f"{w:,}×{h:,} = {w * h:,} pixels", max_pixels)
    if w < 1 or h < 1:
        raise DataError(f"the image is {w}×{h} pixels (empty); upload another file.")
    return image


def _too_big(what: str, max_pixels: int) -> DataError:
    return DataError(f"the image is {what}, over the limit of {max_pixels:,} pixels (refused without decoding it, "
                     "a guard against decompression bombs); shrink it and upload it again.")


def _pixel_count(message: str) -> str:
    found = re.search(r"\((\d+) pixels\)", message)
    return f"{int(found.group(1)):,} pixels" if found else "too many pixels"


def _sniff(data: bytes) -> str:
    """A hint at what the bytes are, for the refusal message."""
    head = bytes(data[:64])
    if head.lstrip()[:1] in (b"{", b"["):
        return "it looks like JSON"
    if head[:5] == b"%PDF-":
        return "it is a PDF"
    if head[:2] == b"PK":
        return "it looks like a zip archive or a PyTorch checkpoint"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if all(ch.isprintable() or ch.isspace() for ch in text):
        return "it looks like text"
    return f"{len(data):,} bytes of unknown format"


def _first_frame(image, notes: list[str]):
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        image.seek(0)
        notes.append(f"used the first of {frames} frames")
    image.load()  # decode now (header was checked), so damaged data fails here, inside the caller's try
    return image


def _upright(image, notes: list[str]):
    """Phone photos store 'rotate me' in EXIF instead of rotating the pixels; apply it."""
    from PIL import ImageOps

    orientation = image.getexif().get(0x0112, 1)
    if orientation in (None, 1):
        return image
    notes.append(f"rotated/flipped per the EXIF orientation tag ({orientation})")
    return ImageOps.exif_transpose(image)


def _to_channels(image, channels: int, notes: list[str]):
    """An 'L' or 'RGB' image for a 1- or 3-channel net."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in DEEP_MODES:
        image = _deep_to_grey(image, notes)
    if image.mode in ALPHA_MODES:
        image = _flatten_alpha(image, notes)
    want = "L" if channels == 1 else "RGB"
    if image.mode != want:
        image = image.convert(want)
    if mode != want:
        notes.append(_conversion_note(mode, want))
    return image


def _conversion_note(mode: str, want: str) -> str:
    labels = {"L": "grey", "P": "palette (P)", "1": "1-bit"}
    note = f"converted {labels.get(mode, mode)} → {labels.get(want, want)}"
    if want == "RGB" and mode in GREY_MODES | {"LA", "La"}:
        return note + " (the grey repeated over 3 channels; the net takes colour)"
    if want == "L" and mode not in GREY_MODES | {"LA", "La"}:
        return note + " (the net takes 1 channel)"
    return note


def _deep_to_grey(image, notes: list[str]):
    """16-bit, 32-bit and float grey scaled to 0–255 (Pillow's own convert would clip everything above 255)."""
    from PIL import Image

    a = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") else max(float(a.max()), 1.0 if image.mode == "F" else 255.0)
    scaled = np.clip(a / top * 255.0, 0, 255).round().astype(np.uint8)
    notes.append(f"scaled {image.mode} pixel values (0–{top:g}) to 8-bit grey")
    return Image.fromarray(scaled, mode="L")


def _flatten_alpha(image, notes: list[str]):
    """RGB or L without alpha: transparent pixels are put on white (how a viewer shows them on a page)."""
    from PIL import Image

    rgba = image.convert("RGBA")
    base = "L" if image.mode in ("LA", "La") else "RGB"
    if np.asarray(rgba)[..., 3].min() == 255:
        notes.append("dropped the alpha channel (every pixel is opaque)")
        return rgba.convert(base)
    notes.append("put the transparent pixels on white")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert(base)


def _fit(image, height: int, width: int, notes: list[str]):
    """Centre-crop to the net's aspect ratio, then resize to H×W with an antialiasing filter."""
    from PIL import Image

    w, h = image.size
    if (w, h) == (width, height):
        return image
    box = _centre_box(w, h, width / height)
    if box != (0, 0, w, h):
        notes.append(f"cropped the centre {box[2] - box[0]}×{box[3] - box[1]} of {w}×{h} "
                     f"(the net's images are {width}×{height})")
        image = image.crop(box)
    cw, ch = image.size
    if (cw, ch) != (width, height):
        # LANCZOS averages over the whole footprint when shrinking, so a photo is not aliased into noise.
        image = image.resize((width, height), Image.Resampling.LANCZOS)
        notes.append(f"resized {cw}×{ch} → {width}×{height}"
                     + (" (enlarged: a small image gives the net little to go on)" if cw < width or ch < height
                        else ""))
    return image


def _centre_box(w: int, h: int, aspect: float) -> tuple[int, int, int, int]:
    """The largest centred box of width/height ratio `aspect` inside w×h (the whole image if within a pixel)."""
    if abs(w / h - aspect) * min(w, h) < 1:
        return 0, 0, w, h
    if w / h > aspect:
        cw = max(round(h * aspect), 1)
        left = (w - cw) // 2
        return left, 0, left + cw, h
    ch = max(round(w / aspect), 1)
    top = (h - ch) // 2
    return 0, top, w, top + ch
