"""Reading the shipped evaluation reports (``models/reports/<variant>/``) for the dashboard.

Pure pandas/numpy (no Streamlit): everything the pages show about a model's test performance is
computed here from the saved files, never by re-running a model. A variant whose files are
missing is reported as such (``VariantReport.available`` / ``.missing``) instead of raising.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_core.artifacts import read_csv, read_json, reports_dir
from pneumo_core.config import CLASS_NAMES, FINE_TUNE_LAYERS, MODELS_DIR, SHIPPED_VARIANTS, model_path
from pneumo_core.evaluation.metrics import (
    METRIC_NAMES,
    average_precision,
    metrics_at,
    precision_recall_curve,
    roc_auc,
)

#: Human names of the shipped variants.
DISPLAY_NAMES = {"finetuned": "Fine-tuned MobileNetV2", "frozen": "Frozen MobileNetV2 (head only)"}
METRIC_LABELS = {"accuracy": "Accuracy", "precision": "Precision (PPV)", "recall": "Recall (sensitivity)",
                 "specificity": "Specificity", "f1": "F1", "auc": "ROC AUC"}
METRIC_SHORT = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "specificity": "Specificity",
                "f1": "F1", "auc": "AUC"}
REPORT_FILES = ("training.json", "metrics.json", "test_predictions.csv", "roc_curve.csv")
NEAR_THRESHOLD = 0.25  # relative margin below which a score is flagged "close to the threshold"


def display_name(variant: str) -> str:
    """The human name of a shipped variant (the variant itself for others)."""
    return DISPLAY_NAMES.get(variant, variant)


def short_name(variant: str) -> str:
    """A short lower-case name of a variant for running text."""
    return {"finetuned": "fine-tuned"}.get(variant, variant)


# ---------------------------------------------------------------------------- decisions
def confidence(p: float, threshold: float) -> dict:
    """How far a score sits from the decision threshold, as a plain-language cue.

    ``margin`` is the distance to the threshold as a fraction of the room on that side
    (0 = on the threshold, 1 = at 0 or 1). It is not a calibrated probability of being right.
    """
    p, t = float(p), float(threshold)
    room = (1.0 - t) if p >= t else t
    margin = abs(p - t) / room if room > 0 else 1.0
    margin = float(min(max(margin, 0.0), 1.0))
    if margin < NEAR_THRESHOLD:
        level, text = "low", "close to the threshold: a small change in the image or threshold could flip it"
    elif margin < 0.6:
        level, text = "moderate", "clearly on one side of the threshold, but not far from it"
    else:
        level, text = "high", "far from the threshold"
    return {"margin": margin, "distance": p - t, "level": level, "text": text}


# ---------------------------------------------------------------------------- loading
@dataclass
class VariantReport:
    """Everything saved about one model's training and test evaluation, and what is missing."""

    variant: str
    report_dir: Path
    model_path: Path
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    test_predictions: pd.DataFrame | None = None
    roc: pd.DataFrame | None = None
    validation: pd.DataFrame | None = None  # validation scores (threshold choice), file,patient,label,p_pneumonia
    history: pd.DataFrame | None = None  # head (+ fine-tune) epochs, with ``phase`` and ``step``
    missing: list = field(default_factory=list)

    @property
    def name(self) -> str:
        """The variant's human name."""
        return display_name(self.variant)

    @property
    def model_present(self) -> bool:
        """True when the model file exists."""
        return self.model_path.is_file()

    @property
    def available(self) -> bool:
        """Model file and every evaluation report are present."""
        return self.model_present and not self.missing

    @property
    def threshold(self) -> float:
        """The decision threshold the test metrics were computed at (0.5 when none is recorded)."""
        t = self.metrics.get("at_threshold", {}).get("threshold", self.training.get("threshold", 0.5))
        return float(t)

    @property
    def soup(self) -> dict | None:
        """The weight-soup record (members, method) when this model is an average of several runs."""
        return self.training.get("soup")

    @property
    def ensemble(self) -> dict | None:
        """The output-ensemble record (members) when this model averages several runs' logits."""
        return self.training.get("ensemble")

    @property
    def operating_points(self) -> dict:
        """Validation-chosen thresholds by name; {} when none."""
        return self.training.get("operating_points", {})

    @property
    def test_n(self) -> int:
        """How many test images the metrics are computed on."""
        return int(sum(self.metrics.get("counts", {}).values())) if self.metrics else 0

    def data_caption(self) -> str:
        """Which data the test figures come from, in words, with the class counts."""
        counts = self.metrics.get("counts", {})
        parts = ", ".join(f"{v} {k}" for k, v in counts.items())
        return f"official Kermany test split ({self.test_n} images: {parts})" if counts else "test split"

    def status_message(self) -> str:
        """Ready, or which files are missing and the commands that make them."""
        if self.available:
            return f"{self.name}: ready"
        what = ([f"models/{self.model_path.name}"] if not self.model_present else []) + \
               [f"models/reports/{self.variant}/{f}" for f in self.missing]
        return (f"{self.name} is not available yet: missing {', '.join(what)}. "
                f"Train it with `python -m pneumo_core train --variant {self.variant} --data DIR` "
                "(and evaluate it), then reload this page.")


def load_history(report_dir: Path) -> pd.DataFrame | None:
    """Head-training epochs then fine-tuning epochs on one axis (``step`` = 1, 2, ...)."""
    parts = []
    for phase, fname in (("head", "history_head.csv"), ("fine-tune", "history_finetune.csv")):
        df = read_csv(report_dir / fname)
        if df is not None and len(df):
            parts.append(df.assign(phase=phase))
    if not parts:
        return None
    hist = pd.concat(parts, ignore_index=True)
    hist["step"] = np.arange(1, len(hist) + 1)
    return hist


def load_report(variant: str, models_dir: str | Path = MODELS_DIR) -> VariantReport:
    """The saved reports of ``variant`` in ``models_dir``; missing files are listed, never raised."""
    models_dir = Path(models_dir)
    path = model_path(variant, models_dir)
    rd = reports_dir(path)
    rep = VariantReport(variant=variant, report_dir=rd, model_path=path)
    rep.missing = [f for f in REPORT_FILES if not (rd / f).is_file()]
    rep.training = read_json(rd / "training.json")
    rep.metrics = read_json(rd / "metrics.json")
    rep.test_predictions = read_csv(rd / "test_predictions.csv")
    rep.roc = read_csv(rd / "roc_curve.csv")
    rep.validation = read_csv(rd / "validation_predictions.csv")
    rep.history = load_history(rd)
    for fname, ok in (("training.json", rep.training), ("metrics.json", rep.metrics)):
        if fname not in rep.missing and not ok:
            rep.missing.append(fname)  # present but unreadable
    return rep


def load_reports(models_dir: str | Path = MODELS_DIR, variants=SHIPPED_VARIANTS) -> dict[str, VariantReport]:
    """The reports of each of ``variants``, by variant."""
    return {v: load_report(v, models_dir) for v in variants}


def files_signature(models_dir: str | Path = MODELS_DIR, variants=SHIPPED_VARIANTS) -> tuple:
    """(path, mtime, size) of every model and report file: a cache key that changes when training ends."""
    models_dir = Path(models_dir)
    out = []
    for v in variants:
        path = model_path(v, models_dir)
        for p in [path, *sorted(reports_dir(path).glob("*"))]:
            if p.is_file():
                st = p.stat()
                out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


# ---------------------------------------------------------------------------- metrics
def metrics_table(reports: dict[str, VariantReport], which: str = "at_threshold") -> pd.DataFrame:
    """Long table (model, metric, value, ci_lo, ci_hi, threshold) from metrics.json."""
    rows = []
    for v, rep in reports.items():
        block = rep.metrics.get(which)
        if not block:
            continue
        ci = block.get("ci95") or {}  # None when evaluated without bootstrap
        for m in METRIC_NAMES:
            lo, hi = ci.get(m, [np.nan, np.nan])
            rows.append({"variant": v, "model": rep.name, "metric": m, "metric_label": METRIC_LABELS[m],
                         "value": float(block[m]), "ci_lo": float(lo), "ci_hi": float(hi),
                         "threshold": float(block.get("threshold", np.nan))})
    return pd.DataFrame(rows, columns=["variant", "model", "metric", "metric_label", "value", "ci_lo", "ci_hi",
                                       "threshold"])


def metrics_wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per metric, one "value [lo, hi]" column per model, for display."""
    if table.empty:
        return pd.DataFrame()
    cells = table.assign(cell=[f"{r.value:.3f} [{r.ci_lo:.3f}, {r.ci_hi:.3f}]" for r in table.itertuples()])
    wide = cells.pivot(index="metric_label", columns="model", values="cell")
    order = [METRIC_LABELS[m] for m in METRIC_NAMES if METRIC_LABELS[m] in wide.index]
    wide = wide.loc[order]
    wide.index.name = "Metric (95% CI)"
    return wide


def confusion_at(rep: VariantReport, threshold: float) -> dict:
    """Metrics and confusion matrix (counts and row rates) of the saved test scores at ``threshold``."""
    df = rep.test_predictions
    if df is None or df.empty:
        raise ValueError(f"{rep.name}: no test predictions")
    m = metrics_at(df["label"].to_numpy(), df["p_pneumonia"].to_numpy(), threshold)
    cm = np.asarray(m["confusion_matrix"], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    m["rates"] = rates.tolist()
    m["fpr"] = 1.0 - m["specificity"]
    m["tpr"] = m["recall"]
    return m


def validation_at(rep: VariantReport, threshold: float) -> dict | None:
    """Validation sensitivity/specificity at any threshold (what an operating point means), or None."""
    df = rep.validation
    if df is None or df.empty or df["label"].nunique() < 2:
        return None
    m = metrics_at(df["label"].to_numpy(), df["p_pneumonia"].to_numpy(), threshold)
    return {"threshold": float(threshold), "val_sensitivity": m["recall"], "val_specificity": m["specificity"],
            "n": m["n"]}


def auc_of(rep: VariantReport) -> float:
    """The test ROC AUC: from ``metrics.json``, else from the saved test scores, else NaN."""
    block = rep.metrics.get("at_threshold", {})
    if "auc" in block:
        return float(block["auc"])
    if rep.test_predictions is not None:
        return roc_auc(rep.test_predictions["label"], rep.test_predictions["p_pneumonia"])
    return float("nan")


def pr_curve(rep: VariantReport) -> pd.DataFrame:
    """The test precision-recall curve, with the average precision in ``attrs``."""
    df = rep.test_predictions
    prec, rec, thr = precision_recall_curve(df["label"], df["p_pneumonia"])
    out = pd.DataFrame({"precision": prec[:-1], "recall": rec[:-1], "threshold": thr})
    out.attrs["average_precision"] = average_precision(df["label"], df["p_pneumonia"])
    return out


def test_examples(root: str | Path, per_class: int = 4) -> pd.DataFrame:
    """A few images of each class from ``root/test`` (deterministic choice and order) with their
    true labels, each named "Example k"."""
    root = Path(root)
    rows = []
    for cls in CLASS_NAMES:
        files = sorted((root / "test" / cls).glob("*.jpeg"))
        if not files:
            continue
        pick = np.linspace(0, len(files) - 1, num=min(per_class, len(files))).round().astype(int)
        rows += [{"file": files[i].name, "path": str(files[i]), "true_label": cls} for i in sorted(set(pick))]
    # Mixed in a fixed order and named by number: neither the list's order nor a file name
    # (NORMAL2-IM-..., person12_bacteria_...) gives the answer away before the model's label.
    order = np.random.default_rng(0).permutation(len(rows))
    df = pd.DataFrame([rows[i] for i in order], columns=["file", "path", "true_label"])
    df.insert(0, "example", [f"Example {k + 1}" for k in range(len(df))])
    return df


def run_members(rep: VariantReport) -> pd.DataFrame:
    """One row per run behind a weight soup or an ensemble: its recipe, validation scores, and
    whether it is part of the model."""
    rows = []
    for m in (rep.soup or rep.ensemble or {}).get("members", []):
        cfg = m.get("config") or {}
        aug = cfg.get("augment") or {}
        rows.append({
            "run": Path(m["file"]).parent.name or m["file"],
            "in model": "yes" if m.get("in_soup", rep.ensemble is not None) else "no",
            "validation log-loss": round(m["val_log_loss"], 4),
            "validation AUC": round(m["val_auc"], 4),
            "seed": cfg.get("seed"),
            "lr": cfg.get("fine_tune_lr"),
            "schedule": cfg.get("lr_schedule"),
            "JPEG re-encoding": f"{aug['jpeg']:.0%} of films" if aug.get("jpeg") else "no",
            "fine-tune epochs": (m.get("epochs_run") or {}).get("finetune"),
            "sha256": m["sha256"][:12],
        })
    return pd.DataFrame(rows)


def ci_description(metrics: dict) -> str:
    """How the confidence intervals in ``metrics.json`` were made, in words."""
    n = metrics.get("bootstrap_resamples", 1000)
    if not n:
        return "none (evaluated without bootstrap)"
    return f"95% percentile bootstrap, {n} resamples of the test {metrics.get('bootstrap_unit', 'images')}"


def protocol(rep: VariantReport) -> dict:
    """The evaluation protocol in words: data counts, validation rule, threshold rule, training setup."""
    t, m = rep.training, rep.metrics
    d = t.get("data", {})
    cfg = t.get("config", {})
    tc = d.get("train_counts", {})
    vc = d.get("val_counts", {})
    epochs = t.get("epochs_run", {})
    out = {
        "Training images": f"{d.get('train_images', '?')} from {d.get('train_patients', '?')} patients "
                           f"({', '.join(f'{v} {k}' for k, v in tc.items())})",
        "Validation": f"{d.get('val_images', '?')} images from {d.get('val_patients', '?')} patients "
                      f"({', '.join(f'{v} {k}' for k, v in vc.items())}); "
                      f"{cfg.get('val_fraction', 0.15):.0%} of the training folder, split by patient so no "
                      "patient is in both",
        "Test": rep.data_caption() + "; never used for training or threshold choice",
        "Threshold rule": f"{t.get('threshold_rule', m.get('threshold_rule', '?'))} -> {rep.threshold:.3f}"
                          + (f" ({t['threshold_note']})" if t.get("threshold_note") else ""),
        "Training": f"head {epochs.get('head', '?')} epochs (lr {cfg.get('head_lr', '?')})"
                    + (f", then fine-tune {epochs.get('finetune')} epochs (lr {cfg.get('fine_tune_lr', '?')})"
                       if epochs.get("finetune") else "")
                    + f"; early stopping on validation AUC (patience {cfg.get('patience', '?')}); "
                      f"class weights; seed {cfg.get('seed', '?')}",
        "Confidence intervals": ci_description(m),
    }
    if rep.ensemble:
        runs = rep.ensemble.get("members", [])
        out["Training"] = (f"output ensemble of {len(runs)} fine-tuned runs: "
                           f"{rep.ensemble.get('combine', 'mean of logits')}. Each run: head on cached features, "
                           f"then the top {FINE_TUNE_LAYERS} layers fine-tuned with early stopping on validation AUC "
                           "and class weights; all validated on the same patient-grouped split")
    elif rep.soup:
        runs = rep.soup.get("members", [])
        kept = [m for m in runs if m.get("in_soup")]
        what = (f"the average of {len(kept)} of {len(runs)} fine-tuned runs" if len(kept) > 1 else
                f"one of {len(runs)} fine-tuned runs ({Path(kept[0]['file']).parent.name}): averaging it with "
                "any other raised the validation loss" if kept else "no run")
        out["Training"] = (f"{rep.soup.get('method', '?')} weight soup (Wortsman et al. 2022) scored by "
                           f"{rep.soup.get('score', '?')}: {what}. Each run: head on cached features, then the top "
                           f"{FINE_TUNE_LAYERS} layers fine-tuned with early stopping on validation AUC and class "
                           "weights")
    if m.get("ood_rejected_fraction") is not None:
        out["Not-a-chest-X-ray filter on test"] = f"{m['ood_rejected_fraction']:.1%} of test images flagged"
    return out
