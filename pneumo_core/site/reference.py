"""What ships with each model for the site tools, and the command that makes it (``python -m pneumo_core site
calibrate``): the calibration fitted on the validation films (``calibration.json``, with its ECE on validation and,
reported only, on the saved test scores), the training films' feature reference (``shift_reference.npz``, listed in
``models/MANIFEST.json``) and validation's shift statistic (``shift.json``)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from pneumo_core.site.calibration import CALIBRATION_FILE, calibration_figures, fit_calibration
from pneumo_core.site.shift import FIGURES_FILE, REFERENCE_FILE, SEED, ShiftReference, feature_shift

TRAINING_SAMPLE = 600  # training films in the feature reference (whole patients, seeded)
FEATURE_DIM = 1280  # one MobileNetV2's pooled features: an ensemble's first member, as the OOD guard


def score_films(predictor, paths, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(raw scores, pooled features of the first member) of the films at ``paths``, in order. Raises
    :class:`~pneumo_core.errors.ImageError` for a film that cannot be read."""
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.preprocess import model_input

    scores, features = [], []
    paths = list(paths)
    for start in range(0, len(paths), batch_size):
        x = np.stack([model_input(load_path(p)) for p in paths[start : start + batch_size]])
        p, f = predictor.predict_arrays(x)
        if f is None:
            raise ValueError(f"{predictor.name} gives no pooled features, so its films cannot be compared")
        scores.append(np.asarray(p, float))
        features.append(np.asarray(f, np.float32)[:, :FEATURE_DIM])
    return np.concatenate(scores), np.concatenate(features)


def training_sample(train_dir: str | Path, validation_files, n: int = TRAINING_SAMPLE, seed: int = SEED):
    """Whole patients of the training part (``train/`` without the validation films), drawn with ``seed`` until
    ``n`` films: the listing rows (path, file, label, patient)."""
    from pneumo_core.datasets.listing import list_images

    films = list_images(train_dir)
    films = films[~films.file.isin(set(validation_files))]
    patients = np.array(sorted(films.patient.unique()), dtype=object)
    np.random.default_rng(seed).shuffle(patients)
    counts = films.groupby("patient").size()
    keep = patients[: int(np.searchsorted(np.cumsum(counts[patients].to_numpy()), n)) + 1]
    return films[films.patient.isin(set(keep))].reset_index(drop=True)


def validation_films(report_dir: Path, train_dir: str | Path):
    """The model's validation films (``validation_predictions.csv``) with their paths under ``train_dir``."""
    import pandas as pd

    val = pd.read_csv(Path(report_dir) / "validation_predictions.csv")
    names = {0: "NORMAL", 1: "PNEUMONIA"}
    return val.assign(path=[str(Path(train_dir) / names[int(y)] / f) for f, y in zip(val.file, val.label)])


def build(predictor, data_root: str | Path, permutations: int = 500) -> dict:
    """Fit and write the three files of ``predictor``'s reports folder from the training part of ``data_root``
    (validation films and a training sample are scored again, with their features); record the reference in the
    manifest. Returns what was written (no machine paths)."""
    import pandas as pd

    from pneumo_core.datasets.listing import resolve_split_dir
    from pneumo_core.inference.model_files import record_ood_detector

    report_dir = Path(predictor.report_dir)
    train_dir = resolve_split_dir(data_root, "train")
    val = validation_films(report_dir, train_dir)
    p_val, f_val = score_films(predictor, val.path)
    drift = float(np.max(np.abs(p_val - val.p_pneumonia.to_numpy())))
    sample = training_sample(train_dir, val.file)
    _, f_train = score_films(predictor, sample.path)

    calibration = fit_calibration(val.label, p_val)  # the runtime's scores, as a site's films get them
    figures = {"validation": calibration_figures(val.label.to_numpy(), p_val, calibration)}
    test_csv = report_dir / "test_predictions.csv"
    if test_csv.is_file():  # reported, never fitted on: the saved scores of the model's test evaluation
        test = pd.read_csv(test_csv)
        figures["test (reported only; saved scores, test_predictions.csv)"] = calibration_figures(
            test.label.to_numpy(), test.p_pneumonia.to_numpy(), calibration)
    calibration = replace(calibration, figures=figures)
    calibration.save(report_dir / CALIBRATION_FILE)

    reference = replace(ShiftReference.fit(f_train), validation_p=p_val, validation_y=val.label.to_numpy())
    reference.save(report_dir / REFERENCE_FILE)
    reference = ShiftReference.load(report_dir / REFERENCE_FILE)  # the statistic as shipped: float16 round trip
    test_val = feature_shift(f_val, reference, permutations)
    shift = {**_read(report_dir / FIGURES_FILE),
             "validation": {"statistic": test_val.statistic, "p_value": test_val.p_value, "n": test_val.n},
             "reference": {"training_films": int(len(sample)), "patients": int(sample.patient.nunique()),
                           "seed": SEED, "components": int(reference.axes.shape[0])}}
    (report_dir / FIGURES_FILE).write_text(json.dumps(shift, indent=2) + "\n")
    # a batch-level out-of-distribution reference: listed beside the per-film detectors, checked the same way
    record_ood_detector(report_dir.parent.parent, report_dir / REFERENCE_FILE)
    return {"model": predictor.name, "calibration": {k: v for k, v in calibration.to_json().items() if k != "figures"},
            "ece": {k: {"raw": v["ece_raw"], "calibrated": v["ece_calibrated"]} for k, v in figures.items()},
            "validation_runtime_vs_saved_scores_max_abs_dp": drift, "shift": shift}


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
