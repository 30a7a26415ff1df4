"""pneumo_core.review.decisions: what the dashboard says about each film and model, checked without Streamlit
on the shipped models' saved scores and reports, and on predictions made by hand."""
from __future__ import annotations

from pathlib import Path

import pytest

from pneumo_core.evaluation.metrics import metrics_at
from pneumo_core.evaluation.reports import load_reports
from pneumo_core.inference.predictor import Prediction
from pneumo_core.review import decisions as review
from tests.helpers.support import require

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


@pytest.fixture(scope="module")
def reps():
    loaded = load_reports(MODELS)
    require(all(r.available for r in loaded.values()), "shipped models and their reports needed")
    return loaded


def scored(p: float, notes=()) -> Prediction:
    return Prediction(file="a.png", p_pneumonia=p, model="finetuned", notes=list(notes))


def test_decision_and_flag_follow_the_threshold():
    pred = scored(0.6, notes=["converted from 16-bit"])
    assert review.decision(pred, 0.6)["label"] == "PNEUMONIA"  # p >= threshold
    assert review.decision(pred, 0.6001)["label"] == "NORMAL"
    assert review.flag_for(pred, 0.59) == "near threshold: review; converted from 16-bit"
    assert review.flag_for(scored(0.99), 0.3) == "ok"
    refused = Prediction(file="cat.png", error="does not look like a chest X-ray", is_chest_xray=False)
    broken = Prediction(file="x.png", error="not an image")
    assert review.decision(refused, 0.5) == {"label": None, "p": None, "confidence": None}
    assert review.flag_for(refused, 0.5) == "not a chest X-ray" and review.flag_for(broken, 0.5) == "unreadable file"


def test_review_rows_carry_provenance():
    rows = review.review_rows([scored(0.9), Prediction(file="x.png", error="not an image", model="finetuned")],
                              0.5491, "balanced", "ab" * 32)
    assert list(rows.columns) == review.REVIEW_COLUMNS
    assert list(rows["label"]) == ["PNEUMONIA", ""] and rows["p_pneumonia"].isna().tolist() == [False, True]
    assert set(rows["threshold"]) == {0.5491} and set(rows["operating_point"]) == {"balanced"}
    assert set(rows["use"]) == {"research and teaching only; not a diagnostic device"}
    assert rows["error"][1] == "not an image" and rows["model_sha256"][0] == "ab" * 32
    assert review.review_rows([], 0.5).empty


@pytest.mark.parametrize("split", ["test", "validation"])
def test_rates_at_equal_metrics_at_on_saved_scores(reps, split):
    for rep in reps.values():
        table = rep.test_predictions if split == "test" else rep.validation
        require(table is not None and len(table), f"{rep.variant}: saved {split} scores needed")
        scores = table["p_pneumonia"].to_numpy()
        # every score as a threshold too: a film exactly on the threshold is called PNEUMONIA
        for threshold in [0.0, 0.001, 0.5, rep.threshold, 0.999, 1.0, *scores[:20]]:
            fast = review.rates_at(table["label"], scores, threshold)
            slow = metrics_at(table["label"], scores, threshold)
            assert fast["confusion_matrix"] == slow["confusion_matrix"]
            assert fast["sensitivity"] == pytest.approx(slow["recall"])
            assert fast["specificity"] == pytest.approx(slow["specificity"])


def test_rates_at_with_one_class_and_npv():
    assert review.rates_at([1, 1], [0.2, 0.9], 0.5) == {"confusion_matrix": [[0, 0], [1, 1]], "n": 2,
                                                          "sensitivity": 0.5, "specificity": 0.0}
    assert review.npv([[30, 5], [10, 55]]) == pytest.approx(0.75)
    assert review.npv([[0, 5], [0, 55]]) == 0.0


def test_models_overview_from_reports(reps):
    from pneumo_core.inference.model_files import sha256_file

    hashed = []

    def sha256_of(path):
        hashed.append(Path(path).name)
        return sha256_file(path)

    overview = review.models_overview(reps, sha256_of)
    assert sorted(hashed) == ["finetuned.keras", "frozen.keras"]
    for rep in reps.values():
        row = overview[overview["model"] == rep.name].iloc[0]
        assert row["file"] == f"models/{rep.variant}.keras" and row["status"] == "ready"
        assert row["matches evaluated model"] == "yes"
        assert row["test AUC"] == pytest.approx(rep.metrics["at_threshold"]["auc"], abs=5e-4)
    stale = review.models_overview(reps, lambda path: "0" * 64)
    assert set(stale["matches evaluated model"]) == {"NO: reports are stale"}


def test_shift_summary_and_ci_caption(reps):
    rep = reps["finetuned"]
    require(rep.training.get("validation") is not None, "validation figures in training.json needed")
    test = rep.metrics["at_threshold"]
    (tn, fp), (fn, tp) = test["confusion_matrix"]
    sentence = review.shift_summary(reps)
    assert f"{fp} of {tn + fp} normal films are called PNEUMONIA" in sentence
    assert f"{test['specificity']:.1%}" in sentence and f"threshold {test['threshold']:.3f}" in sentence
    assert review.shift_summary({}) == ""
    caption = review.ci_caption(reps)
    assert caption.startswith("Error bars: 95% percentile bootstrap") or "none" in caption


def test_small_helpers():
    assert review.plural(1, "file") == "1 file" and review.plural(3, "file") == "3 files"
    assert review.safe_file_stem("../chest x-ray (1).png") == "chest_x-ray__1_"
    assert review.safe_file_stem("") == "study" and len(review.safe_file_stem("a" * 200 + ".png")) == 80
