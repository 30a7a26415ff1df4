"""Reader statistics on small cases worked out by hand (pneumo_core.quiz.reader_study, quiz_report)."""
import json
import math

import pandas as pd
import pytest

from pneumo_core.quiz import reader_study as rs
from pneumo_core.quiz.report import results_json, results_text
from pneumo_core.quiz.rules import QuizResults

THRESHOLD = 0.5
# Truth P P P N N N; model scores give labels P P N P N N at 0.5.
FILMS = pd.DataFrame({
    "position": [1, 2, 3, 4, 5, 6],
    "example": [f"Example {k}" for k in (7, 2, 9, 4, 5, 1)],
    "truth": ["PNEUMONIA"] * 3 + ["NORMAL"] * 3,
    "subtype": ["viral", "bacterial", "bacterial", "normal", "normal", "normal"],
    "p_finetuned": [0.95, 0.60, 0.30, 0.70, 0.20, 0.05],
    "p_frozen": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
})
A = [("PNEUMONIA", 5), ("PNEUMONIA", 2), ("NORMAL", 3), ("PNEUMONIA", 1), ("NORMAL", 4), ("NORMAL", 5)]
B = [("NORMAL", 1), ("PNEUMONIA", 3), ("PNEUMONIA", 4), ("NORMAL", 2), ("PNEUMONIA", 5), ("NORMAL", 1)]
ANSWERS = pd.DataFrame(
    [("ann", p, a, c) for p, (a, c) in enumerate(A, 1)] + [("bob", p, a, c) for p, (a, c) in enumerate(B, 1)]
    + [("cy", 3, "NORMAL", 2)],
    columns=["nickname", "position", "answer", "confidence"])


def test_ratings_run_from_surest_normal_to_surest_pneumonia():
    order = [rs.rating("NORMAL", c) for c in (5, 4, 3, 2, 1)] + [rs.rating("PNEUMONIA", c) for c in (1, 2, 3, 4, 5)]
    assert order == list(range(1, 11))
    with pytest.raises(ValueError):
        rs.rating("PNEUMONIA", 6)
    with pytest.raises(ValueError):
        rs.rating("unsure", 3)


def test_each_readers_figures_match_the_hand_count():
    table = rs.reader_table(FILMS, ANSWERS, THRESHOLD).set_index("nickname")
    ann, bob, cy = table.loc["ann"], table.loc["bob"], table.loc["cy"]
    # ann: TP 2, FN 1 (film 3), FP 1 (film 4), TN 2; ratings P {10, 7, 3} vs N {6, 2, 1}: 8 of 9 pairs.
    assert (ann.answered, ann.correct) == (6, 4)
    assert (ann.sensitivity, ann.specificity, ann.fpr) == pytest.approx((2 / 3, 2 / 3, 1 / 3))
    assert ann.auc == pytest.approx(8 / 9)
    assert ann.kappa == pytest.approx(1.0)  # her labels are the model's, film for film
    # bob: ratings P {5, 8, 9} vs N {4, 10, 5}: 5.5 of 9 pairs (one tie); agrees with the model on 2 of 6
    # films with both saying PNEUMONIA half the time: kappa = (1/3 - 1/2) / (1 - 1/2) = -1/3.
    assert (bob.sensitivity, bob.specificity) == pytest.approx((2 / 3, 2 / 3))
    assert bob.auc == pytest.approx(5.5 / 9)
    assert bob.kappa == pytest.approx(-1 / 3)
    # cy answered one PNEUMONIA film, wrongly: sensitivity 0; specificity, AUC and kappa undefined.
    assert cy.answered == 1 and cy.sensitivity == 0
    assert math.isnan(cy.specificity) and math.isnan(cy.auc) and math.isnan(cy.kappa)


def test_a_readers_rating_roc_has_a_point_per_rating_used():
    roc = rs.rating_roc(FILMS["truth"], [10, 7, 3, 6, 2, 1])
    points = list(zip(roc["fpr"].round(4), roc["tpr"].round(4)))
    third, two_thirds = round(1 / 3, 4), round(2 / 3, 4)
    assert points == [(0, 0), (0, third), (0, two_thirds), (third, two_thirds), (third, 1), (two_thirds, 1), (1, 1)]
    assert roc["rating"].tolist()[1:] == [10, 7, 6, 3, 2, 1]
    assert rs.rating_roc(["NORMAL", "NORMAL"], [1, 2]).empty


def test_the_model_on_the_quiz_films_and_the_reader_chart():
    model = rs.model_on_films(FILMS, THRESHOLD)
    assert model["auc"] == pytest.approx(7 / 9)  # P {.95, .6, .3} vs N {.7, .2, .05}: 7 of 9 pairs
    assert (model["sensitivity"], model["specificity"], model["fpr"]) == pytest.approx((2 / 3, 2 / 3, 1 / 3))
    chart = rs.reader_chart(FILMS, ANSWERS[ANSWERS.nickname == "ann"], THRESHOLD)
    assert chart["model_auc"] == pytest.approx(7 / 9) and chart["reader_auc"] == pytest.approx(8 / 9)
    assert chart["reader_point"] == pytest.approx({"fpr": 1 / 3, "tpr": 2 / 3})
    assert chart["model_point"] == pytest.approx({"fpr": 1 / 3, "tpr": 2 / 3})
    assert len(chart["reader_roc"]) == 7 and chart["kappa"] == pytest.approx(1.0)
    full = chart["test_roc"]  # the shipped model's saved ROC on all 624 test films
    assert full is not None and {"fpr", "tpr"} <= set(full.columns) and len(full) > 10
    assert full["fpr"].iloc[0] == 0 and full["tpr"].iloc[-1] == 1


def test_class_summary_and_the_films_most_readers_got_wrong():
    table = rs.reader_table(FILMS, ANSWERS, THRESHOLD)
    summary = rs.class_summary(table)
    assert summary["readers"] == 3
    assert summary["sensitivity"]["mean"] == pytest.approx(4 / 9) and summary["sensitivity"]["n"] == 3
    assert summary["specificity"] == pytest.approx({"mean": 2 / 3, "sd": 0.0, "min": 2 / 3, "max": 2 / 3, "n": 2})
    assert summary["auc"]["mean"] == pytest.approx(0.75)
    assert summary["auc"]["sd"] == pytest.approx((2.5 / 9) / math.sqrt(2))
    assert summary["kappa"]["mean"] == pytest.approx(1 / 3) and summary["kappa"]["n"] == 2
    hardest = rs.hardest_films(FILMS, ANSWERS)
    assert hardest["position"].tolist() == [3, 1, 4, 5]  # film 3: 2 of 3 wrong; then 1 of 2, in quiz order
    assert hardest.iloc[0][["readers", "wrong"]].tolist() == [3, 2]
    assert hardest.iloc[0]["share_wrong"] == pytest.approx(2 / 3) and hardest.iloc[0]["p_model"] == 0.30
    assert rs.hardest_films(FILMS, ANSWERS, top=1)["position"].tolist() == [3]


def test_export_rows_one_per_answer_with_the_readers_figures():
    rows = rs.export_rows(FILMS, ANSWERS, THRESHOLD)
    assert len(rows) == 13
    bob = rows[rows.nickname == "bob"].set_index("film")
    assert bob.loc[5, ["truth", "answer", "confidence", "rating", "correct", "model_label"]].tolist() == [
        "NORMAL", "PNEUMONIA", 5, 10, False, "NORMAL"]
    assert bob["reader_kappa"].unique().tolist() == pytest.approx([-1 / 3])


def test_the_results_report_is_json_and_text_without_nan():
    readers = pd.DataFrame({"nickname": ["ann", "bob", "cy", "dee"], "finished": [True, True, False, False]})
    results = QuizResults("ABC234", "bundled", 6, False, None, {"finetuned": THRESHOLD, "frozen": None},
                          FILMS, ANSWERS, readers)
    report = json.loads(json.dumps(results_json(results), allow_nan=False))
    assert [r["nickname"] for r in report["readers"]] == ["ann", "bob", "cy", "dee"]
    cy, dee = report["readers"][2], report["readers"][3]
    assert cy["specificity"] is None and cy["sensitivity"] == 0 and cy["finished"] is False
    assert dee["answered"] == 0 and dee["answers"] == [] and dee["auc"] is None  # joined, answered nothing
    assert report["readers"][1]["answers"][4] == {"film": 5, "example": "Example 5", "truth": "NORMAL",
                                                  "answer": "PNEUMONIA", "confidence": 5, "correct": False}
    assert report["model"]["auc"] == pytest.approx(7 / 9)
    assert report["class"]["hardest_films"][0]["position"] == 3
    text = results_text(report)
    assert "ann" in text and "5:P/5x" in text and "-" in text
