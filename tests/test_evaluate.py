"""Metrics against hand-computed values, threshold rules, bootstrap intervals."""
import numpy as np
import pytest

from pneumo_core import evaluate as E

Y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
P = np.array([0.1, 0.2, 0.6, 0.3, 0.7, 0.8, 0.4, 0.9, 0.95, 0.65])


def test_metrics_at_threshold_match_hand_counts():
    m = E.metrics_at(Y, P, 0.5)
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
    t = E.youden_threshold(Y, P)
    m = E.metrics_at(Y, P, t)
    best = max(E.metrics_at(Y, P, c)["recall"] + E.metrics_at(Y, P, c)["specificity"] for c in np.unique(P))
    assert m["recall"] + m["specificity"] == pytest.approx(best)
    assert E.metrics_at(Y, P, E.threshold_for_sensitivity(Y, P, 1.0))["recall"] == 1.0
    assert E.metrics_at(Y, P, E.threshold_for_specificity(Y, P, 1.0))["specificity"] == 1.0
    t95 = E.choose_threshold(Y, P)
    assert E.metrics_at(Y, P, t95)["recall"] >= 0.95
    assert all(E.metrics_at(Y, P, c)["recall"] < 0.95 for c in np.unique(P) if c > t95)
    ops = E.operating_points(Y, P)
    assert set(ops) >= {"default (95% sensitivity)", "balanced (Youden)", "high sensitivity (98%)", "high specificity (99%)", "0.5"}


def test_bootstrap_ci_contains_point_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.4 + rng.uniform(0, 0.6, 400), 0, 1)
    m = E.metrics_at(y, p, 0.5)
    ci = E.bootstrap_ci(y, p, 0.5, n_boot=300)
    small = E.bootstrap_ci(y[:60], p[:60], 0.5, n_boot=300)
    for k in E.METRIC_NAMES:
        lo, hi = ci[k]
        assert lo <= m[k] <= hi, k
        assert (hi - lo) < (small[k][1] - small[k][0]), k
