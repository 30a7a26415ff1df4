"""The site-check study on validation films only (no test film is read): which prevalence estimator to fix before
the test films are read, and how the feature-shift statistic responds to changed films.

python -m scripts.site_study [--data DIR] [--out models/experiments/site_check/tuning]

Each model's validation films (``reports/<model>/validation_predictions.csv``) are scored as they are and under
ten photometric changes of the model input (gamma, contrast, brightness, blur, noise, JPEG at quality 20, a
combination). The validation patients are split in two folds (seed 24); the calibration and every estimator's
validation figures are fitted on one fold, and sites of 300 films are drawn (with replacement, 25 draws) from the
other fold's changed films at pneumonia shares 0.2, 0.4, 0.6 and 0.8; then the folds swap. Per estimator: mean
absolute error in points over the changed conditions (the selection figure, fixed before this ran), over the
unchanged one, and the worst condition's. The rule: the estimator with the lowest mean absolute error over the
changed conditions for the shipped default model (fine-tuned) is the one pre-registered.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from pneumo_core.config import data_dir
from pneumo_core.recorded_paths import record
from pneumo_core.site.calibration import fit_calibration
from pneumo_core.site.reference import score_films, training_sample, validation_films
from pneumo_core.site.shift import ESTIMATORS, SEED, PrevalenceModel, ShiftReference, feature_shift

SHARES = (0.2, 0.4, 0.6, 0.8)
SITE_FILMS, DRAWS = 300, 25


def _jpeg(u: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((u[..., 0] * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=quality)
    grey = np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float32) / 255
    return np.repeat(grey[..., None], 3, axis=2)


def _blur(u: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(u, (0, 0), sigma)


def _contrast(u: np.ndarray, factor: float) -> np.ndarray:
    return (u - u.mean()) * factor + u.mean()


def changes(rng) -> dict:
    """Name -> function of one model input's [0, 1] pixels; each a change a scanner or a protocol could make."""
    return {
        "none": lambda u: u,
        "gamma 0.67": lambda u: u ** 0.67, "gamma 1.5": lambda u: u ** 1.5,
        "contrast x0.7": lambda u: _contrast(u, 0.7), "contrast x1.4": lambda u: _contrast(u, 1.4),
        "brightness +0.08": lambda u: u + 0.08, "brightness -0.08": lambda u: u - 0.08,
        "blur sigma 1.2": lambda u: _blur(u, 1.2), "noise sd 0.04": lambda u: u + rng.normal(0, 0.04, u.shape),
        "JPEG quality 20": lambda u: _jpeg(u, 20),
        "gamma 1.3 + contrast x1.2 + blur 0.8": lambda u: _blur(_contrast(u ** 1.3, 1.2), 0.8),
    }


def study(model: str, root: Path, permutations: int) -> dict:
    from pneumo_core import Predictor
    from pneumo_core.datasets.listing import resolve_split_dir
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.preprocess import model_input

    predictor = Predictor(model)
    train_dir = resolve_split_dir(root, "train")
    val = validation_films(Path(predictor.report_dir), train_dir)
    y = val.label.to_numpy()
    x = np.stack([model_input(load_path(p)) for p in val.path])
    reference = ShiftReference.fit(score_films(predictor, training_sample(train_dir, val.file).path)[1])
    rng = np.random.default_rng(SEED)
    scored = {}
    for name, change in changes(rng).items():
        u = np.stack([np.clip(change((xi + 1) / 2), 0, 1) for xi in x]).astype(np.float32)
        p, f = [], []
        for s in range(0, len(u), 16):
            pb, fb = predictor.predict_arrays(u[s : s + 16] * 2 - 1)
            p.append(pb)
            f.append(fb[:, :1280])
        scored[name] = (np.concatenate(p).astype(float), np.concatenate(f))

    patients = np.array(sorted(val.patient.unique()), dtype=object)
    rng.shuffle(patients)
    fold_of = {pt: i % 2 for i, pt in enumerate(patients)}
    fold = val.patient.map(fold_of).to_numpy()
    errors = {e: {c: [] for c in scored} for e in ESTIMATORS}
    for fit_fold in (0, 1):
        fit, site = fold == fit_fold, fold != fit_fold
        p0 = scored["none"][0]
        model_ = PrevalenceModel.fit(y[fit], p0[fit], fit_calibration(y[fit], p0[fit]), predictor.threshold)
        pos, neg = np.where(site & (y == 1))[0], np.where(site & (y == 0))[0]
        for name, (p, _) in scored.items():
            for share in SHARES:
                for _ in range(DRAWS):
                    k = rng.binomial(SITE_FILMS, share)
                    idx = np.concatenate([rng.choice(pos, k), rng.choice(neg, SITE_FILMS - k)])
                    truth = k / SITE_FILMS
                    for e, fn in ESTIMATORS.items():
                        errors[e][name].append(100 * abs(fn(p[idx], model_) - truth))
    table = {e: {c: float(np.mean(v)) for c, v in per.items()} for e, per in errors.items()}
    summary = {e: {"mae_changed": float(np.mean([v for c, v in t.items() if c != "none"])),
                   "mae_unchanged": t["none"], "worst_condition": max(t, key=t.get), "worst_mae": max(t.values())}
               for e, t in table.items()}
    shift = {}
    for name, (p, f) in scored.items():
        test = feature_shift(f, reference, permutations)
        shift[name] = {"statistic": test.statistic, "p_value": test.p_value,
                       "specificity_at_threshold": float((p[y == 0] < predictor.threshold).mean()),
                       "sensitivity_at_threshold": float((p[y == 1] >= predictor.threshold).mean())}
    return {"model": model, "threshold": predictor.threshold, "validation_films": int(len(y)),
            "mae_points_by_condition": table, "summary": summary, "feature_shift_of_all_validation_films": shift}


def main(argv=None) -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--data", default=str(data_dir()))
    a.add_argument("--out", default="models/experiments/site_check/tuning")
    a.add_argument("--models", nargs="+", default=["finetuned", "frozen"])
    a.add_argument("--permutations", type=int, default=200)
    args = a.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {m: study(m, Path(args.data), args.permutations) for m in args.models}
    chosen = min(results[args.models[0]]["summary"], key=lambda e: results[args.models[0]]["summary"][e]["mae_changed"])
    doc = record({"data": str(Path(args.data) / "train"), "seed": SEED, "site_films": SITE_FILMS, "draws": DRAWS,
                  "shares": SHARES, "rule": "lowest mean absolute error over the changed conditions, "
                  f"{args.models[0]} model", "chosen": chosen, "results": results})
    (out / "estimator_comparison.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({m: r["summary"] for m, r in results.items()} | {"chosen": chosen}, indent=2))


if __name__ == "__main__":
    main()
