"""A small random classifier whose outputs are not degenerate, for path-equality tests.

A freshly initialised MobileNetV2 (``weights=None``) gives ``out_relu`` maps of about 1e-11, so
every probability is 0.5 and every Grad-CAM map is 0: comparisons on it would pass for any
code. Shrinking the BatchNorm variances and shifting their offsets makes the maps O(1), and a
small logit kernel with a centred bias keeps the probabilities away from 0 and 1.
"""
from __future__ import annotations

import numpy as np


def lively_model(variant: str = "frozen", seed: int = 0):
    import keras

    from pneumo_core.training.builders import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(variant, weights=None)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.path.endswith("moving_variance"):
            w.assign(rng.uniform(0.05, 0.2, w.shape).astype("float32"))
        elif w.path.endswith("beta"):
            w.assign(rng.uniform(0.1, 0.4, w.shape).astype("float32"))
        elif w.path.endswith("logit/kernel"):
            w.assign(rng.normal(0.0, 0.2, w.shape).astype("float32"))
    x = rng.uniform(-1, 1, (4, 224, 224, 3)).astype("float32")
    logit = model.get_layer("logit")
    pooled = model.get_layer("mobilenetv2_base")(x, training=False).numpy().mean(axis=(1, 2))
    if variant == "finetuned":
        pooled = model.get_layer("head_bn")(pooled, training=False).numpy()
    centre = float((pooled @ logit.kernel.numpy()).mean())
    logit.bias.assign(np.array([-centre], "float32"))
    return model


def random_inputs(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 224, 224, 3)).astype("float32")
