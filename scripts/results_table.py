"""Print the Markdown results table of the shipped models from models/reports/*/metrics.json.

Used to write README.md and models/MODEL_CARD.md, so the figures there are the reports' own.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pneumo_core.artifacts import reports_dir  # noqa: E402
from pneumo_core.config import SHIPPED_VARIANTS, model_path  # noqa: E402

KEYS = ("accuracy", "precision", "recall", "specificity", "f1", "auc")


def cell(m, k):
    if k == "auc":
        value, scale, digits = m[k], 1, 3
    else:
        value, scale, digits = m[k] * 100, 100, 1
    if not m.get("ci95"):  # evaluated with --bootstrap 0
        return f"{value:.{digits}f}"
    lo, hi = (x * scale for x in m["ci95"][k])
    return f"{value:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def main():
    print("| model | threshold | accuracy % | precision % | recall (sensitivity) % | specificity % | F1 % | ROC AUC "
          "| TN FP / FN TP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant in sorted(SHIPPED_VARIANTS, key=lambda v: v != "frozen"):
        m = json.loads((reports_dir(model_path(variant)) / "metrics.json").read_text())
        for key, label in (("at_threshold", "validation rule"), ("at_0.5", "0.5")):
            a = m[key]
            (tn, fp), (fn, tp) = a["confusion_matrix"]
            print(f"| {variant} | {a['threshold']:.3f} ({label}) | " + " | ".join(cell(a, k) for k in KEYS)
                  + f" | {tn} {fp} / {fn} {tp} |")
    if m.get("bootstrap_resamples"):
        print(f"\n95 % bootstrap confidence intervals in brackets: {m['bootstrap_resamples']:,} resamples of the "
              f"test split's {m.get('bootstrap_unit', 'images')}.")


if __name__ == "__main__":
    main()
