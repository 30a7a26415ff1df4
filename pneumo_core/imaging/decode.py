"""Reading uploaded or on-disk images safely: PNG/JPEG/BMP/TIFF/WebP (Pillow) and DICOM
(:mod:`dicom`: pydicom with the pylibjpeg decoders).

Everything returns a :class:`LoadedImage` holding an 8-bit greyscale-or-RGB array, or raises
:class:`ImageError` with a one-line reason meant for the person who supplied the file. Pixels are
only decoded after the header has been checked, so a decompression bomb is refused before it
costs memory. Patient identifiers and other DICOM header values are never copied into notes or
error messages.
"""
from __future__ import annotations

import io
import re
import struct
import warnings

import numpy as np

from pneumo_core.errors import ImageError, first_line
from pneumo_core.imaging.core import (
    DEBLOCK,
    MAX_PIXELS,
    MIN_SIDE,
    LoadedImage,
    check_size,
    deblock,
    jpeg_quality,
    to_uint8,
)
from pneumo_core.imaging.dicom import is_dicom, load_dicom
from pneumo_core.imaging.windowing import keep_raw

# Names other modules and tests import from here (the readers' shared pieces live in imagecore).
__all__ = ["DEBLOCK", "MAX_FILE_BYTES", "MAX_PIXELS", "MIN_SIDE", "READABLE_SUFFIXES", "ImageError", "LoadedImage",
           "is_dicom", "jpeg_quality", "load_image", "load_path"]

# Every file type the upload path reads (Pillow rasters and DICOM): the CLI's folder search,
# evaluate's split listing and the dashboard's uploader all use this one list.
READABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom")
MAX_FILE_BYTES = 64 * 1024 * 1024
RASTER_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP", "MPO"}
_EXPECTED = "PNG, JPEG, BMP, TIFF, WebP or DICOM expected"

# Magic numbers of files people upload by mistake, with the reason given for each.
_KNOWN_NON_IMAGES = (
    (b"%PDF", "file is a PDF document, not an image; export the film as PNG, JPEG or DICOM"),
    (b"PK\x03\x04", "file is a ZIP archive (or an Office document), not an image; upload one image at a time"),
    (b"\x1f\x8b", "file is gzip-compressed, not an image; decompress it first"),
    (b"GIF87a", f"GIF images are not supported ({_EXPECTED})"),
    (b"GIF89a", f"GIF images are not supported ({_EXPECTED})"),
    (b"\xd0\xcf\x11\xe0", "file is an old-style Office document, not an image"),
)


def _looks_like_raw_dicom(data: bytes) -> bool:
    """A DICOM data set without the 128-byte preamble starts with a group 0002 or 0008 tag
    (little or big endian)."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


# ---------------------------------------------------------------- PNG/JPEG/...
def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return None


def _not_an_image_reason(data: bytes) -> str:
    for magic, reason in _KNOWN_NON_IMAGES:
        if data.startswith(magic):
            return reason
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<svg", b"<head", b"<body")):
        return "file is HTML/XML text, not an image"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in data[:512]):
        return "file is plain text, not an image"
    try:
        data[:512].decode("utf-8")
        if not any(b < 9 for b in data[:512]):
            return "file is plain text, not an image"
    except UnicodeDecodeError:
        pass
    return f"not a recognised image format ({_EXPECTED})"


def _load_raster(data: bytes) -> LoadedImage:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise ImageError(_not_an_image_reason(data)) from None
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fired on the header; say so in our terms (no pixel was decoded).
        size = _png_size(data)
        if size is not None:
            desc = f"{size[0]}x{size[1]} pixels"
        else:
            m = re.search(r"\((\d+) pixels\)", str(exc))
            desc = f"{int(m.group(1)) // 1_000_000} megapixels" if m else "too many pixels"
        raise ImageError(f"image header declares {desc}, over the {MAX_PIXELS // 1_000_000} megapixel limit "
                         "(a possible decompression bomb); refused before decoding") from None
    except Exception as exc:
        raise ImageError(f"cannot read image header ({type(exc).__name__})") from None
    fmt = img.format or "unknown"
    if fmt not in RASTER_FORMATS:
        raise ImageError(f"{fmt} images are not supported ({_EXPECTED})")
    width, height = img.size
    check_size(width, height)  # before any pixel is decoded
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except Exception as exc:
        detail = first_line(exc, 80)
        raise ImageError(f"{fmt} file is truncated or corrupt ({detail})") from None
    notes = []
    quality = jpeg_quality(img) if fmt in ("JPEG", "MPO") else None
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is no reason to refuse the pixels
        orientation = 1
    if orientation not in (1, None):  # camera/phone photos of films
        img = ImageOps.exif_transpose(img)
        notes.append("EXIF orientation applied")
    mode = img.mode
    bit_depth, raw = 8, None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        bit_depth, raw = 16, keep_raw(arr)
        if arr.min() < 0:
            px = to_uint8(arr)
        else:
            # 12-bit data stored in 16-bit containers is common for radiographs.
            px = to_uint8(arr, 12 if arr.max() <= 4095 else 16)
        notes.append(f"{bit_depth}-bit greyscale scaled to 8-bit")
    elif mode == "F":
        px = to_uint8(np.asarray(img))
    elif mode in ("L", "1", "P", "LA", "PA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))  # films are black outside the body
            img = Image.alpha_composite(background, rgba)
            notes.append("transparency flattened onto black")
        if mode in ("L", "1", "LA", "La"):
            px = np.asarray(img.convert("L"))
        else:
            px = np.asarray(img.convert("RGB"))
            grey = np.array_equal(px[..., 0], px[..., 1]) and np.array_equal(px[..., 1], px[..., 2])
            if mode in ("P", "PA") and grey:
                px = px[..., 0]  # a grey palette: keep it greyscale
    else:
        raise ImageError(f"unsupported pixel mode {mode}")
    px = deblock(np.ascontiguousarray(px), quality, notes)
    return LoadedImage(np.ascontiguousarray(px), fmt, (height, width), bit_depth, notes, raw=raw)


def load_image(data: bytes, name: str = "") -> LoadedImage:
    """Decode ``data`` (the bytes of one file); ``name`` is only used to guess headerless DICOM."""
    if data is None or len(data) == 0:
        raise ImageError("file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"file is {len(data) / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    data = bytes(data)
    if is_dicom(data):
        return load_dicom(data)
    if name.lower().endswith((".dcm", ".dicom")) and _looks_like_raw_dicom(data):
        return load_dicom(data)  # a data set written without the preamble
    return _load_raster(data)


def load_path(path) -> LoadedImage:
    """Decode one file on disk (size-capped before reading); raises :class:`ImageError` with a reason."""
    from pathlib import Path

    p = Path(path)
    try:
        if p.is_dir():
            raise ImageError("is a folder, not an image file")
        if not p.exists():
            raise ImageError("file not found")
        if not p.is_file():  # a device or FIFO reports size 0 and can stream forever or block
            raise ImageError("not a regular file (a device, pipe or socket)")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"file is {size / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
        with p.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows while we read it
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or type(exc).__name__}") from None
    return load_image(data, p.name)
