"""Calibration (pneumo_core.site.calibration): the logistic fit recovers known parameters, ECE and reliability bins
are what their definitions give, and the shipped calibration.json files are reproducible from the validation scores
they were fitted on (test figures reported, never fitted on)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumo_core.site.calibration import (
    Calibration,
    expected_calibration_error,
    fit_calibration,
    fit_logistic,
    load_calibration,
    logit,
    reliability_bins,
    sigmoid,
)

REPORTS = Path(__file__).resolve().parents[2] / "models" / "reports"


def _logistic_sample(slope, bias, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, n)
    y = (rng.random(n) < sigmoid(slope * z + bias)).astype(int)
    return z, y


def test_the_logistic_fit_recovers_the_slope_and_bias_that_made_the_labels():
    z, y = _logistic_sample(0.5, 1.2)
    slope, bias = fit_logistic(z, y)
    assert slope == pytest.approx(0.5, abs=0.03) and bias == pytest.approx(1.2, abs=0.08)
    only_t, none = fit_logistic(z, y, with_bias=False)
    assert none == 0.0 and only_t != pytest.approx(slope, abs=0.01)  # without the offset the slope must make up


def test_calibration_is_monotonic_and_fixes_an_overconfident_model():
    z, y = _logistic_sample(0.5, 0.0, seed=1)
    raw = sigmoid(z)  # twice as confident as the truth
    calibration = fit_calibration(y, raw)
    assert calibration.temperature == pytest.approx(2.0, rel=0.08)
    fixed = calibration.apply(raw)
    assert np.all(np.diff(fixed[np.argsort(raw)]) >= 0)  # the ranking (and so the AUC) is untouched
    assert expected_calibration_error(y, fixed) < 0.02 < expected_calibration_error(y, raw)


def test_one_class_cannot_be_calibrated():
    with pytest.raises(ValueError, match="both classes"):
        fit_calibration(np.ones(10), np.linspace(0.1, 0.9, 10))


def test_ece_and_bins_by_hand():
    p, y = np.array([0.05, 0.15, 0.95]), np.array([0, 1, 1])
    bins = reliability_bins(y, p)
    assert [(b["low"], b["n"], b["observed"]) for b in bins] == [(0.0, 1, 0.0), (0.1, 1, 1.0), (0.9, 1, 1.0)]
    assert expected_calibration_error(y, p) == pytest.approx((0.05 + 0.85 + 0.05) / 3)
    assert reliability_bins(np.array([1]), np.array([1.0]))[0]["low"] == 0.9  # p = 1 falls in the last bin


def test_logit_survives_scores_of_exactly_zero_and_one():
    z = logit([0.0, 1.0])
    assert np.all(np.isfinite(z)) and z[0] < -15 and z[1] > 15


def test_a_calibration_survives_its_file(tmp_path):
    z, y = _logistic_sample(0.7, -0.3, n=2000, seed=2)
    calibration = fit_calibration(y, sigmoid(z))
    calibration.save(tmp_path / "calibration.json")
    again = load_calibration(tmp_path)
    assert again == calibration and load_calibration(tmp_path / "nowhere") is None


@pytest.mark.parametrize("variant", ["finetuned", "frozen"])
def test_the_shipped_calibration_is_the_fit_on_validation_and_reports_test_only(variant):
    from pneumo_core.site.shift import ShiftReference

    shipped = Calibration.load(REPORTS / variant / "calibration.json")
    reference = ShiftReference.load(REPORTS / variant / "shift_reference.npz")  # the runtime's validation scores
    saved = pd.read_csv(REPORTS / variant / "validation_predictions.csv")
    assert np.array_equal(reference.validation_y, saved.label) and shipped.n == len(saved) == 746
    assert np.median(np.abs(reference.validation_p - saved.p_pneumonia)) < 1e-3  # the same films, the same model
    refit = fit_calibration(reference.validation_y, reference.validation_p)
    assert shipped.fitted_on == "validation"
    assert shipped.slope == pytest.approx(refit.slope, rel=1e-6) and shipped.bias == pytest.approx(refit.bias, rel=1e-6)
    figures = shipped.figures
    assert figures["validation"]["log_loss_calibrated"] < figures["validation"]["log_loss_raw"]
    test_key = next(k for k in figures if k.startswith("test"))
    assert "reported only" in test_key and figures[test_key]["n"] == 624
    test = pd.read_csv(REPORTS / variant / "test_predictions.csv")
    assert figures[test_key]["ece_calibrated"] == pytest.approx(
        expected_calibration_error(test.label, refit.apply(test.p_pneumonia)), rel=1e-6)
    assert json.loads((REPORTS / variant / "calibration.json").read_text())["temperature"] == pytest.approx(
        1 / shipped.slope)
