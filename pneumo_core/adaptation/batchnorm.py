"""BatchNorm statistics re-estimated on a site's unlabelled films (AdaBN, Li et al., Pattern Recognition 80, 2018),
anchored to the training films and guarded against a changed class mix.

Why anchored: plain AdaBN replaces each BatchNorm layer's statistics with the site's, which restores what the
network saw in training only if those statistics *were* the training films'. Ours are ImageNet's: fine-tuning
kept every BatchNorm layer frozen (docs/design.md), so on training films a layer's normalised output is not
zero-mean, unit-variance, and plain AdaBN would move every feature away from what the head learned. Here each
layer instead maps the site's per-channel mean and spread onto the training films', i.e. site activations
``a`` become ``(a - mu_site) / sd_site * sd_train + mu_train`` before the frozen normalisation; that is again a
BatchNorm layer, with new moving statistics (:func:`anchored_statistics`). With training statistics equal to
ImageNet's it is plain AdaBN.

The guard: the moments are class-balanced, each class weighing half, on both sides: the training films by
their labels, the site films by pseudo-labels (the current model at the operating threshold). An unweighted
mean would move with the pneumonia share, which differs between sites (about 74 % in training, 62.5 % in the
official test split), and AdaBN would then remove a class-mix difference as if it were a scanner difference.

Every layer's input depends on the layers below, so the site moments are re-collected after each update: a
few fixed-point iterations (the pre-registered count) instead of one pass per layer.

TensorFlow is imported inside the functions only: the package imports without it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A channel whose spread, on either side, is under this share of its normalisation scale keeps its statistics:
# MobileNetV2 has near-dead channels (depthwise ones above all) whose spread is ~1e-10 on training films and a
# little more on others; their ratio of spreads is noise and reached 1e10 on validation films.
_SD_FLOOR = 1e-2


@dataclass
class Moments:
    """Per-channel mean and variance of every BatchNorm layer's input (in :func:`batchnorm_layers` order)."""

    mean: list[np.ndarray]
    var: list[np.ndarray]


@dataclass
class Pass:
    """One forward pass over films: logits, pooled features (the head's input) and, if asked, every film's BN
    input moments (per layer: (N, C) means, then (N, C) mean squares)."""

    logit: np.ndarray
    pooled: np.ndarray
    moments: tuple[list[np.ndarray], list[np.ndarray]] | None


def batchnorm_layers(model) -> list:
    """Every BatchNormalization layer of ``model``, nested models included, in graph order (each once)."""
    import keras

    found, seen = [], set()

    def walk(layer):
        for inner in getattr(layer, "layers", []):
            if isinstance(inner, keras.layers.BatchNormalization):
                if id(inner) not in seen:
                    seen.add(id(inner))
                    found.append(inner)
            else:
                walk(inner)

    walk(model)
    return found


def class_balanced_weights(labels) -> np.ndarray:
    """Per-film weights that give each class half the total (one class present: equal weights)."""
    labels = np.asarray(labels).astype(int)
    counts = np.bincount(labels, minlength=2).astype(float)
    present = counts > 0
    return np.where(present[labels], 1.0 / (present.sum() * counts[labels].clip(min=1)), 0.0)


class Probe:
    """A compiled forward pass of a classifier that also returns each BatchNorm layer's per-film input moments
    (mean and mean square over the spatial axes). The model's moving statistics are read at every call, so
    :meth:`set_statistics` takes effect without rebuilding."""

    def __init__(self, model):
        import keras
        import tensorflow as tf

        from pneumo_core.inference.model_files import split_model

        self.model = model
        self.layers = batchnorm_layers(model)
        self._index = {id(layer): i for i, layer in enumerate(self.layers)}
        self.original = self.statistics()
        base, head = split_model(model)
        recorded: list = []
        plain_call = keras.layers.BatchNormalization.call
        index = self._index

        def recording_call(layer, inputs, *args, **kwargs):
            if id(layer) in index:  # only while this probe's function is traced
                x = tf.cast(inputs, tf.float32)
                axes = list(range(1, len(x.shape) - 1))
                mean = tf.reduce_mean(x, axis=axes) if axes else x
                square = tf.reduce_mean(x * x, axis=axes) if axes else x * x
                recorded.append((index[id(layer)], mean, square))
            return plain_call(layer, inputs, *args, **kwargs)

        def forward(x, with_moments):
            recorded.clear()
            keras.layers.BatchNormalization.call = recording_call
            try:
                maps = base(x, training=False)
                logit = head(maps, training=False)
            finally:
                keras.layers.BatchNormalization.call = plain_call
            order = sorted(recorded, key=lambda r: r[0])
            if len(order) != len(self.layers):
                raise RuntimeError(f"recorded {len(order)} BatchNorm calls for {len(self.layers)} layers")
            pooled = tf.reduce_mean(maps, axis=[1, 2])
            if not with_moments:
                return logit[:, 0], pooled, [], []
            return logit[:, 0], pooled, [r[1] for r in order], [r[2] for r in order]

        self._with = tf.function(lambda x: forward(x, True), reduce_retracing=True)
        self._without = tf.function(lambda x: forward(x, False), reduce_retracing=True)

    def statistics(self) -> Moments:
        """The model's current moving statistics."""
        return Moments([np.asarray(bn.moving_mean.numpy(), np.float64) for bn in self.layers],
                       [np.asarray(bn.moving_variance.numpy(), np.float64) for bn in self.layers])

    def set_statistics(self, stats: Moments) -> None:
        for bn, mean, var in zip(self.layers, stats.mean, stats.var):
            bn.moving_mean.assign(mean.astype("float32"))
            bn.moving_variance.assign(var.astype("float32"))

    def run(self, images: np.ndarray, moments: bool = False, batch_size: int = 32) -> Pass:
        """Score ``images`` (N, 224, 224, 3 model inputs); with ``moments``, also each film's BN input moments
        (float32 means and mean squares, weighted later by :func:`weighted_moments`)."""
        logits, pooled, means, squares = [], [], [], []
        fn = self._with if moments else self._without
        for start in range(0, len(images), batch_size):
            logit, feats, m, sq = fn(np.ascontiguousarray(images[start:start + batch_size], dtype=np.float32))
            logits.append(logit.numpy())
            pooled.append(feats.numpy())
            if moments:
                means.append([t.numpy() for t in m])
                squares.append([t.numpy() for t in sq])
        per_film = None
        if moments:
            per_film = ([np.concatenate([b[i] for b in means]) for i in range(len(self.layers))],
                        [np.concatenate([b[i] for b in squares]) for i in range(len(self.layers))])
        return Pass(np.concatenate(logits), np.concatenate(pooled), per_film)


def weighted_moments(per_film, weights) -> Moments:
    """Per-channel mean and variance of every layer's input over films weighted by ``weights`` (any scale)."""
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    means = [w @ m.astype(np.float64) for m in per_film[0]]
    return Moments(means, [np.maximum(w @ q.astype(np.float64) - m * m, 0.0) for q, m in zip(per_film[1], means)])


def anchored_statistics(original: Moments, source: Moments, site: Moments, epsilons) -> Moments:
    """Moving statistics under which the site's inputs are normalised as the training films' were under
    ``original``: for input ``a``, ``(a - m') / sqrt(v' + eps) == ((a - mu_site) * sd_tr / sd_site + mu_tr
    - mu_orig) / sqrt(v_orig + eps)``. Channels whose spread on either side is below ``_SD_FLOOR`` of
    ``sqrt(v_orig + eps)`` keep ``original``."""
    means, variances = [], []
    for m0, v0, mt, vt, ms, vs, eps in zip(original.mean, original.var, source.mean, source.var,
                                           site.mean, site.var, epsilons):
        sd_t, sd_s, scale0 = np.sqrt(vt), np.sqrt(vs), np.sqrt(v0 + eps)
        ok = (sd_t > _SD_FLOOR * scale0) & (sd_s > _SD_FLOOR * scale0)
        ratio = np.where(ok, sd_s / np.where(ok, sd_t, 1.0), 1.0)
        means.append(np.where(ok, ms - (mt - m0) * ratio, m0))
        variances.append(np.where(ok, (ratio * scale0) ** 2 - eps, v0))
    return Moments(means, variances)


def adapt_batchnorm(probe: Probe, source: Moments, site_images: np.ndarray, *, iterations: int, threshold: float,
                    balanced: bool = True, layers: int | None = None, batch_size: int = 32, after_each=None) -> dict:
    """Re-estimate ``probe.model``'s BatchNorm statistics on unlabelled ``site_images`` (in place), starting
    from the original statistics.

    Each iteration is one pass over the site films under the current statistics: their scores give
    pseudo-labels at ``threshold`` (PNEUMONIA when p >= threshold), their moments are weighted class-balanced
    by those pseudo-labels (``balanced=False``: every film equal) and the anchored statistics are set.
    ``layers``: adapt only the first ``layers`` BatchNorm layers in graph order (None: all).
    ``after_each(k)``, if given, is called after iteration ``k`` (1-based; the tuning scores films there).
    Returns what happened (the pseudo-PNEUMONIA share seen by each iteration)."""
    epsilons = [float(bn.epsilon) for bn in probe.layers]
    probe.set_statistics(probe.original)
    shares = []
    for _ in range(iterations):
        current = probe.run(site_images, moments=True, batch_size=batch_size)
        pseudo = (current.logit >= _logit(threshold)).astype(int)
        shares.append(float(pseudo.mean()))
        weights = class_balanced_weights(pseudo) if balanced else np.ones(len(pseudo))
        site = weighted_moments(current.moments, weights)
        adapted = anchored_statistics(probe.original, source, site, epsilons)
        if layers is not None:  # only the first ``layers`` BatchNorm layers in graph order; the rest keep theirs
            adapted = Moments(adapted.mean[:layers] + probe.original.mean[layers:],
                              adapted.var[:layers] + probe.original.var[layers:])
        probe.set_statistics(adapted)
        if after_each is not None:
            after_each(len(shares))
    return {"iterations": iterations, "balanced": balanced, "pseudo_pneumonia_share": shares}


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))
