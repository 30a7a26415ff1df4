"""Smoothing and shrinking in numpy, giving what OpenCV gave before it left the runtime (requirements.txt):

* :func:`gaussian_blur` is ``cv2.GaussianBlur(px, (0, 0), sigma)`` on 8-bit pixels, bit for bit: OpenCV's
  bit-exact path for 8-bit images (its kernel rounded to 8 fractional bits with error diffusion, integer
  sums, one rounding at the end, mirrored borders); tested against OpenCV where it is installed;
* :func:`shrink` is ``cv2.resize(..., INTER_AREA)`` for a reduction: each output pixel the average of the
  source area it covers. Used only for display copies and the values kept for re-windowing, never for a
  model input (that is ``preprocess.resize_like_tf``); integer results may differ from OpenCV's by one level
  where its float32 sums round the other way.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

_FRACTION_BITS = 8  # OpenCV's fixed-point kernel for 8-bit images (ufixedpoint16)


@lru_cache(maxsize=8)
def _gaussian_taps(sigma: float) -> tuple[int, ...]:
    """OpenCV's 8-bit Gaussian kernel for ``sigma`` (size ``round(6 sigma + 1) | 1``), as integers summing to 256."""
    n = int(np.floor(sigma * 3 * 2 + 1 + 0.5)) | 1
    half = n // 2
    weights = np.exp(np.arange(-half, 0, dtype=np.float64) ** 2 * (-0.5 / (sigma * sigma)))
    weights /= 2 * weights.sum() + 1.0
    taps, err = [], 0.0
    for w in weights:  # error diffusion from the tail inwards; the centre takes what is left
        v = w * (1 << _FRACTION_BITS) + err
        taps.append(int(np.rint(v)))
        err = v - taps[-1]
    return (*taps, (1 << _FRACTION_BITS) - 2 * sum(taps), *taps[::-1])


def gaussian_blur(px: np.ndarray, sigma: float) -> np.ndarray:
    """8-bit (H, W) or (H, W, C) pixels smoothed by a Gaussian of ``sigma`` px: ``cv2.GaussianBlur(px, (0, 0),
    sigma)`` exactly (borders mirrored without repeating the edge, OpenCV's BORDER_REFLECT_101)."""
    px = np.asarray(px)
    if px.dtype != np.uint8:
        raise ValueError(f"gaussian_blur takes 8-bit pixels, not {px.dtype}")
    taps = _gaussian_taps(float(sigma))
    half = len(taps) // 2
    height, width = px.shape[:2]
    padded = np.pad(px, [(half, half), (half, half)] + [(0, 0)] * (px.ndim - 2), mode="reflect")

    def along(a: np.ndarray, axis: int, size: int, dtype) -> np.ndarray:
        """Exact integer sums (so their order is free), mirrored taps added before multiplying."""
        def part(i):
            cut = [slice(None)] * a.ndim
            cut[axis] = slice(i, i + size)
            return a[tuple(cut)].astype(dtype)

        out = part(half) * dtype(taps[half])
        for i in range(half):
            if taps[i]:
                pair = part(i)
                pair += part(len(taps) - 1 - i)
                pair *= dtype(taps[i])
                out += pair
        return out

    rows = along(padded, 1, width, np.uint16)  # at most 255 * 256: fits 16 bits
    total = along(rows, 0, height, np.uint32)
    total += 1 << (2 * _FRACTION_BITS - 1)
    total >>= 2 * _FRACTION_BITS
    return total.astype(np.uint8)


def _area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(first source index (n_out,), weights (n_out, span)): output j averages the source interval [j s, (j + 1) s),
    s = n_in / n_out, each source pixel weighted by its overlap."""
    scale = n_in / n_out
    lo = np.arange(n_out) * scale
    hi = lo + scale
    starts = np.floor(lo).astype(np.int64)
    span = int(np.ceil(scale)) + 1
    src = starts[:, None] + np.arange(span)[None, :]
    overlap = np.minimum(src + 1, hi[:, None]) - np.maximum(src, lo[:, None])
    weights = np.where(src < n_in, np.clip(overlap, 0.0, None), 0.0) / scale
    return starts, weights


def _average(a: np.ndarray, starts: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    shape = list(a.shape)
    shape[axis] = len(starts)
    out = np.zeros(shape, a.dtype)
    w_shape = [1] * a.ndim
    w_shape[axis] = -1
    for i in range(weights.shape[1]):
        w = weights[:, i]
        if w.any():
            idx = np.minimum(starts + i, a.shape[axis] - 1)  # past the edge the weight is 0
            out += w.astype(a.dtype).reshape(w_shape) * np.take(a, idx, axis=axis)
    return out


def _block_mean(values: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Whole-number reductions as OpenCV's fast area path: exact block sums; 2x2 blocks of 8/16-bit integers round
    halves up (its vector code), other means to nearest."""
    height, width = values.shape[0] // fy, values.shape[1] // fx
    blocks = values[: height * fy, : width * fx].reshape(height, fy, width, fx, *values.shape[2:])
    integer = np.issubdtype(values.dtype, np.integer)
    sums = blocks.sum(axis=(1, 3), dtype=np.int64 if integer else np.float64)
    if values.dtype in (np.uint8, np.uint16, np.int16) and fy * fx == 4:
        return ((sums + 2) >> 2).astype(values.dtype)
    mean = sums * np.float32(1.0 / (fy * fx)) if integer else sums / (fy * fx)
    if integer:
        info = np.iinfo(values.dtype)
        return np.clip(np.rint(mean), info.min, info.max).astype(values.dtype)
    return mean.astype(values.dtype)


def shrink(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) or (H, W, C) values area-averaged to ``shape`` (height, width), no side larger than the source's;
    the same dtype back (integers rounded to nearest)."""
    values = np.asarray(values)
    height, width = int(shape[0]), int(shape[1])
    if height > values.shape[0] or width > values.shape[1] or min(height, width) < 1:
        raise ValueError(f"cannot shrink {values.shape[:2]} to {(height, width)}")
    fy, fx = values.shape[0] / height, values.shape[1] / width
    if fy.is_integer() and fx.is_integer():
        return _block_mean(values, int(fy), int(fx))
    # float32 sums for 8-bit and float32 values (as OpenCV), float64 for wider ones
    work = np.float32 if values.dtype in (np.uint8, np.int8, np.float32, np.float16, np.bool_) else np.float64
    out = values.astype(work)
    if height != values.shape[0]:
        out = _average(out, *_area_taps(values.shape[0], height), axis=0)
    if width != values.shape[1]:
        out = _average(out, *_area_taps(values.shape[1], width), axis=1)
    if np.issubdtype(values.dtype, np.integer):
        info = np.iinfo(values.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(values.dtype)
    return out.astype(values.dtype, copy=False)
