"""The protocol comparison ("why results differ"): our two recipes under three protocols, beside
published figures. Pure pandas over the report files ``models/experiments/protocols/<protocol>/<variant>/``
written by ``scripts/protocol_runs.py``; nothing is re-run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .artifacts import read_csv, read_json
from .config import MODELS_DIR
from .protocols import DESCRIPTIONS, PROTOCOLS

PROTOCOLS_DIR = MODELS_DIR / "experiments" / "protocols"
VARIANTS = ("frozen", "finetuned")
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


def load_runs(root: str | Path = PROTOCOLS_DIR) -> dict[tuple[str, str], ProtocolRun]:
    """Every (protocol, variant) report under ``root``; missing ones are returned unavailable."""
    root = Path(root)
    out = {}
    for protocol in PROTOCOLS:
        for variant in VARIANTS:
            folder = root / protocol / variant
            out[protocol, variant] = ProtocolRun(protocol, variant, folder, read_json(folder / "metrics.json"),
                                                 read_json(folder / "training.json"),
                                                 read_csv(folder / "test_predictions.csv"))
    return out


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
