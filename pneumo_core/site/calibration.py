"""Calibrated probabilities: logistic recalibration of the model's logit, fitted on validation only; ECE and
reliability bins.

The shipped models were trained with balanced class weights, so their raw scores are posteriors for a 50 %
pneumonia prior, not for the training mix (74 %). Plain temperature scaling (logit / T) can only stretch the
logit, so it spends its one parameter on that offset; logistic calibration (Platt 1999) fits
``sigmoid(a * logit + b)``: ``a = 1 / T`` is the temperature, ``b`` the prior offset. Both are fitted by
Newton's method on the validation log-loss (convex in (a, b)), in numpy: no scipy on the runtime path. The
calibrated probability is a posterior for the validation mix (``Calibration.prevalence``), which is the prior
EM starts from (:mod:`pneumo_core.site.shift`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

_CLIP = 1e-7
CALIBRATION_FILE = "calibration.json"
ECE_BINS = 10


def logit(p) -> np.ndarray:
    """log(p / (1 - p)), with ``p`` clipped to [1e-7, 1 - 1e-7] (float32 scores reach exactly 0 and 1)."""
    p = np.clip(np.asarray(p, dtype=float), _CLIP, 1 - _CLIP)
    return np.log(p) - np.log1p(-p)


def sigmoid(z) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))  # no overflow warning for large |z|


def log_loss(y, p) -> float:
    """Mean negative log-likelihood of labels ``y`` (0/1) under probabilities ``p``."""
    y, p = np.asarray(y, dtype=float), np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def fit_logistic(z, y, with_bias: bool = True, max_iter: int = 100) -> tuple[float, float]:
    """(a, b) minimising the log-loss of ``sigmoid(a * z + b)`` on labels ``y`` (b = 0 when not ``with_bias``):
    Newton's method with step halving, from (1, 0). Raises ValueError with one class only."""
    z, y = np.asarray(z, dtype=float), np.asarray(y, dtype=float)
    if z.size == 0 or y.min() == y.max():
        raise ValueError("calibration needs films of both classes")
    design = np.column_stack([z, np.ones_like(z)]) if with_bias else z[:, None]
    w = np.array([1.0, 0.0]) if with_bias else np.array([1.0])

    def loss(w):
        return log_loss(y, sigmoid(design @ w))

    current = loss(w)
    for _ in range(max_iter):
        q = sigmoid(design @ w)
        grad = design.T @ (q - y) / len(y)
        hess = (design * (q * (1 - q))[:, None]).T @ design / len(y) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        for _ in range(50):  # halve until the loss does not rise (a separable set would run away)
            trial = w - step
            if loss(trial) <= current + 1e-12:
                break
            step = step / 2
        w, previous, current = trial, current, loss(trial)
        if abs(previous - current) < 1e-12 and np.max(np.abs(step)) < 1e-8:
            break
    return float(w[0]), float(w[1]) if with_bias else 0.0


@dataclass(frozen=True)
class Calibration:
    """``sigmoid(slope * logit(p) + bias)``; fitted on ``fitted_on`` (n films, pneumonia share ``prevalence``)."""

    slope: float
    bias: float
    prevalence: float
    n: int
    method: str = "logistic (Platt) on the logit: temperature 1/slope and a prior offset"
    fitted_on: str = "validation"
    figures: dict = field(default_factory=dict)  # ECE and log-loss before/after, on validation and test

    @property
    def temperature(self) -> float:
        return 1.0 / self.slope

    def apply(self, p) -> np.ndarray:
        """Calibrated probabilities for raw scores ``p``."""
        return sigmoid(self.slope * logit(p) + self.bias)

    def to_json(self) -> dict:
        return {**asdict(self), "temperature": self.temperature}

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        fields = ("slope", "bias", "prevalence", "n", "method", "fitted_on", "figures")
        return cls(**{k: data[k] for k in fields if k in data})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        return cls.from_json(json.loads(Path(path).read_text()))


def fit_calibration(y, p, fitted_on: str = "validation") -> Calibration:
    """Logistic calibration of raw scores ``p`` on labels ``y`` (the module docstring says why not T alone)."""
    y = np.asarray(y).astype(int)
    slope, bias = fit_logistic(logit(p), y)
    return Calibration(slope, bias, float(y.mean()), int(len(y)), fitted_on=fitted_on)


def reliability_bins(y, p, bins: int = ECE_BINS) -> list[dict]:
    """Equal-width bins of ``p`` over [0, 1]: each non-empty bin's range, film count, mean predicted probability
    and observed pneumonia share (a reliability diagram's points)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for k in range(bins):
        inside = which == k
        if inside.any():
            out.append({"low": k / bins, "high": (k + 1) / bins, "n": int(inside.sum()),
                        "mean_p": float(p[inside].mean()), "observed": float(y[inside].mean())})
    return out


def expected_calibration_error(y, p, bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): the film-weighted mean |observed share - mean probability| over equal-width bins."""
    n = len(np.asarray(p))
    return float(sum(b["n"] * abs(b["observed"] - b["mean_p"]) for b in reliability_bins(y, p, bins)) / n)


def calibration_figures(y, p, calibration: Calibration) -> dict:
    """ECE and log-loss of the raw and the calibrated scores on one labelled set, with the reliability bins."""
    q = calibration.apply(p)
    return {"n": int(len(y)), "ece_raw": expected_calibration_error(y, p),
            "ece_calibrated": expected_calibration_error(y, q),
            "log_loss_raw": log_loss(y, p), "log_loss_calibrated": log_loss(y, q),
            "reliability_raw": reliability_bins(y, p), "reliability_calibrated": reliability_bins(y, q)}


def load_calibration(report_dir: Path | None) -> Calibration | None:
    """The model's calibration (``reports/<model>/calibration.json``), or None when it has none."""
    if report_dir is None or not (Path(report_dir) / CALIBRATION_FILE).is_file():
        return None
    return Calibration.load(Path(report_dir) / CALIBRATION_FILE)
