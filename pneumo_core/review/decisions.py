"""What the dashboard says about each film and each model, without Streamlit: the decision and
flag per film, the review table's rows, the model overview, the train -> test shift sentence,
confidence-interval captions, and rates at a threshold.

Pages and widgets in ``ui/`` only lay these out; tests reach them directly.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_core.config import DEFAULT_VARIANT, label_at
from pneumo_core.evaluation import reports

USE_NOTE = "research and teaching only; not a diagnostic device"  # travels with every exported table
NOT_CHEST_XRAY = "not a chest X-ray"
UNREADABLE = "unreadable file"
NEAR_THRESHOLD_FLAG = "near threshold: review"
REVIEW_COLUMNS = ["file", "label", "p_pneumonia", "p_calibrated", "confidence", "flag", "error", "model",
                  "model_sha256", "threshold", "operating_point", "use"]


def plural(n: int, word: str) -> str:
    """``"1 file"``, ``"3 files"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def safe_file_stem(name: str, limit: int = 80) -> str:
    """A download name's stem made from an uploaded file's name: letters, digits, ``-_.`` only."""
    stem = Path(name).stem or "study"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:limit]


# ---------------------------------------------------------------------------- one film
def decision(pred, threshold: float) -> dict:
    """Label and confidence cue of a :class:`~pneumo_core.inference.predictor.Prediction` at ``threshold``
    (the score itself does not change): ``label``, ``p`` and ``confidence``, all None when the
    film was not scored."""
    if pred.error or pred.p_pneumonia is None:
        return {"label": None, "p": None, "confidence": None}
    return {"label": label_at(pred.p_pneumonia, threshold), "p": float(pred.p_pneumonia),
            "confidence": reports.confidence(pred.p_pneumonia, threshold)}


def at_threshold(pred, threshold: float | None):
    """``pred`` labelled at ``threshold``: a copy (predictions are immutable), or ``pred`` itself when ``threshold``
    is None or its own. A film that was not scored keeps no label."""
    from dataclasses import replace

    if threshold is None or pred.threshold == float(threshold):
        return pred
    label = None if pred.error or pred.p_pneumonia is None else label_at(pred.p_pneumonia, threshold)
    return replace(pred, threshold=float(threshold), label=label)


def flag_for(pred, threshold: float) -> str:
    """What a reviewer should look at: why a film was not scored, a score near the threshold,
    and the image-handling notes; ``"ok"`` when there is nothing."""
    if pred.error:
        return NOT_CHEST_XRAY if pred.is_chest_xray is False else UNREADABLE
    flags = [NEAR_THRESHOLD_FLAG] if reports.confidence(pred.p_pneumonia, threshold)["level"] == "low" else []
    flags += list(pred.notes)
    return "; ".join(flags) or "ok"


def review_rows(preds: list, threshold: float, op_name: str = "", model_sha256: str | None = None,
                calibration=None) -> pd.DataFrame:
    """One row per film; the provenance columns (model, its SHA-256, threshold, operating point,
    use) travel with the CSV download, where no page caption can. ``p_calibrated``: the score through the model's
    :class:`~pneumo_core.site.calibration.Calibration` (fitted on validation), empty without one."""
    rows = []
    for pred in preds:
        d = decision(pred, threshold)
        rows.append({"file": pred.file, "label": d["label"] or "",
                     "p_pneumonia": round(d["p"], 4) if d["p"] is not None else None,
                     "p_calibrated": round(float(calibration.apply(d["p"])), 4)
                     if d["p"] is not None and calibration is not None else None,
                     "confidence": d["confidence"]["level"] if d["confidence"] else "",
                     "flag": flag_for(pred, threshold), "error": pred.error or "", "model": pred.model,
                     "model_sha256": model_sha256 or "", "threshold": round(threshold, 4),
                     "operating_point": op_name, "use": USE_NOTE})
    return pd.DataFrame(rows, columns=REVIEW_COLUMNS)


# ---------------------------------------------------------------------------- rates at a threshold
def rates_at(labels, scores, threshold: float) -> dict:
    """Counts, sensitivity and specificity of ``scores`` at ``threshold`` (PNEUMONIA when
    score >= threshold), as ``evaluate.metrics_at`` gives them (0.0 when a class is absent), in
    microseconds: the sidebar recomputes them on every move of the threshold slider."""
    truth = np.asarray(labels).astype(int) == 1
    positive = np.asarray(scores, dtype=float) >= float(threshold)
    tp, fn = int(np.sum(truth & positive)), int(np.sum(truth & ~positive))
    fp, tn = int(np.sum(~truth & positive)), int(np.sum(~truth & ~positive))
    return {"confusion_matrix": [[tn, fp], [fn, tp]], "n": tp + fn + fp + tn,
            "sensitivity": tp / (tp + fn) if (tp + fn) else 0.0,
            "specificity": tn / (tn + fp) if (tn + fp) else 0.0}


def npv(confusion_matrix) -> float:
    """Negative predictive value TN / (TN + FN) of a ``[[tn, fp], [fn, tp]]`` matrix (0.0 when
    nothing was called NORMAL)."""
    (tn, _), (fn, _) = confusion_matrix
    return tn / (tn + fn) if (tn + fn) else 0.0


# ---------------------------------------------------------------------------- models
def models_overview(reps: dict, sha256_of: Callable[[Path], str]) -> pd.DataFrame:
    """One row per shipped model: status, whether its file is the one evaluated (``sha256_of``
    hashes a model file; the dashboard passes a cached one), test AUC/accuracy, threshold, data."""
    rows = []
    for v, rep in reps.items():
        row = {"model": rep.name, "status": "ready" if rep.available else "not available yet",
               "matches evaluated model": "", "test AUC": None, "test accuracy": None, "threshold": None,
               "sha256": "", "file": f"models/{rep.model_path.name}", "training data": ""}
        block = rep.metrics.get("at_threshold")
        if block:
            row.update({"test AUC": round(block["auc"], 3), "test accuracy": round(block["accuracy"], 3),
                        "threshold": round(block["threshold"], 3)})
        data = rep.training.get("data", {})
        if data:
            row["training data"] = (f"{data.get('train_images')} train + {data.get('val_images')} val images, "
                                    f"{data.get('train_patients', 0) + data.get('val_patients', 0)} patients")
        if rep.model_present:
            sha = sha256_of(rep.model_path)
            evaluated = rep.metrics.get("model_sha256")
            row["sha256"] = sha
            same = evaluated == sha or evaluated in export_hashes(rep.model_path, sha, sha256_of)
            row["matches evaluated model"] = ("yes" if same else "NO: reports are stale") if evaluated else "no report"
        rows.append(row)
    return pd.DataFrame(rows)


def export_hashes(model_path: Path, model_sha256: str, sha256_of: Callable[[Path], str]) -> set[str]:
    """The SHA-256 of the LiteRT export beside ``model_path`` (``<name>.tflite``) when its sidecar says it was
    exported from that very file, else none: a report written by ``evaluate`` on the default LiteRT backend
    records the export's hash, and it evaluated the same model."""
    from pneumo_core.artifacts import read_json, sidecar

    export = Path(model_path).with_suffix(".tflite")
    if export.is_file() and read_json(sidecar(export)).get("source_sha256") == model_sha256:
        return {sha256_of(export)}
    return set()


def shift_summary(reps: dict, variant: str = DEFAULT_VARIANT) -> str:
    """One sentence on the train -> test shift of model ``variant``, with its own figures; "" when
    its validation or test figures are missing."""
    rep = reps.get(variant)
    test = rep.metrics.get("at_threshold") if rep else None
    val = rep.training.get("validation") if rep else None
    if not (test and val):
        return ""
    (tn, fp), (fn, tp) = test["confusion_matrix"]
    return (f"On the official test split, a later batch from the same centre, the {rep.name}'s specificity at "
            f"its threshold {test['threshold']:.3f} falls from {val['specificity']:.1%} on validation to "
            f"{test['specificity']:.1%}: {fp} of {tn + fp} normal films are called PNEUMONIA, against {fn} of "
            f"{fn + tp} pneumonia films missed.")


def ci_caption(reps: dict) -> str:
    """How the error bars of a metrics chart were made, for the models in ``reps``."""
    methods = sorted({reports.ci_description(r.metrics) for r in reps.values()})
    return ("Error bars: " + "; ".join(methods) + " (from metrics.json). Overlapping intervals do not by "
            "themselves show that two models are equivalent.")
