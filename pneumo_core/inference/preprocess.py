"""The model's input transform, in one place: resize to 224x224, scale to [-1, 1], grey to RGB.

* :func:`model_input` is the single-image transform every caller uses (inference, export
  calibration, tests): a decoded image in, the model input out, blank images refused.
* :func:`tf_model_input` is the same transform as TensorFlow ops, for the tf.data training and
  evaluation pipelines (batches inside a graph) and as the reference ``model_input`` is tested
  against.

``model_input`` gives the same numbers as ``tf_model_input`` without TensorFlow (the runtime has none):

* a 224x224 image (the size of every film in the training and test splits) is not resized:
  TF's antialiased resize at scale 1 is the identity, so ``x / 127.5 - 1`` in float32
  numpy gives bit-identical values;
* any other size goes through :func:`resize_like_tf`, TensorFlow's ``ScaleAndTranslate`` kernel
  (``tf.image.resize(..., "bilinear", antialias=True)``: a triangle filter widened by the
  downscale factor) redone in numpy: the same float32 span weights, rows then columns, the same
  order of float32 sums (within 1e-6 of TensorFlow in model-input units; tested), on one channel for
  a greyscale film instead of three (the resize is per channel, so replicating afterwards gives the
  same result);
* the blank-image check of 8-bit pixels uses their histogram (exact integer counts) instead of a
  float64 copy of the whole image.

OpenCV's resizers were measured and not used: ``INTER_AREA`` (a box filter) differs from TF's
antialiased triangle filter by up to 0.09 in model-input units (about 11 grey levels).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from pneumo_core.config import IMAGE_SIZE
from pneumo_core.errors import ImageError
from pneumo_core.imaging.core import LoadedImage, grey_to_rgb

MIN_CONTRAST = 2.0  # grey-level standard deviation below which an image is treated as blank


def tf_model_input(image):
    """RGB image or batch (any size, uint8 or float 0..255, 1 or 3 channels) -> float32 224x224x3 in [-1, 1],
    as TensorFlow ops.

    The one resize-and-scale step for training, evaluation and inference. The decoders differ:
    training reads files with TensorFlow's JPEG decoder, uploads and the CLI with Pillow, which
    rounds a few pixels differently (at most about 3 grey levels, 0.024 in model units, on the
    training films; mean 0.004). Images are resized without keeping the aspect ratio, as the
    training copies were; antialiasing matters for large uploads (a 3000 px film shrunk 13x).
    """
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    image = tf.cast(image, tf.float32)
    if image.shape.rank == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    image = tf.image.resize(image, (IMAGE_SIZE, IMAGE_SIZE), method="bilinear", antialias=True)
    image = tf.clip_by_value(image, 0.0, 255.0)
    return image / 127.5 - 1.0  # == keras.applications.mobilenet_v2.preprocess_input


def pixel_std(px: np.ndarray) -> float:
    """Population standard deviation over every pixel value (== ``float(px.std())``)."""
    px = np.asarray(px)
    if px.dtype != np.uint8 or px.size == 0:
        return float(px.std())
    counts = np.bincount(px.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    mean = counts @ levels / px.size
    return float(np.sqrt(max(counts @ (levels - mean) ** 2 / px.size, 0.0)))


@lru_cache(maxsize=64)  # a few film sizes recur (a scanner's, a phone's)
def _spans(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts (out,), weights (out, span)) of TensorFlow's antialiased triangle resize along one axis,
    computed as its ``ComputeSpansCore`` does, in float32 (``scale_and_translate_op.cc``, translation 0)."""
    f32 = np.float32
    scale = f32(out_size) / f32(in_size)
    inv_scale = f32(1.0 / float(scale))
    kernel_scale = max(inv_scale, f32(1.0))
    span = min(2 * int(np.ceil(kernel_scale)) + 1, in_size)  # the kernel's radius is 1
    sample = (np.arange(out_size, dtype=f32) + f32(0.5)) * inv_scale
    starts = np.clip(np.ceil(sample - kernel_scale - f32(0.5)).astype(np.int64), 0, in_size - 1)
    ends = np.clip(np.floor(sample + kernel_scale - f32(0.5)).astype(np.int64), 0, in_size - 1) + 1
    one_over = f32(1.0) / kernel_scale
    weights = np.zeros((out_size, span), f32)
    for x in range(out_size):
        pos = np.arange(starts[x], ends[x], dtype=f32) + f32(0.5) - sample[x]
        w = np.maximum(f32(1.0) - np.abs(pos * one_over), f32(0.0))
        total = f32(0.0)
        for v in w:  # TensorFlow sums in order, in float32
            total = f32(total + v)
        if abs(total) >= 1000.0 * np.finfo(f32).tiny:
            weights[x, : len(w)] = w * (f32(1.0) / total)
    return starts, weights


def _gather(img: np.ndarray, starts: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Weighted sums along ``axis`` (0: rows, 1: columns) of float32 products, added in span order."""
    size = img.shape[axis]
    shape = list(img.shape)
    shape[axis] = len(starts)
    out = np.zeros(shape, np.float32)
    term = np.empty(shape, np.float32)
    for i in range(weights.shape[1]):
        idx = np.minimum(starts + i, size - 1)  # past the edge the weight is 0
        w = weights[:, i].reshape((-1, 1, 1) if axis == 0 else (1, -1, 1))
        np.multiply(w, np.take(img, idx, axis=axis), out=term, dtype=np.float32)
        out += term
    return out


def resize_like_tf(px: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """(H, W, C) pixels, any real dtype -> float32 (size, size, C), as
    ``tf.image.resize(px, (size, size), "bilinear", antialias=True)`` computes it, clipped to 0..255."""
    rows = _gather(px, *_spans(px.shape[0], size), axis=0)
    out = _gather(rows, *_spans(px.shape[1], size), axis=1)
    return np.clip(out, 0.0, 255.0, out=out)


def model_input(image: LoadedImage | np.ndarray) -> np.ndarray:
    """A decoded image (:class:`LoadedImage`, or its pixels: (H, W), (H, W, 1) or (H, W, 3), uint8 or another
    real dtype in 0..255) -> float32 (224, 224, 3) in [-1, 1], equal to ``tf_model_input(rgb).numpy()`` (no
    TensorFlow needed). Raises :class:`ImageError` for a blank or nearly uniform image."""
    px = np.asarray(image.pixels if isinstance(image, LoadedImage) else image)
    if px.ndim not in (2, 3) or (px.ndim == 3 and px.shape[2] not in (1, 3)) or px.dtype.kind not in "uif":
        raise ImageError(f"cannot use pixels of shape {px.shape} and type {px.dtype} (grey or RGB expected)")
    if pixel_std(px) < MIN_CONTRAST:
        raise ImageError("image is blank or nearly uniform; no chest film can be seen in it")
    grey = px.ndim == 2 or px.shape[2] == 1
    if px.ndim == 2:
        px = px[..., None]
    if px.dtype != np.uint8:
        px = px.astype(np.float32)  # as the reference casts before resizing
        if px.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
            px = np.clip(px, 0.0, 255.0)
    if px.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
        x = px.astype(np.float32)
    else:
        x = resize_like_tf(px)
    # Same float32 ops as the reference, in place: a second 600 KB temporary costs more than the
    # arithmetic (glibc returns freed blocks of that size to the OS, so each new one page-faults).
    x /= np.float32(127.5)
    x -= np.float32(1.0)
    return grey_to_rgb(x) if grey else x
