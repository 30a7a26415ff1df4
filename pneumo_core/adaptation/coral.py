"""CORAL feature alignment (Sun, Feng and Saenko, *Return of frustratingly easy domain adaptation*, AAAI 2016) of a
site's pooled features onto the training films', before the unchanged classifier head.

CORAL matches second-order statistics: ``x' = (x - mu_site) C_site^(-1/2) C_train^(1/2) + mu_train``. The paper
re-colours the *source* features and retrains the classifier; we align the *site* features to the source
instead (the mirror form used in test-time adaptation), so the shipped head is kept and no label is needed.
Covariances are shrunk towards a scaled identity (``C + shrink * tr(C)/d * I``, the paper's "+ I" made
scale-free): a site half has ~300 films for 1280 features a member.

An ensemble's pooled features are its members' side by side (``blocks`` of equal width): each member's block
is aligned on its own, which is the ensemble of the members each aligned (the head is linear in them).

The class-mix guard is the one of :mod:`pneumo_core.adaptation.batchnorm`: both sides' moments class-balanced
(training films by label, site films by pseudo-label). numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pneumo_core.adaptation.batchnorm import class_balanced_weights


@dataclass(frozen=True)
class FeatureMoments:
    """Weighted mean (d,) and covariance (d, d) of features, and a factor ``F`` with ``cov == F.T @ F`` (n, d)."""

    mean: np.ndarray
    cov: np.ndarray
    factor: np.ndarray


def feature_moments(features, weights=None) -> FeatureMoments:
    """Mean and covariance of ``features`` (n, d), each row weighted by ``weights`` (any scale; None: equal)."""
    x = np.asarray(features, np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mean = w @ x
    factor = (x - mean) * np.sqrt(w)[:, None]
    return FeatureMoments(mean, factor.T @ factor, factor)


def _shrunk_power(m: FeatureMoments, power: float, shrink: float) -> np.ndarray:
    """``(C + r I) ** power`` with ``r = shrink * tr(C) / d``. With fewer films than features (n < d) through
    the n x n Gram matrix of the factor: exact, and far cheaper than a d x d eigensolve."""
    n, d = m.factor.shape
    ridge = shrink * np.trace(m.cov) / d
    if n >= d:
        values, vectors = np.linalg.eigh(m.cov + ridge * np.eye(d))
        return (vectors * np.clip(values, np.finfo(float).tiny, None) ** power) @ vectors.T
    values, u = np.linalg.eigh(m.factor @ m.factor.T)
    keep = values > values.max() * 1e-12
    vectors = m.factor.T @ (u[:, keep] / np.sqrt(values[keep]))  # C's eigenvectors with non-zero eigenvalues
    extra = (values[keep] + ridge) ** power - ridge**power
    return (vectors * extra) @ vectors.T + ridge**power * np.eye(d)


@dataclass(frozen=True)
class CoralMap:
    """The affine map ``x -> (x - shift) @ matrix + target`` of one block of features."""

    shift: np.ndarray
    matrix: np.ndarray
    target: np.ndarray

    def __call__(self, x) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.shift) @ self.matrix + self.target


def coral_map(source: FeatureMoments, site: FeatureMoments, shrink: float) -> CoralMap:
    """The CORAL map taking features with the site's moments to the source's (``shrink`` > 0)."""
    if shrink <= 0:
        raise ValueError(f"CORAL needs a positive shrinkage, got {shrink}")
    matrix = _shrunk_power(site, -0.5, shrink) @ _shrunk_power(source, 0.5, shrink)
    return CoralMap(site.mean, matrix, source.mean)


def align_blocks(features, maps: list[CoralMap]) -> np.ndarray:
    """Apply one map per equal-width block of ``features`` (n, blocks * d)."""
    blocks = np.split(np.asarray(features, np.float64), len(maps), axis=1)
    return np.concatenate([m(b) for m, b in zip(maps, blocks)], axis=1)


def fit_blocks(source_features, source_labels, site_features, site_pseudo, n_blocks: int, shrink: float,
               balanced: bool = True) -> list[CoralMap]:
    """One CORAL map per member block, from labelled source and pseudo-labelled site features."""
    src = np.split(np.asarray(source_features, np.float64), n_blocks, axis=1)
    site = np.split(np.asarray(site_features, np.float64), n_blocks, axis=1)
    w_src = class_balanced_weights(source_labels) if balanced else None
    w_site = class_balanced_weights(site_pseudo) if balanced else None
    return [coral_map(feature_moments(s, w_src), feature_moments(t, w_site), shrink) for s, t in zip(src, site)]
