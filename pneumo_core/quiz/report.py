"""Quiz results as the CLI prints them (``python -m pneumo_core quiz new|results|close``, in
:mod:`pneumo_core.cli.quiz`): JSON-safe data, CSV and plain text, built from
:mod:`pneumo_core.quiz.reader_study`'s figures. Nothing here prints.

Field names of the JSON are a contract like every CLI output: add fields, never rename or remove one.
"""
from __future__ import annotations

import math

import numpy as np

from pneumo_core.config import DEFAULT_VARIANT
from pneumo_core.quiz.reader_study import (
    answered,
    class_summary,
    export_rows,
    hardest_films,
    model_on_films,
    reader_table,
)
from pneumo_core.quiz.rules import NewQuiz, QuizResults
from pneumo_core.review.csv_export import safe_csv


def _plain(value):
    """JSON-safe: NaN becomes None, numpy scalars become Python numbers."""
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def results_json(results, variant: str = DEFAULT_VARIANT) -> dict:
    """A teacher's view of a quiz (``results``: :class:`QuizResults`) as JSON-safe data: per reader
    their answers, sensitivity, specificity, AUC and kappa; the model on the films; the class summary."""
    threshold = results.thresholds.get(variant)
    table = reader_table(results.films, results.answers, threshold, variant, nicknames=results.readers["nickname"])
    rows = answered(results.films, results.answers, threshold, variant)
    finished = dict(zip(results.readers["nickname"], results.readers["finished"]))
    readers = []
    for rec in table.to_dict("records"):
        mine = rows[rows["nickname"] == rec["nickname"]]
        readers.append({**{k: _plain(v) for k, v in rec.items()}, "finished": bool(finished[rec["nickname"]]),
                        "answers": [{"film": int(r.position), "example": r.example, "truth": r.truth,
                                     "answer": r.answer, "confidence": int(r.confidence), "correct": bool(r.correct)}
                                    for r in mine.itertuples()]})
    model = model_on_films(results.films, threshold, variant)
    summary = class_summary(table)
    return {
        "code": results.code, "films": results.n_films, "source": results.source, "closed": results.closed,
        "model": {"variant": variant, "threshold": _plain(threshold),
                  **{k: _plain(model[k]) for k in ("auc", "sensitivity", "specificity")}},
        "readers": readers,
        "class": {"readers": summary["readers"],
                  **{col: {k: _plain(v) for k, v in summary[col].items()}
                     for col in ("sensitivity", "specificity", "auc", "kappa")},
                  "hardest_films": [{k: _plain(v) for k, v in r.items()}
                                    for r in hardest_films(results.films, results.answers, variant=variant)
                                    .to_dict("records")]},
    }


def results_csv(results: QuizResults, variant: str = DEFAULT_VARIANT) -> str:
    """The CSV export (:func:`reader_study.export_rows`): one row per answer, cells a spreadsheet cannot run."""
    return safe_csv(export_rows(results.films, results.answers, results.thresholds.get(variant), variant))


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def results_text(report: dict) -> str:
    """:func:`results_json`'s report as lines for a terminal: the model on the films, then per reader
    their figures and answers."""
    model = report["model"]
    lines = [f"quiz {report['code']}: {report['films']} films ({report['source']}), "
             f"{'closed' if report['closed'] else 'open'}, {len(report['readers'])} readers",
             f"model {model['variant']} at threshold {_num(model['threshold'])} on these films: sensitivity "
             f"{_num(model['sensitivity'])}, specificity {_num(model['specificity'])}, AUC {_num(model['auc'])}",
             f"{'nickname':40s}  answered  sensitivity  specificity  AUC    kappa"]
    for r in report["readers"]:
        lines.append(f"{r['nickname']:40s}  {r['answered']:>3d}/{report['films']:<4d}  {_num(r['sensitivity']):11s}  "
                     f"{_num(r['specificity']):11s}  {_num(r['auc']):5s}  {_num(r['kappa'])}")
        lines.append("  answers (film:answer/confidence, x = wrong): " + " ".join(
            f"{a['film']}:{a['answer'][0]}/{a['confidence']}{'' if a['correct'] else 'x'}" for a in r["answers"]))
    return "\n".join(lines)


def new_quiz_text(made: NewQuiz) -> str:
    """What ``quiz new`` prints for a person: the code, the key (once), and how the quiz was drawn."""
    limit = f"{made.time_limit_minutes:g} minutes a reader" if made.time_limit_minutes else "no time limit"
    reveal = ("readers see the truth when you close the quiz" if made.reveal == "on_close"
              else "each reader sees the truth on finishing")
    return (f"quiz {made.code}: {made.n_films} films from {made.source} (seed {made.seed}), {limit}, {reveal}\n"
            f"join code:   {made.code}\n"
            f"teacher key: {made.teacher_key}  (shown only now: keep it to see the results and close the quiz)")

