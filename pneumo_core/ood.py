"""Out-of-distribution check: is this a frontal chest X-ray like the training films?

Mahalanobis distance (Lee et al. 2018) of the image's pooled ``out_relu`` features from the
training films' feature distribution (mean and Ledoit-Wolf shrunk covariance). The rejection
threshold is the distance that accepts ``1 - target_frr`` of the validation films, so the
false-rejection rate is a stated number rather than a guess.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


_BLAS = None


def _one_blas_thread():
    """Context manager limiting BLAS to one thread (threadpoolctl, a scikit-learn dependency)."""
    global _BLAS
    try:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        return _BLAS.limit(limits=1, user_api="blas")
    except Exception:  # threadpoolctl missing or unable to inspect the BLAS: run unlimited
        import contextlib

        return contextlib.nullcontext()


@dataclass
class MahalanobisOOD:
    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    target_frr: float

    @classmethod
    def fit(cls, train_features: np.ndarray, val_features: np.ndarray, target_frr: float = 0.01) -> "MahalanobisOOD":
        from sklearn.covariance import LedoitWolf

        lw = LedoitWolf().fit(train_features.astype(np.float64))
        det = cls(lw.location_.astype(np.float32), lw.precision_.astype(np.float32), np.inf, target_frr)
        det.threshold = float(np.quantile(det.distance(val_features), 1.0 - target_frr))
        return det

    def distance(self, features: np.ndarray) -> np.ndarray:
        # An ensemble's pooled features are its members' side by side; the detector was fitted
        # on the first member's (the first len(mean) columns), so only those are compared.
        features = np.atleast_2d(np.asarray(features, np.float32))[:, : self.mean.shape[0]]
        d = features - self.mean
        # (d @ P) * d summed: one BLAS matmul; a three-operand einsum loops naively (~1 ms a row).
        # One BLAS thread: the matmul is small, and multi-threaded OpenBLAS spinning against
        # TensorFlow's or the decoder's threads on a 2-core machine took ~8 ms instead of 0.1 ms.
        with _one_blas_thread():
            dp = d @ self.precision
        return np.sqrt(np.maximum(np.einsum("ij,ij->i", dp, d), 0.0))

    def is_in_distribution(self, features: np.ndarray) -> np.ndarray:
        return self.distance(features) <= self.threshold

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, mean=self.mean, precision=self.precision.astype(np.float32),
                            threshold=self.threshold, target_frr=self.target_frr)

    @classmethod
    def load(cls, path: str | Path) -> "MahalanobisOOD":
        z = np.load(path, allow_pickle=False)
        return cls(z["mean"], z["precision"], float(z["threshold"]), float(z["target_frr"]))


OOD_REASON = ("does not look like a frontal chest X-ray: far from the training films' feature "
              "distribution (distance {d:.0f} > limit {t:.0f}); no pneumonia score is given")
