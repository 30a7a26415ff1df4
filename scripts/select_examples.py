"""Choose the bundled teaching set (assets/examples/) from the official test split, by a written rule.

    python -m scripts.select_examples [--data ../shared/data/chest_xray] [--seed 12] [--check]

The rule uses only the shipped models' saved test scores (models/reports/{finetuned,frozen}/
test_predictions.csv) and their validation-chosen thresholds (training.json). No model is run,
and nothing about the models is chosen here: the test split only supplies teaching films.

1. Pool: every film listed in both models' saved test scores, with its truth, subtype (normal,
   bacterial, viral, from the file name), patient (file-name prefix) and whether each model's label
   at its threshold is wrong.
2. The pool is shuffled with numpy's default_rng(seed). Quotas are then filled in this order, each
   taking the first films of the shuffled pool that fit and whose patient is not yet in the set
   (at most one film per patient):
     a. 5 NORMAL films the fine-tuned model calls PNEUMONIA (false positives);
     b. 2 PNEUMONIA films the fine-tuned model calls NORMAL (false negatives);
     c. NORMAL films the fine-tuned model gets right, up to 20 NORMAL in all;
     d. bacterial films it gets right, up to 10 bacterial in all (the false negatives count);
     e. viral films it gets right, up to 10 viral in all.
   Teaching needs failures: 5 of 20 (25%) false positives is close to the model's test rate (22%);
   false negatives are rare on test (1%), so two are over-represented on purpose.
3. The 40 films are put in a seeded random order and copied byte for byte as ex01.jpeg ... ex40.jpeg
   (neutral names: the Kermany names say the class, "person12_virus_..."); examples.csv keeps the
   original names, truth, subtype, patient and both models' scores and mistakes.

--check rebuilds the selection and compares it (and each file's bytes, when the dataset is there)
with the committed set, writing nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_core.config import CLASS_NAMES, MODELS_DIR, SHIPPED_VARIANTS, data_dir
from pneumo_core.datasets.listing import patient_id
from pneumo_core.review.examples import (
    BUNDLED_CSV,
    BUNDLED_DIR,
    bundled_table,
    saved_scores,
    score_column,
    subtype_of,
    thresholds,
)

ROOT = Path(__file__).resolve().parents[1]

SEED = 12
NORMAL, PNEUMONIA = CLASS_NAMES
#: (name, what a film must match, how many: a count, or (column, value, total) to fill up to a total)
QUOTAS = (
    ("false positives", dict(truth=NORMAL, finetuned_mistake=True), 5),
    ("false negatives", dict(truth=PNEUMONIA, finetuned_mistake=True), 2),
    ("normal", dict(truth=NORMAL, finetuned_mistake=False), ("truth", NORMAL, 20)),
    ("bacterial", dict(subtype="bacterial", finetuned_mistake=False), ("subtype", "bacterial", 10)),
    ("viral", dict(subtype="viral", finetuned_mistake=False), ("subtype", "viral", 10)),
)
CSV_COLUMNS = ["file", "original_file", "truth", "subtype", "patient", "p_finetuned", "p_frozen",
               "finetuned_mistake", "frozen_mistake", "sha256"]


def mistake_column(variant: str) -> str:
    return f"{variant}_mistake"


def pool(models_dir: Path = MODELS_DIR) -> pd.DataFrame:
    """Every test film both shipped models scored, with truth, subtype, patient and mistakes."""
    scores = saved_scores(models_dir).dropna()
    limits = thresholds(models_dir)
    if scores.empty or None in limits.values():
        raise SystemExit("error: the shipped models' test reports (models/reports/*/test_predictions.csv, "
                         "training.json) are needed")
    listed = pd.read_csv(Path(models_dir) / "reports" / "finetuned" / "test_predictions.csv")
    truth = listed.drop_duplicates("file").set_index("file")["label"].reindex(scores.index)
    films = scores.reset_index()
    films["truth"] = [CLASS_NAMES[int(label)] for label in truth]
    films["subtype"] = [subtype_of(f, t) for f, t in zip(films["file"], films["truth"])]
    films["patient"] = [patient_id(f) for f in films["file"]]
    for variant in SHIPPED_VARIANTS:
        called = np.where(films[score_column(variant)] >= limits[variant], PNEUMONIA, NORMAL)
        films[mistake_column(variant)] = called != films["truth"]
    return films


def select(films: pd.DataFrame, seed: int = SEED) -> pd.DataFrame:
    """The teaching set by the rule in this module's docstring, in its final (seeded) order."""
    rng = np.random.default_rng(seed)
    shuffled = films.iloc[rng.permutation(len(films))]
    chosen: list[int] = []
    patients: set[str] = set()
    for name, match, quota in QUOTAS:
        fits = np.logical_and.reduce([shuffled[col] == value for col, value in match.items()])
        if isinstance(quota, tuple):  # fill up to a total of one truth or subtype
            col, value, total = quota
            wanted = total - int((films.loc[chosen, col] == value).sum())
        else:
            wanted = quota
        taken = 0
        for idx, row in shuffled[fits].iterrows():
            if taken == wanted:
                break
            if row["patient"] not in patients:
                chosen.append(idx)
                patients.add(row["patient"])
                taken += 1
        if taken < wanted:
            raise SystemExit(f"error: only {taken} of {wanted} {name} films with distinct patients in the pool")
    picked = films.loc[chosen]
    return picked.iloc[rng.permutation(len(picked))].reset_index(drop=True)


def table(picked: pd.DataFrame, split_dir: Path | None) -> pd.DataFrame:
    """examples.csv's rows: neutral names, originals, scores, mistakes, and SHA-256 of the files."""
    out = pd.DataFrame({
        "file": [f"ex{k + 1:02d}.jpeg" for k in range(len(picked))],
        "original_file": picked["file"],
        "truth": picked["truth"],
        "subtype": picked["subtype"],
        "patient": picked["patient"],
    })
    for variant in SHIPPED_VARIANTS:
        out[score_column(variant)] = picked[score_column(variant)].round(6)
    for variant in SHIPPED_VARIANTS:
        out[mistake_column(variant)] = picked[mistake_column(variant)].astype(bool)
    if split_dir is not None:
        out["sha256"] = [hashlib.sha256((split_dir / t / f).read_bytes()).hexdigest()
                         for t, f in zip(out["truth"], out["original_file"])]
    return out


def write(rows: pd.DataFrame, split_dir: Path, out: Path) -> None:
    """Copy the films byte for byte under their neutral names and write examples.csv."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("ex*.jpeg"):
        old.unlink()
    for row in rows.itertuples():
        shutil.copyfile(split_dir / row.truth / row.original_file, out / row.file)
    rows[CSV_COLUMNS].to_csv(out / BUNDLED_CSV, index=False)


def check(rows: pd.DataFrame, out: Path, split_dir: Path | None) -> list[str]:
    """Differences between the rule's selection and the committed set (empty: they agree)."""
    committed = bundled_table(out)
    problems = []
    for col in ("file", "original_file", "truth", "subtype", "patient"):
        if committed[col].tolist() != rows[col].tolist():
            problems.append(f"column {col} differs from the rule's selection")
    for variant in SHIPPED_VARIANTS:
        if not np.allclose(committed[score_column(variant)], rows[score_column(variant)], atol=1e-6):
            problems.append(f"{variant} scores differ from models/reports (the model changed since the selection)")
    for row in committed.itertuples():
        stored = out / row.file
        if not stored.is_file() or hashlib.sha256(stored.read_bytes()).hexdigest() != row.sha256:
            problems.append(f"{row.file}: missing or not the bytes recorded in {BUNDLED_CSV}")
        elif split_dir is not None and (split_dir / row.truth / row.original_file).read_bytes() != stored.read_bytes():
            problems.append(f"{row.file}: not a byte-for-byte copy of {row.original_file}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(data_dir()), help="dataset root with test/ (default: PNEUMO_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", default=str(BUNDLED_DIR))
    parser.add_argument("--check", action="store_true", help="compare with the committed set; write nothing")
    args = parser.parse_args(argv)
    split_dir = Path(args.data) / "test"
    have_data = (split_dir / NORMAL).is_dir()
    rows = table(select(pool(), args.seed), split_dir if have_data else None)
    if args.check:
        problems = check(rows, Path(args.out), split_dir if have_data else None)
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        if problems:
            return 2
        print("teaching set matches the rule" + ("" if have_data else " (not compared with the dataset: none found)"))
        return 0
    if not have_data:
        print(f"error: no test split at {split_dir} (set --data)", file=sys.stderr)
        return 2
    write(rows, split_dir, Path(args.out))
    print(rows.drop(columns=["sha256"]).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
