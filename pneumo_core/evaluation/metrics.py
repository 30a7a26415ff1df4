"""Metrics, threshold rules, bootstrap confidence intervals, reports.

The curve and score functions are numpy re-implementations of scikit-learn's binary ``roc_curve``,
``roc_auc_score``, ``precision_recall_curve``, ``average_precision_score``, ``confusion_matrix`` and
``cohen_kappa_score`` (1.9: the same sort, tie grouping and float64 operations, so the same numbers;
tests/unit/test_metrics_numpy.py compares them): the runtime (requirements.txt) has no scikit-learn.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_core.recorded_paths import record

METRIC_NAMES = ("accuracy", "precision", "recall", "specificity", "f1", "auc")
TARGET_SENSITIVITY = 0.95


def threshold_rule(protocol: str | None = "official") -> str:
    """The operating-threshold rule in words, naming how the protocol's validation part was drawn."""
    part = "image-level" if protocol == "image-resplit" else "patient-grouped"
    return f"the highest threshold that keeps sensitivity >= 95% on the {part} validation split"


THRESHOLD_RULE = threshold_rule()
# Why not Youden's J: the validation films are separated almost perfectly, so J is flat over a
# wide range of thresholds and its argmax is arbitrary (0.10 for the fine-tuned model). A
# sensitivity target is a clinical choice, uses the ROC's shape, and leaves margin for the known
# train -> test shift, which turns NORMAL films into false positives.


def _curve_counts(y_true, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positives, true positives, threshold) at each distinct score, highest score first: scores tied
    with each other fall on one side of a threshold together (scikit-learn's confusion_matrix_at_thresholds)."""
    y = np.asarray(y_true).ravel() == 1
    p = np.asarray(p, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} scores")
    if not np.all(np.isfinite(p)):
        raise ValueError("scores must be finite numbers")
    order = np.argsort(-p, kind="stable")  # == a stable descending sort: ties keep their input order
    p, y = p[order], y[order]
    last_of_each = np.r_[np.nonzero(np.diff(p))[0], y.size - 1]
    tps = np.cumsum(y, dtype=np.float64)[last_of_each]
    fps = 1 + last_of_each.astype(np.float64) - tps
    return fps, tps, p[last_of_each]


def roc_curve(y_true, p, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) as ``sklearn.metrics.roc_curve``: the first threshold is ``inf``;
    ``drop_intermediate`` drops points collinear with their neighbours (see :func:`_roc_every_threshold`).
    A class that is absent gives NaN rates."""
    fps, tps, thr = _curve_counts(y_true, p)
    if drop_intermediate and fps.size > 2:
        keep = np.nonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps, tps, thr = np.r_[0.0, fps], np.r_[0.0, tps], np.r_[np.inf, thr]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thr


def roc_auc(y_true, p) -> float:
    """Area under the ROC curve (trapezoids, ties counted half), as ``sklearn.metrics.roc_auc_score``;
    NaN unless both classes are present."""
    if np.unique(np.asarray(y_true)).size != 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(y_true, p)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def precision_recall_curve(y_true, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) as ``sklearn.metrics.precision_recall_curve``: thresholds ascending,
    precision and recall one longer, ending at (1, 0)."""
    fps, tps, thr = _curve_counts(y_true, p)
    called = tps + fps
    precision = np.divide(tps, called, out=np.zeros_like(tps), where=called != 0)
    recall = tps / tps[-1] if tps[-1] != 0 else np.ones_like(tps)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1]


def average_precision(y_true, p) -> float:
    """Average precision (the step integral of the PR curve), as ``sklearn.metrics.average_precision_score``."""
    precision, recall, _ = precision_recall_curve(y_true, p)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def confusion_matrix(y_true, y_pred) -> np.ndarray:
    """Binary confusion matrix [[TN, FP], [FN, TP]] of 0/1 labels (``confusion_matrix(labels=[0, 1])``)."""
    y_true, y_pred = np.asarray(y_true).astype(int).ravel(), np.asarray(y_pred).astype(int).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} labels but {y_pred.size} predictions")
    keep = np.isin(y_true, (0, 1)) & np.isin(y_pred, (0, 1))  # as labels=[0, 1]: other values are not counted
    return np.bincount(2 * y_true[keep] + y_pred[keep], minlength=4).reshape(2, 2)


def cohen_kappa(a, b) -> float:
    """Cohen's kappa between two raters' 0/1 labels, as ``sklearn.metrics.cohen_kappa_score(labels=[0, 1])``;
    NaN where it is undefined (no films, or both raters gave one and the same label throughout)."""
    confusion = confusion_matrix(a, b).astype(np.float64)
    total = confusion.sum()
    if total == 0:
        return float("nan")
    expected = np.outer(confusion.sum(axis=0), confusion.sum(axis=1)) / total
    disagree = 1.0 - np.eye(2)
    chance = np.sum(disagree * expected)
    return float(1 - np.sum(disagree * confusion) / chance) if chance != 0 else float("nan")


def metrics_at(y_true, p, threshold: float) -> dict:
    """Classification metrics of scores ``p`` at ``threshold`` (PNEUMONIA when p >= threshold)."""
    y_true = np.asarray(y_true).astype(int)
    p = np.asarray(p, dtype=float)
    y_pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y_true, y_pred).ravel())
    both = len(np.unique(y_true)) == 2
    n = len(y_true)
    return {
        "threshold": float(threshold),
        "n": int(n),
        "accuracy": float((tp + tn) / n) if n else float("nan"),
        "precision": float(tp / (tp + fp)) if (tp + fp) else 0.0,
        "recall": float(tp / (tp + fn)) if (tp + fn) else 0.0,
        "specificity": float(tn / (tn + fp)) if (tn + fp) else 0.0,
        "f1": float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0,
        "auc": roc_auc(y_true, p) if both else float("nan"),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def bootstrap_ci(y_true, p, threshold: float, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 groups=None) -> dict:
    """Percentile bootstrap CIs for every metric in ``METRIC_NAMES``.

    ``groups`` (e.g. patient ids): resample whole groups, so a patient's films stay together.
    Films of one patient are correlated; resampling them one by one makes the intervals too
    narrow. Without ``groups`` every image is its own unit."""
    y_true = np.asarray(y_true).astype(int)
    p = np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    samples = {k: [] for k in METRIC_NAMES}
    codes = pd.factorize(pd.Series(groups))[0] if groups is not None else np.arange(len(y_true))
    members = pd.Series(np.arange(len(y_true))).groupby(codes).apply(np.asarray).tolist()
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        if len(np.unique(y_true[idx])) < 2:
            continue
        m = metrics_at(y_true[idx], p[idx], threshold)
        for k in METRIC_NAMES:
            samples[k].append(m[k])
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {k: [float(np.percentile(v, lo)), float(np.percentile(v, hi))] for k, v in samples.items()}


def _roc_every_threshold(y_true, p):
    """ROC points at every distinct score. scikit-learn's default drops the points between the
    curve's corners, and with them the highest threshold that still meets a sensitivity target
    (it sits inside a run of positives), so threshold rules must not use the default."""
    return roc_curve(y_true, p, drop_intermediate=False)


def youden_threshold(y_true, p) -> float:
    """The threshold that maximises Youden's J (sensitivity + specificity - 1), at most 1."""
    fpr, tpr, thr = _roc_every_threshold(y_true, p)
    j = tpr - fpr
    best = int(np.argmax(j))
    return float(min(thr[best], 1.0))


def threshold_for_sensitivity(y_true, p, target: float) -> float:
    """The highest threshold whose sensitivity is at least ``target``."""
    fpr, tpr, thr = _roc_every_threshold(y_true, p)
    ok = np.where(tpr >= target)[0]
    return float(min(thr[ok[0]], 1.0))


def threshold_for_specificity(y_true, p, target: float) -> float:
    """The lowest threshold whose specificity is at least ``target``."""
    fpr, tpr, thr = _roc_every_threshold(y_true, p)
    ok = np.where(1 - fpr >= target)[0]
    return float(min(thr[ok[-1]], 1.0))


def choose_threshold(y_true, p, target_sensitivity: float = TARGET_SENSITIVITY) -> float:
    """The product's operating threshold (see ``THRESHOLD_RULE``), from validation scores."""
    return threshold_for_sensitivity(y_true, p, target_sensitivity)


def operating_points(y_true, p) -> dict:
    """Named thresholds chosen on validation scores, with the validation sens/spec they give."""
    points = {
        "default (95% sensitivity)": choose_threshold(y_true, p),
        "balanced (Youden)": youden_threshold(y_true, p),
        "high sensitivity (98%)": threshold_for_sensitivity(y_true, p, 0.98),
        "high specificity (99%)": threshold_for_specificity(y_true, p, 0.99),
        "0.5": 0.5,
    }
    out = {}
    for name, t in points.items():
        m = metrics_at(y_true, p, t)
        out[name] = {"threshold": t, "val_sensitivity": m["recall"], "val_specificity": m["specificity"]}
    return out


def roc_points(y_true, p) -> pd.DataFrame:
    """The ROC curve as a table: ``fpr``, ``tpr`` and ``threshold`` (capped at 1)."""
    fpr, tpr, thr = roc_curve(y_true, p)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thr, 1.0)})


def full_report(y_true, p, threshold: float, n_boot: int = 1000, groups=None) -> dict:
    """Metrics at the chosen threshold and at 0.5, each with bootstrap CIs (``ci95`` is None
    when ``n_boot`` is 0; ``groups``: resampling unit, see :func:`bootstrap_ci`). Both classes
    must be present: AUC, sensitivity and specificity are undefined otherwise."""
    y = np.asarray(y_true).astype(int)
    counts = np.bincount(y, minlength=2)
    if counts.min() == 0:
        raise ValueError(f"evaluation needs films of both classes; got {counts[0]} NORMAL and {counts[1]} "
                         "PNEUMONIA (use predict to label a one-class folder)")

    def block(t):
        return {**metrics_at(y, p, t), "ci95": bootstrap_ci(y, p, t, n_boot, groups=groups) if n_boot > 0 else None}

    n_groups = len(y) if groups is None else pd.Series(groups).nunique()
    # File names without a known patient prefix are their own group: that is resampling images.
    unit = "images" if n_groups == len(y) else f"patients ({n_groups}, each with all its films)"
    return {"bootstrap_resamples": int(n_boot), "bootstrap_unit": unit,
            "at_threshold": block(threshold), "at_0.5": block(0.5)}


def write_report(out_dir: str | Path, predictions: pd.DataFrame, threshold: float, meta: dict,
                 n_boot: int = 1000) -> dict:
    """Write ``metrics.json``, ``test_predictions.csv`` and ``roc_curve.csv`` into ``out_dir``.

    ``predictions`` has columns ``file``, ``label``, ``p_pneumonia`` and, for patient-level
    confidence intervals, ``patient``.
    """
    y, p = predictions["label"].to_numpy(), predictions["p_pneumonia"].to_numpy()
    groups = predictions["patient"].to_numpy() if "patient" in predictions else None
    # Computed before anything is written: a refused split leaves nothing behind.
    report = {**record(meta), **full_report(y, p, threshold, n_boot, groups=groups)}  # no machine paths
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    predictions.assign(predicted=(p >= threshold).astype(int)).to_csv(out_dir / "test_predictions.csv", index=False)
    roc_points(y, p).to_csv(out_dir / "roc_curve.csv", index=False)
    return report
