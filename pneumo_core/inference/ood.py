"""Out-of-distribution check: is this a frontal chest X-ray like the training films?

Mahalanobis distance (Lee et al. 2018) of the image's pooled ``out_relu`` features from the
training films' feature distribution (mean and Ledoit-Wolf shrunk covariance). The rejection
threshold is the distance that accepts ``1 - target_frr`` of the validation films, so the
false-rejection rate is a stated number rather than a guess.
"""
from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_BLAS_LOCK = threading.Lock()
_blas_users = 0  # callers inside _one_blas_thread() right now
_blas_limiter = None  # threadpoolctl's limiter while anyone is inside, else None
_blas_controller = None  # kept: inspecting the loaded libraries takes ~3 ms with TensorFlow loaded
_blas_modules = 0  # len(sys.modules) when it was built: a module imported since may have brought its own BLAS


def _limit_blas_to_one_thread():
    global _blas_controller, _blas_modules
    try:
        if _blas_controller is None or len(sys.modules) != _blas_modules:
            from threadpoolctl import ThreadpoolController

            _blas_controller = ThreadpoolController()
            _blas_modules = len(sys.modules)
        return _blas_controller.limit(limits=1, user_api="blas")
    except Exception:  # threadpoolctl missing or unable to inspect the BLAS: run unlimited
        return None


@contextlib.contextmanager
def _one_blas_thread():
    """Limit BLAS to one thread while any caller is inside; restore it when the last leaves.

    Reference-counted under a lock: a limiter remembers the limit it found on entry, so two
    overlapping limiters (two dashboard sessions) would leave the process on one BLAS thread
    for good if each restored its own."""
    global _blas_users, _blas_limiter
    with _BLAS_LOCK:
        if _blas_users == 0:
            _blas_limiter = _limit_blas_to_one_thread()
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


@dataclass
class MahalanobisOOD:
    """A fitted detector: feature mean, precision matrix, the rejection threshold and its target rate."""

    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    target_frr: float

    @classmethod
    def fit(cls, train_features: np.ndarray, val_features: np.ndarray, target_frr: float = 0.01) -> "MahalanobisOOD":
        """Fit on training features; the threshold accepts ``1 - target_frr`` of the validation features. Training and
        export only (scikit-learn, requirements-train.txt): the runtime loads fitted detectors."""
        from sklearn.covariance import LedoitWolf

        lw = LedoitWolf().fit(train_features.astype(np.float64))
        det = cls(lw.location_.astype(np.float32), lw.precision_.astype(np.float32), np.inf, target_frr)
        det.threshold = float(np.quantile(det.distance(val_features), 1.0 - target_frr))
        return det

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``features`` (pooled, one row an image)."""
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

    def save(self, path: str | Path) -> None:
        """Write the detector as a compressed ``.npz`` (arrays only, no pickle)."""
        np.savez_compressed(path, mean=self.mean, precision=self.precision.astype(np.float32),
                            threshold=self.threshold, target_frr=self.target_frr)

    @classmethod
    def load(cls, path: str | Path) -> "MahalanobisOOD":
        """Read a detector written by :meth:`save` (``allow_pickle=False``)."""
        z = np.load(path, allow_pickle=False)
        return cls(z["mean"], z["precision"], float(z["threshold"]), float(z["target_frr"]))


OOD_REASON = ("does not look like the frontal chest X-rays the model was trained on (its features lie "
              "{d:.0f} units from theirs; images beyond {t:.0f} are refused), so no pneumonia score is given")
