"""Metrics against hand-computed values, threshold rules, bootstrap intervals."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumo_core.evaluation import metrics as evaluate

MODELS = Path(__file__).resolve().parents[2] / "models"

Y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
P = np.array([0.1, 0.2, 0.6, 0.3, 0.7, 0.8, 0.4, 0.9, 0.95, 0.65])


def test_metrics_at_threshold_match_hand_counts():
    m = evaluate.metrics_at(Y, P, 0.5)
    # TN=3 (0.1,0.2,0.3) FP=1 (0.6) FN=1 (0.4) TP=5
    assert m["confusion_matrix"] == [[3, 1], [1, 5]]
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(5 / 6)
    assert m["recall"] == pytest.approx(5 / 6)
    assert m["specificity"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(5 / 6)
    # AUC: pairs (pos > neg) / 24
    pairs = sum(p > n for p in P[Y == 1] for n in P[Y == 0]) / 24
    assert m["auc"] == pytest.approx(pairs)


def test_threshold_rules():
    t = evaluate.youden_threshold(Y, P)
    m = evaluate.metrics_at(Y, P, t)
    best = max(evaluate.metrics_at(Y, P, c)["recall"] + evaluate.metrics_at(Y, P, c)["specificity"]
               for c in np.unique(P))
    assert m["recall"] + m["specificity"] == pytest.approx(best)
    assert evaluate.metrics_at(Y, P, evaluate.threshold_for_sensitivity(Y, P, 1.0))["recall"] == 1.0
    assert evaluate.metrics_at(Y, P, evaluate.threshold_for_specificity(Y, P, 1.0))["specificity"] == 1.0
    t95 = evaluate.choose_threshold(Y, P)
    assert evaluate.metrics_at(Y, P, t95)["recall"] >= 0.95
    assert all(evaluate.metrics_at(Y, P, c)["recall"] < 0.95 for c in np.unique(P) if c > t95)
    ops = evaluate.operating_points(Y, P)
    assert set(ops) >= {"default (95% sensitivity)", "balanced (Youden)", "high sensitivity (98%)",
                        "high specificity (99%)", "0.5"}


@pytest.mark.parametrize("target", [0.9, 0.95, 0.98])
@pytest.mark.slow
def test_threshold_rules_are_exact_inside_runs_of_one_class(target):
    """The rules must find the extreme threshold even when it lies between two ROC corners
    (a run of positives, or of negatives, with no film of the other class among them): the
    case scikit-learn's default ROC drops, which once moved the shipped threshold."""
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(40, int), np.ones(120, int)]
    p = np.round(np.r_[rng.uniform(0.0, 0.6, 40), rng.uniform(0.3, 1.0, 120)], 3)  # rounding makes ties
    cand = np.unique(p)
    sens = np.array([evaluate.metrics_at(y, p, c)["recall"] for c in cand])
    spec = np.array([evaluate.metrics_at(y, p, c)["specificity"] for c in cand])
    assert evaluate.threshold_for_sensitivity(y, p, target) == pytest.approx(cand[sens >= target].max())
    assert evaluate.threshold_for_specificity(y, p, target) == pytest.approx(cand[spec >= target].min())
    # Hand-made case: 20 positives in one run between two negatives; 95 % of 20 is 19 films,
    # so the threshold is the 19th-highest positive score (0.52), not the run's bottom (0.51).
    y2 = np.r_[0, np.ones(20, int), 0]
    p2 = np.r_[0.9, np.linspace(0.70, 0.51, 20), 0.05]
    assert evaluate.threshold_for_sensitivity(y2, p2, 0.95) == pytest.approx(0.52)


@pytest.mark.parametrize("variant", ["frozen", "finetuned"])
def test_shipped_threshold_is_the_rule_applied_to_its_saved_validation_scores(variant):
    """The shipped threshold, its report and the rule's code must agree: re-deriving the
    threshold from the saved validation scores gives the one the dashboard and CLI use."""
    reports = MODELS / "reports" / variant
    info = json.loads((reports / "training.json").read_text())
    val = pd.read_csv(reports / "validation_predictions.csv")
    assert info["threshold"] == pytest.approx(evaluate.choose_threshold(val.label, val.p_pneumonia), abs=1e-6)
    assert info["threshold_rule"] == evaluate.THRESHOLD_RULE
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["at_threshold"]["threshold"] == pytest.approx(info["threshold"], abs=1e-6)


@pytest.mark.slow
def test_patient_bootstrap_keeps_a_patients_films_together():
    """Five films per patient with the same label and nearly the same score are one piece of
    evidence, not five: resampling patients must give intervals about sqrt(5) times wider than
    resampling films, which would overstate the precision."""
    rng = np.random.default_rng(1)
    y_pat = rng.integers(0, 2, 80)
    p_pat = np.clip(y_pat * 0.35 + rng.uniform(0, 0.65, 80), 0, 1)
    y, p = np.repeat(y_pat, 5), np.repeat(p_pat, 5) + rng.normal(0, 1e-3, 400)
    patients = np.repeat([f"person{i}" for i in range(80)], 5)
    by_film = evaluate.bootstrap_ci(y, p, 0.5, n_boot=400)
    by_patient = evaluate.bootstrap_ci(y, p, 0.5, n_boot=400, groups=patients)
    for k in ("accuracy", "auc"):
        assert (by_patient[k][1] - by_patient[k][0]) > 1.6 * (by_film[k][1] - by_film[k][0]), k
    report = evaluate.full_report(y, p, 0.5, n_boot=50, groups=patients)
    assert report["bootstrap_unit"].startswith("patients (80,")


def test_bootstrap_ci_contains_point_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.4 + rng.uniform(0, 0.6, 400), 0, 1)
    m = evaluate.metrics_at(y, p, 0.5)
    ci = evaluate.bootstrap_ci(y, p, 0.5, n_boot=300)
    small = evaluate.bootstrap_ci(y[:60], p[:60], 0.5, n_boot=300)
    for k in evaluate.METRIC_NAMES:
        lo, hi = ci[k]
        assert lo <= m[k] <= hi, k
        assert (hi - lo) < (small[k][1] - small[k][0]), k
