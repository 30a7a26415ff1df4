"""The label-free shift check: how far a set of films lies from the training films, and how many of them the
model's scores say are pneumonia.

* **Feature shift**: the films' pooled features (the first ensemble member's, as the OOD guard uses) projected on
  the training films' top principal components, compared with a seeded sample of training films by the unbiased
  squared maximum mean discrepancy (MMD^2, Gretton et al. 2012; Gaussian kernel, median-heuristic width), with a
  permutation p-value ("Failing loudly", Rabanser et al. 2019: dimension reduction, then a two-sample test). MMD^2
  estimates a property of the two distributions, not of the sample size, so a site's figure can be set beside
  validation's (same source: no shift) and the official test batch's (the known shift).
* **Prevalence**: the estimators compared in the site-check study (``ESTIMATORS``); the one fixed before the test
  films were read is ``PREVALENCE_ESTIMATOR``, with a percentile bootstrap interval over films.
* **Verdict**: what the figures say and what they cannot.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from pneumo_core.adaptation.prior_shift import em_prevalence
from pneumo_core.site.calibration import Calibration, logit

REFERENCE_FILE = "shift_reference.npz"  # listed in models/MANIFEST.json
FIGURES_FILE = "shift.json"  # validation's and the official test batch's statistics
N_COMPONENTS = 32
N_PERMUTATIONS = 500
MAX_FILMS = 1000  # a larger set is subsampled (seeded) for the statistic: the kernel matrix grows as n^2
SEED = 24


# ---------------------------------------------------------------- the feature statistic
@dataclass(frozen=True)
class ShiftReference:
    """Training films' feature reference: PCA centre and axes, the projected sample, the kernel width."""

    center: np.ndarray  # (d,)
    axes: np.ndarray  # (k, d), unit rows
    sample: np.ndarray  # (m, k) projected training films
    bandwidth: float
    #: The validation films' scores and labels as the runtime computes them (the loader deblocks hard JPEGs, which
    #: the training pipeline's saved scores did not): what the calibration and the prevalence estimators fit.
    validation_p: np.ndarray | None = None
    validation_y: np.ndarray | None = None

    @classmethod
    def fit(cls, features, n_components: int = N_COMPONENTS, seed: int = SEED) -> "ShiftReference":
        """Axes from one half of the training films, the reference sample from the other: axes fitted on the
        sample itself hug its variance, so fresh films of the same source would look shifted."""
        x = np.asarray(features, dtype=float)
        order = np.random.default_rng(seed).permutation(len(x))
        fit, kept = x[order[: len(x) // 2]], x[order[len(x) // 2 :]]
        center = fit.mean(axis=0)
        _, _, vt = np.linalg.svd(fit - center, full_matrices=False)
        axes = vt[:n_components]
        sample = (kept - center) @ axes.T
        return cls(center, axes, sample, _median_distance(sample))

    def project(self, features) -> np.ndarray:
        x = np.atleast_2d(np.asarray(features, dtype=float))[:, : self.center.shape[0]]
        return (x - self.center) @ self.axes.T

    def save(self, path: str | Path) -> None:
        # float16 arrays: small enough to ship beside the model, far finer than the statistic's noise
        scores = {} if self.validation_p is None else {"validation_p": np.asarray(self.validation_p, np.float64),
                                                        "validation_y": np.asarray(self.validation_y, np.int8)}
        np.savez_compressed(path, center=self.center.astype(np.float16), axes=self.axes.astype(np.float16),
                            sample=self.sample.astype(np.float16), bandwidth=np.float64(self.bandwidth), **scores)

    @classmethod
    def load(cls, path: str | Path) -> "ShiftReference":
        z = np.load(path, allow_pickle=False)
        scores = (z["validation_p"].astype(float), z["validation_y"].astype(int)) if "validation_p" in z else ()
        return cls(z["center"].astype(float), z["axes"].astype(float), z["sample"].astype(float), float(z["bandwidth"]),
                   *scores)


def _median_distance(x: np.ndarray) -> float:
    d2 = _sq_distances(x, x)
    return float(np.sqrt(np.median(d2[np.triu_indices(len(x), 1)])))


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d2, 0.0)


def _mmd2(k: np.ndarray, first: np.ndarray) -> float:
    """Unbiased MMD^2 from the pooled kernel matrix ``k`` and the mask of the first sample's rows."""
    a, b = first, ~first
    n, m = a.sum(), b.sum()
    kaa, kbb, kab = k[np.ix_(a, a)], k[np.ix_(b, b)], k[np.ix_(a, b)]
    return float((kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
                 - 2 * kab.mean())


@dataclass(frozen=True)
class ShiftTest:
    statistic: float  # unbiased MMD^2 against the training reference
    p_value: float  # permutation p-value, (1 + #{perm >= observed}) / (1 + permutations)
    n: int  # films compared (after subsampling)


def feature_shift(features, reference: ShiftReference, permutations: int = N_PERMUTATIONS,
                  seed: int = SEED) -> ShiftTest:
    """The two-sample test of ``features`` (rows: films) against the training reference. Needs 2 films."""
    rng = np.random.default_rng(seed)
    x = reference.project(features)
    if len(x) < 2:
        raise ValueError("the shift statistic needs at least 2 films")
    if len(x) > MAX_FILMS:
        x = x[rng.choice(len(x), MAX_FILMS, replace=False)]
    pooled = np.vstack([x, reference.sample])
    k = np.exp(-_sq_distances(pooled, pooled) / (2 * reference.bandwidth ** 2))
    first = np.zeros(len(pooled), bool)
    first[: len(x)] = True
    observed = _mmd2(k, first)
    exceed = sum(_mmd2(k, rng.permutation(first)) >= observed for _ in range(permutations))
    return ShiftTest(observed, (1 + exceed) / (1 + permutations), int(len(x)))


# ---------------------------------------------------------------- prevalence
@dataclass(frozen=True)
class PrevalenceModel:
    """What the prevalence estimators know from labelled validation films: the calibration, the validation rates at
    the threshold, the calibrated scores of each class (means and the logits themselves, for the mixture)."""

    calibration: Calibration
    threshold: float
    tpr: float
    fpr: float
    mean_q_pos: float
    mean_q_neg: float
    z_pos: np.ndarray
    z_neg: np.ndarray

    @classmethod
    def fit(cls, y, p, calibration: Calibration, threshold: float) -> "PrevalenceModel":
        y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
        q = calibration.apply(p)
        z = logit(q)
        return cls(calibration, float(threshold), float((p[y == 1] >= threshold).mean()),
                   float((p[y == 0] >= threshold).mean()), float(q[y == 1].mean()), float(q[y == 0].mean()),
                   z[y == 1], z[y == 0])

    @cached_property
    def densities(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(grid, pneumonia density, normal density) of the calibrated logit: Gaussian KDE (Silverman's width)
        on a 0.02-wide grid, so the mixture reads them by interpolation."""
        grid = np.arange(-30.0, 30.0, 0.02)
        return grid, _kde(self.z_pos, grid), _kde(self.z_neg, grid)


def _clip01(x: float) -> float:
    return float(min(max(x, 0.0), 1.0))


def classify_and_count(p, model: PrevalenceModel) -> float:
    return float((np.asarray(p) >= model.threshold).mean())


def adjusted_count(p, model: PrevalenceModel) -> float:
    """BBSE for two classes (Lipton et al. 2018; Forman's adjusted count): (positive rate - FPR) / (TPR - FPR)."""
    return _clip01((classify_and_count(p, model) - model.fpr) / (model.tpr - model.fpr))


def probabilistic_adjusted_count(p, model: PrevalenceModel) -> float:
    """The same with calibrated probabilities instead of labels (Bella et al. 2010)."""
    q = model.calibration.apply(p).mean()
    return _clip01((q - model.mean_q_neg) / (model.mean_q_pos - model.mean_q_neg))


def em_raw(p, model: PrevalenceModel) -> float:
    """EM (Saerens et al. 2002) on the raw scores, from the validation mix."""
    return em_prevalence(p, model.calibration.prevalence).prevalence


def em_calibrated(p, model: PrevalenceModel) -> float:
    """EM on the calibrated scores (posteriors for the validation mix, the prior EM starts from)."""
    return em_prevalence(model.calibration.apply(p), model.calibration.prevalence).prevalence


def _kde(samples: np.ndarray, at: np.ndarray) -> np.ndarray:
    width = 1.06 * samples.std() * len(samples) ** -0.2  # Silverman's rule
    u = (at[:, None] - samples[None, :]) / width
    return np.exp(-0.5 * u * u).mean(axis=1) / (width * np.sqrt(2 * np.pi)) + 1e-300


def shifted_mixture(p, model: PrevalenceModel, offsets=np.linspace(-4, 4, 81)) -> float:
    """Maximum likelihood of the site's calibrated logits as a two-class mixture of the validation class densities
    (Gaussian KDE), both moved by one shared offset: the prevalence when the films' change moves every score the
    same way. At offset 0 it is EM on calibrated scores with the densities in place of calibration."""
    z = logit(model.calibration.apply(p))
    grid, g1, g0 = model.densities
    best = (-np.inf, model.calibration.prevalence)
    for delta in offsets:
        f1, f0 = np.interp(z - delta, grid, g1), np.interp(z - delta, grid, g0)
        pi = model.calibration.prevalence
        for _ in range(500):
            new = float((pi * f1 / (pi * f1 + (1 - pi) * f0)).mean())
            if abs(new - pi) < 1e-6:
                break
            pi = new
        ll = float(np.log(pi * f1 + (1 - pi) * f0).sum())
        if ll > best[0]:
            best = (ll, pi)
    return _clip01(best[1])


ESTIMATORS = {
    "classify_and_count": classify_and_count, "adjusted_count": adjusted_count,
    "probabilistic_adjusted_count": probabilistic_adjusted_count, "em_raw": em_raw, "em_calibrated": em_calibrated,
    "shifted_mixture": shifted_mixture,
}
PREVALENCE_ESTIMATOR = "shifted_mixture"  # fixed by models/experiments/site_check_preregistration.md


def prevalence_with_interval(p, model: PrevalenceModel, estimator: str | None = None, n_boot: int = 200,
                             seed: int = SEED) -> tuple[float, list[float]]:
    """The estimate and its 95 % percentile bootstrap interval over films (the films' sampling only: a shift the
    estimator does not model is not in it)."""
    fn = ESTIMATORS[estimator or PREVALENCE_ESTIMATOR]
    p = np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    boots = [fn(p[rng.integers(0, len(p), len(p))], model) for _ in range(n_boot)]
    return fn(p, model), [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]


def read_figures(report_dir: Path | None) -> dict:
    """``shift.json`` of a model's reports: validation's and the official test batch's statistics ({} if none)."""
    path = Path(report_dir) / FIGURES_FILE if report_dir is not None else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}
