"""The model's input transform, in one place: resize to 224x224, scale to [-1, 1], grey to RGB.

* :func:`model_input` is the single-image transform every caller uses (inference, export
  calibration, tests): a decoded image in, the model input out, blank images refused.
* :func:`tf_model_input` is the same transform as TensorFlow ops, for the tf.data training and
  evaluation pipelines (batches inside a graph) and as the reference ``model_input`` is tested
  against.

``model_input`` gives the same numbers as ``tf_model_input`` without its eager-TensorFlow overhead:

* a 224x224 image (the size of every film in the training and test splits) is not resized:
  TF's antialiased resize at scale 1 is the identity, so ``x / 127.5 - 1`` in float32
  numpy gives bit-identical values;
* any other size goes through one compiled ``tf.function`` (the same
  ``tf.image.resize(..., "bilinear", antialias=True)`` kernel, so the same weights), on one
  channel for a greyscale film instead of three (the resize is per channel, so replicating
  afterwards gives the same result);
* the blank-image check uses ``cv2.meanStdDev`` (float64 accumulation) instead of a
  float64 copy of the whole image.

cv2's own resizers were measured and not used: ``INTER_AREA`` (a box filter) differs from TF's
antialiased triangle filter by up to 0.09 in model-input units (about 11 grey levels).
"""
from __future__ import annotations

import numpy as np

from pneumo_core.config import IMAGE_SIZE
from pneumo_core.errors import ImageError
from pneumo_core.imaging.core import LoadedImage, grey_to_rgb

MIN_CONTRAST = 2.0  # grey-level standard deviation below which an image is treated as blank
_resize_fn = None


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
    import cv2

    px = np.asarray(px)
    if px.dtype != np.uint8 or px.ndim not in (2, 3) or (px.ndim == 3 and px.shape[2] > 4):
        return float(px.std())
    mean, std = cv2.meanStdDev(px)
    mean, std = mean.ravel(), std.ravel()
    if mean.size == 1:
        return float(std[0])
    # Channels hold equal counts: total variance = E[var_c + mean_c^2] - (E[mean_c])^2.
    var = float(np.mean(std**2 + mean**2) - np.mean(mean) ** 2)
    return float(np.sqrt(max(var, 0.0)))


def _resizer():
    """One compiled graph: uint8 (H, W, C) -> float32 (224, 224, C), antialiased bilinear, clipped."""
    global _resize_fn
    if _resize_fn is None:
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.uint8)], reduce_retracing=True)
        def resize(img):
            # uint8 straight into the resize kernel (it computes in float32): the same values as
            # casting first, without a float copy of the full-size image.
            img = tf.image.resize(img, (IMAGE_SIZE, IMAGE_SIZE), method="bilinear", antialias=True)
            return tf.clip_by_value(img, 0.0, 255.0)

        _resize_fn = resize
    return _resize_fn


def model_input(image: LoadedImage | np.ndarray) -> np.ndarray:
    """A decoded image (:class:`LoadedImage`, or its pixels: uint8 (H, W), (H, W, 1) or (H, W, 3))
    -> float32 (224, 224, 3) in [-1, 1], equal to ``tf_model_input(rgb).numpy()``; other dtypes go
    through that reference. Raises :class:`ImageError` for a blank or nearly uniform image."""
    px = np.asarray(image.pixels if isinstance(image, LoadedImage) else image)
    if pixel_std(px) < MIN_CONTRAST:
        raise ImageError("image is blank or nearly uniform; no chest film can be seen in it")
    if px.dtype != np.uint8 or px.ndim not in (2, 3) or (px.ndim == 3 and px.shape[2] not in (1, 3)):
        return tf_model_input(px).numpy()
    grey = px.ndim == 2 or px.shape[2] == 1
    if px.ndim == 2:
        px = px[..., None]
    if px.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
        x = px.astype(np.float32)
    else:
        x = _resizer()(np.ascontiguousarray(px)).numpy()
        if not x.flags.writeable:
            x = x.copy()
    # Same float32 ops as the reference, in place: a second 600 KB temporary costs more than the
    # arithmetic (glibc returns freed blocks of that size to the OS, so each new one page-faults).
    x /= np.float32(127.5)
    x -= np.float32(1.0)
    return grey_to_rgb(x) if grey else x
