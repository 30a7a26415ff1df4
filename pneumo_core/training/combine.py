"""Combining several fine-tuned runs into one model: a weight soup (Wortsman et al. 2022) or an
output ensemble, each scored and thresholded on the runs' shared validation split and saved like a
trained model. The test split is never read here.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_core.artifacts import read_csv, read_json, reports_dir, sha256_file
from pneumo_core.config import model_path
from pneumo_core.evaluation.metrics import metrics_at
from pneumo_core.inference.model_files import load_model
from pneumo_core.recorded_paths import resolve
from pneumo_core.training.builders import build_ensemble, build_model
from pneumo_core.training.data import class_weights
from pneumo_core.training.trainer import (
    HEAD_START,
    TrainConfig,
    save_with_reports,
    training_split,
    validation_predictions,
)


def balanced_log_loss(y, p) -> float:
    """Validation log-loss with each class weighted equally, as in the training loss."""
    from sklearn.metrics import log_loss

    y = np.asarray(y)
    w = class_weights(y)
    return float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), sample_weight=np.where(y == 1, w[1], w[0]), labels=[0, 1]))


def average_weights(weight_lists: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Element-wise mean of several models' ``get_weights()`` (same architecture)."""
    first = weight_lists[0]
    for other in weight_lists[1:]:
        if len(other) != len(first) or any(a.shape != b.shape for a, b in zip(first, other)):
            raise ValueError("soup members must have the same architecture (same variant and head)")
    return [np.mean([w[i] for w in weight_lists], axis=0).astype(first[i].dtype) for i in range(len(first))]


def greedy_soup(weight_lists: list[list[np.ndarray]], member_losses: list[float], score,
                method: str = "greedy", trace: list | None = None) -> tuple[list[int], list[np.ndarray]]:
    """Model soup (Wortsman et al., ICML 2022). ``score(weights)`` is a loss on validation data;
    ``member_losses`` the members' own losses.

    ``uniform``: the mean of all members. ``greedy``: members sorted by their own loss; each
    is kept only if adding it to the soup does not raise the loss (each try is appended to
    ``trace``). Returns the indices used and the averaged weights."""
    if method == "uniform":
        return list(range(len(weight_lists))), average_weights(weight_lists)
    if method != "greedy":
        raise ValueError(f"unknown soup method {method!r}")
    order = sorted(range(len(weight_lists)), key=lambda i: member_losses[i])
    used, best = [order[0]], member_losses[order[0]]
    for i in order[1:]:
        candidate = average_weights([weight_lists[j] for j in used + [i]])
        loss = score(candidate)
        if trace is not None:
            trace.append({"tried": used + [i], "val_log_loss": loss, "kept": loss <= best})
        if loss <= best:
            used, best = used + [i], loss
    return used, average_weights([weight_lists[j] for j in used])


def _member_recipe(path: Path) -> dict:
    """How a member was trained, from the ``training.json`` written next to it (if any)."""
    info = read_json(reports_dir(path) / "training.json")
    if not info:
        return {}
    cfg = info.get("config", {})
    keep = ("seed", "head_seed", "fine_tune_lr", "lr_schedule", "patience", "augment")
    return {"command": info.get("command"), "config": {k: cfg.get(k) for k in keep},
            "epochs_run": info.get("epochs_run"), "own_val_threshold": info.get("threshold")}


def _check_same_validation_split(path: Path, df_val: pd.DataFrame) -> None:
    """Refuse a member whose own validation films (saved next to it) differ from ``df_val``:
    it may have trained on films the soup or ensemble is scored and thresholded on."""
    saved = read_csv(reports_dir(path) / "validation_predictions.csv")
    if saved is not None and set(saved["file"]) != set(df_val["file"]):
        raise ValueError(f"{path} was validated on a different split ({len(saved)} films, "
                         f"{len(set(saved['file']) - set(df_val['file']))} not in this one): train every member "
                         "with the same --split-seed and pass it to soup or ensemble")


def _member_record(path, df_val: pd.DataFrame, val_loss: float, p_val: np.ndarray) -> dict:
    """Provenance and validation scores of one member of a soup or ensemble (the caller has
    checked that it was validated on ``df_val``)."""
    rec = {"file": str(path), "sha256": sha256_file(path), "val_log_loss": val_loss,
           "val_auc": metrics_at(df_val.label.to_numpy(), p_val, 0.5)["auc"], **_member_recipe(Path(path))}
    print(f"member {path}: validation balanced log-loss {val_loss:.4f}, AUC {rec['val_auc']:.4f}", flush=True)
    return rec


def soup(members: list[str | Path], cfg: TrainConfig, method: str = "greedy", command: str | None = None) -> dict:
    """Average fine-tuned models that started from the same weights into one model.

    The members (``.keras`` files of one variant) are scored on the validation split of
    ``cfg`` (the split they were trained with); the soup is saved like a trained model, with
    its own validation threshold, OOD detector and provenance. The test split is never read."""
    t0 = time.time()
    df_train, df_val = training_split(cfg)
    for path in members:  # before any model is loaded
        _check_same_validation_split(Path(path), df_val)
    y_val = df_val.label.to_numpy()
    model = build_model(cfg.variant, weights=None, dropout=cfg.dropout)
    weight_lists = [load_model(m).get_weights() for m in members]

    def evaluate(weights) -> tuple[float, np.ndarray]:
        model.set_weights(weights)
        p = validation_predictions(model, df_val, cfg.batch_size)
        return balanced_log_loss(y_val, p), p

    member_info = [_member_record(path, df_val, *evaluate(w)) for path, w in zip(members, weight_lists)]
    trace: list = []
    used, weights = greedy_soup(weight_lists, [m["val_log_loss"] for m in member_info], lambda w: evaluate(w)[0],
                                method, trace)
    for step in trace:
        print(f"  tried members {step['tried']}: validation log-loss {step['val_log_loss']:.4f} "
              f"({'kept' if step['kept'] else 'not kept'})", flush=True)
    loss, p_val = evaluate(weights)
    for i, m in enumerate(member_info):
        m["in_soup"] = i in used
    print(f"soup ({method}) of members {used}: validation balanced log-loss {loss:.4f}", flush=True)
    model.set_weights(weights)
    if len(used) == 1:  # the "soup" is one run: its training curves are the model's own
        src = reports_dir(members[used[0]])
        dst = reports_dir(model_path(cfg.variant, cfg.out))
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.glob("history_*.csv"):
            shutil.copyfile(f, dst / f.name)
    extra = {
        "command": command,
        "soup": {"method": method, "score": "class-balanced log-loss on the validation split",
                 "members": member_info, "greedy_steps": trace, "val_log_loss": loss,
                 "reference": "Wortsman et al., Model soups, ICML 2022"},
        "timing_s": {"total": round(time.time() - t0, 1)},
    }
    return save_with_reports(model, cfg, df_train, df_val, extra, p_val=p_val)


def ensemble(members: list[str | Path], cfg: TrainConfig, command: str | None = None) -> dict:
    """One model that averages the logits of ``members`` (``.keras`` classifiers validated on the
    split of ``cfg``), saved like a trained model with its own validation threshold, OOD detector
    (on the features of the member with the lowest validation loss, placed first) and provenance.
    The test split is never read."""
    t0 = time.time()
    df_train, df_val = training_split(cfg)
    for path in members:  # before any model is loaded
        _check_same_validation_split(Path(path), df_val)
    y_val = df_val.label.to_numpy()
    models, records = [], []
    for path in members:
        m = load_model(path)
        p = validation_predictions(m, df_val, cfg.batch_size)
        models.append(m)
        records.append(_member_record(path, df_val, balanced_log_loss(y_val, p), p))
    order = sorted(range(len(models)), key=lambda i: records[i]["val_log_loss"])
    model = build_ensemble([models[i] for i in order])
    p_val = validation_predictions(model, df_val, cfg.batch_size)
    loss = balanced_log_loss(y_val, p_val)
    print(f"ensemble of {len(models)}: validation balanced log-loss {loss:.4f}", flush=True)
    extra = {
        "command": command,
        "ensemble": {"combine": "sigmoid of the mean of the members' logits", "members": [records[i] for i in order],
                     "order": "by validation loss; the OOD check uses member 0's pooled features",
                     "score": "class-balanced log-loss on the validation split", "val_log_loss": loss},
        "timing_s": {"total": round(time.time() - t0, 1)},
    }
    return save_with_reports(model, cfg, df_train, df_val, extra, p_val=p_val, rebuild=False)


def interpolate_weights(start: list[np.ndarray], end: list[np.ndarray], alpha: float) -> list[np.ndarray]:
    """``(1 - alpha) * start + alpha * end``, layer by layer (same architecture)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if len(start) != len(end) or any(a.shape != b.shape for a, b in zip(start, end)):
        raise ValueError("WiSE-FT needs the start and the fine-tuned model of one run (same architecture)")
    return [((1.0 - alpha) * a + alpha * b).astype(b.dtype) for a, b in zip(start, end)]


def wise_ft(finetuned: str | Path, out: str | Path, alpha: float = 0.5, data: str | None = None,
            command: str | None = None) -> dict:
    """WiSE-FT (Wortsman et al., CVPR 2022): the weights of a fine-tuned run interpolated with
    those of its own head-only start (saved by ``train`` beside its reports), ``alpha`` of the
    way to the fine-tuned end. The protocol, split and data come from the run's ``training.json``,
    so the result is validated and thresholded on the very films the run was; saved like a
    trained model under ``out``. The test split is never read."""
    t0 = time.time()
    finetuned = Path(finetuned)
    info = read_json(reports_dir(finetuned) / "training.json")
    start = reports_dir(finetuned) / HEAD_START
    if not info or info.get("variant") != "finetuned" or not start.is_file():
        raise FileNotFoundError(f"{finetuned} has no fine-tuned training record with its head-only start "
                                f"({start.name}): WiSE-FT needs a run trained by this version of `train`")
    fields = set(TrainConfig.__dataclass_fields__)
    cfg = TrainConfig(**{k: v for k, v in info["config"].items() if k in fields})
    cfg.out, cfg.data = str(out), data or str(resolve(cfg.data))  # recorded as $PNEUMO_DATA_DIR or relative
    df_train, df_val = training_split(cfg)
    _check_same_validation_split(finetuned, df_val)
    model = build_model("finetuned", weights=None, dropout=cfg.dropout)
    model.load_weights(str(start))
    start_weights = model.get_weights()
    model.set_weights(interpolate_weights(start_weights, load_model(finetuned).get_weights(), alpha))
    p_val = validation_predictions(model, df_val, cfg.batch_size)
    dst = reports_dir(model_path(cfg.variant, cfg.out))
    dst.mkdir(parents=True, exist_ok=True)
    for f in reports_dir(finetuned).glob("history_*.csv"):  # the run's curves: the end point's own
        shutil.copyfile(f, dst / f.name)
    extra = {
        "command": command,
        "wise_ft": {"alpha": alpha, "start": f"{finetuned.name}'s head-only start ({HEAD_START})",
                    "finetuned": {"file": str(finetuned), "sha256": sha256_file(finetuned),
                                  "command": info.get("command"), "epochs_run": info.get("epochs_run")},
                    "val_log_loss": balanced_log_loss(df_val.label.to_numpy(), p_val),
                    "reference": "Wortsman et al., Robust fine-tuning of zero-shot models, CVPR 2022"},
        "timing_s": {"total": round(time.time() - t0, 1)},
    }
    return save_with_reports(model, cfg, df_train, df_val, extra, p_val=p_val)
