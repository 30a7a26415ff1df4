"""The three pre-registered methods as ``adapt on one set of unlabelled films, score another`` functions, on the
scores, pooled features and model inputs of a classifier (a :class:`~.batchnorm.Probe`). Settings come from the
pre-registration (:data:`SETTINGS`); nothing here reads a label of the site films.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pneumo_core.adaptation.batchnorm import Moments, Probe, adapt_batchnorm, class_balanced_weights, weighted_moments
from pneumo_core.adaptation.coral import align_blocks, fit_blocks
from pneumo_core.adaptation.prior_shift import em_prevalence, reweight


def sigmoid(z) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


@dataclass
class Source:
    """What the methods know of the training films: class-balanced BN input moments, pooled features, labels."""

    moments: Moments
    pooled: np.ndarray
    labels: np.ndarray


def source_reference(probe: Probe, images: np.ndarray, labels, batch_size: int = 32) -> Source:
    """One pass of the unchanged model over labelled training films."""
    probe.set_statistics(probe.original)
    run = probe.run(images, moments=True, batch_size=batch_size)
    labels = np.asarray(labels).astype(int)
    return Source(weighted_moments(run.moments, class_balanced_weights(labels)), run.pooled, labels)


def head_affine(model) -> tuple[np.ndarray, float]:
    """(w, b): the classifier's logit as ``pooled @ w + b`` in inference mode."""
    from pneumo_core.training.builders import _folded_head  # the one folding of BatchNorm + Dense

    return _folded_head(model)


def n_members(model) -> int:
    from pneumo_core.inference.model_files import ensemble_parts

    return max(1, len(ensemble_parts(model)))


# ---------------------------------------------------------------- the methods
def em_scores(p_adapt, p_eval, train_prevalence: float) -> tuple[np.ndarray, dict]:
    """Prior-shift correction: EM's prevalence on the adaptation films, the evaluated films' posteriors
    re-weighted to it."""
    estimate = em_prevalence(p_adapt, train_prevalence)
    info = {"estimated_prevalence": estimate.prevalence, "em_iterations": estimate.iterations,
            "converged": estimate.converged}
    return reweight(p_eval, train_prevalence, estimate.prevalence), info


def adabn_scores(probe: Probe, source: Source, x_adapt, x_eval, *, iterations: int, threshold: float,
                 balanced: bool = True, anchored: bool = True, layers: int | None = None) -> tuple[np.ndarray, dict]:
    """AdaBN on the adaptation films, then the evaluated films scored by the adapted model; the model's
    original statistics are restored afterwards. ``anchored=False``: plain AdaBN (the site's moments
    replace the stored statistics; a comparison in the tuning, not a pre-registered method)."""
    reference = source.moments if anchored else probe.original
    try:
        info = adapt_batchnorm(probe, reference, x_adapt, iterations=iterations, threshold=threshold,
                               balanced=balanced, layers=layers)
        return sigmoid(probe.run(x_eval).logit), info
    finally:
        probe.set_statistics(probe.original)


def coral_scores(source: Source, head: tuple[np.ndarray, float], blocks: int, pooled_adapt, p_adapt, pooled_eval, *,
                 shrink: float, threshold: float, balanced: bool = True) -> tuple[np.ndarray, dict]:
    """CORAL: per-member maps fitted on the adaptation films' pooled features (pseudo-labelled by the
    unadapted scores ``p_adapt`` at ``threshold``), applied to the evaluated films' before the unchanged head."""
    pseudo = (np.asarray(p_adapt) >= threshold).astype(int)
    maps = fit_blocks(source.pooled, source.labels, pooled_adapt, pseudo, blocks, shrink, balanced)
    w, b = head
    return sigmoid(align_blocks(pooled_eval, maps) @ w + b), {"pseudo_pneumonia_share": float(pseudo.mean())}
