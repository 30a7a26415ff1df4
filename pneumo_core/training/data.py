"""The training input: tf.data pipelines (decoding, augmentation) and class weights. Which films: see
:mod:`pneumo_core.datasets`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pneumo_core.config import IMAGE_SIZE
from pneumo_core.inference.preprocess import tf_model_input


def class_weights(labels) -> dict[int, float]:
    """Balanced weights (n / (2 * n_c)), so each class contributes equally to the loss."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    w = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    return {0: float(w[0]), 1: float(w[1])}


# ---------------------------------------------------------------- tf.data pipeline
def decode_file(path):
    """Read and decode a JPEG/PNG/BMP file into uint8 RGB (graph mode, for tf.data)."""
    import tensorflow as tf

    raw = tf.io.read_file(path)
    img = tf.io.decode_image(raw, channels=3, expand_animations=False)
    img.set_shape([None, None, 3])
    return img


@dataclass(frozen=True)
class Augment:
    """Augmentation for chest films. No flips: a mirrored chest puts the heart on the wrong side,
    an image the model will never see. Contrast, brightness and gamma vary with exposure and
    scanner, which is the main difference between the train and test sources."""

    rotation_deg: float = 10.0
    zoom: float = 0.10
    shift: float = 0.06
    contrast: float = 0.25
    brightness: float = 0.15
    gamma: float = 0.30  # log-gamma range
    # Share of films re-encoded as JPEG at a random quality in JPEG_QUALITY. Uploads and
    # other hospitals' exports are often compressed harder than the training copies, and
    # block artefacts alone push an untrained-for model towards PNEUMONIA (docs/robustness.md).
    jpeg: float = 0.5
    # Random resized crop: up to ``crop`` of the film's area cut away and the log aspect ratio
    # of the kept window within +-``aspect``, then resized back to the square input. The
    # originals vary in size and are often portrait; every copy was squashed to 224x224, so
    # framing and aspect differ from film to film and between sources. 0 turns each off.
    crop: float = 0.0
    aspect: float = 0.0

    JPEG_QUALITY = (30, 95)

    def layer(self, seed: int):
        """The geometric augmentation (rotation, zoom, shift) as a seeded Keras layer for batches."""
        import keras

        return keras.Sequential(
            [
                keras.layers.RandomRotation(self.rotation_deg / 360.0, fill_mode="constant", seed=seed),
                keras.layers.RandomZoom((-self.zoom, self.zoom), fill_mode="constant", seed=seed + 1),
                keras.layers.RandomTranslation(self.shift, self.shift, fill_mode="constant", seed=seed + 2),
            ],
            name="geometric_augmentation",
        )

    def photometric(self, image, seed):
        """Random gamma, contrast, brightness and JPEG re-encoding on a float 0..255 image
        (``seed``: int64 pair)."""
        import tensorflow as tf

        seeds = tf.random.experimental.stateless_split(seed, 5)
        x = image / 255.0
        if self.jpeg > 0:
            lo, hi = self.JPEG_QUALITY
            recode = tf.random.stateless_uniform([], seeds[3]) < self.jpeg
            x = tf.cond(
                recode,
                lambda: tf.image.stateless_random_jpeg_quality(tf.clip_by_value(x, 0.0, 1.0), lo, hi, seeds[4]),
                lambda: x,
            )
        g = tf.exp(tf.random.stateless_uniform([], seeds[0], -self.gamma, self.gamma))
        x = tf.pow(tf.clip_by_value(x, 1e-6, 1.0), g)
        c = tf.random.stateless_uniform([], seeds[1], 1 - self.contrast, 1 + self.contrast)
        mean = tf.reduce_mean(x)
        x = (x - mean) * c + mean
        b = tf.random.stateless_uniform([], seeds[2], -self.brightness, self.brightness)
        x = tf.clip_by_value(x + b, 0.0, 1.0) * 255.0
        if self.crop > 0 or self.aspect > 0:
            # Its own seed stream, so runs trained without cropping keep their exact streams.
            x = self.random_resized_crop(x, tf.random.experimental.stateless_fold_in(seed, 7))
        return x

    def random_resized_crop(self, image, seed):
        """A window of area fraction U(1 - crop, 1) and log aspect ratio U(-aspect, aspect),
        at a random position, resized back to the image's size."""
        import tensorflow as tf

        seeds = tf.random.experimental.stateless_split(seed, 4)
        size = tf.shape(image)[:2]
        h, w = tf.cast(size[0], tf.float32), tf.cast(size[1], tf.float32)
        area = tf.random.stateless_uniform([], seeds[0], 1.0 - self.crop, 1.0)
        ratio = tf.exp(tf.random.stateless_uniform([], seeds[1], -self.aspect, self.aspect))  # width / height
        ch = tf.clip_by_value(tf.round(h * tf.sqrt(area / ratio)), 8.0, h)
        cw = tf.clip_by_value(tf.round(w * tf.sqrt(area * ratio)), 8.0, w)
        top = tf.floor(tf.random.stateless_uniform([], seeds[2], 0.0, 1.0) * (h - ch + 1.0))
        left = tf.floor(tf.random.stateless_uniform([], seeds[3], 0.0, 1.0) * (w - cw + 1.0))
        box = tf.cast(tf.stack([top, left, ch, cw]), tf.int32)
        window = tf.image.crop_to_bounding_box(image, box[0], box[1], box[2], box[3])
        return tf.image.resize(window, size, antialias=True)


def make_dataset(
    df: pd.DataFrame,
    batch_size: int = 32,
    shuffle: bool = False,
    augment: Augment | None = None,
    seed: int = 42,
    with_labels: bool = True,
):
    """tf.data pipeline: parallel decode, optional augmentation, batching, prefetch."""
    import tensorflow as tf

    paths = df["path"].astype(str).to_numpy()
    ds = tf.data.Dataset.from_tensor_slices((paths, df["label"].to_numpy().astype("float32")))
    if shuffle:
        ds = ds.shuffle(len(df), seed=seed, reshuffle_each_iteration=True)

    def load(path, label):
        img = tf.image.resize(tf.cast(decode_file(path), tf.float32), (IMAGE_SIZE, IMAGE_SIZE), antialias=True)
        return img, label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        geo = augment.layer(seed)
        # A fresh random stream each epoch, so every epoch sees new variants of each film.
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, randoms))
        ds = ds.map(lambda xy, r: (augment.photometric(xy[0], r), xy[1]), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch_size)
        ds = ds.map(lambda x, y: (geo(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(lambda x, y: (tf_model_input(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (tf_model_input(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch_size)
    if not with_labels:
        ds = ds.map(lambda x, y: x)
    return ds.prefetch(tf.data.AUTOTUNE)
