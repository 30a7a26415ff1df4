"""The protocol comparison ("why results differ"): our two recipes under three protocols, beside
published figures. Pure pandas over the report files ``models/experiments/protocols/<protocol>/<variant>/``
written by ``scripts/protocol_runs.py``; nothing is re-run.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pneumo_core.artifacts import read_csv, read_json
from pneumo_core.config import MODELS_DIR
from pneumo_core.datasets.protocols import DESCRIPTIONS, PROTOCOLS

PROTOCOLS_DIR = MODELS_DIR / "experiments" / "protocols"
SHIPPED_REPORTS_DIR = MODELS_DIR / "reports"
VARIANT_NAMES = {"frozen": "frozen (head only)", "finetuned": "fine-tuned",
                 "wiseft": "fine-tuned, WiSE-FT alpha 0.5 (pre-registered)"}
VARIANTS = ("frozen", "finetuned")
#: The pre-registered robust fine-tuning round (models/experiments/wiseft_preregistration.md): shown
#: beside the six figures, never in place of one.
WISE_FT = "wiseft"
WISE_FT_PREREGISTRATION = "models/experiments/wiseft_preregistration.md"  # in the repository
PROTOCOL_NAMES = {"official": "official split", "patient-resplit": "patient re-split",
                  "image-resplit": "image re-split"}
#: What each protocol lets into its test part, in one line.
LEAKS = {
    "official": "nothing: test/ is a later batch from other children; the batch shift stays between training and "
                "test",
    "patient-resplit": "no child, but the batch shift: films of the later batch are in training too, so the test "
                       "part no longer measures the shift",
    "image-resplit": "the batch shift and the children: most test children have other films in training "
                     "(often near-duplicates taken days apart)",
}


@dataclass(frozen=True)
class Published:
    """A figure from the literature, with the protocol it was measured under."""

    source: str
    model: str
    accuracy: float | None
    auc: float | None
    protocol: str
    note: str = ""


#: The reference write-up (the project's brief) and honest official-split results for context.
REFERENCE_WRITEUP = (
    Published("reference write-up", "frozen MobileNetV2", 0.8720, 0.9256, "image-resplit",
              "random 10 % test split of all 5,856 films, drawn image by image"),
    Published("reference write-up", "fine-tuned MobileNetV2", 0.9659, 0.9925, "image-resplit",
              "566 of 586 test films; the same random image-level split"),
)
PUBLISHED = (
    Published("Kermany et al., Cell 2018", "Inception v3 transfer learning", 0.928, 0.968, "official",
              "no separate validation set is described, so the test films may also have served for selection"),
    Published("Doerrich et al. 2024 (MedMNIST+)", "ResNet-18 end-to-end, 224 px", 0.911, 0.980, "official",
              "validation from train, threshold 0.5"),
    Published("Doerrich et al. 2024 (MedMNIST+)", "DINO ViT-B/16 linear probe, 224 px", 0.916, 0.989, "official",
              "validation from train, threshold 0.5"),
    Published("Yang et al. 2023 (MedMNIST v2)", "ResNet-50, 224 px", 0.884, 0.962, "official",
              "PneumoniaMNIST; validation from train"),
    Published("Yang et al. 2023 (MedMNIST v2)", "Google AutoML Vision", 0.946, 0.991, "official",
              "PneumoniaMNIST; validation from train"),
)


@dataclass
class ProtocolRun:
    """One recipe evaluated under one protocol: its metrics, training record and per-film scores."""

    protocol: str
    variant: str
    folder: Path
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    predictions: pd.DataFrame | None = None

    @property
    def available(self) -> bool:
        """True when the run has test metrics at its threshold."""
        return bool(self.metrics.get("at_threshold"))

    def block(self, which: str = "at_threshold") -> dict:
        """One block of ``metrics.json`` (default: the metrics at the threshold); {} when absent."""
        return self.metrics.get(which, {})

    @property
    def split(self) -> dict:
        """The run's protocol record from ``training.json`` (counts, leaks); {} when absent."""
        return self.training.get("protocol", {})


def protocols_dir() -> Path:
    """Where the protocol reports are read from: ``PNEUMO_PROTOCOLS_DIR`` when set (read at each call,
    so tests and the dashboard can point at a copy), else ``models/experiments/protocols``."""
    return Path(os.environ.get("PNEUMO_PROTOCOLS_DIR") or PROTOCOLS_DIR)


def load_runs(root: str | Path | None = None) -> dict[tuple[str, str], ProtocolRun]:
    """Every (protocol, variant) report under ``root`` (default :func:`protocols_dir`); missing ones are
    returned unavailable."""
    root = Path(root) if root is not None else protocols_dir()
    return {(protocol, variant): _read_run(root, protocol, variant) for protocol in PROTOCOLS for variant in VARIANTS}


def _read_run(root: Path, protocol: str, variant: str) -> ProtocolRun:
    folder = root / protocol / variant
    return ProtocolRun(protocol, variant, folder, read_json(folder / "metrics.json"),
                       read_json(folder / "training.json"), read_csv(folder / "test_predictions.csv"))


def load_wise_ft(root: str | Path | None = None) -> dict[tuple[str, str], ProtocolRun]:
    """The WiSE-FT reports that exist under ``root`` (default :func:`protocols_dir`), by protocol."""
    root = Path(root) if root is not None else protocols_dir()
    runs = {(protocol, WISE_FT): _read_run(root, protocol, WISE_FT) for protocol in PROTOCOLS}
    return {key: run for key, run in runs.items() if run.available}


def _ci(block: dict, metric: str) -> tuple[float, float]:
    lo, hi = (block.get("ci95") or {}).get(metric, (float("nan"), float("nan")))
    return float(lo), float(hi)


def figures_table(runs: dict, which: str = "at_threshold") -> pd.DataFrame:
    """One row per (protocol, variant): accuracy and AUC with 95 % CIs, the threshold, test counts and
    leaked test patients."""
    rows = []
    for (protocol, variant), run in runs.items():
        if not run.available:
            continue
        b = run.block(which)
        leak = run.split.get("leakage", {}).get("test", {})
        rows.append({
            "protocol": protocol, "variant": variant, "accuracy": b["accuracy"], "accuracy_lo": _ci(b, "accuracy")[0],
            "accuracy_hi": _ci(b, "accuracy")[1], "auc": b["auc"], "auc_lo": _ci(b, "auc")[0],
            "auc_hi": _ci(b, "auc")[1], "sensitivity": b["recall"], "specificity": b["specificity"],
            "threshold": b["threshold"], "test_films": b["n"],
            "test_patients_in_train": leak.get("patients_also_in_train"), "test_patients": leak.get("patients"),
            "test_films_of_those": leak.get("images_of_those_patients"),
        })
    return pd.DataFrame(rows)


def fine_tuning_gain(table: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned minus frozen accuracy and AUC under each protocol (the write-up's own question)."""
    rows = []
    for protocol, g in table.groupby("protocol", sort=False):
        by = g.set_index("variant")
        if not set(VARIANTS) <= set(by.index):
            continue
        rows.append({"protocol": protocol,
                     "accuracy_gain": by.loc["finetuned", "accuracy"] - by.loc["frozen", "accuracy"],
                     "auc_gain": by.loc["finetuned", "auc"] - by.loc["frozen", "auc"]})
    return pd.DataFrame(rows)


def decomposition(table: pd.DataFrame, variant: str = "finetuned", metric: str = "accuracy") -> dict | None:
    """How the gap between the official and the image re-split figure splits: official -> patient
    re-split is the batch shift (the later batch joins training), patient -> image re-split is the
    leakage of a child's films across parts. Point estimates; each part has its own CI in the table."""
    by = table[table.variant == variant].set_index("protocol")[metric]
    if not set(PROTOCOLS) <= set(by.index):
        return None
    return {"official": float(by["official"]), "patient-resplit": float(by["patient-resplit"]),
            "image-resplit": float(by["image-resplit"]),
            "batch_shift": float(by["patient-resplit"] - by["official"]),
            "leakage": float(by["image-resplit"] - by["patient-resplit"]),
            "total": float(by["image-resplit"] - by["official"])}


def describe(protocol: str) -> str:
    """The protocol's split in words."""
    return DESCRIPTIONS[protocol]


# ---------------------------------------------------------------------------- tabulation for the page and docs
#: The write-up's test part: 566 of 586 films right for the fine-tuned model (a random 10 % of 5,856 films).
WRITEUP_TEST_FILMS = 586
SHOWN_METRICS = {"accuracy": "accuracy", "auc": "AUC", "recall": "sensitivity", "specificity": "specificity"}
NAN = float("nan")


def overview_table(runs: dict, which: str = "at_threshold") -> pd.DataFrame:
    """All six (protocol, variant) rows in a fixed order, evaluated or not (``evaluated`` False and NaN
    figures when the report is missing): accuracy, AUC, sensitivity and specificity with 95 % CIs,
    the threshold and its rule, the test part's films and patients, and where the report lives."""
    return pd.DataFrame([_overview_row(runs.get((protocol, variant)) or
                                       ProtocolRun(protocol, variant, protocols_dir() / protocol / variant), which)
                         for protocol in PROTOCOLS for variant in VARIANTS])


def wise_ft_table(runs: dict, which: str = "at_threshold") -> pd.DataFrame:
    """:func:`overview_table`'s row for each evaluated WiSE-FT report (:func:`load_wise_ft`), with its
    alpha and its validation log-loss and AUC; empty when none is evaluated."""
    rows = []
    for (protocol, variant), run in runs.items():
        record = run.training.get("wise_ft", {})
        rows.append({**_overview_row(run, which), "alpha": record.get("alpha", NAN),
                     "val_log_loss": record.get("val_log_loss", NAN),
                     "validation_auc": run.training.get("validation", {}).get("auc", NAN)})
    return pd.DataFrame(rows)


def _overview_row(run: ProtocolRun, which: str) -> dict:
    """One row of :func:`overview_table` (NaN figures when the report is missing)."""
    protocol, variant = run.protocol, run.variant
    block = run.block(which) if run.available else {}
    row = {"protocol": protocol, "variant": variant, "evaluated": bool(block), "folder": str(run.folder)}
    for key, name in SHOWN_METRICS.items():
        lo, hi = _ci(block, key) if block else (NAN, NAN)
        row.update({name: float(block.get(key, NAN)), f"{name}_lo": lo, f"{name}_hi": hi})
    parts = run.split.get("parts", {}).get("test", {})
    row.update({"threshold": float(block.get("threshold", NAN)), "test_films": block.get("n"),
                "test_patients": parts.get("patients"),
                "threshold_rule": run.metrics.get("threshold_rule", "") if block else "",
                "data": run.metrics.get("data", "") if block else ""})
    return row


def split_of(runs: dict, protocol: str) -> dict:
    """The split summary of ``protocol`` from whichever of its runs has a training record (both recipes
    use the same split seed, so the same split)."""
    return next((runs[protocol, v].split for v in VARIANTS if (protocol, v) in runs and runs[protocol, v].split), {})


def leakage_table(runs: dict) -> pd.DataFrame:
    """Per protocol, what its test part shares with its training part: test patients with films in
    training (and their films), and the share of test and training films from the later batch (the
    official ``test/`` folder), which is what the batch shift is made of. NaN where no run has a record."""
    rows = []
    for protocol in PROTOCOLS:
        summary = split_of(runs, protocol)
        leak = summary.get("leakage", {}).get("test", {})
        parts = summary.get("parts", {})
        test, train = parts.get("test", {}), parts.get("train", {})

        def share(part: dict) -> float:
            return part["from_official_test"] / part["images"] if part.get("images") else NAN

        rows.append({"protocol": protocol, "known": bool(summary), "split_seed": summary.get("split_seed"),
                     "test_films": test.get("images"), "test_patients": test.get("patients"),
                     "test_patients_in_train": leak.get("patients_also_in_train"),
                     "test_films_of_those": leak.get("images_of_those_patients"),
                     "later_batch_share_test": share(test), "later_batch_share_train": share(train),
                     "leaks": LEAKS[protocol]})
    return pd.DataFrame(rows)


def reference_table() -> pd.DataFrame:
    """The write-up's two figures as rows (image-level random split; no CIs were reported)."""
    return pd.DataFrame([{"variant": "frozen" if "frozen" in p.model else "finetuned", "model": p.model,
                          "protocol": p.protocol, "accuracy": p.accuracy, "auc": p.auc,
                          "test_films": WRITEUP_TEST_FILMS, "note": p.note} for p in REFERENCE_WRITEUP])


def literature_table() -> pd.DataFrame:
    """Published figures on the official split, each with its protocol."""
    return pd.DataFrame([{"source": p.source, "model": p.model, "accuracy": p.accuracy, "AUC": p.auc,
                          "protocol": PROTOCOL_NAMES[p.protocol], "note": p.note} for p in PUBLISHED])


def shipped_table(reports_dir: str | Path = SHIPPED_REPORTS_DIR) -> pd.DataFrame:
    """The shipped models' official-split figures (``models/reports/<variant>/metrics.json``), at their
    validation-chosen thresholds; a missing report gives no row."""
    rows = []
    for variant in ("finetuned", "frozen"):
        folder = Path(reports_dir) / variant
        metrics, training = read_json(folder / "metrics.json"), read_json(folder / "training.json")
        block = metrics.get("at_threshold")
        if not block:
            continue
        members = len(training.get("ensemble", {}).get("members", []))
        model = f"{VARIANT_NAMES[variant]}, {members}-run output ensemble" if members else VARIANT_NAMES[variant]
        rows.append({"variant": variant, "model": model, "accuracy": block["accuracy"],
                     "accuracy_lo": _ci(block, "accuracy")[0], "accuracy_hi": _ci(block, "accuracy")[1],
                     "auc": block["auc"], "threshold": block["threshold"], "test_films": block["n"],
                     "val_log_loss": training.get("ensemble", {}).get("val_log_loss", NAN),
                     "validation_auc": training.get("validation", {}).get("auc", NAN)})
    return pd.DataFrame(rows)


def gain_table(table: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned minus frozen accuracy and AUC, per protocol (NaN while either run is pending), then the
    write-up's own gain under its protocol."""
    rows = []
    for protocol in PROTOCOLS:
        by = table[table.protocol == protocol].set_index("variant")
        row = {"protocol": PROTOCOL_NAMES[protocol], "source": "this project"}
        for name in ("accuracy", "AUC"):
            row[f"frozen {name}"] = by[name].get("frozen", NAN)
            row[f"fine-tuned {name}"] = by[name].get("finetuned", NAN)
            row[f"{name} gain"] = row[f"fine-tuned {name}"] - row[f"frozen {name}"]
        rows.append(row)
    ref = reference_table().set_index("variant")
    rows.append({"protocol": "image-level random split", "source": "reference write-up",
                 "frozen accuracy": ref.accuracy["frozen"], "fine-tuned accuracy": ref.accuracy["finetuned"],
                 "accuracy gain": ref.accuracy["finetuned"] - ref.accuracy["frozen"],
                 "frozen AUC": ref.auc["frozen"], "fine-tuned AUC": ref.auc["finetuned"],
                 "AUC gain": ref.auc["finetuned"] - ref.auc["frozen"]})
    return pd.DataFrame(rows)


def _value(table: pd.DataFrame, protocol: str, variant: str, column: str) -> float | None:
    row = table[(table.protocol == protocol) & (table.variant == variant)]
    value = float(row[column].iloc[0]) if len(row) else NAN
    return None if math.isnan(value) else value


def gap_steps(table: pd.DataFrame, variant: str = "finetuned", metric: str = "accuracy") -> dict:
    """The official -> patient re-split -> image re-split steps of one recipe's ``metric`` (a column of
    :func:`overview_table`), with None for any figure or step whose runs are pending. ``batch_shift`` is
    patient re-split minus official, ``leakage`` image minus patient re-split; ``half_width`` is each
    figure's 95 % CI half-width; ``writeup`` the write-up's figure for the recipe (None for metrics it
    did not report)."""
    values = {p: _value(table, p, variant, metric) for p in PROTOCOLS}
    half = {}
    for p in PROTOCOLS:
        lo, hi = _value(table, p, variant, f"{metric}_lo"), _value(table, p, variant, f"{metric}_hi")
        half[p] = (hi - lo) / 2 if lo is not None and hi is not None else None

    def step(a, b):
        return None if values[a] is None or values[b] is None else values[b] - values[a]

    ref = reference_table().set_index("variant")
    writeup = float(ref.loc[variant, metric.lower()]) if metric.lower() in ref.columns else None
    return {"variant": variant, "metric": metric, "values": values, "half_width": half, "writeup": writeup,
            "batch_shift": step("official", "patient-resplit"), "leakage": step("patient-resplit", "image-resplit"),
            "total": step("official", "image-resplit")}


def _points(x: float, percent: bool) -> str:
    return f"{x * 100:+.2f} points" if percent else f"{x:+.4f}"


def _figure(x: float | None, percent: bool) -> str:
    return "pending" if x is None else (f"{x * 100:.2f} %" if percent else f"{x:.4f}")


def explain_gap(steps: dict) -> list[str]:
    """The gap decomposition of :func:`gap_steps` in sentences worded from its numbers (signs, sizes and
    comparisons are computed, never assumed); a pending run is named as such."""
    pct = steps["metric"] in ("accuracy", "sensitivity", "specificity")
    vals, half, name = steps["values"], steps["half_width"], steps["metric"]
    recipe = VARIANT_NAMES[steps["variant"]]
    out = [f"{recipe.capitalize()} recipe, {name}: " + "; ".join(
        f"{PROTOCOL_NAMES[p]} {_figure(vals[p], pct)}" for p in PROTOCOLS) + "."]
    for key, what, a, b in (("batch_shift", "batch shift (the later batch joins training; no child crosses)",
                             "official", "patient-resplit"),
                            ("leakage", "leakage (a child's films on both sides)", "patient-resplit",
                             "image-resplit")):
        if steps[key] is None:
            out.append(f"The {what.split(' (')[0]} step ({PROTOCOL_NAMES[a]} to {PROTOCOL_NAMES[b]}) waits for a "
                       "run that has not been evaluated yet.")
            continue
        noise = max(h for h in (half[a], half[b]) if h is not None) if any((half[a], half[b])) else None
        verdict = ""
        if noise is not None:
            size = "smaller than" if abs(steps[key]) < noise else "at least"
            verdict = (f"; that is {size} the wider 95 % CI half-width of the two figures "
                       f"({_points(noise, pct).lstrip('+')})")
        out.append(f"{PROTOCOL_NAMES[a].capitalize()} to {PROTOCOL_NAMES[b]}, the {what}: "
                   f"{_points(steps[key], pct)}{verdict}.")
    total = steps["total"]
    if total is not None and total != 0 and steps["batch_shift"] * total >= 0 and steps["leakage"] * total >= 0:
        out.append(f"Of the {_points(total, pct)} between the official split and the image re-split, "
                   f"{steps['batch_shift'] / total:.0%} is the batch shift and {steps['leakage'] / total:.0%} "
                   "leakage (point estimates).")
    elif total is not None:
        out.append(f"Official split to image re-split: {_points(total, pct)} in all; the two steps do not share "
                   "its sign, so no share of it is given.")
    if steps["writeup"] is not None and vals["official"] is not None:  # the gap a README reader sees
        parts = [f"the batch shift step {_points(steps['batch_shift'], pct)}" if steps["batch_shift"] is not None
                 else "the batch shift step pending", f"the leakage step {_points(steps['leakage'], pct)}"
                 if steps["leakage"] is not None else "the leakage step pending"]
        if vals["image-resplit"] is not None:
            parts.append(f"the rest (recipe and random draw) {_points(steps['writeup'] - vals['image-resplit'], pct)}")
        out.append(f"Between this recipe's official figure and the write-up's {_figure(steps['writeup'], pct)} lie "
                   f"{_points(steps['writeup'] - vals['official'], pct)}: {', '.join(parts)}.")
    if steps["writeup"] is not None and vals["image-resplit"] is not None:
        diff = vals["image-resplit"] - steps["writeup"]
        relation = (f"{_points(abs(diff), pct).lstrip('+')} above" if diff > 0 else
                    f"{_points(abs(diff), pct).lstrip('+')} below" if diff < 0 else "equal to")
        out.append(f"Under the write-up's own protocol this recipe scores {_figure(vals['image-resplit'], pct)}, "
                   f"{relation} the write-up's {_figure(steps['writeup'], pct)}.")
    return out
