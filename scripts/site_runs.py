"""The two pre-registered test-split reads of the site tools; each is run once, as its pre-registration says.

python -m scripts.site_runs check      # models/experiments/site_check_preregistration.md
python -m scripts.site_runs threshold  # models/experiments/site_threshold_preregistration.md

``check``: both shipped models score the 624 official test films as an unlabelled batch (``site check``'s own
computation: scores and pooled features, no label read); the batch's shift statistic becomes the reference figure
in ``models/reports/<model>/shift.json``; only then are the labels read, for the comparison with the truth.
``threshold``: 100 films (whole patients, seed 24) of the fine-tuned model's test scores act as a site's reads;
the proposed threshold comes from them alone; the other films are evaluated once at 0.549 and at it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pneumo_core.config import data_dir
from pneumo_core.recorded_paths import record

OUT = Path("models/experiments")


def run_check(root: Path) -> dict:
    from pneumo_core import Predictor
    from pneumo_core.datasets.listing import list_images
    from pneumo_core.site.check import check_films, prevalence_model
    from pneumo_core.site.shift import ESTIMATORS, FIGURES_FILE

    films = list_images(root / "test")
    out = {}
    for model in ("finetuned", "frozen"):
        predictor = Predictor(model)
        result, p = check_films(predictor, list(films.path), with_scores=True)  # no label read here
        truth = float(films.label.mean())  # the labels, read now, after the estimate
        error = 100 * (result["prevalence_estimate"] - truth)
        report_dir = Path(predictor.report_dir)
        figures = json.loads((report_dir / FIGURES_FILE).read_text())
        figures["official_test"] = {"statistic": result["feature_shift"]["statistic"],
                                    "p_value": result["feature_shift"]["p_value"], "n": result["n"],
                                    "prevalence_error_points": error,
                                    "source": "models/experiments/site_check/result.json"}
        (report_dir / FIGURES_FILE).write_text(json.dumps(figures, indent=2) + "\n")
        prev = prevalence_model(predictor)
        secondary = {name: fn(p, prev) for name, fn in ESTIMATORS.items()}
        out[model] = {**result, "truth_prevalence": truth, "error_points": error,
                      "interval_holds_truth": bool(result["prevalence_ci"][0] <= truth <= result["prevalence_ci"][1]),
                      "within_3_points": bool(abs(error) <= 3),
                      "every_estimator (secondary, reported only)": secondary}
    return record({"data": str(root / "test"), "films": int(len(films)), "results": out})


def run_threshold(root: Path) -> dict:
    from pneumo_core import Predictor
    from pneumo_core.datasets.listing import list_images
    from pneumo_core.site.reference import score_films
    from pneumo_core.site.validation import (
        MIN_READS_PER_CLASS,
        SITE_RULE,
        at_threshold,
        draw_reads,
        proposed_threshold,
        threshold_interval,
    )

    films = list_images(root / "test")
    predictor = Predictor("finetuned")
    p, _ = score_films(predictor, films.path)
    y, patients = films.label.to_numpy(), films.patient.to_numpy()
    reads = draw_reads(patients, 100, seed=24)
    proposed = proposed_threshold(y[reads], p[reads])
    rest = ~reads
    return record({
        "data": str(root / "test"), "model": predictor.name, "rule": SITE_RULE, "seed": 24,
        "reads": {"films": int(reads.sum()), "patients": int(len(set(patients[reads]))),
                  "NORMAL": int((y[reads] == 0).sum()), "PNEUMONIA": int((y[reads] == 1).sum()),
                  "minimum_per_class": MIN_READS_PER_CLASS},
        "proposed_threshold": proposed,
        "proposed_threshold_ci95": threshold_interval(y[reads], p[reads], patients[reads]),
        "held_out": {"films": int(rest.sum()), "patients": int(len(set(patients[rest]))),
                     "NORMAL": int((y[rest] == 0).sum()), "PNEUMONIA": int((y[rest] == 1).sum())},
        "at_shipped": at_threshold(y[rest], p[rest], predictor.threshold, patients[rest]),
        "at_proposed": at_threshold(y[rest], p[rest], proposed, patients[rest]),
        "max_abs_dp_vs_saved_test_scores": _drift(predictor, films, p),
    })


def _drift(predictor, films, p) -> float:
    import pandas as pd

    saved = pd.read_csv(Path(predictor.report_dir) / "test_predictions.csv").set_index("file").p_pneumonia
    return float(np.max(np.abs(saved.loc[films.file].to_numpy() - p)))


def main(argv=None) -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("run", choices=["check", "threshold"])
    a.add_argument("--data", default=str(data_dir()))
    args = a.parse_args(argv)
    root = Path(args.data)
    result = run_check(root) if args.run == "check" else run_threshold(root)
    folder = OUT / ("site_check" if args.run == "check" else "site_threshold")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2)[:4000])


if __name__ == "__main__":
    main()
