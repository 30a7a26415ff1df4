"""The label-free site check of a set of films (``python -m pneumo_core site check``; the page's shift panel):
scores and features from the model, the shift statistic beside validation's and the official test batch's, the
positive rate at the active threshold, the prevalence estimate with its interval, and a plain verdict."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pneumo_core.errors import ImageError, SiteDataError
from pneumo_core.site.calibration import load_calibration
from pneumo_core.site.shift import (
    PREVALENCE_ESTIMATOR,
    REFERENCE_FILE,
    PrevalenceModel,
    ShiftReference,
    feature_shift,
    prevalence_with_interval,
    read_figures,
)

MIN_FILMS = 10  # fewer, and neither the statistic nor the prevalence says anything
SIGNIFICANCE = 0.05
RECALIBRATE = "python -m pneumo_core site calibrate --model {m} --data DIR"


def prevalence_model(predictor, reference: ShiftReference | None = None) -> PrevalenceModel:
    """The prevalence estimators' validation knowledge for ``predictor``'s model: its calibration and the
    validation films' runtime scores kept in its shift reference."""
    report_dir = Path(predictor.report_dir) if predictor.report_dir else None
    calibration = load_calibration(report_dir)
    reference = reference or shift_reference(predictor)
    if calibration is None or reference.validation_p is None:
        raise SiteDataError(f"{predictor.name} has no calibration.json or validation scores in its reports folder; "
                            f"make them with {RECALIBRATE.format(m=predictor.name)}")
    return PrevalenceModel.fit(reference.validation_y, reference.validation_p, calibration, predictor.threshold)


def shift_reference(predictor) -> ShiftReference:
    """The model's training feature reference, checked against the manifest of its models folder."""
    from pneumo_core.inference.model_files import verify_against_manifest

    report_dir = Path(predictor.report_dir) if predictor.report_dir else None
    path = report_dir / REFERENCE_FILE if report_dir else None
    if path is None or not path.is_file():
        raise SiteDataError(f"{predictor.name} has no {REFERENCE_FILE} in its reports folder; make it with "
                            f"{RECALIBRATE.format(m=predictor.name)}")
    rebuild = RECALIBRATE.format(m=predictor.name)
    verify_against_manifest(path, models_dir=report_dir.parent.parent,
                            remedy=f"Restore it (git checkout models/) or rebuild it: {rebuild}.")
    return ShiftReference.load(path)


def _shown(statistic: float) -> str:
    """MMD^2 to three decimals; the unbiased estimate dips below 0 when there is no difference: shown as 0.000."""
    return f"{max(statistic, 0.0):.3f}"


def _specificity(predictor) -> tuple[float, float] | None:
    """The model's specificity at its threshold on validation and on the official test split, from its reports."""
    from pneumo_core.artifacts import read_json

    val = predictor.operating_points.get("default (95% sensitivity)", {}).get("val_specificity")
    test = read_json(Path(predictor.report_dir) / "metrics.json").get("at_threshold", {}).get("specificity") \
        if predictor.report_dir else None
    return (val, test) if val is not None and test is not None else None


def verdict(n: int, positive_rate: float, threshold: float, estimate: float, interval, shift: dict,
            figures: dict, specificity: tuple[float, float] | None = None) -> str:
    """What the check says, and what it cannot, in plain words (``specificity``: the model's on validation and
    on the official test batch, to say what that batch's shift cost)."""
    val, test = figures.get("validation", {}).get("statistic"), figures.get("official_test", {})
    if shift["p_value"] >= SIGNIFICANCE:
        where = (f"their features are not detectably different from the training films' (p = {shift['p_value']:.2f}; "
                 "that is no evidence that the model works on them)")
    else:
        where = f"their features differ from the training films' (p = {shift['p_value']:.3f})"
    figures_said = [f"these films {_shown(shift['statistic'])}"]
    if val is not None:
        figures_said.append(f"validation films from the training source {_shown(val)}")
    if test.get("statistic") is not None:
        cost = (f", on which specificity fell from {specificity[0]:.0%} to {specificity[1]:.0%}"
                if specificity else "")
        figures_said.append(f"the official test batch {_shown(test['statistic'])}{cost}")
    where += (f". Shift statistic: {'; '.join(figures_said)}. Its size says how different the films are, not how "
              "much accuracy that costs: on validation films, exposure and contrast changes with larger figures "
              "cost the model almost nothing")
    landed = test.get("prevalence_error_points")
    estimate_note = (f" On the official test batch this estimate was off by {landed:+.0f} points: when the films "
                     "change, the scores move and the estimate with them, so read it as a rough figure."
                     if landed is not None else "")
    return (f"{n} films: {where}. The model calls {positive_rate:.0%} of them PNEUMONIA at threshold "
            f"{threshold:.3f}; their pneumonia share is estimated at {estimate:.0%} (95 % interval "
            f"{interval[0]:.0%}-{interval[1]:.0%}, from the films' sampling alone).{estimate_note} This check reads "
            "no labels: it cannot say whether the model is right on these films; only the site's own reads "
            "(site validate) measure that.")


def check_scores(p, features, predictor, permutations: int | None = None) -> dict:
    """The check on already scored films: raw scores ``p`` and pooled ``features`` (rows in the same order)."""
    p = np.asarray(p, dtype=float)
    if len(p) < MIN_FILMS:
        raise SiteDataError(f"the site check needs at least {MIN_FILMS} readable chest films; got {len(p)}")
    kwargs = {"permutations": permutations} if permutations is not None else {}
    reference = shift_reference(predictor)
    test = feature_shift(features, reference, **kwargs)
    figures = read_figures(predictor.report_dir)
    estimate, interval = prevalence_with_interval(p, prevalence_model(predictor, reference))
    positive_rate = float((p >= predictor.threshold).mean())
    shift = {"statistic": test.statistic, "p_value": test.p_value,
             "reference_statistic": figures.get("official_test", {}).get("statistic"),
             "validation_statistic": figures.get("validation", {}).get("statistic"),
             "name": "MMD^2 against training films (32 principal components, Gaussian kernel)"}
    return {"model": predictor.name, "n": int(len(p)), "threshold": float(predictor.threshold),
            "positive_rate": positive_rate, "prevalence_estimate": float(estimate),
            "prevalence_ci": [float(v) for v in interval], "prevalence_estimator": PREVALENCE_ESTIMATOR,
            "feature_shift": shift,
            "verdict": verdict(len(p), positive_rate, predictor.threshold, estimate, interval, shift, figures,
                               _specificity(predictor))}


def check_films(predictor, paths, with_scores: bool = False):
    """The check on films at ``paths``: unreadable files and images the OOD guard refuses are left out and
    counted (``unreadable``, ``not_chest_xray``). ``with_scores``: also return the scores used."""
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.preprocess import model_input
    from pneumo_core.site.reference import FEATURE_DIM

    paths = list(paths)
    scores, features, unreadable, rejected = [], [], 0, 0
    for start in range(0, len(paths), 16):
        inputs = []
        for path in paths[start : start + 16]:
            try:
                inputs.append(model_input(load_path(path)))
            except ImageError:
                unreadable += 1
        if not inputs:
            continue
        p, f = predictor.predict_arrays(np.stack(inputs))
        keep = (predictor.ood.distance(f) <= predictor.ood.threshold if predictor.ood is not None
                else np.ones(len(p), bool))
        rejected += int((~keep).sum())
        scores.extend(np.asarray(p, float)[keep])
        features.extend(np.asarray(f, np.float32)[keep, :FEATURE_DIM])
    if not scores:
        raise SiteDataError(f"none of the {len(paths)} files is a readable chest film")
    result = {**check_scores(scores, np.stack(features), predictor), "unreadable": unreadable,
              "not_chest_xray": rejected}
    return (result, np.asarray(scores)) if with_scores else result
