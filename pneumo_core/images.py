"""Reading uploaded or on-disk images safely: PNG/JPEG/BMP/TIFF/WebP (Pillow) and DICOM (pydicom).

Everything returns an 8-bit greyscale-or-RGB array, or raises :class:`ImageError` with a one-line
reason meant for the person who supplied the file. Pixels are only decoded after the header
has been checked, so a decompression bomb is refused before it costs memory.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 40_000_000  # about 6300 x 6300: far above any chest film scanner's output
MIN_SIDE = 64
RASTER_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP", "MPO"}


class ImageError(ValueError):
    """The input cannot be used; ``str(err)`` is a one-line reason for the user."""


@dataclass
class LoadedImage:
    pixels: np.ndarray  # uint8, HxW (greyscale) or HxWx3 (RGB)
    source_format: str  # "PNG", "JPEG", "DICOM", ...
    original_shape: tuple  # (height, width) as stored
    bit_depth: int = 8
    notes: list = field(default_factory=list)  # what was done to the pixels (inverted, windowed, ...)

    def rgb(self) -> np.ndarray:
        px = self.pixels
        return np.repeat(px[..., None], 3, axis=2) if px.ndim == 2 else px


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError(f"image is {width}x{height} pixels, over the {MAX_PIXELS // 1_000_000} megapixel limit; "
                         "downscale it before uploading")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"image is only {width}x{height} pixels; at least {MIN_SIDE} px a side is needed")


def _to_uint8(arr: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Scale integer or float pixel data to 0..255. With ``bits`` the stored range is used
    (so a 16-bit copy of an 8-bit image maps back exactly); otherwise min..max."""
    arr = arr.astype(np.float64)
    if bits is not None:
        hi = float(2**bits - 1)
        lo = 0.0
    else:
        lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi <= lo:
        raise ImageError("image is blank: every pixel has the same value")
    return np.clip(np.round((arr - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _load_dicom(data: bytes) -> LoadedImage:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise ImageError(f"not a readable DICOM file ({type(exc).__name__})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageError("DICOM file has no pixel data (a report or structured document, not an image)")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    _check_size(cols, rows)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = ts.name if ts is not None else "unknown transfer syntax"
        raise ImageError(f"cannot decode DICOM pixels ({name}): {msg[:160]}; a decoder plugin such as "
                         "pylibjpeg or gdcm may be needed") from None
    notes = []
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
        notes.append("first frame of a multi-frame DICOM")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        arr = apply_modality_lut(arr, ds)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            arr = apply_voi_lut(arr, ds, index=0)
            notes.append("VOI window applied")
        px = _to_uint8(arr)
        if photometric == "MONOCHROME1":  # stored with white = air: invert so bones are white
            px = 255 - px
            notes.append("MONOCHROME1 inverted")
    elif photometric in ("RGB", "YBR_FULL", "YBR_FULL_422"):
        if photometric != "RGB":
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
        px = _to_uint8(arr, 8) if arr.dtype != np.uint8 else arr
    else:
        raise ImageError(f"unsupported DICOM photometric interpretation {photometric}")
    return LoadedImage(px, "DICOM", (rows, cols), int(ds.get("BitsStored", 8) or 8), notes)


def _load_raster(data: bytes) -> LoadedImage:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        head = data[:64].lstrip().lower()
        if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<svg")):
            raise ImageError("file is HTML/XML text, not an image") from None
        if all(32 <= b < 127 or b in (9, 10, 13) for b in data[:512]):
            raise ImageError("file is plain text, not an image") from None
        raise ImageError("not a recognised image format (PNG, JPEG, BMP, TIFF, WebP or DICOM expected)") from None
    except Exception as exc:
        raise ImageError(f"cannot read image header ({type(exc).__name__})") from None
    fmt = img.format or "unknown"
    if fmt not in RASTER_FORMATS:
        raise ImageError(f"{fmt} images are not supported (PNG, JPEG, BMP, TIFF, WebP or DICOM expected)")
    width, height = img.size
    _check_size(width, height)  # before any pixel is decoded
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except Exception as exc:
        raise ImageError(f"{fmt} file is truncated or corrupt ({str(exc).splitlines()[0][:80]})") from None
    notes = []
    if img.getexif().get(0x0112, 1) not in (1, None):  # camera/phone photos of films
        img = ImageOps.exif_transpose(img)
        notes.append("EXIF orientation applied")
    mode = img.mode
    bit_depth = 8
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        bit_depth = 16
        # 12-bit data stored in 16-bit containers is common for radiographs.
        px = _to_uint8(arr, 12 if arr.max() <= 4095 else 16)
        notes.append(f"{bit_depth}-bit greyscale scaled to 8-bit")
    elif mode == "F":
        px = _to_uint8(np.asarray(img))
    elif mode in ("L", "1", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))  # films are black outside the body
            img = Image.alpha_composite(background, rgba)
            notes.append("transparency flattened onto black")
        img = img.convert("L") if mode in ("L", "1", "LA") else img.convert("RGB")
        px = np.asarray(img)
    else:
        raise ImageError(f"unsupported pixel mode {mode}")
    return LoadedImage(np.ascontiguousarray(px), fmt, (height, width), bit_depth, notes)


def load_image(data: bytes, name: str = "") -> LoadedImage:
    """Decode ``data`` (the bytes of one file); ``name`` is only used to guess DICOM."""
    if data is None or len(data) == 0:
        raise ImageError("file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"file is {len(data) / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    if is_dicom(data) or name.lower().endswith((".dcm", ".dicom")):
        return _load_dicom(data)
    return _load_raster(data)


def load_path(path) -> LoadedImage:
    from pathlib import Path

    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"file is {size / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or type(exc).__name__}") from None
    return load_image(data, p.name)
