"""What every image reader shares: the error type, the decoded-image record, size limits, scaling
to 8 bits and JPEG deblocking. :mod:`images` (rasters, and the entry points) and :mod:`dicom`
both build on it, so neither has to import the other's internals.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pneumo_core.errors import ImageError

MAX_PIXELS = 40_000_000  # about 6300 x 6300: far above any chest film scanner's output
MIN_SIDE = 64
#: DICOM: Number of Frames over this is refused (only the first frame is decoded; a file is at most 64 MB).
MAX_FRAMES = 1000
#: DICOM: what decoding the first frame may produce, Rows x Columns x Samples per Pixel x bytes a sample
#: (the larger of Bits Allocated and the codestream's precision). A 40-megapixel film is 80 MB at 16 bits
#: and 120 MB as 8-bit RGB.
MAX_DECODED_BYTES = 4 * MAX_PIXELS

# IJG's standard luminance quantisation table (quality 50); its sum calibrates the quality estimate.
_IJG_LUMA_SUM = 3688
#: Heavier JPEG compression than the training films (all IJG quality ~75) leaves 8x8 block edges
#: that the classifiers read as opacity: at quality 25 a normal film's p(pneumonia) rose on average
#: from 0.20 to 0.61 (120 test films). A Gaussian of this sigma (source pixels) below these
#: estimated qualities removes the block edges; chosen on the training split's validation films
#: (see docs/robustness.md). Films at the training quality or better are never touched.
DEBLOCK = ((20.0, 1.0), (60.0, 0.8))  # (estimated quality <=, sigma)


@dataclass
class LoadedImage:
    """A decoded image: the 8-bit display pixels the models read, and for DICOM and 16-bit files
    what a viewer needs to window them again."""

    pixels: np.ndarray  # uint8, HxW (greyscale) or HxWx3 (RGB)
    source_format: str  # "PNG", "JPEG", "DICOM", ...
    original_shape: tuple  # (height, width) as stored
    bit_depth: int = 8
    notes: list = field(default_factory=list)  # what was done to the pixels (inverted, windowed, ...)
    #: Non-identifying DICOM header facts (modality, view, spacing, transfer syntax, windows...); see
    #: :func:`dicom.load_dicom`. ``None`` for other formats. Never a patient or institution field.
    dicom: dict | None = None
    #: Greyscale values before windowing (DICOM: the Modality LUT output; 16-bit rasters: as stored),
    #: at most ``windowing.MAX_RAW_SIDE`` px a side; ``None`` for colour and 8-bit raster sources.
    raw: np.ndarray | None = field(default=None, repr=False)
    #: True when a window of ``raw`` must be inverted for display (MONOCHROME1 or Presentation LUT
    #: Shape INVERSE), so that bone stays white whatever window is chosen.
    raw_inverted: bool = False

    def rgb(self) -> np.ndarray:
        """The display pixels as HxWx3 uint8 RGB."""
        return grey_to_rgb(self.pixels)


def grey_to_rgb(px: np.ndarray) -> np.ndarray:
    """A greyscale image (HxW or HxWx1) as HxWx3 with the grey value in every channel, same dtype;
    an image that already has several channels is returned as it is."""
    px = np.asarray(px)
    if px.ndim == 3 and px.shape[2] == 1:
        px = px[..., 0]
    if px.ndim != 2:
        return px
    rgb = np.empty((*px.shape, 3), px.dtype)
    for channel in range(3):  # ~3x faster than np.repeat(px[..., None], 3, axis=2), the same array
        rgb[..., channel] = px
    return rgb


def check_size(width: int, height: int) -> None:
    """Refuse images over the pixel limit or under the minimum side, from their header alone."""
    if width * height > MAX_PIXELS:
        raise ImageError(f"image is {width}x{height} pixels, over the {MAX_PIXELS // 1_000_000} megapixel limit; "
                         "downscale it before uploading")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"image is only {width}x{height} pixels; at least {MIN_SIDE} px a side is needed")


def to_uint8(arr: np.ndarray, bits: int | None = None, lo: float | None = None, hi: float | None = None) -> np.ndarray:
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


def jpeg_quality(img) -> float | None:
    """IJG-equivalent quality (1..100) of a JPEG opened with Pillow, from its luminance
    quantisation table; ``None`` when it has none."""
    tables = getattr(img, "quantization", None) or {}
    luma = tables.get(0)
    if luma is None or len(luma) != 64:
        return None
    scale = 100.0 * float(sum(luma)) / _IJG_LUMA_SUM
    return float(np.clip((200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale, 1.0, 100.0))


def deblock(px: np.ndarray, quality: float | None, notes: list) -> np.ndarray:
    """Smooth the 8x8 block edges of a JPEG compressed harder than the training films (see ``DEBLOCK``)."""
    if quality is None:
        return px
    sigma = next((s for q, s in DEBLOCK if quality <= q), None)
    if sigma is None:
        return px
    from pneumo_core.imaging.resample import gaussian_blur

    notes.append(f"JPEG quality ~{quality:.0f}: 8x8 block edges smoothed (sigma {sigma} px)")
    return gaussian_blur(px, sigma)  # == cv2.GaussianBlur(px, (0, 0), sigma), with which DEBLOCK was chosen
