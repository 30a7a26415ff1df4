"""Reader statistics for the quiz: each reader's sensitivity and specificity (their operating point),
their ROC curve and AUC from the confidence ratings, their agreement with the model (Cohen's
kappa), the model's ROC on the same films and on the full test split, and the class summary.

Pure functions (numpy metrics of :mod:`pneumo_core.evaluation.metrics`) over the two tables of
:class:`pneumo_core.quiz.rules.QuizResults`:
``films`` (position, example, truth, subtype, p_<variant>) and ``answers`` (nickname, position,
answer, confidence). Unanswered films (time up, quiz closed) are left out of a reader's figures;
``answered`` says how many count. A figure that is undefined (no PNEUMONIA film answered, one
class only) is NaN, never a guess.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pneumo_core.config import CLASS_NAMES, DEFAULT_VARIANT
from pneumo_core.evaluation.metrics import cohen_kappa, confusion_matrix, metrics_at, roc_auc, roc_curve, roc_points
from pneumo_core.evaluation.reports import load_report
from pneumo_core.review.examples import score_column

NORMAL, PNEUMONIA = CLASS_NAMES
CONFIDENCE_MAX = 5
READER_COLUMNS = ["nickname", "answered", "correct", "accuracy", "sensitivity", "specificity", "fpr", "tpr", "auc",
                  "kappa"]


def rating(answer: str, confidence: int) -> int:
    """The 10-level score of an answer: 1 = NORMAL, confidence 5 (surest normal) ... 5 = NORMAL 1,
    6 = PNEUMONIA 1 ... 10 = PNEUMONIA 5 (surest pneumonia). Higher means more sure of pneumonia,
    as a model's P(pneumonia), so the ratings trace a ROC curve."""
    confidence = int(confidence)
    if not 1 <= confidence <= CONFIDENCE_MAX or answer not in CLASS_NAMES:
        raise ValueError(f"not an answer: {answer!r} with confidence {confidence}")
    return CONFIDENCE_MAX + confidence if answer == PNEUMONIA else CONFIDENCE_MAX + 1 - confidence


def _binary(labels) -> np.ndarray:
    return (np.asarray(labels, dtype=object) == PNEUMONIA).astype(int)


def _rate(hits: int, total: int) -> float:
    return hits / total if total else math.nan


def model_labels(p, threshold: float | None) -> np.ndarray:
    """The model's label of each score at its threshold (PNEUMONIA when p >= threshold, as the core
    decides); None where there is no score or no threshold."""
    p = np.asarray(p, dtype=float)
    if threshold is None:
        return np.full(len(p), None, dtype=object)
    labels = np.where(p >= float(threshold), PNEUMONIA, NORMAL).astype(object)
    labels[np.isnan(p)] = None
    return labels


def reader_stats(truth, answer, confidence, model_label=None) -> dict:
    """One reader's figures on the films they answered: counts, sensitivity, specificity, the operating
    point (fpr, tpr), the AUC of their 10-level ratings, and Cohen's kappa with ``model_label``
    (the model's labels on the same films; NaN without them)."""
    y, called = _binary(truth), _binary(answer)
    scores = np.array([rating(a, c) for a, c in zip(answer, confidence)], dtype=float)
    tn, fp, fn, tp = ((int(v) for v in confusion_matrix(y, called).ravel()) if len(y)
                      else (0, 0, 0, 0))
    sensitivity, specificity = _rate(tp, tp + fn), _rate(tn, tn + fp)
    auc = roc_auc(y, scores) if len(set(y)) == 2 else math.nan
    kappa = math.nan
    if model_label is not None and len(y) and all(m is not None for m in model_label):
        kappa = cohen_kappa(called, _binary(model_label))  # NaN when undefined (one label only on both sides)
    return {"answered": int(len(y)), "correct": tp + tn, "accuracy": _rate(tp + tn, len(y)),
            "sensitivity": sensitivity, "specificity": specificity, "fpr": 1.0 - specificity, "tpr": sensitivity,
            "auc": auc, "kappa": kappa, "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def rating_roc(truth, scores) -> pd.DataFrame:
    """The ROC curve of 10-level ratings: one point per rating used as a cut-off (``rating``: the
    lowest rating called PNEUMONIA), from (0, 0) to (1, 1)."""
    y = _binary(truth)
    if len(set(y)) < 2:
        return pd.DataFrame(columns=["fpr", "tpr", "rating"])
    fpr, tpr, cut = roc_curve(y, np.asarray(scores, dtype=float), drop_intermediate=False)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "rating": np.minimum(cut, 2 * CONFIDENCE_MAX + 1)})


def answered(films: pd.DataFrame, answers: pd.DataFrame, threshold: float | None,
             variant: str = DEFAULT_VARIANT) -> pd.DataFrame:
    """One row per answer with its film: truth, rating, correct, the model's score and label."""
    rows = answers.merge(films, on="position", how="inner", validate="many_to_one")
    rows["rating"] = [rating(a, c) for a, c in zip(rows["answer"], rows["confidence"])]
    rows["correct"] = rows["answer"] == rows["truth"]
    rows["p_model"] = rows[score_column(variant)].astype(float)
    rows["model_label"] = model_labels(rows["p_model"], threshold)
    return rows


def reader_table(films: pd.DataFrame, answers: pd.DataFrame, threshold: float | None,
                 variant: str = DEFAULT_VARIANT, nicknames=None) -> pd.DataFrame:
    """One row per reader (``READER_COLUMNS``), in the order of ``nicknames`` (default: first answer);
    a reader without answers gets NaN figures."""
    rows = answered(films, answers, threshold, variant)
    names = list(dict.fromkeys(nicknames if nicknames is not None else rows["nickname"]))
    out = []
    for name in names:
        mine = rows[rows["nickname"] == name]
        stats = reader_stats(mine["truth"], mine["answer"], mine["confidence"], list(mine["model_label"]))
        out.append({"nickname": name, **{k: stats[k] for k in READER_COLUMNS[1:]}})
    return pd.DataFrame(out, columns=READER_COLUMNS)


def model_on_films(films: pd.DataFrame, threshold: float | None, variant: str = DEFAULT_VARIANT) -> dict:
    """The model on the quiz films: its ROC curve, AUC and operating point at its threshold."""
    p = films[score_column(variant)].astype(float)
    keep = p.notna().to_numpy()
    y, p = _binary(films["truth"])[keep], p.to_numpy()[keep]
    if len(set(y)) < 2:
        return {"roc": pd.DataFrame(columns=["fpr", "tpr", "threshold"]), "auc": math.nan,
                "sensitivity": math.nan, "specificity": math.nan, "fpr": math.nan, "tpr": math.nan}
    point = metrics_at(y, p, threshold) if threshold is not None else {"recall": math.nan, "specificity": math.nan}
    return {"roc": roc_points(y, p), "auc": roc_auc(y, p), "sensitivity": point["recall"],
            "specificity": point["specificity"], "fpr": 1.0 - point["specificity"], "tpr": point["recall"]}


def test_split_roc(variant: str = DEFAULT_VARIANT) -> pd.DataFrame | None:
    """The model's ROC on the full official test split, from its saved report (None when missing)."""
    return load_report(variant).roc


def reader_chart(films: pd.DataFrame, answers: pd.DataFrame, threshold: float | None,
                 variant: str = DEFAULT_VARIANT) -> dict:
    """What the reader's result chart plots (one reader's ``answers``): the model's ROC on the quiz
    films and on the full test split, the model's and the reader's operating points, the reader's
    rating ROC and both AUCs."""
    rows = answered(films, answers, threshold, variant)
    stats = reader_stats(rows["truth"], rows["answer"], rows["confidence"], list(rows["model_label"]))
    model = model_on_films(films, threshold, variant)
    return {"model_roc": model["roc"], "model_auc": model["auc"], "model_point": {k: model[k] for k in ("fpr", "tpr")},
            "test_roc": test_split_roc(variant), "reader_roc": rating_roc(rows["truth"], rows["rating"]),
            "reader_auc": stats["auc"], "reader_point": {"fpr": stats["fpr"], "tpr": stats["tpr"]},
            "kappa": stats["kappa"], "stats": stats}


def class_summary(table: pd.DataFrame) -> dict:
    """Mean, standard deviation (n - 1), minimum and maximum of the readers' sensitivity, specificity,
    AUC and kappa (readers whose figure is undefined left out)."""
    out = {"readers": int(len(table))}
    for col in ("sensitivity", "specificity", "auc", "kappa"):
        values = table[col].dropna().astype(float) if col in table else pd.Series(dtype=float)
        out[col] = {"mean": float(values.mean()) if len(values) else math.nan,
                    "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                    "min": float(values.min()) if len(values) else math.nan,
                    "max": float(values.max()) if len(values) else math.nan, "n": int(len(values))}
    return out


def hardest_films(films: pd.DataFrame, answers: pd.DataFrame, top: int = 5,
                  variant: str = DEFAULT_VARIANT) -> pd.DataFrame:
    """The films most readers got wrong: readers who answered, how many were wrong, the share, and
    the model's score; most-missed first (ties: the film's order in the quiz)."""
    rows = answered(films, answers, None, variant)
    tally = rows.groupby("position").agg(readers=("correct", "size"), wrong=("correct", lambda c: int((~c).sum())))
    out = films.set_index("position").join(tally, how="inner")
    out["share_wrong"] = out["wrong"] / out["readers"]
    out["p_model"] = out[score_column(variant)]
    out = out.reset_index().sort_values(["wrong", "share_wrong", "position"], ascending=[False, False, True])
    out = out[out["wrong"] > 0].head(top)
    return out[["position", "example", "truth", "subtype", "readers", "wrong", "share_wrong", "p_model"]]


def export_rows(films: pd.DataFrame, answers: pd.DataFrame, threshold: float | None,
                variant: str = DEFAULT_VARIANT) -> pd.DataFrame:
    """The CSV export: one row per answer (reader, film, truth, answer, confidence, rating, correct, the
    model's score and label) with the reader's sensitivity, specificity, AUC and kappa."""
    rows = answered(films, answers, threshold, variant)
    table = reader_table(films, answers, threshold, variant).set_index("nickname")
    for col in ("sensitivity", "specificity", "auc", "kappa"):
        rows[f"reader_{col}"] = rows["nickname"].map(table[col])
    rows = rows.rename(columns={"position": "film"})
    return rows[["nickname", "film", "example", "truth", "subtype", "answer", "confidence", "rating", "correct",
                 "p_model", "model_label", "reader_sensitivity", "reader_specificity", "reader_auc", "reader_kappa"]]

