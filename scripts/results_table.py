"""Print the Markdown results table of the shipped models from models/reports/*/metrics.json.

Used to write README.md and models/MODEL_CARD.md, so the figures there are the reports' own.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pneumo_core.config import MODELS_DIR  # noqa: E402

KEYS = ("accuracy", "precision", "recall", "specificity", "f1", "auc")


def cell(m, k):
    lo, hi = m["ci95"][k]
    if k == "auc":
        return f"{m[k]:.3f} ({lo:.3f}-{hi:.3f})"
    return f"{m[k] * 100:.1f} ({lo * 100:.1f}-{hi * 100:.1f})"


def main():
    print("| model | threshold | accuracy % | precision % | recall (sensitivity) % | specificity % | F1 % | ROC AUC | TN FP / FN TP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant in ("frozen", "finetuned"):
        m = json.loads((MODELS_DIR / "reports" / variant / "metrics.json").read_text())
        for key, label in (("at_threshold", "validation rule"), ("at_0.5", "0.5")):
            a = m[key]
            (tn, fp), (fn, tp) = a["confusion_matrix"]
            print(f"| {variant} | {a['threshold']:.3f} ({label}) | " + " | ".join(cell(a, k) for k in KEYS)
                  + f" | {tn} {fp} / {fn} {tp} |")
    print("\n95 % bootstrap confidence intervals in brackets (1,000 resamples of the 624 test films).")


if __name__ == "__main__":
    main()
