"""Decode and validate input images: formats, EXIF orientation, size limits, bomb guard."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceprint.config import ImageLimits
from faceprint.errors import ImageTooLargeError, InvalidImageFormatError, InvalidParameterError

SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "HEIF", "MPO"}  # MPO: phone cameras' multi-picture JPEG
_heif_registered = False


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _heif_registered = True


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image as a contiguous uint8 array (H, W, 3), with where it came from."""

    pixels: np.ndarray
    format: str
    name: str = ""

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


ImageSource = bytes | bytearray | str | Path | np.ndarray | LoadedImage


def load_image(source: ImageSource, limits: ImageLimits | None = None) -> LoadedImage:
    """Load an image from bytes, a path, or an RGB array, enforcing `limits`.

    Raises InvalidParameterError (empty, too small), ImageTooLargeError (too many bytes or
    pixels) or InvalidImageFormatError (not a supported, decodable image).
    """
    limits = limits or ImageLimits.from_env()
    if isinstance(source, LoadedImage):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, limits)
    name = ""
    if isinstance(source, str | Path):
        path = Path(source)
        name = path.name
        if not path.is_file():
            raise InvalidParameterError(f"no such image file: {path}")
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageTooLargeError(
                f"image is {size:,} bytes; the limit is {limits.max_bytes:,} bytes ({path.name})"
            )
        data = path.read_bytes()
    else:
        data = bytes(source)
    return decode_image_bytes(data, limits, name=name)


def decode_image_bytes(data: bytes, limits: ImageLimits, name: str = "") -> LoadedImage:
    """Decode image bytes (JPEG, MPO, PNG, WebP or HEIC) into RGB with EXIF orientation applied."""
    if not data:
        raise InvalidParameterError("image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"image is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes")
    if _looks_like_heif(data):
        _register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = (img.format or "").upper()
            if fmt not in SUPPORTED_FORMATS:
                raise InvalidImageFormatError(
                    f"unsupported image format {fmt or 'unknown'}; use JPEG, PNG, WebP or HEIC"
                )
            width, height = img.size
            if width * height > limits.max_pixels:
                raise ImageTooLargeError(
                    f"image is {width}x{height} pixels; the limit is {limits.max_pixels:,} pixels"
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # the first picture (of an MPO, an animated PNG or WebP)
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = img.convert("RGB")
    except (InvalidImageFormatError, ImageTooLargeError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image rejected as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise InvalidImageFormatError("not a recognised image (JPEG, PNG, WebP or HEIC expected)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageFormatError(f"corrupt or truncated {name or 'image'}: {exc}") from None
    return _from_array(np.asarray(rgb), limits, fmt=fmt, name=name)


def _from_array(pixels: np.ndarray, limits: ImageLimits, fmt: str = "RAW", name: str = "") -> LoadedImage:
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise InvalidParameterError(f"image array must be HxWx3 RGB, got shape {pixels.shape}")
    pixels = np.ascontiguousarray(pixels[:, :, :3], dtype=np.uint8)
    height, width = pixels.shape[:2]
    if min(width, height) < limits.min_side:
        raise InvalidParameterError(
            f"image is {width}x{height} pixels; both sides must be at least {limits.min_side}"
        )
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} pixels; the limit is {limits.max_pixels:,}")
    return LoadedImage(pixels=pixels, format=fmt, name=name)


def _looks_like_heif(data: bytes) -> bool:
    return (
        len(data) > 12
        and data[4:8] == b"ftyp"
        and data[8:12] in {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"}
    )
