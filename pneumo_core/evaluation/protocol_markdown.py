"""The protocol comparison as Markdown for docs/protocols.md and the "Why results differ" page,
from :mod:`pneumo_core.evaluation.protocol_results` (the report files); nothing is re-run.

docs/protocols.md holds :func:`report_markdown` between ``<!-- generated:protocol-tables -->`` and
``<!-- /generated -->``; :mod:`pneumo_core.evaluation.generated_docs` rewrites it with every other
generated figure table (``python -m pneumo_core docs``; ``--check`` lists the stale files).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pneumo_core.evaluation.protocol_results import (
    PROTOCOL_NAMES,
    SHIPPED_REPORTS_DIR,
    VARIANT_NAMES,
    WISE_FT_PREREGISTRATION,
    explain_gap,
    gain_table,
    gap_steps,
    leakage_table,
    load_runs,
    load_wise_ft,
    overview_table,
    reference_table,
    shipped_table,
    wise_ft_table,
)


def _cell(row, name: str, percent: bool) -> str:
    if not row.evaluated:
        return "not evaluated yet"
    value, lo, hi = getattr(row, name), getattr(row, f"{name}_lo"), getattr(row, f"{name}_hi")
    scale, digits = (100, 2) if percent else (1, 4)
    return f"{value * scale:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


def figures_markdown(table: pd.DataFrame, references: bool = True) -> str:
    """:func:`overview_table` as a Markdown table (percent for accuracy, sensitivity, specificity), with
    the write-up's two rows after ours when ``references``."""
    lines = ["| protocol | recipe | accuracy % [95 % CI] | AUC [95 % CI] | sensitivity % | specificity % | "
             "threshold | test films (patients) |", "|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        n = f"{row.test_films:.0f} ({row.test_patients:.0f})" if row.evaluated else "-"
        threshold = f"{row.threshold:.3f}" if row.evaluated else "-"
        lines.append(f"| {PROTOCOL_NAMES[row.protocol]} | {VARIANT_NAMES[row.variant]} | "
                     f"{_cell(row, 'accuracy', True)} | {_cell(row, 'AUC', False)} | "
                     f"{_cell(row, 'sensitivity', True)} | {_cell(row, 'specificity', True)} | {threshold} | {n} |")
    if references:
        for ref in reference_table().itertuples():
            lines.append(f"| image-level random split (write-up) | {ref.model} | {ref.accuracy * 100:.2f} | "
                         f"{ref.auc:.4f} | - | - | not reported | {ref.test_films} |")
    return "\n".join(lines)


def wise_ft_markdown(table: pd.DataFrame, wise_runs: dict, shipped: pd.DataFrame, which: str = "at_threshold") -> str:
    """The pre-registered WiSE-FT round (``wise_runs``: :func:`load_wise_ft`): its rows, each beside the plain
    fine-tuned run of its protocol in ``table`` (:func:`overview_table` at ``which``), and the pre-registered
    rules applied: the goal under the image re-split, shipping (against ``shipped``, :func:`shipped_table`)
    under the official split."""
    intro = (f"Pre-registered before its evaluation ({WISE_FT_PREREGISTRATION}): the "
             "fine-tuned recipe trained again, its weights moved half-way back to its own head-only start (WiSE-FT, "
             "Wortsman et al., CVPR 2022; alpha 0.5, the paper's default, not tuned), one test read per protocol. "
             "It was run after the image re-split figures above were known, so it confirms nothing independently.")
    wise = wise_ft_table(wise_runs, which)
    if wise.empty:
        return intro + "\n\nNot evaluated yet."
    plain = table.set_index(["protocol", "variant"])
    lines = [intro, "", figures_markdown(wise, references=False), ""]
    for row in wise.itertuples():
        base = plain.loc[(row.protocol, "finetuned")]
        lines.append(f"- {PROTOCOL_NAMES[row.protocol].capitalize()}: accuracy {row.accuracy:.2%}, "
                     + (f"{_points(row.accuracy - base.accuracy)} against the plain fine-tuned run's "
                        f"{base.accuracy:.2%}" if base.evaluated else "the plain run is not evaluated yet")
                     + f"; validation log-loss {row.val_log_loss:.4f}, validation AUC {row.validation_auc:.4f}.")
        if which != "at_threshold":
            continue
        if row.protocol == "image-resplit":
            goal = float(reference_table().set_index("variant").accuracy["finetuned"])
            lines.append(f"  - Goal (match or beat the write-up's {goal:.2%} under its own protocol): "
                         + ("**met**." if row.accuracy >= goal else f"**not met** ({_points(row.accuracy - goal)})."))
        if row.protocol == "official":
            ship = shipped.set_index("variant").loc["finetuned"]
            met = row.val_log_loss < ship.val_log_loss and row.validation_auc >= ship.validation_auc
            lines.append(f"  - Shipping rule (validation log-loss below the shipped ensemble's {ship.val_log_loss:.4f} "
                         f"and validation AUC at least its {ship.validation_auc:.4f}): "
                         + ("**met**: it replaces the shipped fine-tuned model." if met else
                            "**not met**: the shipped models and their figures stay as they are."))
    return "\n".join(lines)


def _points(diff: float) -> str:
    return f"{diff * 100:+.2f} points"


def report_markdown(root: str | Path | None = None, shipped_reports: str | Path = SHIPPED_REPORTS_DIR) -> str:
    """The docs section: both threshold tables, leakage, fine-tuning gain and the gap in words, from the
    protocol reports under ``root`` (default :func:`protocols_dir`) and the shipped models' reports under
    ``shipped_reports`` (for context and the WiSE-FT shipping rule)."""
    runs = load_runs(root)
    shipped = shipped_table(shipped_reports)
    at_threshold, at_half = overview_table(runs), overview_table(runs, "at_0.5")
    leak = leakage_table(runs)
    parts = ["### At each protocol's validation-chosen threshold", figures_markdown(at_threshold),
             "", "### At threshold 0.5", figures_markdown(at_half, references=False), "",
             "### Pre-registered robust fine-tuning (WiSE-FT)",
             wise_ft_markdown(at_threshold, load_wise_ft(root), shipped), "",
             "### What the test part shares with training", "| protocol | test patients with films in training "
             "| their test films | test films from the later batch | training films from the later batch |",
             "|---|---|---|---|---|"]
    for row in leak.itertuples():
        if not row.known:
            parts.append(f"| {PROTOCOL_NAMES[row.protocol]} | not evaluated yet | | | |")
            continue
        parts.append(f"| {PROTOCOL_NAMES[row.protocol]} | "
                     f"{row.test_patients_in_train:.0f} of {row.test_patients:.0f} | "
                     f"{row.test_films_of_those:.0f} of {row.test_films:.0f} | {row.later_batch_share_test:.1%} | "
                     f"{row.later_batch_share_train:.1%} |")
    parts += ["", "### Gain from fine-tuning (accuracy points, AUC)", "| protocol | source | accuracy gain | "
              "AUC gain |", "|---|---|---|---|"]
    for row in gain_table(at_threshold).to_dict("records"):
        acc, auc = row["accuracy gain"], row["AUC gain"]
        parts.append(f"| {row['protocol']} | {row['source']} | "
                     + (f"{acc * 100:+.2f} | {auc:+.4f} |" if not math.isnan(acc) else "pending | pending |"))
    parts += ["", "### Shipped models on the official split (models/reports, for context)", ""]
    parts += [f"- {r.model}: accuracy {r.accuracy:.2%} [{r.accuracy_lo:.2%}, {r.accuracy_hi:.2%}], AUC {r.auc:.4f}, "
              f"threshold {r.threshold:.3f}, {r.test_films} films" for r in shipped.itertuples()] or ["- none"]
    parts += ["", "### The runs' commands (from each training.json)", ""]
    parts += [f"- {PROTOCOL_NAMES[p]}, {VARIANT_NAMES[v]}: `{run.training['command']}`"
              + (f" ({run.training['protocol_run_source']})" if run.training.get("protocol_run_source") else "")
              for (p, v), run in runs.items() if run.training.get("command")] or ["- none recorded yet"]
    parts += ["", "### The gap, in numbers", ""]
    parts += [f"- {line}" for variant in ("finetuned", "frozen") for line in explain_gap(gap_steps(at_threshold,
                                                                                                 variant))]
    return "\n".join(parts) + "\n"


#: The generated part of docs/protocols.md (the marker style of :mod:`pneumo_core.evaluation.generated_docs`).
START, END = "<!-- generated:protocol-tables -->", "<!-- /generated -->"


def write_into(doc: str | Path, root: str | Path | None = None) -> None:
    """Replace the generated part of ``doc`` (between the START and END markers) with :func:`report_markdown`."""
    doc = Path(doc)
    text = doc.read_text()
    head, rest = text.split(START, 1)
    doc.write_text(f"{head}{START}\n{report_markdown(root)}{END}{rest.split(END, 1)[1]}")

