"""Reading uploaded or on-disk images safely: PNG/JPEG/BMP/TIFF/WebP (Pillow) and DICOM (pydicom).

Everything returns an 8-bit greyscale-or-RGB array, or raises :class:`ImageError` with a one-line
reason meant for the person who supplied the file. Pixels are only decoded after the header
has been checked, so a decompression bomb is refused before it costs memory.

DICOM display pipeline (PS3.14 order): stored values -> Modality LUT (Rescale Slope/Intercept)
-> VOI (Window Center/Width, or a VOI LUT) -> 0..255, then MONOCHROME1 is inverted so that
bone is white as in the training films. Only the pixels leave this module: patient
identifiers and other header values are never copied into notes or error messages.
"""
from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np

# Every file type the upload path reads (Pillow rasters and DICOM): the CLI's folder search,
# evaluate's split listing and the dashboard's uploader all use this one list.
READABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom")
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 40_000_000  # about 6300 x 6300: far above any chest film scanner's output
MIN_SIDE = 64
RASTER_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP", "MPO"}
_EXPECTED = "PNG, JPEG, BMP, TIFF, WebP or DICOM expected"
DEFLATED_TS = b"1.2.840.10008.1.2.1.99"

# Magic numbers of files people upload by mistake, with the reason given for each.
_KNOWN_NON_IMAGES = (
    (b"%PDF", "file is a PDF document, not an image; export the film as PNG, JPEG or DICOM"),
    (b"PK\x03\x04", "file is a ZIP archive (or an Office document), not an image; upload one image at a time"),
    (b"\x1f\x8b", "file is gzip-compressed, not an image; decompress it first"),
    (b"GIF87a", f"GIF images are not supported ({_EXPECTED})"),
    (b"GIF89a", f"GIF images are not supported ({_EXPECTED})"),
    (b"\xd0\xcf\x11\xe0", "file is an old-style Office document, not an image"),
)


# IJG's standard luminance quantisation table (quality 50); its sum calibrates the quality estimate.
_IJG_LUMA_SUM = 3688
#: Heavier JPEG compression than the training films (all IJG quality ~75) leaves 8x8 block edges
#: that the classifiers read as opacity: at quality 25 a normal film's p(pneumonia) rose on average
#: from 0.20 to 0.61 (120 test films). A Gaussian of this sigma (source pixels) below these
#: estimated qualities removes the block edges; chosen on the training split's validation films
#: (see docs/robustness.md). Films at the training quality or better are never touched.
DEBLOCK = ((20.0, 1.0), (60.0, 0.8))  # (estimated quality <=, sigma)


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
        if px.ndim == 2 and px.dtype == np.uint8:  # same array as np.repeat(px[..., None], 3, 2), ~30x faster
            import cv2

            return cv2.cvtColor(np.ascontiguousarray(px), cv2.COLOR_GRAY2RGB)
        return np.repeat(px[..., None], 3, axis=2) if px.ndim == 2 else px


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError(f"image is {width}x{height} pixels, over the {MAX_PIXELS // 1_000_000} megapixel limit; "
                         "downscale it before uploading")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"image is only {width}x{height} pixels; at least {MIN_SIDE} px a side is needed")


def _to_uint8(arr: np.ndarray, bits: int | None = None, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale integer or float pixel data to 0..255. With ``bits`` the stored range is used
    (so a 16-bit copy of an 8-bit image maps back exactly); with ``lo``/``hi`` that range;
    otherwise min..max."""
    arr = np.asarray(arr, dtype=np.float64)
    if bits is not None:
        lo, hi = 0.0, float(2**bits - 1)
    elif lo is None or hi is None:
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            raise ImageError("image has no valid pixel values")
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        raise ImageError("image is blank: every pixel has the same value")
    out = np.round((np.nan_to_num(arr, nan=lo) - lo) / (hi - lo) * 255.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _looks_like_raw_dicom(data: bytes) -> bool:
    """A DICOM data set without the 128-byte preamble starts with a group 0002 or 0008 tag."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00")


# ---------------------------------------------------------------- DICOM
def _first(value):
    """First value of a possibly multi-valued DICOM element."""
    try:
        return value[0] if not isinstance(value, (str, bytes)) and len(value) > 0 else value
    except TypeError:
        return value


def _missing_codec_message(ds, exc: Exception) -> str:
    """What to do about DICOM pixels that cannot be decoded, in the reader's terms first (export
    the film again), the packages a developer could add second."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    ts_name = ts.name if ts is not None else "an unknown transfer syntax"
    export = "Export it from the viewer or PACS as uncompressed DICOM or as PNG"
    try:
        from pydicom.pixels import get_decoder

        decoder = get_decoder(ts)
        if not decoder.is_available:
            needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
            return (f"cannot decode this DICOM: it is compressed as {ts_name} and no decoder for it is installed "
                    f"here. {export} (or a developer can install one of: {needs})")[:400]
    except Exception:  # unknown/unsupported transfer syntax: fall through to the generic message
        pass
    # The decoders' own messages ("exceptions were raised by all available plugins:") do not help here.
    return f"cannot decode this DICOM's {ts_name} pixel data: it may be corrupt or cut short. {export}."


def _voi_to_uint8(arr: np.ndarray, ds, notes: list, bits: int) -> np.ndarray:
    """Modality-LUT output -> 0..255 through the file's first VOI window (or VOI LUT). Without
    one (or when the window would leave no visible contrast): 8-bit data as stored, deeper data
    min..max."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        from pydicom.pixels import apply_voi_lut

        item = ds.VOILUTSequence[0]
        out_bits = int(item.LUTDescriptor[2])
        px = _to_uint8(apply_voi_lut(arr, ds, index=0, prefer_lut=True), lo=0.0, hi=float(2**out_bits - 1))
        if px.std() >= 2.0:
            notes.append("VOI LUT applied")
            return px
        notes.append("VOI LUT ignored (it leaves no visible contrast)")
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            center, width = float(_first(ds.WindowCenter)), float(_first(ds.WindowWidth))
        except (TypeError, ValueError):
            center, width = 0.0, 0.0
        func = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if width > 1.0 or (width > 0 and func != "LINEAR"):
            x = arr.astype(np.float64)
            if func == "SIGMOID":
                y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
            elif func == "LINEAR_EXACT":
                y = (x - center) / width + 0.5
            else:  # LINEAR, PS3.3 C.11.2.1.2.1
                y = (x - (center - 0.5)) / (width - 1.0) + 0.5
            px = np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
            if px.std() >= 2.0:
                notes.append("VOI window applied")
                return px
            notes.append("VOI window ignored (it leaves no visible contrast)")
        else:
            notes.append("VOI window ignored (invalid width)")
    if bits <= 8 and arr.min() >= 0 and arr.max() <= 255:
        return _to_uint8(arr, 8)  # plain 8-bit data: as stored, like an 8-bit PNG
    return _to_uint8(arr)  # no usable window: the full range of this image, as viewers do


def _dicom_jpeg_quality(ds, n_frames: int) -> float | None:
    """Estimated IJG quality of a JPEG Baseline/Extended encapsulated first frame, else ``None``."""
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    if ts not in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"):
        return None
    try:
        from PIL import Image
        from pydicom.encaps import get_frame

        frame = get_frame(ds.PixelData, 0, number_of_frames=n_frames)
        return jpeg_quality(Image.open(io.BytesIO(frame)))
    except Exception:  # no estimate: no smoothing
        return None


def _load_dicom(data: bytes) -> LoadedImage:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    if DEFLATED_TS in data[:2048]:
        raise ImageError("deflate-compressed DICOM files are not supported; send an uncompressed or "
                         "JPEG-compressed export")
    with warnings.catch_warnings():
        # pydicom's validation warnings can quote element values (names, IDs): never surface them.
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
        except Exception as exc:
            raise ImageError(f"not a readable DICOM file ({type(exc).__name__})") from None
        if not has_pixels:
            if not is_dicom(data) and len(ds) == 0:
                raise ImageError(f"not a readable DICOM file ({_EXPECTED})")
            raise ImageError("DICOM file has no pixel data (a report or structured document, not an image)")
        try:
            rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError):
            raise ImageError("DICOM file has an unreadable image size (Rows/Columns)") from None
        _check_size(cols, rows)  # before any pixel is decoded
        if getattr(ds, "file_meta", None) is None or "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian  # the DICOM default
        notes = []
        try:
            if n_frames > 1:  # decode the first frame only
                ds.pixel_array_options(index=0)
                notes.append(f"first frame of a {n_frames}-frame DICOM")
            arr = ds.pixel_array  # YBR colour spaces come back as RGB already (pydicom >= 3)
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(_missing_codec_message(ds, exc)) from None
        if arr.ndim == 4:  # an older pydicom ignoring the frame index
            arr = arr[0]
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
        bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
        if photometric in ("MONOCHROME1", "MONOCHROME2"):
            if arr.ndim != 2:
                raise ImageError(f"DICOM pixel data has an unexpected shape {arr.shape} for {photometric}")
            arr = apply_modality_lut(arr, ds)
            px = _voi_to_uint8(arr, ds, notes, bits)
            if photometric == "MONOCHROME1":  # stored with white = air: invert so bones are white
                px = 255 - px
                notes.append("MONOCHROME1 inverted")
        elif photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            try:
                rgb = apply_color_lut(arr, ds)
            except Exception as exc:
                raise ImageError(f"DICOM palette colour lookup table is unusable ({type(exc).__name__})") from None
            px = rgb if rgb.dtype == np.uint8 else _to_uint8(rgb, 16 if rgb.max() > 255 else 8)
        elif photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"):
            if arr.ndim != 3 or arr.shape[-1] != 3:
                raise ImageError(f"DICOM pixel data has an unexpected shape {arr.shape} for {photometric}")
            px = arr if arr.dtype == np.uint8 else _to_uint8(arr, bits)
        else:
            raise ImageError(f"unsupported DICOM photometric interpretation {photometric[:32]}")
        px = _deblock(np.ascontiguousarray(px), _dicom_jpeg_quality(ds, n_frames), notes)
    return LoadedImage(np.ascontiguousarray(px), "DICOM", (rows, cols), bits, notes)


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


def jpeg_quality(img) -> float | None:
    """IJG-equivalent quality (1..100) of a JPEG opened with Pillow, from its luminance
    quantisation table; ``None`` when it has none."""
    tables = getattr(img, "quantization", None) or {}
    luma = tables.get(0)
    if luma is None or len(luma) != 64:
        return None
    scale = 100.0 * float(sum(luma)) / _IJG_LUMA_SUM
    return float(np.clip((200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale, 1.0, 100.0))


def _deblock(px: np.ndarray, quality: float | None, notes: list) -> np.ndarray:
    if quality is None:
        return px
    sigma = next((s for q, s in DEBLOCK if quality <= q), None)
    if sigma is None:
        return px
    import cv2

    notes.append(f"JPEG quality ~{quality:.0f}: 8x8 block edges smoothed (sigma {sigma} px)")
    return cv2.GaussianBlur(px, (0, 0), sigma)


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
    _check_size(width, height)  # before any pixel is decoded
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else type(exc).__name__
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
    bit_depth = 8
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        bit_depth = 16
        if arr.min() < 0:
            px = _to_uint8(arr)
        else:
            # 12-bit data stored in 16-bit containers is common for radiographs.
            px = _to_uint8(arr, 12 if arr.max() <= 4095 else 16)
        notes.append(f"{bit_depth}-bit greyscale scaled to 8-bit")
    elif mode == "F":
        px = _to_uint8(np.asarray(img))
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
    px = _deblock(np.ascontiguousarray(px), quality, notes)
    return LoadedImage(np.ascontiguousarray(px), fmt, (height, width), bit_depth, notes)


def load_image(data: bytes, name: str = "") -> LoadedImage:
    """Decode ``data`` (the bytes of one file); ``name`` is only used to guess headerless DICOM."""
    if data is None or len(data) == 0:
        raise ImageError("file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"file is {len(data) / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    data = bytes(data)
    if is_dicom(data):
        return _load_dicom(data)
    if name.lower().endswith((".dcm", ".dicom")) and _looks_like_raw_dicom(data):
        return _load_dicom(data)  # a data set written without the preamble
    return _load_raster(data)


def load_path(path) -> LoadedImage:
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
