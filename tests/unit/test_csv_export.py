"""CSV cells a spreadsheet cannot run (OWASP "CSV Injection"): text starting with = + - @ tab or CR gets a
leading apostrophe in every CSV the workbench writes for users (the review table, the quiz answers)."""
from __future__ import annotations

import io

import pandas as pd
import pytest

from pneumo_core.quiz.report import results_csv
from pneumo_core.quiz.rules import QuizStore
from pneumo_core.review.csv_export import neutralise_cell, safe_csv
from pneumo_core.review.decisions import review_rows

HOSTILE = ['=HYPERLINK("https://evil.example","Key expired")', "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1"]


def read_back(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), keep_default_na=False)


def test_every_formula_start_is_neutralised_and_numbers_are_not():
    table = pd.DataFrame({"text": [*HOSTILE, "plain", "a=b", ""], "number": [-0.5, 1, 2, 3, 4, 5, 6, -8]})
    back = read_back(safe_csv(table))
    assert list(back["text"][: len(HOSTILE)]) == ["'" + cell for cell in HOSTILE]
    assert list(back["text"][len(HOSTILE):]) == ["plain", "a=b", ""]
    assert list(back["number"]) == [-0.5, 1, 2, 3, 4, 5, 6, -8]  # still numbers, not text
    assert neutralise_cell("\r=1") == "'\r=1"  # a carriage return too (pandas would not read it back whole)
    assert neutralise_cell(-3) == -3 and neutralise_cell(None) is None


def test_a_hostile_file_name_is_text_in_the_review_csv(shipped_predictor, test_normal):
    names = ["=cmd|' /C calc'!A0.jpeg", "@evil.jpeg", "normal.jpeg"]
    preds = [shipped_predictor.predict(test_normal.read_bytes(), name=name) for name in names]
    back = read_back(safe_csv(review_rows(preds, shipped_predictor.threshold, "validation")))
    assert list(back["file"]) == ["'" + names[0], "'" + names[1], names[2]]
    assert back["p_pneumonia"].dtype.kind == "f" and back["label"].iloc[0] in ("NORMAL", "PNEUMONIA")


@pytest.mark.parametrize("nickname", ['=HYPERLINK("https://evil.example","x")', "+491701234", "@admin"])
def test_a_hostile_nickname_is_text_in_the_quiz_csv(tmp_path, nickname):
    store = QuizStore(f"sqlite:///{tmp_path / 'quiz.sqlite3'}")
    try:
        quiz = store.new_quiz(n_films=2, seed=1)
        reader = store.join(quiz.code, nickname)
        store.answer(reader.token, 1, "PNEUMONIA", 3)
        back = read_back(results_csv(store.results(quiz.code, quiz.teacher_key)))
    finally:
        store.dispose()
    assert list(back["nickname"]) == ["'" + nickname]
    assert back["confidence"].tolist() == [3]
