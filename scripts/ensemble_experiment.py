"""Output ensemble (mean logit) of several fine-tuned runs: validation and test figures.

    python -m scripts.ensemble_experiment RUN.keras RUN.keras ... [--data ../shared/data/chest_xray]
                                                      [--out ensemble.json]

The analysis pre-registered in ``models/experiments/ensemble_preregistration.md``. Every film goes
through ``Predictor.predict_files`` (the product's input path). The threshold is chosen on the
patient-grouped validation split (split seed 42) by the shipped rule; the test split is scored
with it once. Prints and writes one JSON object.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pneumo_core.artifacts import sha256_file
from pneumo_core.config import data_dir
from pneumo_core.datasets import listing
from pneumo_core.evaluation.metrics import THRESHOLD_RULE, choose_threshold, metrics_at
from pneumo_core.inference.predictor import Predictor
from pneumo_core.recorded_paths import record_path
from pneumo_core.training.combine import balanced_log_loss
from pneumo_core.training.trainer import TrainConfig, training_split

ROOT = Path(__file__).resolve().parents[1]


def logits(predictor: Predictor, paths) -> np.ndarray:
    p = np.array([r.p_pneumonia for r in predictor.predict_files(list(paths), reject_ood=False)], dtype="float64")
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", default=str(data_dir()))
    ap.add_argument("--out", default="ensemble.json")
    args = ap.parse_args()

    _, df_val = training_split(TrainConfig(data=args.data))
    df_test = listing.list_images(listing.resolve_split_dir(args.data, "test"))
    y_val, y_test = df_val.label.to_numpy(), df_test.label.to_numpy()
    z_val, z_test, members = [], [], []
    for run in args.runs:
        pred = Predictor(run, verify=False)
        z_val.append(logits(pred, df_val.path))
        z_test.append(logits(pred, df_test.path))
        p_val = 1 / (1 + np.exp(-z_val[-1]))
        members.append({"file": record_path(run), "sha256": sha256_file(run),
                        "val_log_loss": balanced_log_loss(y_val, p_val)})
        print(f"{run}: validation balanced log-loss {members[-1]['val_log_loss']:.4f}", flush=True)
    p_val = 1 / (1 + np.exp(-np.mean(z_val, axis=0)))
    p_test = 1 / (1 + np.exp(-np.mean(z_test, axis=0)))
    t = choose_threshold(y_val, p_val)
    out = {
        "members": members,
        "threshold_rule": THRESHOLD_RULE,
        "threshold": t,
        "validation": {"balanced_log_loss": balanced_log_loss(y_val, p_val), **metrics_at(y_val, p_val, t)},
        "test_at_threshold": metrics_at(y_test, p_test, t),
        "test_at_0.5": metrics_at(y_test, p_test, 0.5),
    }
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: out[k] for k in ("threshold", "validation", "test_at_threshold", "test_at_0.5")}, indent=2))


if __name__ == "__main__":
    main()
