"""The label-free site-adaptation study of issue 22 (models/experiments/site_adaptation_preregistration.md).

    python -m scripts.site_adaptation_study tune   # settings, on a shift simulated within train/validation
    python -m scripts.site_adaptation_study run    # once, after the pre-registration commit: the 624 test films

``tune`` never lists or reads the test split. It takes the shipped fine-tuned ensemble, class-balanced
reference moments from training-split films, and a simulated site: the validation films with the pneumonia
share resampled to 62.5 %, as stored and under photometric shifts screened for the test symptom (NORMAL films
called PNEUMONIA). Each candidate setting is cross-fitted over two patient-grouped halves exactly as the study
will be; the outcome goes to models/experiments/site_adaptation/tuning/.

``run`` applies each pre-registered method once (settings from tuning/chosen.json, frozen in the
pre-registration) and writes models/experiments/site_adaptation/<method>/{metrics.json,test_predictions.csv}.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_core.adaptation import methods
from pneumo_core.adaptation.study import Shift, cross_fit, model_inputs, patient_halves, study_report
from pneumo_core.artifacts import sha256_file
from pneumo_core.config import data_dir, model_path
from pneumo_core.datasets.listing import list_images
from pneumo_core.evaluation.metrics import metrics_at

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "models" / "experiments" / "site_adaptation"
REPORTS = ROOT / "models" / "reports" / "finetuned"
THRESHOLD = 0.548521876335144  # the shipped fine-tuned threshold (reports/finetuned/metrics.json)
TRAIN_SHARE = 3321 / 4470  # pneumonia share of the films the shipped runs trained on (training.json)
SITE_SHARE = 0.625  # the test split's stated share (issue 22), used only to resample the simulated site
FOLD_SEED = 22
SOURCE_PER_CLASS = 250
SCREEN = {"gamma 0.6": Shift(gamma=0.6), "gamma 1.6": Shift(gamma=1.6), "contrast 0.6": Shift(contrast=0.6),
          "contrast 1.5": Shift(contrast=1.5), "blur 1.5": Shift(blur=1.5), "blur 2.5": Shift(blur=2.5)}
EM_PRIORS = {"0.5 (class-weighted loss)": 0.5, "0.743 (training share)": TRAIN_SHARE}
# (anchored, class-balanced, leading BatchNorm layers adapted, iterations up to). 6: the stem and first two
# blocks; 42: the shared trunk (ImageNet layers below the fine-tuned tops); 92: all. Unbalanced and plain AdaBN:
# once each, as the comparisons that motivate the guard and the anchoring.
ADABN_GRID = ((True, True, 6, 2), (True, True, 42, 2), (True, True, 92, 2), (True, False, 92, 1), (False, True, 92, 1))
CORAL_SHRINK = (0.1, 1.0)
SYMPTOM_DROP = 0.10  # a shift is kept for tuning when it costs this much specificity, not sensitivity


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def training_films() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training part, validation part) of train/, the validation part being the shipped model's own."""
    films = list_images(data_dir() / "train")
    val_files = set(pd.read_csv(REPORTS / "validation_predictions.csv")["file"])
    is_val = films["file"].isin(val_files)
    if is_val.sum() != len(val_files):
        raise SystemExit("the data folder lacks some of the shipped model's validation films")
    return films[~is_val].reset_index(drop=True), films[is_val].reset_index(drop=True)


def sample(df: pd.DataFrame, per_label: dict, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = [df[df.label == k].iloc[np.sort(rng.choice((df.label == k).sum(), n, replace=False))]
             for k, n in per_label.items()]
    return pd.concat(parts).reset_index(drop=True)


def setup():
    from pneumo_core.adaptation.batchnorm import Probe
    from pneumo_core.inference.model_files import load_model

    model = load_model(model_path("finetuned"))
    probe = Probe(model)
    train, val = training_films()
    src = sample(train, {0: SOURCE_PER_CLASS, 1: SOURCE_PER_CLASS}, seed=0)
    log(f"source: {len(src)} training-split films")
    source = methods.source_reference(probe, model_inputs(src.path), src.label)
    return model, probe, source, val


def short(m: dict) -> dict:
    return {"accuracy": m["accuracy"], "sensitivity": m["recall"], "specificity": m["specificity"],
            "balanced_accuracy": (m["recall"] + m["specificity"]) / 2, "auc": m["auc"]}


def tune() -> None:
    out = OUT / "tuning"
    out.mkdir(parents=True, exist_ok=True)
    model, probe, source, val = setup()
    head, blocks = methods.head_affine(model), methods.n_members(model)

    # 1. screen shifts on 96 + 96 validation films: which reproduce the test symptom?
    screen_df = sample(val, {0: 96, 1: 96}, seed=1)
    screen = {}
    for name, shift in {"none": None, **SCREEN}.items():
        p = methods.sigmoid(probe.run(model_inputs(screen_df.path, shift)).logit)
        screen[name] = short(metrics_at(screen_df.label, p, THRESHOLD))
        log(f"screen {name}: {screen[name]}")
    chosen_shifts = [n for n in SCREEN if screen[n]["sensitivity"] >= 0.95
                     and screen[n]["specificity"] <= screen["none"]["specificity"] - SYMPTOM_DROP]
    log(f"shifts for tuning: {chosen_shifts}")

    # 2. the simulated site: validation films at the test's pneumonia share, split into patient halves
    n_pos = round((val.label == 0).sum() * SITE_SHARE / (1 - SITE_SHARE))
    site = sample(val, {0: int((val.label == 0).sum()), 1: n_pos}, seed=0)
    halves = patient_halves(site.patient, FOLD_SEED)
    y = site.label.to_numpy()
    rows = []

    def record(condition, method, setting, p, base, extra=None):
        rep = study_report(y, p, base, halves, site.patient.to_numpy(), THRESHOLD, n_boot=0)
        at = rep["at_threshold"]
        rows.append({"condition": condition, "method": method, "setting": setting,
                     **{k: at[k] for k in ("accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc")},
                     "fold_gains": [round(f["balanced_accuracy_gain"], 4) for f in rep["folds"]],
                     **(extra or {})})
        log(f"{condition} | {method} {setting}: bal acc {at['balanced_accuracy']:.4f} auc {at['auc']:.4f}")

    for condition in ["none", *chosen_shifts]:
        x = model_inputs(site.path, None if condition == "none" else SCREEN[condition])
        base_run = probe.run(x)
        base = methods.sigmoid(base_run.logit)
        record(condition, "unadapted", "-", base, base)
        for label, prior in EM_PRIORS.items():
            p = cross_fit(halves, lambda a, e, prior=prior: methods.em_scores(base[a], base[e], prior)[0])
            record(condition, "em", f"train prior {label}", p, base)
        for shrink in CORAL_SHRINK:
            for balanced in (True, False):
                p = cross_fit(halves, lambda a, e, s=shrink, b=balanced: methods.coral_scores(
                    source, head, blocks, base_run.pooled[a], base[a], base_run.pooled[e], shrink=s,
                    threshold=THRESHOLD, balanced=b)[0])
                record(condition, "coral", f"shrink {shrink}, balanced {balanced}", p, base)
        for anchored, balanced, layers, iterations in ADABN_GRID:
            scores = {k: np.full(len(y), np.nan) for k in range(1, iterations + 1)}
            for adapt_half in (0, 1):
                a, e = np.where(halves == adapt_half)[0], np.where(halves != adapt_half)[0]

                def score(k, e=e):
                    scores[k][e] = methods.sigmoid(probe.run(x[e]).logit)

                from pneumo_core.adaptation.batchnorm import adapt_batchnorm

                reference = source.moments if anchored else probe.original
                try:
                    adapt_batchnorm(probe, reference, x[a], iterations=iterations, threshold=THRESHOLD,
                                    balanced=balanced, layers=layers, after_each=score)
                finally:
                    probe.set_statistics(probe.original)
            for k, p in scores.items():
                record(condition, "adabn" if anchored else "plain adabn (comparison)",
                       f"anchored {anchored}, balanced {balanced}, layers {layers}, iterations {k}", p, base)
        pd.DataFrame(rows).to_csv(out / "results.csv", index=False)

    table = pd.DataFrame(rows)
    chosen = {}
    for method in ("em", "adabn", "coral"):
        mean = table[table.method == method].groupby("setting", sort=False)["balanced_accuracy"].mean()
        chosen[method] = {"setting": mean.idxmax(), "mean_balanced_accuracy": float(mean.max()),
                          "candidates": {k: float(v) for k, v in mean.items()}}
    record_json = {"model": "models/finetuned.keras", "model_sha256": sha256_file(model_path("finetuned")),
                   "threshold": THRESHOLD, "source": f"{len(source.labels)} training-split films, class-balanced",
                   "simulated_site": {"films": len(site), "pneumonia_share": float(y.mean()),
                                      "halves_seed": FOLD_SEED, "half_sizes": np.bincount(halves).tolist()},
                   "screen": {"films": len(screen_df), "figures": screen, "chosen_shifts": chosen_shifts,
                              "rule": "shifts that keep sensitivity >= 95 % and lower specificity by "
                                      f"{SYMPTOM_DROP:.0%} or more (the test symptom)"},
                   "selection_rule": "per method, the setting with the highest mean pooled balanced accuracy "
                                     "at the threshold over the conditions (as stored and each kept shift)",
                   "chosen": chosen}
    (out / "chosen.json").write_text(json.dumps(record_json, indent=2) + "\n")
    log(json.dumps(chosen, indent=1))


PREREGISTRATION = ROOT / "models" / "experiments" / "site_adaptation_preregistration.md"
METHOD_TEXT = {
    "em": "prior-shift correction by EM (Saerens et al. 2002): the pneumonia share estimated on the adaptation "
          "half's unadapted scores, the evaluated half's posteriors re-weighted to it",
    "adabn": "AdaBN anchored to the training films (Li et al. 2018): the leading BatchNorm layers' statistics "
             "re-estimated on the adaptation half's films, site moments weighted as the setting says",
    "coral": "CORAL (Sun et al. 2016), site to training films, per ensemble member: pooled features of the "
             "evaluated half aligned by the map fitted on the adaptation half, site moments weighted as the "
             "setting says",
}


def _committed(path: Path) -> bool:
    import subprocess

    out = subprocess.run(["git", "log", "-1", "--format=%H", "--", str(path.relative_to(ROOT))], cwd=ROOT,
                         capture_output=True, text=True)
    return bool(out.stdout.strip())


def _setting(chosen: dict, method: str) -> dict:
    """The chosen setting's words (as the tuning wrote them) as keyword values."""
    text = chosen["chosen"][method]["setting"]
    if method == "em":
        return {"train_prevalence": EM_PRIORS[text.removeprefix("train prior ")]}
    pairs = dict(part.split(" ") for part in text.split(", "))
    if method == "coral":
        return {"shrink": float(pairs["shrink"]), "balanced": pairs["balanced"] == "True"}
    return {"iterations": int(pairs["iterations"]), "balanced": pairs["balanced"] == "True",
            "anchored": pairs["anchored"] == "True", "layers": int(pairs["layers"])}


def run() -> None:
    if not _committed(PREREGISTRATION):
        raise SystemExit("the pre-registration is not committed yet: no test film is read before it")
    done = [m for m in METHOD_TEXT if (OUT / m / "metrics.json").exists()]
    if done:
        raise SystemExit(f"already evaluated ({', '.join(done)}): each method is read on the test films once")
    chosen = json.loads((OUT / "tuning" / "chosen.json").read_text())
    model, probe, source, _ = setup()
    head, blocks = methods.head_affine(model), methods.n_members(model)
    films = list_images(data_dir() / "test")
    halves = patient_halves(films.patient, FOLD_SEED)
    y, patients = films.label.to_numpy(), films.patient.to_numpy()
    log(f"test: {len(films)} films, halves {np.bincount(halves).tolist()}")
    x = model_inputs(films.path)
    base_run = probe.run(x)
    base = methods.sigmoid(base_run.logit)
    shipped = pd.read_csv(REPORTS / "test_predictions.csv").set_index("file").loc[films.file, "p_pneumonia"]
    base_gap = float(np.abs(shipped.to_numpy() - base).max())
    log(f"unadapted scores vs the shipped report: max |dp| {base_gap:.2e}")
    sha = sha256_file(model_path("finetuned"))
    summary = {}
    for method in ("em", "adabn", "coral"):
        setting = _setting(chosen, method)
        infos = []

        def adapt_and_score(a, e, method=method, setting=setting, infos=infos):
            if method == "em":
                p, info = methods.em_scores(base[a], base[e], **setting)
            elif method == "adabn":
                p, info = methods.adabn_scores(probe, source, x[a], x[e], threshold=THRESHOLD, **setting)
            else:
                p, info = methods.coral_scores(source, head, blocks, base_run.pooled[a], base[a],
                                               base_run.pooled[e], threshold=THRESHOLD, **setting)
            infos.append(info)
            return p

        t0 = time.time()
        p = cross_fit(halves, adapt_and_score)
        report = study_report(y, p, base, halves, patients, THRESHOLD, n_boot=1000)
        for fold, info in zip(report["folds"], infos):
            fold["adaptation"] = info
        meta = {"method": method, "description": METHOD_TEXT[method], "setting": chosen["chosen"][method]["setting"],
                "preregistration": PREREGISTRATION.relative_to(ROOT).as_posix(),
                "model": "models/finetuned.keras", "model_sha256": sha, "data": "$PNEUMO_DATA_DIR/test",
                "counts": {"NORMAL": int((y == 0).sum()), "PNEUMONIA": int((y == 1).sum())},
                "threshold": THRESHOLD,
                "threshold_rule": "the shipped fine-tuned threshold (the highest keeping sensitivity >= 95 % on the "
                                  "patient-grouped validation split), applied to the adapted scores",
                "protocol": f"two-fold cross-fitting over patient halves (seed {FOLD_SEED}): adapt on one half's "
                            "unlabelled films, score the other, swap; pooled predictions",
                "unadapted_vs_shipped_max_abs_diff": base_gap, "seconds": round(time.time() - t0, 1)}
        folder = OUT / method
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps({**meta, **report}, indent=2) + "\n")
        pd.DataFrame({"file": films.file, "patient": patients, "label": y, "half": halves, "p_unadapted": base,
                      "p_pneumonia": p, "predicted": (p >= THRESHOLD).astype(int)}).to_csv(
            folder / "test_predictions.csv", index=False)
        at = report["at_threshold"]
        summary[method] = {k: at[k] for k in ("accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc")}
        summary[method]["fold_gains"] = [f["balanced_accuracy_gain"] for f in report["folds"]]
        summary[method]["passes_shipping_rule"] = report["passes_shipping_rule"]
        log(f"{method}: {summary[method]}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["tune", "run"])
    args = parser.parse_args(argv)
    if args.stage == "tune":
        tune()
    else:
        run()


if __name__ == "__main__":
    main()
