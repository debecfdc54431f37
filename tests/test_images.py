"""Image decoding and validation: formats, EXIF, limits, and a typed error for each bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CROWD, DATA, EXAMPLES
from faceprint.config import ImageLimits
from faceprint.errors import ImageTooLargeError, InvalidImageFormatError, InvalidParameterError
from faceprint.images import load_image

OBAMA = EXAMPLES / "obama.jpg"


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_jpeg_png_webp_heic_decode_to_same_size() -> None:
    base = Image.open(OBAMA).convert("RGB")
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    for fmt in ("JPEG", "PNG", "WEBP", "HEIF"):
        img = load_image(_encode(base, fmt))
        assert (img.width, img.height) == base.size, fmt
        assert img.pixels.dtype == np.uint8 and img.pixels.shape[2] == 3
        # Same picture: mean colour within a few levels whatever the codec.
        assert abs(float(img.pixels.mean()) - float(np.asarray(base).mean())) < 3.0, fmt


def test_png_with_alpha_channel_is_rgb() -> None:
    img = load_image(EXAMPLES.parent / "tests" / "test_images" / "32bit.png")
    assert img.pixels.shape[2] == 3


def test_exif_orientation_is_applied() -> None:
    base = Image.open(OBAMA).convert("RGB")
    rotated = base.transpose(Image.Transpose.ROTATE_270)  # stored sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90 CW to display"
    img = load_image(_encode(rotated, "JPEG", exif=exif.tobytes()))
    assert (img.width, img.height) == base.size


def test_empty_image_is_invalid_parameter() -> None:
    with pytest.raises(InvalidParameterError, match="empty"):
        load_image(b"")


def test_truncated_jpeg_is_invalid_format() -> None:
    data = OBAMA.read_bytes()
    with pytest.raises(InvalidImageFormatError, match=r"truncated|corrupt"):
        load_image(data[: len(data) // 3])


def test_corrupt_header_is_invalid_format() -> None:
    data = bytearray(OBAMA.read_bytes())
    data[2:40] = bytes(38)  # destroy the JPEG segment headers after the SOI marker
    with pytest.raises(InvalidImageFormatError):
        load_image(bytes(data))


def test_non_image_is_invalid_format() -> None:
    with pytest.raises(InvalidImageFormatError, match="not a recognised image"):
        load_image((DATA / "lfw" / "pairs.txt").read_bytes())


def test_unsupported_format_is_invalid_format() -> None:
    gif = _encode(Image.open(OBAMA).convert("RGB"), "GIF")
    with pytest.raises(InvalidImageFormatError, match="unsupported image format GIF"):
        load_image(gif)


def test_oversized_bytes_is_image_too_large() -> None:
    big = _encode(
        Image.open(CROWD / "tinyfaces_worlds_largest_selfie.jpg").convert("RGB"), "PNG", compress_level=0
    )
    assert len(big) > 5 * 1024 * 1024
    with pytest.raises(ImageTooLargeError, match="limit is 5,242,880 bytes"):
        load_image(big)


def test_oversized_file_is_rejected_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ImageTooLargeError):
        load_image(OBAMA, ImageLimits(max_bytes=1000))


def test_decompression_bomb_is_image_too_large() -> None:
    # A 9,000 x 9,000 PNG compresses to about 80 kB but would need 243 MB decoded as RGB.
    bomb = _encode(Image.new("L", (9_000, 9_000)), "PNG")
    assert len(bomb) < 5 * 1024 * 1024
    with pytest.raises(ImageTooLargeError, match="pixels"):
        load_image(bomb)


def test_too_small_image_is_invalid_parameter() -> None:
    small = _encode(Image.open(OBAMA).convert("RGB").resize((60, 70)), "JPEG")
    with pytest.raises(InvalidParameterError, match="at least 80"):
        load_image(small)


def test_missing_file_is_invalid_parameter(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="no such image file"):
        load_image(tmp_path / "nope.jpg")
