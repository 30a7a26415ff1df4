"""The model against a site's own reads: metrics with bootstrap intervals, agreement, the proposed site threshold by
the shipped rule, the confusion matrices at both thresholds, and drift over time. Pure computations on arrays and
rows (labels 0 NORMAL / 1 PNEUMONIA as the site read them, the model's raw scores); the page and the database that
hold the reads call these.

A site with one class only, or too few reads of a class for a threshold, is refused with a plain sentence
(:class:`~pneumo_core.errors.SiteDataError`), never a figure that means nothing.
"""
from __future__ import annotations

import numpy as np

from pneumo_core.errors import SiteDataError
from pneumo_core.evaluation.metrics import TARGET_SENSITIVITY, choose_threshold, cohen_kappa, metrics_at

#: Reads of each class before a site threshold is proposed: with 20 pneumonia reads the 95 % sensitivity rule can
#: leave one film missed (fewer, and it means "miss none"); with 20 normal reads the specificity it buys is
#: measured to about +-20 points, the least that says anything.
MIN_READS_PER_CLASS = 20
SITE_RULE = (f"the highest threshold that keeps sensitivity >= {TARGET_SENSITIVITY:.0%} on the site's own reads, "
             f"proposed once there are at least {MIN_READS_PER_CLASS} reads of each class")
FIELDS = ("sensitivity", "specificity", "ppv", "npv", "auc", "kappa")
N_BOOT = 1000
SEED = 24


def _counts(y: np.ndarray) -> tuple[int, int]:
    return int((y == 0).sum()), int((y == 1).sum())


def check_reads(y, minimum: int = 1) -> np.ndarray:
    """Labels as an int array, or :class:`SiteDataError` when a class has fewer than ``minimum`` reads."""
    y = np.asarray(y).astype(int).ravel()
    normal, pneumonia = _counts(y)
    if normal == 0 or pneumonia == 0:
        only = "NORMAL" if pneumonia == 0 else "PNEUMONIA"
        raise SiteDataError(f"all {len(y)} reads are {only}: sensitivity, specificity and AUC need reads of both "
                            "classes")
    if min(normal, pneumonia) < minimum:
        raise SiteDataError(f"{normal} NORMAL and {pneumonia} PNEUMONIA reads: a site threshold needs at least "
                            f"{minimum} of each (the rule: {SITE_RULE})")
    return y


def site_metrics(y, p, threshold: float) -> dict:
    """The model at ``threshold`` against reads ``y``: sensitivity, specificity, PPV, NPV, AUC, kappa and the
    confusion matrix [[TN, FP], [FN, TP]]. Undefined ratios (no predicted positives: PPV) are NaN."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    m = metrics_at(y, p, threshold)
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    return {"threshold": float(threshold), "n": int(len(y)),
            "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "specificity": tn / (tn + fp) if tn + fp else float("nan"),
            "ppv": tp / (tp + fp) if tp + fp else float("nan"), "npv": tn / (tn + fn) if tn + fn else float("nan"),
            "auc": m["auc"], "kappa": cohen_kappa(y, (p >= threshold).astype(int)),
            "confusion_matrix": m["confusion_matrix"]}


def bootstrap_intervals(y, p, threshold: float, groups=None, n_boot: int = N_BOOT, seed: int = SEED) -> dict:
    """95 % percentile bootstrap intervals of :data:`FIELDS`, resampling whole ``groups`` (patients) when given."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    codes = np.unique(np.asarray(groups), return_inverse=True)[1] if groups is not None else np.arange(len(y))
    members = [np.where(codes == g)[0] for g in range(codes.max() + 1)]
    rng = np.random.default_rng(seed)
    draws = {k: [] for k in FIELDS}
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        if len(np.unique(y[idx])) < 2:
            continue
        m = site_metrics(y[idx], p[idx], threshold)
        for k in FIELDS:
            draws[k].append(m[k])
    return {k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))] if v else None
            for k, v in draws.items()}


def at_threshold(y, p, threshold: float, groups=None, n_boot: int = N_BOOT) -> dict:
    """:func:`site_metrics` with ``ci95`` (None when ``n_boot`` is 0)."""
    return {**site_metrics(y, p, threshold),
            "ci95": bootstrap_intervals(y, p, threshold, groups, n_boot) if n_boot else None}


def proposed_threshold(y, p, minimum: int = MIN_READS_PER_CLASS) -> float:
    """The site threshold by the shipped rule (:data:`SITE_RULE`) from the site's reads ``y`` and scores ``p``."""
    y = check_reads(y, minimum)
    return choose_threshold(y, np.asarray(p, dtype=float))


def threshold_interval(y, p, groups=None, n_boot: int = N_BOOT, seed: int = SEED) -> list[float]:
    """95 % bootstrap interval of the proposed threshold (resampled reads, whole patients when ``groups``)."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    codes = np.unique(np.asarray(groups), return_inverse=True)[1] if groups is not None else np.arange(len(y))
    members = [np.where(codes == g)[0] for g in range(codes.max() + 1)]
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        if min(_counts(y[idx])) > 0:
            found.append(choose_threshold(y[idx], p[idx]))
    return [float(np.percentile(found, 2.5)), float(np.percentile(found, 97.5))]


def validate_site(y, p, active_threshold: float, groups=None, n_boot: int = N_BOOT,
                  minimum: int = MIN_READS_PER_CLASS) -> dict:
    """Everything the site validation shows: the model at the active threshold; the proposed threshold, its
    interval and the model at it once ``minimum`` reads of each class exist (else ``proposed_threshold`` is None
    and ``why_not`` says why); the ROC curve's points. One class only raises :class:`SiteDataError`."""
    from pneumo_core.evaluation.metrics import roc_points

    y, p = check_reads(y), np.asarray(p, dtype=float)
    normal, pneumonia = _counts(y)
    out = {"n": int(len(y)), "counts": {"NORMAL": normal, "PNEUMONIA": pneumonia}, "rule": SITE_RULE,
           "at_active": at_threshold(y, p, active_threshold, groups, n_boot),
           "proposed_threshold": None, "proposed_threshold_ci95": None, "at_proposed": None, "why_not": None}
    try:
        proposed = proposed_threshold(y, p, minimum)
    except SiteDataError as exc:
        out["why_not"] = str(exc)
    else:
        out.update(proposed_threshold=proposed, at_proposed=at_threshold(y, p, proposed, groups, n_boot),
                   proposed_threshold_ci95=threshold_interval(y, p, groups, n_boot) if n_boot else None)
    out["roc"] = roc_points(y, p).to_dict(orient="list")
    return out


def draw_reads(patients, n: int = 100, seed: int = SEED) -> np.ndarray:
    """A patient-grouped draw: the patients (sorted ids, shuffled with ``seed``) in order until their films reach
    at least ``n``; a boolean mask over the films."""
    patients = np.asarray(patients, dtype=object)
    order = np.array(sorted(set(patients)), dtype=object)
    np.random.default_rng(seed).shuffle(order)
    chosen, total = set(), 0
    for patient in order:
        if total >= n:
            break
        chosen.add(patient)
        total += int((patients == patient).sum())
    return np.array([pt in chosen for pt in patients])


def weekly_drift(dates, p, threshold: float, ood_distance=None) -> list[dict]:
    """Per ISO week of ``dates`` (anything pandas reads as a date): films scored, the share called PNEUMONIA at
    ``threshold``, and the mean OOD distance when given. Oldest week first."""
    import pandas as pd

    frame = pd.DataFrame({"week": pd.to_datetime(pd.Series(dates)).dt.to_period("W-SUN").dt.start_time,
                          "positive": np.asarray(p, dtype=float) >= threshold,
                          "ood": np.asarray(ood_distance, dtype=float) if ood_distance is not None else np.nan})
    rows = []
    for week, part in frame.groupby("week", sort=True):
        rows.append({"week": week.date().isoformat(), "films": int(len(part)),
                     "positive_rate": float(part.positive.mean()),
                     "mean_ood_distance": float(part.ood.mean()) if part.ood.notna().any() else None})
    return rows


def site_recalibration(y, p, minimum: int = MIN_READS_PER_CLASS):
    """The model's calibration refitted on the site's reads (:func:`calibration.fit_calibration`) once ``minimum``
    reads of each class exist; :class:`SiteDataError` before."""
    from pneumo_core.site.calibration import fit_calibration

    return fit_calibration(check_reads(y, minimum), p, fitted_on="site reads")
