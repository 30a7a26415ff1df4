"""The site tools (pneumo_core.site and ``python -m pneumo_core site``): the shift statistic and the prevalence
estimators on synthetic data where the answer is known, site validation by hand, plain refusals, and the check and
the validation on real films through the library and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pneumo_core.errors import SiteDataError
from pneumo_core.site.calibration import fit_calibration, sigmoid
from pneumo_core.site.shift import ESTIMATORS, PrevalenceModel, ShiftReference, feature_shift
from pneumo_core.site.validation import (
    MIN_READS_PER_CLASS,
    check_reads,
    cohen_kappa,
    draw_reads,
    proposed_threshold,
    site_metrics,
    validate_site,
    weekly_drift,
)
from tests.unit.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assets" / "examples"


# ---------------------------------------------------------------- the shift statistic
@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    return ShiftReference.fit(rng.normal(size=(300, 64)))


def test_films_from_the_training_distribution_show_no_shift(reference):
    same = np.random.default_rng(1).normal(size=(150, 64))
    result = feature_shift(same, reference, permutations=200)
    assert result.p_value > 0.05 and abs(result.statistic) < 0.02 and result.n == 150


def test_moved_films_show_a_shift_that_grows_with_the_move(reference):
    rng = np.random.default_rng(2)
    small, large = (feature_shift(rng.normal(size=(150, 64)) + move, reference, permutations=200)
                    for move in (0.3, 0.8))
    assert small.p_value < 0.01 and large.p_value < 0.01 and large.statistic > small.statistic > 0.02


def test_the_reference_keeps_its_statistic_through_its_float16_file(reference, tmp_path):
    reference.save(tmp_path / "ref.npz")
    again = ShiftReference.load(tmp_path / "ref.npz")
    films = np.random.default_rng(3).normal(size=(80, 64)) + 0.5
    assert feature_shift(films, again).statistic == pytest.approx(feature_shift(films, reference).statistic, abs=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        feature_shift(films[:1], reference)


# ---------------------------------------------------------------- prevalence under pure label shift
@pytest.fixture(scope="module")
def validation_like():
    """Scores of a model whose logit is class-conditionally normal (+-2.5, sd 1.5), at a 74 % pneumonia mix."""
    rng = np.random.default_rng(4)

    def films(n, share):
        y = (rng.random(n) < share).astype(int)
        return y, sigmoid(np.where(y == 1, 2.5, -2.5) + rng.normal(0, 1.5, n) + 1.0)  # + 1: a 50 %-prior bias

    y, p = films(800, 0.74)
    model = PrevalenceModel.fit(y, p, fit_calibration(y, p), threshold=0.5)
    return model, films


@pytest.mark.parametrize("share", [0.3, 0.625])
@pytest.mark.parametrize("name", ["adjusted_count", "probabilistic_adjusted_count", "em_calibrated",
                                  "shifted_mixture"])
def test_consistent_estimators_find_the_share_when_only_the_mix_changes(validation_like, name, share):
    model, films = validation_like
    y, p = films(2000, share)
    assert ESTIMATORS[name](p, model) == pytest.approx(y.mean(), abs=0.04)


def test_counting_labels_is_biased_where_the_adjusted_count_is_not(validation_like):
    model, films = validation_like
    y, p = films(2000, 0.2)
    assert abs(ESTIMATORS["classify_and_count"](p, model) - y.mean()) > 0.05


# ---------------------------------------------------------------- validation against reads, by hand
def test_kappa_and_the_metrics_by_hand():
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.1, 0.1])
    m = site_metrics(y, p, 0.5)
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    assert (m["sensitivity"], m["specificity"], m["ppv"], m["npv"]) == (0.75, 0.75, 0.75, 0.75)
    assert m["kappa"] == pytest.approx(0.5) and m["auc"] == pytest.approx(15 / 16)


def test_one_class_and_too_few_reads_are_refused_in_a_sentence():
    with pytest.raises(SiteDataError, match="all 5 reads are NORMAL"):
        check_reads(np.zeros(5))
    with pytest.raises(SiteDataError, match="at least 20 of each"):
        proposed_threshold(np.r_[np.zeros(5), np.ones(40)], np.linspace(0, 1, 45))
    rng = np.random.default_rng(5)
    y = np.r_[np.zeros(10), np.ones(50)].astype(int)
    result = validate_site(y, np.clip(y * 0.6 + rng.random(60) * 0.5, 0, 1), 0.5, n_boot=50)
    assert result["proposed_threshold"] is None and result["at_proposed"] is None
    assert "10 NORMAL and 50 PNEUMONIA" in result["why_not"] and result["at_active"]["ci95"]["sensitivity"]


def test_the_proposed_threshold_keeps_95_percent_of_the_reads_sensitivity():
    rng = np.random.default_rng(6)
    y = np.r_[np.zeros(MIN_READS_PER_CLASS), np.ones(60)].astype(int)
    p = np.clip(np.where(y == 1, 0.7, 0.3) + rng.normal(0, 0.15, len(y)), 0, 1)
    result = validate_site(y, p, 0.5, n_boot=100)
    t = result["proposed_threshold"]
    assert (p[y == 1] >= t).mean() >= 0.95 > (p[y == 1] >= np.nextafter(t, 1)).mean()
    low, high = result["proposed_threshold_ci95"]
    assert low <= t <= high and result["at_proposed"]["threshold"] == t


def test_a_patient_grouped_draw_keeps_patients_whole_and_is_reproducible():
    patients = np.array([f"P{i // 3}" if i < 60 else f"Q{i}" for i in range(200)], dtype=object)
    mask = draw_reads(patients, 100, seed=24)
    assert 100 <= mask.sum() < 103 and np.array_equal(mask, draw_reads(patients, 100, seed=24))
    assert not set(patients[mask]) & set(patients[~mask])
    assert not np.array_equal(mask, draw_reads(patients, 100, seed=25))


def test_weekly_drift_counts_each_week():
    dates = ["2026-11-30", "2026-12-01", "2026-12-06", "2026-12-07"]  # Mon, Tue, Sun of one week; next Monday
    rows = weekly_drift(dates, [0.9, 0.1, 0.8, 0.2], 0.5, ood_distance=[10, 20, 30, 40])
    assert [(r["week"], r["films"], r["positive_rate"], r["mean_ood_distance"]) for r in rows] == [
        ("2026-11-30", 3, pytest.approx(2 / 3), 20.0), ("2026-12-07", 1, 0.0, 40.0)]


# ---------------------------------------------------------------- real films
def _error_line(res) -> str:
    """The one ``error:`` line of a refused command (LiteRT's own INFO line may precede it), no traceback."""
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr and res.stdout == "", res.stderr
    return errors[0]


def test_the_check_of_the_bundled_films(shipped_predictor):
    from pneumo_core.site.check import check_films

    films = sorted(EXAMPLES.glob("*.jpeg"))
    result = check_films(shipped_predictor, films)
    assert result["n"] == 40 and result["unreadable"] == 0 and result["not_chest_xray"] == 0
    low, high = result["prevalence_ci"]
    assert 0 <= low <= result["prevalence_estimate"] <= high <= 1
    shift = result["feature_shift"]
    assert 0 < shift["p_value"] <= 1 and shift["validation_statistic"] is not None
    assert "cannot say whether the model is right" in result["verdict"]


def test_site_check_cli_on_real_films(tmp_path):
    res = run_cli("site", "check", "--json", EXAMPLES)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert {"n", "threshold", "positive_rate", "prevalence_estimate", "prevalence_ci", "feature_shift",
            "verdict"} <= set(out) and out["n"] == 40
    assert {"statistic", "p_value", "reference_statistic"} <= set(out["feature_shift"])
    assert out["threshold"] == pytest.approx(0.5485, abs=1e-4)

    few = run_cli("site", "check", *sorted(EXAMPLES.glob("*.jpeg"))[:3])
    assert few.returncode == 2 and "at least 10" in _error_line(few)
    missing = run_cli("site", "check", tmp_path / "nowhere")
    assert missing.returncode == 2 and "no such file or folder" in _error_line(missing)


def _site_folder(tmp_path, data_root, normal: int, pneumonia: int) -> Path:
    """A site's labelled folder: links to real test films (nothing copied)."""
    site = tmp_path / "site"
    for cls, k in (("NORMAL", normal), ("PNEUMONIA", pneumonia)):
        (site / cls).mkdir(parents=True)
        for film in sorted((data_root / "test" / cls).glob("*.jpeg"))[:k]:
            (site / cls / film.name).symlink_to(film)
    return site


def test_site_validate_cli_on_real_films(tmp_path, data_root):
    site = _site_folder(tmp_path, data_root, 25, 25)
    res = run_cli("site", "validate", "--json", "--bootstrap", "100", "--data", site)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["n"] == 50 and out["rule"].startswith("the highest threshold")
    for block in ("at_active", "at_proposed"):
        assert {"threshold", "sensitivity", "specificity", "ppv", "npv", "auc", "ci95"} <= set(out[block])
    assert out["at_proposed"]["threshold"] == out["proposed_threshold"]
    assert out["at_proposed"]["sensitivity"] >= 0.95


def test_site_validate_cli_says_plainly_what_it_cannot_do(tmp_path, data_root):
    few = run_cli("site", "validate", "--json", "--bootstrap", "0", "--data", _site_folder(tmp_path, data_root, 5, 8))
    assert few.returncode == 0, few.stderr
    out = json.loads(few.stdout)
    assert out["proposed_threshold"] is None and "5 NORMAL and 8 PNEUMONIA" in out["why_not"]
    one = _site_folder(tmp_path / "one", data_root, 0, 12)
    (one / "NORMAL" / "notes.txt").write_text("no films yet")
    res = run_cli("site", "validate", "--data", one)
    assert res.returncode == 2 and "all 12 reads are PNEUMONIA" in _error_line(res)


def test_the_shift_references_are_listed_in_the_manifest_and_kept_by_its_writer(tmp_path):
    from pneumo_core.inference.model_files import expected_hash, write_manifest

    manifest = json.loads((ROOT / "models" / "MANIFEST.json").read_text())["ood_detectors"]
    for variant in ("finetuned", "frozen"):
        path = ROOT / "models" / "reports" / variant / "shift_reference.npz"
        assert expected_hash(path, ROOT / "models") == manifest[f"reports/{variant}/shift_reference.npz"]["sha256"]
    (tmp_path / "reports" / "mine").mkdir(parents=True)
    (tmp_path / "reports" / "mine" / "shift_reference.npz").write_bytes(
        (ROOT / "models" / "reports" / "frozen" / "shift_reference.npz").read_bytes())
    assert "reports/mine/shift_reference.npz" in write_manifest(tmp_path)["ood_detectors"]


def test_recalibration_from_reads_waits_for_enough_reads():
    from pneumo_core.site.validation import site_recalibration

    rng = np.random.default_rng(7)
    y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    p = sigmoid(np.where(y == 1, 1.0, -1.0) * 3 + rng.normal(0, 1, 60))
    assert site_recalibration(y, p).fitted_on == "site reads"
    with pytest.raises(SiteDataError, match="at least 20 of each"):
        site_recalibration(y[15:], p[15:])


def test_the_verdict_says_what_the_check_cannot_tell():
    from pneumo_core.site.check import verdict

    figures = {"validation": {"statistic": -0.0003},
               "official_test": {"statistic": 0.007, "prevalence_error_points": 20.9}}
    shifted = verdict(50, 0.7, 0.549, 0.8, [0.7, 0.9], {"statistic": 0.02, "p_value": 0.002}, figures, (0.99, 0.78))
    assert "differ from the training films' (p = 0.002)" in shifted and "fell from 99% to 78%" in shifted
    assert "off by +21 points" in shifted and "cannot say whether the model is right" in shifted
    assert "validation films from the training source 0.000" in shifted  # a negative MMD^2 estimate is shown as 0
    quiet = verdict(50, 0.7, 0.549, 0.8, [0.7, 0.9], {"statistic": 0.0, "p_value": 0.4}, {}, None)
    assert "not detectably different" in quiet and "no evidence that the model works" in quiet and "off by" not in quiet
