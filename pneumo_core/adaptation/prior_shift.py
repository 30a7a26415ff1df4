"""Prior-shift estimation and correction by EM (Saerens, Latinne and Decaestecker, Neural Computation 14, 2002).

Given a classifier's posteriors p(PNEUMONIA | x) on unlabelled site films and the pneumonia share of the data it
was trained on, EM alternates: re-weight every posterior to the current prior estimate (Bayes' rule with the
prior ratio), then set the prior to the mean re-weighted posterior. It converges to the maximum-likelihood prior
under *label shift* (p(x | class) unchanged between training and site). When the films themselves change (a new
scanner, a later batch) the posteriors move too and EM's answer moves with them: the caller says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-12


@dataclass(frozen=True)
class PriorEstimate:
    """EM's answer: the estimated pneumonia share at the site, the posteriors re-weighted to it, and how EM ran."""

    prevalence: float
    adjusted: np.ndarray
    iterations: int
    converged: bool


def reweight(p: np.ndarray, train_prevalence: float, new_prevalence: float) -> np.ndarray:
    """Posteriors ``p`` (trained at ``train_prevalence``) re-weighted to a class prior of ``new_prevalence``."""
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    pos = p * (new_prevalence / train_prevalence)
    neg = (1 - p) * ((1 - new_prevalence) / (1 - train_prevalence))
    return pos / (pos + neg)


def em_prevalence(p, train_prevalence: float, *, max_iter: int = 1000, tol: float = 1e-8) -> PriorEstimate:
    """The pneumonia prevalence of the films scored ``p`` by EM, starting from ``train_prevalence``.

    ``p``: posteriors of the model on the unlabelled films (1-D). Raises ValueError on an empty input or a training
    prevalence outside (0, 1)."""
    p = np.asarray(p, dtype=float).ravel()
    if p.size == 0:
        raise ValueError("EM needs at least one scored film")
    if not 0.0 < train_prevalence < 1.0:
        raise ValueError(f"the training prevalence must lie strictly between 0 and 1, got {train_prevalence}")
    prior = float(train_prevalence)
    adjusted = reweight(p, train_prevalence, prior)
    for iteration in range(1, max_iter + 1):
        new_prior = float(np.clip(adjusted.mean(), _EPS, 1 - _EPS))
        adjusted = reweight(p, train_prevalence, new_prior)
        if abs(new_prior - prior) < tol:
            return PriorEstimate(new_prior, adjusted, iteration, True)
        prior = new_prior
    return PriorEstimate(prior, adjusted, max_iter, False)
