"""The figure tables of the docs, each written from the report files (the writers of
:mod:`pneumo_core.evaluation.generated_docs`); nothing is re-run.

Read from ``models/reports/<variant>/`` (metrics.json, training.json, test_predictions.csv) and
``models/experiments/`` (each run's reports, the threshold correction's two files, the protocol reports through
:mod:`pneumo_core.evaluation.protocol_markdown`). A missing or unreadable report raises: a doc table must not
silently lose a row.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pneumo_core import config
from pneumo_core.evaluation import protocol_markdown
from pneumo_core.evaluation.protocol_results import (
    PROTOCOL_NAMES,
    REFERENCE_WRITEUP,
    WRITEUP_TEST_FILMS,
    load_runs,
    overview_table,
)

SHIPPED = ("frozen", "finetuned")
_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def checkout_root(root: str | Path | None) -> Path:
    """``root``, or this checkout (read at each call)."""
    return Path(root) if root is not None else config.PROJECT_DIR


class Reports:
    """The report files of one checkout (``root``), each read once. A missing or unreadable report is an
    error here: a doc table must not silently lose a row."""

    def __init__(self, root: str | Path | None = None):
        self.root = checkout_root(root)
        self.models = self.root / "models"
        self._read: dict[str, object] = {}

    def json(self, rel: str) -> dict:
        """``models/<rel>`` as JSON."""
        if rel not in self._read:
            self._read[rel] = json.loads((self.models / rel).read_text())
        return self._read[rel]

    def csv(self, rel: str) -> pd.DataFrame:
        """``models/<rel>`` as a table."""
        if rel not in self._read:
            self._read[rel] = pd.read_csv(self.models / rel)
        return self._read[rel]

    def metrics(self, variant: str) -> dict:
        """A shipped model's ``metrics.json``."""
        return self.json(f"reports/{variant}/metrics.json")

    def training(self, variant: str) -> dict:
        """A shipped model's ``training.json``."""
        return self.json(f"reports/{variant}/training.json")

    def accuracy_at(self, variant: str, threshold: float) -> dict:
        """A shipped model's test accuracy and specificity at ``threshold``, from its saved test scores."""
        df = self.csv(f"reports/{variant}/test_predictions.csv")
        predicted = (df.p_pneumonia.to_numpy() >= threshold).astype(int)
        normal = df.label.to_numpy() == 0
        return {"accuracy": float((predicted == df.label.to_numpy()).mean()),
                "specificity": float((predicted[normal] == 0).mean())}

    def test_patients(self, variant: str) -> int:
        """How many patients the shipped model's test films come from."""
        return int(self.csv(f"reports/{variant}/test_predictions.csv").patient.nunique())

    @property
    def protocols(self) -> Path:
        return self.models / "experiments" / "protocols"


# ---------------------------------------------------------------------------- formats
def pct1(x: float) -> str:
    return f"{x * 100:.1f} %"


def pct2(x: float) -> str:
    return f"{x * 100:.2f} %"


def dec3(x: float) -> str:
    return f"{x:.3f}"


def dec2(x: float) -> str:
    return f"{x:.2f}"


def count(n: int) -> str:
    return f"{n:,}"


def word(n: int) -> str:
    """A small count in words (``five``), larger ones in figures."""
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def span(values, fmt: Callable[[float], str], unit: str = "") -> str:
    """``lo-hi`` of ``values`` in ``fmt`` (``88.3-90.9 %`` with ``unit`` stripped from ``lo``)."""
    lo, hi = fmt(min(values)), fmt(max(values))
    if unit:
        lo, hi = lo.removesuffix(unit), hi
    return lo if lo == hi else f"{lo}-{hi}"


def points(diff: float) -> str:
    """A difference of two proportions in points, signed (``+1.5 points``, ``-1.0 point``)."""
    value = f"{diff * 100:+.1f}"
    return f"{value} point" if abs(float(value)) == 1.0 else f"{value} points"


def _with_ci(block: dict, key: str) -> str:
    """``value (lo-hi)``: percent with one decimal, AUC with three; no interval without a bootstrap."""
    scale, digits = (1, 3) if key == "auc" else (100, 1)
    value = f"{block[key] * scale:.{digits}f}"
    if not block.get("ci95"):
        return value
    lo, hi = (x * scale for x in block["ci95"][key])
    return f"{value} ({lo:.{digits}f}-{hi:.{digits}f})"


def _confusion(block: dict) -> str:
    (tn, fp), (fn, tp) = block["confusion_matrix"]
    return f"{tn} {fp} / {fn} {tp}"


# ---------------------------------------------------------------------------- the shipped models
def readme_results(r: Reports) -> str:
    """README's "Results at a glance": both shipped models at their validation-chosen thresholds."""
    ft = r.metrics("finetuned")
    members = len(r.training("finetuned").get("ensemble", {}).get("members", []))
    name = {"finetuned": f"fine-tuned (ensemble of {word(members)} runs)" if members else "fine-tuned",
            "frozen": "frozen backbone"}
    counts = ft["counts"]
    lines = [f"Official test split, {ft['at_threshold']['n']} films ({counts['NORMAL']} NORMAL, "
             f"{counts['PNEUMONIA']} PNEUMONIA), each model at its validation-chosen threshold",
             "(from `models/reports/{finetuned,frozen}/metrics.json`; 95 % intervals: bootstrap over the "
             f"{r.test_patients('finetuned')} test patients):", "",
             "| model | threshold | accuracy % | sensitivity % | specificity % | ROC AUC |",
             "|---|---|---|---|---|---|"]
    for variant in ("finetuned", "frozen"):
        b = r.metrics(variant)["at_threshold"]
        lines.append(f"| {name[variant]} | {b['threshold']:.3f} | " + " | ".join(
            _with_ci(b, k) for k in ("accuracy", "recall", "specificity", "auc")) + " |")
    return "\n".join(lines)


def results_table(r: Reports) -> str:
    """Both shipped models at their validation-chosen thresholds and at 0.5, every metric with its CI
    (the table of models/MODEL_CARD.md and docs/evaluation.md)."""
    lines = ["| model | threshold | accuracy % | precision % | recall (sensitivity) % | specificity % | F1 % | "
             "ROC AUC | TN FP / FN TP |", "|---|---|---|---|---|---|---|---|---|"]
    for variant in SHIPPED:
        m = r.metrics(variant)
        for key, label in (("at_threshold", "validation rule"), ("at_0.5", "0.5")):
            b = m[key]
            lines.append(f"| {variant} | {b['threshold']:.3f} ({label}) | " + " | ".join(
                _with_ci(b, k) for k in ("accuracy", "precision", "recall", "specificity", "f1", "auc"))
                + f" | {_confusion(b)} |")
    return "\n".join(lines)


def data_table(r: Reports) -> str:
    """The model card's split counts, from the shipped models' training records and test reports (both
    models were trained and tested on the same films; a difference is an error)."""
    data = {v: r.training(v)["data"] for v in SHIPPED}
    counts = {v: r.metrics(v)["counts"] for v in SHIPPED}
    for part in (data, counts):
        if part["frozen"] != part["finetuned"]:
            raise ValueError("the shipped models' split counts differ; the model card's data table shows one split")
    d, test = data["finetuned"], counts["finetuned"]
    train, val = d["train_counts"], d["val_counts"]
    return "\n".join([
        "| split | NORMAL | PNEUMONIA | used for |", "|---|---|---|---|",
        f"| train ({count(d['train_images'] + d['val_images'])}) -> training part | {count(train['NORMAL'])} | "
        f"{count(train['PNEUMONIA'])} | fitting ({count(d['train_images'])} films, {count(d['train_patients'])} "
        "patients) |",
        f"| train -> validation part | {count(val['NORMAL'])} | {count(val['PNEUMONIA'])} | early stopping, "
        f"checkpoint, threshold, OOD calibration ({count(d['val_images'])} films, {count(d['val_patients'])} "
        "patients) |",
        f"| test | {count(test['NORMAL'])} | {count(test['PNEUMONIA'])} | final evaluation only "
        f"({count(test['NORMAL'] + test['PNEUMONIA'])} films) |",
    ])


# ---------------------------------------------------------------------------- every run read on the test split
@dataclass(frozen=True)
class Run:
    """One row of the model card's "Every run evaluated on the test split". ``test``: its test report
    (``metrics.json`` with ``at_threshold``/``at_0.5``, a flat ``test_metrics.json``, or the analysis
    script's ``test_at_threshold``/``test_at_0.5``); ``training``: its training record (validation AUC;
    None: "-"); ``key``: its entry in ``experiments/threshold_correction/*.json`` (None: the report's own
    threshold is the rule's); ``shipped``: the shipped variant whose report was re-read at the corrected
    threshold (its old-threshold accuracy comes from its saved test scores); ``rule``: False when no
    validation threshold was chosen (the analysis script); ``detail``: what follows the test accuracy
    (``sens_spec`` or ``confusion``); ``bold``: the shipped row."""

    label: str
    recipe: str
    test: str
    training: str | None = None
    key: str | None = None
    shipped: str | None = None
    rule: bool = True
    detail: str = ""
    bold: bool = False


CORRECTION = "experiments/threshold_correction"
RUNS = (
    Run("frozen (shipped)", "head on cached features", "reports/frozen/metrics.json",
        "reports/frozen/training.json", "frozen (shipped)", shipped="frozen"),
    Run("fine-tuned run 1 (shipped until the soup)",
        "as step 2, without JPEG re-encoding, seed 42 (`experiments/finetuned_run1/`)",
        "experiments/finetuned_run1/metrics.json", "experiments/finetuned_run1/training.json", "run 1"),
    Run("fine-tuned run 2", "Adam 1e-4 cosine decay over 20 epochs, augmentation x1.5, patience 8 "
        "(`experiments/finetuned_run2_cosine/`)", "experiments/finetuned_run2_cosine/metrics.json",
        "experiments/finetuned_run2_cosine/training.json", "run 2"),
    Run("soup member 1", "step 2 recipe, seed 1 (`experiments/soup_member1/`)",
        "experiments/soup_member1/test_metrics.json", "experiments/soup_member1/training.json", "member 1"),
    Run("soup member 2 = the greedy soup (shipped before the ensemble)",
        "step 2 recipe, seed 2 (`experiments/soup_member2/`, `experiments/soup_greedy/`)",
        "experiments/soup_greedy/metrics.json", "experiments/soup_member2/training.json", "member 2 (greedy soup)"),
    Run("soup member 3", "step 2 recipe, seed 3 (`experiments/soup_member3/`)",
        "experiments/soup_member3/test_metrics.json", "experiments/soup_member3/training.json", "member 3"),
    Run("output ensemble of the five runs, analysis script", "mean logit, validation scored through `Predictor` "
        "(`experiments/ensemble_5runs.json`; superseded by the next row, not recomputed)",
        "experiments/ensemble_5runs.json", "experiments/ensemble_5runs.json", rule=False),
    Run("**output ensemble (shipped)**", "the same five runs in one model, `python -m pneumo_core ensemble` "
        "(validation scored through the training pipeline)", "reports/finetuned/metrics.json",
        "reports/finetuned/training.json", "finetuned ensemble (shipped)", shipped="finetuned", detail="sens_spec",
        bold=True),
    Run("crop run, seed 4", "step 2 recipe + random resized crop (area 0.7-1, aspect 0.82-1.22), seed 4 "
        "(`experiments/crop_runs/`)", "experiments/crop_runs/seed4/test_metrics.json",
        "experiments/crop_runs/seed4/training.json", "crop seed 4"),
    Run("crop run, seed 5", "the same, seed 5", "experiments/crop_runs/seed5/test_metrics.json",
        "experiments/crop_runs/seed5/training.json", "crop seed 5"),
    Run("crop run, seed 6", "the same, seed 6", "experiments/crop_runs/seed6/test_metrics.json",
        "experiments/crop_runs/seed6/training.json", "crop seed 6"),
    Run("ensemble B: the three crop runs (not shipped)", "mean logit", "experiments/crop_runs/ensemble_B/metrics.json",
        "experiments/crop_runs/ensemble_B/training.json", "ensemble B"),
    Run("ensemble C: all eight runs (not shipped)", "mean logit", "experiments/crop_runs/ensemble_C/metrics.json",
        "experiments/crop_runs/ensemble_C/training.json", "ensemble C", detail="confusion"),
    Run("WiSE-FT alpha 0.5 (not shipped)", "member 1's recipe trained again, weights half-way to its head-only start "
        "(`experiments/protocols/official/wiseft/`, [pre-registered](experiments/wiseft_preregistration.md))",
        "experiments/protocols/official/wiseft/metrics.json", "experiments/protocols/official/wiseft/training.json",
        detail="sens_spec"),
)


def _test_blocks(report: dict) -> tuple[dict, dict]:
    """(at the report's own threshold, at 0.5) of any of the three test report layouts."""
    if "at_threshold" in report:
        return report["at_threshold"], report["at_0.5"]
    if "test_at_threshold" in report:
        return report["test_at_threshold"], report["test_at_0.5"]
    return report, report["at_0.5"]


@dataclass
class RunFigures:
    """The figures of one :class:`Run` (None where the row shows "-")."""

    run: Run
    val_auc: float | None
    val_log_loss: float | None
    threshold: float | None
    test_auc: float
    at_rule: dict | None  # test metrics at the validation-rule threshold; None: not recomputed
    rule_unchanged: bool  # the corrected threshold is the old one (its figures are the old evaluation's)
    at_half: dict
    old_threshold: float | None
    old_accuracy: float | None
    corrected_val_specificity: float | None


def run_figures(r: Reports, run: Run) -> RunFigures:
    """One row's figures from its report files."""
    own, half = _test_blocks(r.json(run.test))
    training = r.json(run.training) if run.training else {}
    validation = training.get("validation", {})
    val_loss = (training.get("ensemble") or training.get("soup") or training.get("wise_ft") or {}).get("val_log_loss")
    if val_loss is None and "balanced_log_loss" in validation:
        val_loss = validation["balanced_log_loss"]
    fig = RunFigures(run, validation.get("auc"), val_loss, None, own["auc"], None, False, half, None, None, None)
    if not run.rule:  # the analysis script: one threshold, chosen by the old code
        fig.old_threshold, fig.old_accuracy = own["threshold"], own["accuracy"]
        return fig
    if run.key is None:  # evaluated at its own rule's threshold, after the correction
        fig.threshold, fig.at_rule = own["threshold"], own
        return fig
    corrected = r.json(f"{CORRECTION}/validation_thresholds.json")[run.key]
    fig.threshold, fig.old_threshold = corrected["corrected_threshold"], corrected["old_threshold"]
    fig.corrected_val_specificity = corrected["val_spec_new"]
    at_corrected = r.json(f"{CORRECTION}/test_at_corrected_thresholds.json").get(run.key, {})
    if run.shipped:  # the shipped report was re-read at the corrected threshold: the old one from its scores
        if not math.isclose(own["threshold"], fig.threshold, abs_tol=1e-6):
            raise ValueError(f"{run.test} is not at the corrected threshold {fig.threshold}")
        fig.old_accuracy = r.accuracy_at(run.shipped, fig.old_threshold)["accuracy"]
    else:
        if not math.isclose(own["threshold"], fig.old_threshold, abs_tol=1e-6):
            raise ValueError(f"{run.test} is not at the old threshold {fig.old_threshold}")
        fig.old_accuracy = own["accuracy"]
    if at_corrected.get("accuracy") is not None:
        fig.at_rule = at_corrected
    elif math.isclose(fig.threshold, fig.old_threshold, abs_tol=1e-9):
        fig.at_rule, fig.rule_unchanged = own, True
    return fig


def every_run_table(r: Reports) -> str:
    """The model card's "Every run evaluated on the test split"."""
    lines = ["| run | recipe | val AUC | val threshold (rule) | test AUC | test accuracy at that threshold | at 0.5 | "
             "old rule code: threshold, accuracy |", "|---|---|---|---|---|---|---|---|"]
    for run in RUNS:
        f = run_figures(r, run)
        if not run.rule:
            at_rule = "-"
        elif f.at_rule is None:
            at_rule = "not recomputed (weights not kept)"
        else:
            at_rule = pct1(f.at_rule["accuracy"])
            at_rule = f"**{at_rule}**" if run.bold else at_rule
            if f.rule_unchanged:
                at_rule += " (threshold unchanged)"
            if run.detail == "sens_spec":
                at_rule += f" (sens. {pct1(f.at_rule['recall'])}, spec. {pct1(f.at_rule['specificity'])})"
            elif run.detail == "confusion":
                at_rule += f" ({_confusion(f.at_rule)})"
        old = "-" if f.old_threshold is None else f"{dec3(f.old_threshold)}, {pct1(f.old_accuracy)}"
        lines.append(f"| {run.label} | {run.recipe} | {'-' if f.val_auc is None else dec3(f.val_auc)} | "
                     f"{'-' if f.threshold is None else dec3(f.threshold)} | {dec3(f.test_auc)} | {at_rule} | "
                     f"{pct1(f.at_half['accuracy'])} | {old} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- protocols
def protocol_overview(r: Reports) -> pd.DataFrame:
    """Both recipes under the three protocols at their validation thresholds, indexed (protocol, variant)."""
    return overview_table(load_runs(r.protocols)).set_index(["protocol", "variant"])


def protocols_table(r: Reports) -> str:
    """The model card's comparability table: both recipes under the three protocols, and the write-up."""
    table = protocol_overview(r)
    lines = ["| protocol | frozen | fine-tuned run |", "|---|---|---|"]
    for protocol, label in (("official", "official split ({n} films)"), ("patient-resplit", "patient re-split ({n})"),
                            ("image-resplit", "image re-split ({n}; the write-up's protocol)")):
        rows = [table.loc[(protocol, v)] for v in ("frozen", "finetuned")]
        if not all(row.evaluated for row in rows):
            lines.append(f"| {PROTOCOL_NAMES[protocol]} | not evaluated yet | not evaluated yet |")
            continue
        if rows[0].test_films != rows[1].test_films:
            raise ValueError(f"the {protocol} runs were tested on different films")
        cells = [f"{pct1(row.accuracy)} [{row.accuracy_lo * 100:.1f}, {row.accuracy_hi * 100:.1f}] / {dec3(row.AUC)}"
                 for row in rows]
        lines.append(f"| {label.format(n=f'{rows[0].test_films:.0f}')} | {cells[0]} | {cells[1]} |")
    frozen, finetuned = REFERENCE_WRITEUP
    lines.append(f"| reference write-up, image-level split ({WRITEUP_TEST_FILMS}) | {pct2(frozen.accuracy)} / "
                 f"{frozen.auc:.4f} | {pct2(finetuned.accuracy)} / {finetuned.auc:.4f} |")
    return "\n".join(lines)


def protocol_tables(r: Reports) -> str:
    """docs/protocols.md's generated part (:func:`protocol_markdown.report_markdown`)."""
    return protocol_markdown.report_markdown(r.protocols, r.models / "reports").rstrip("\n")
