"""The runtime's numpy metrics (pneumo_core.evaluation.metrics) give scikit-learn's numbers: on the shipped models'
recorded scores (test and validation, both models) and on tie-heavy synthetic scores. scikit-learn lives in the
training and test environment only (requirements-train.txt); these tests need it as the reference."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumo_core.evaluation import metrics
from tests.helpers.support import require

ROOT = Path(__file__).resolve().parents[2]
RECORDED = sorted((ROOT / "models" / "reports").glob("*/*_predictions.csv"))


@pytest.fixture(scope="module")
def skm():
    require(importlib.util.find_spec("sklearn") is not None,
            "scikit-learn (the reference) is not installed: pip install -r requirements-train.txt")
    from sklearn import metrics as skm

    return skm


def _tie_heavy(seed: int, n: int = 400, levels: int = 7):
    """Scores on a few levels (many ties, ties across both classes) and labels that follow them loosely."""
    rng = np.random.default_rng(seed)
    p = rng.integers(0, levels, n) / (levels - 1)
    y = (rng.random(n) < 0.2 + 0.6 * p).astype(int)
    return y, p


def _cases():
    cases = []
    for path in RECORDED:
        df = pd.read_csv(path)
        cases.append((f"{path.parent.name}/{path.name}", df["label"].to_numpy(), df["p_pneumonia"].to_numpy()))
    for seed in range(6):
        cases.append((f"ties{seed}", *_tie_heavy(seed, levels=3 + seed)))
    y, p = _tie_heavy(9)
    cases.append(("float32 scores", y, p.astype(np.float32)))
    cases.append(("one score for all", y, np.full(len(y), 0.5)))
    cases.append(("perfect", np.r_[np.zeros(5, int), np.ones(7, int)], np.r_[np.zeros(5), np.ones(7)]))
    cases.append(("inverted", np.r_[np.zeros(5, int), np.ones(7, int)], np.r_[np.ones(5), np.zeros(7)]))
    return cases


CASES = _cases()


def test_the_recorded_scores_are_there():
    assert len(RECORDED) == 4, RECORDED  # test and validation scores of both shipped models
    assert all(len(pd.read_csv(p)) >= 300 for p in RECORDED)


@pytest.mark.parametrize("name, y, p", CASES, ids=[c[0] for c in CASES])
def test_curves_and_scores_equal_scikit_learn(skm, name, y, p):
    for drop in (True, False):
        for ours, theirs in zip(metrics.roc_curve(y, p, drop_intermediate=drop),
                                skm.roc_curve(y, p, drop_intermediate=drop)):
            np.testing.assert_array_equal(ours, theirs)
    assert metrics.roc_auc(y, p) == skm.roc_auc_score(y, p)
    for ours, theirs in zip(metrics.precision_recall_curve(y, p), skm.precision_recall_curve(y, p)):
        np.testing.assert_array_equal(ours, theirs)
    assert metrics.average_precision(y, p) == skm.average_precision_score(y, p)
    for threshold in (0.0, 0.25, 0.5, float(np.median(p)), 0.9, 1.0):
        called = (p >= threshold).astype(int)
        np.testing.assert_array_equal(metrics.confusion_matrix(y, called),
                                      skm.confusion_matrix(y, called, labels=[0, 1]))
        ours = metrics.metrics_at(y, p, threshold)
        assert ours["accuracy"] == skm.accuracy_score(y, called)
        assert ours["precision"] == skm.precision_score(y, called, zero_division=0)
        assert ours["recall"] == skm.recall_score(y, called, zero_division=0)
        assert ours["f1"] == skm.f1_score(y, called, zero_division=0)


def test_the_threshold_rules_match_the_shipped_reports():
    """The rule on the recorded validation scores gives the threshold each shipped report states."""
    import json

    for variant in ("finetuned", "frozen"):
        folder = ROOT / "models" / "reports" / variant
        val = pd.read_csv(folder / "validation_predictions.csv")
        test = pd.read_csv(folder / "test_predictions.csv")
        shipped = json.loads((folder / "metrics.json").read_text())["at_threshold"]
        threshold = metrics.choose_threshold(val["label"], val["p_pneumonia"])
        assert threshold == pytest.approx(shipped["threshold"], abs=1e-9), variant
        ours = metrics.metrics_at(test["label"], test["p_pneumonia"], shipped["threshold"])
        assert ours["confusion_matrix"] == shipped["confusion_matrix"], variant
        assert ours["auc"] == pytest.approx(shipped["auc"], abs=1e-12), variant


@pytest.mark.parametrize("seed", range(8))
def test_cohen_kappa_equals_scikit_learn(skm, seed):
    from sklearn.exceptions import UndefinedMetricWarning

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    a = (rng.random(n) < rng.random()).astype(int)
    b = np.where(rng.random(n) < 0.7, a, 1 - a)
    for x, z in ((a, b), (a, a), (np.zeros(n, int), np.zeros(n, int)), (np.ones(n, int), np.zeros(n, int))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            theirs = skm.cohen_kappa_score(x, z, labels=[0, 1])
        ours = metrics.cohen_kappa(x, z)
        assert (np.isnan(ours) and np.isnan(theirs)) or ours == theirs, (x, z, ours, theirs)


def test_undefined_figures_are_nan_not_errors():
    y, p = np.zeros(5, int), np.linspace(0, 1, 5)
    assert np.isnan(metrics.roc_auc(y, p))
    fpr, tpr, thr = metrics.roc_curve(y, p)
    assert np.isnan(tpr).all() and thr[0] == np.inf
    assert np.isnan(metrics.cohen_kappa([], []))
    with pytest.raises(ValueError, match="finite"):
        metrics.roc_curve([0, 1], [0.2, np.nan])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        metrics.roc_auc([0, 1], [0.1, 0.2, 0.3])
