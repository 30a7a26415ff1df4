"""The pre-registered site-adaptation study (models/experiments/site_adaptation_preregistration.md): films to
model inputs, the simulated shifts used to choose settings, the patient-grouped two-fold cross-fitting and the
report of one method. The three methods themselves: :mod:`.prior_shift` (EM), :mod:`.batchnorm` (AdaBN),
:mod:`.coral` (CORAL); the Keras-side wiring is in :mod:`.methods`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pneumo_core.evaluation.metrics import full_report, metrics_at


# ---------------------------------------------------------------- films
@dataclass(frozen=True)
class Shift:
    """A photometric change applied to a film's 8-bit pixels (simulating another batch or scanner):
    gamma on [0, 1] intensities, contrast scaled about the film's mean, Gaussian blur (sigma in pixels,
    0: none). The identity by default."""

    gamma: float = 1.0
    contrast: float = 1.0
    blur: float = 0.0

    def __call__(self, px: np.ndarray) -> np.ndarray:
        x = np.asarray(px, np.float64) / 255.0
        if self.gamma != 1.0:
            x = x**self.gamma
        if self.contrast != 1.0:
            x = (x - x.mean()) * self.contrast + x.mean()
        if self.blur > 0:
            import cv2

            x = cv2.GaussianBlur(x, (0, 0), self.blur)
        return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def model_inputs(paths, shift: Shift | None = None) -> np.ndarray:
    """Films on disk -> (N, 224, 224, 3) float32 model inputs through the product's decoder and transform,
    each changed by ``shift`` first (None: as stored)."""
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.preprocess import model_input

    out = []
    for path in paths:
        px = load_path(path).pixels
        out.append(model_input(shift(px) if shift is not None else px))
    return np.stack(out).astype(np.float32)


# ---------------------------------------------------------------- protocol
def patient_halves(patients, seed: int) -> np.ndarray:
    """Half 0 or 1 for every film, every patient's films in one half, film counts as even as the patients
    allow. No label is read: patients are shuffled (``seed``) and each goes to the half with fewer films."""
    patients = np.asarray(patients)
    unique, counts = np.unique(patients, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    side, sizes = {}, [0, 0]
    for i in order:
        half = int(sizes[1] < sizes[0])
        side[unique[i]] = half
        sizes[half] += counts[i]
    return np.array([side[p] for p in patients])


def cross_fit(halves: np.ndarray, adapt_and_score: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Pooled scores of a method: ``adapt_and_score(adapt_idx, eval_idx)`` adapts on the films of one half
    (their pixels only) and returns scores for the other half's films; fold 1 adapts on half 0, fold 2 on
    half 1."""
    pooled = np.full(len(halves), np.nan)
    for adapt_half in (0, 1):
        adapt_idx, eval_idx = np.where(halves == adapt_half)[0], np.where(halves != adapt_half)[0]
        pooled[eval_idx] = adapt_and_score(adapt_idx, eval_idx)
    if np.isnan(pooled).any():
        raise RuntimeError("a method left films without a score")
    return pooled


def balanced_accuracy(m: dict) -> float:
    return (m["recall"] + m["specificity"]) / 2


def _summary(y, p, threshold) -> dict:
    m = metrics_at(y, p, threshold)
    keep = ("n", "accuracy", "recall", "specificity", "auc", "confusion_matrix")
    out = {k: m[k] for k in keep}
    out["sensitivity"] = out.pop("recall")
    out["balanced_accuracy"] = balanced_accuracy(m)
    return out


def study_report(y, p_method, p_base, halves, patients, threshold: float, n_boot: int = 1000) -> dict:
    """A method's pooled figures at ``threshold`` (patient-bootstrap 95 % intervals), each fold's figures
    (fold k: evaluated on the half not adapted on) beside the unadapted model's on the same films, and the
    shipping rule: balanced accuracy above the unadapted model's in both folds."""
    y = np.asarray(y).astype(int)
    p_method, p_base = np.asarray(p_method, float), np.asarray(p_base, float)
    pooled = full_report(y, p_method, threshold, n_boot, groups=patients)
    at = pooled["at_threshold"]
    at["sensitivity"] = at["recall"]
    at["balanced_accuracy"] = balanced_accuracy(at)
    if at.get("ci95"):
        at["ci95"]["sensitivity"] = at["ci95"]["recall"]
    folds = []
    for k, adapt_half in enumerate((0, 1), start=1):
        idx = np.where(np.asarray(halves) != adapt_half)[0]
        method, base = _summary(y[idx], p_method[idx], threshold), _summary(y[idx], p_base[idx], threshold)
        folds.append({"fold": k, "adapted_on_half": adapt_half, "evaluated_on_half": 1 - adapt_half,
                      "method": method, "unadapted": base,
                      "balanced_accuracy_gain": method["balanced_accuracy"] - base["balanced_accuracy"]})
    ships = all(f["balanced_accuracy_gain"] > 0 for f in folds)
    return {**pooled, "unadapted_at_threshold": _summary(y, p_base, threshold), "folds": folds,
            "shipping_rule": "balanced accuracy above the unadapted model's in both folds",
            "passes_shipping_rule": ships}
