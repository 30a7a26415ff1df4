"""The figure tables of the docs are generated from the report files, and the check that they are current
can fail: an altered figure, a changed report, a lost marker and a prose figure that no longer agrees are
each caught (on a copy of the checkout's docs and reports, never on the checkout itself)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pneumo_core.config import PROJECT_DIR
from pneumo_core.evaluation import doc_tables as tables
from pneumo_core.evaluation import generated_docs as gd
from pneumo_core.evaluation import protocol_markdown


def copy_checkout(dst: Path) -> Path:
    """The docs of :data:`gd.DOCS` and ``models/`` without model files, under ``dst``."""
    for doc in gd.DOCS:
        (dst / doc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_DIR / doc, dst / doc)
    shutil.copytree(PROJECT_DIR / "models", dst / "models", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.keras", "*.npz", "*.h5", "*.tflite"))
    return dst


def block(text: str, name: str) -> str:
    return next(m.group("body") for m in gd.BLOCK.finditer(text) if m.group("name") == name)


# ---------------------------------------------------------------------------- the checkout
def test_every_generated_block_of_the_checkout_is_current():
    assert gd.stale_files() == [], ("generated doc tables are stale: run `python -m pneumo_core docs` "
                                    "(pneumo_core.evaluation.generated_docs.write_all)")


def test_every_figure_the_prose_repeats_agrees_with_the_report_files():
    assert gd.prose_mismatches() == []


def test_each_doc_holds_its_blocks_and_protocols_md_its_report_markdown():
    for doc, writers in gd.DOCS.items():
        names = [m.group("name") for m in gd.BLOCK.finditer((PROJECT_DIR / doc).read_text())]
        assert sorted(names) == sorted(writers), (doc, names)
    protocols = (PROJECT_DIR / "docs" / "protocols.md").read_text()
    assert protocol_markdown.START in protocols and protocol_markdown.END in protocols
    assert protocol_markdown.report_markdown(PROJECT_DIR / "models" / "experiments" / "protocols") in protocols


def test_tables_carry_the_reports_own_figures():
    """Spot checks against the JSON itself, not through the module's own formatting helpers."""
    ft = json.loads((PROJECT_DIR / "models/reports/finetuned/metrics.json").read_text())["at_threshold"]
    readme = block((PROJECT_DIR / "README.md").read_text(), "results-table")
    lo, hi = ft["ci95"]["accuracy"]
    assert f"| {ft['threshold']:.3f} | {ft['accuracy'] * 100:.1f} ({lo * 100:.1f}-{hi * 100:.1f}) |" in readme
    card = (PROJECT_DIR / "models" / "MODEL_CARD.md").read_text()
    (tn, fp), (fn, tp) = ft["confusion_matrix"]
    assert f"| {tn} {fp} / {fn} {tp} |" in block(card, "results-table")
    c = json.loads((PROJECT_DIR / "models/experiments/threshold_correction/test_at_corrected_thresholds.json")
                   .read_text())["ensemble C"]
    (tn, fp), (fn, tp) = c["confusion_matrix"]
    assert f"{c['accuracy'] * 100:.1f} % ({tn} {fp} / {fn} {tp})" in block(card, "every-run-table")


# ---------------------------------------------------------------------------- the check can fail
def test_an_altered_figure_is_stale_and_write_all_restores_it(tmp_path):
    root = copy_checkout(tmp_path)
    assert gd.stale_files(root) == []
    readme = root / "README.md"
    original = readme.read_text()
    body = block(original, "results-table")
    ft = json.loads((root / "models/reports/finetuned/metrics.json").read_text())["at_threshold"]
    figure = f"{ft['accuracy'] * 100:.1f} ("
    assert figure in body
    readme.write_text(original.replace(body, body.replace(figure, "99.9 (", 1)))
    assert gd.stale_files(root) == ["README.md"]
    assert gd.write_all(root) == ["README.md"]
    assert readme.read_text() == original
    assert gd.stale_files(root) == [] and gd.write_all(root) == []


def test_a_changed_metrics_json_changes_the_generated_text_and_the_prose_check(tmp_path):
    root = copy_checkout(tmp_path)
    path = root / "models/reports/finetuned/metrics.json"
    metrics = json.loads(path.read_text())
    before = tables.readme_results(tables.Reports(root))
    metrics["at_threshold"]["accuracy"] = 0.9375
    metrics["at_threshold"]["ci95"]["accuracy"] = [0.9, 0.96]
    path.write_text(json.dumps(metrics, indent=2))
    after = tables.readme_results(tables.Reports(root))
    assert after != before and "| 93.8 (90.0-96.0) |" in after
    # docs/protocols.md lists the shipped models for context
    assert set(gd.stale_files(root)) == set(gd.DOCS)
    # the prose repeating 91.0 % is now wrong, and named
    wrong = gd.prose_mismatches(root)
    assert any(m.startswith("models/MODEL_CARD.md:") and "93.8 %" in m for m in wrong), wrong
    assert any(m.startswith("docs/evaluation.md:") for m in wrong), wrong
    gd.write_all(root)
    assert gd.stale_files(root) == []
    assert "| 93.8 (90.0-96.0) |" in block((root / "README.md").read_text(), "results-table")


def test_a_changed_protocol_report_makes_protocols_md_and_the_model_card_stale(tmp_path):
    root = copy_checkout(tmp_path)
    path = root / "models/experiments/protocols/patient-resplit/frozen/metrics.json"
    metrics = json.loads(path.read_text())
    metrics["at_threshold"]["auc"] = 0.5
    path.write_text(json.dumps(metrics, indent=2))
    assert set(gd.stale_files(root)) == {"docs/protocols.md", "models/MODEL_CARD.md"}
    gd.write_all(root)
    assert "| 0.5000 [" in (root / "docs/protocols.md").read_text()
    assert "/ 0.500 |" in block((root / "models/MODEL_CARD.md").read_text(), "protocols-table")


def test_a_lost_marker_is_an_error_and_nothing_is_written(tmp_path):
    root = copy_checkout(tmp_path)
    card = root / "models" / "MODEL_CARD.md"
    readme = (root / "README.md").read_text()
    (root / "README.md").write_text(readme.replace("| frozen backbone | 0.", "| frozen backbone | 9.", 1))
    card.write_text(card.read_text().replace("<!-- generated:every-run-table -->", "", 1))
    for check in (gd.stale_files, gd.write_all):  # what docs cannot mend is an error, not "stale"
        with pytest.raises(ValueError, match="MODEL_CARD.md: no <!-- generated:every-run-table -->"):
            check(root)
    assert "| frozen backbone | 9." in (root / "README.md").read_text()  # nothing written


def test_a_missing_report_is_an_error_not_a_silently_shorter_table(tmp_path):
    root = copy_checkout(tmp_path)
    (root / "models/experiments/crop_runs/seed5/test_metrics.json").unlink()
    for check in (gd.stale_files, gd.write_all):
        with pytest.raises(FileNotFoundError, match="seed5/test_metrics.json"):
            check(root)


def test_an_altered_prose_figure_is_named(tmp_path):
    root = copy_checkout(tmp_path)
    doc = root / "docs" / "evaluation.md"
    text = doc.read_text()
    assert "at its validation threshold 0.549" in text
    doc.write_text(text.replace("at its validation threshold 0.549", "at its validation threshold 0.550"))
    wrong = gd.prose_mismatches(root)
    assert len(wrong) == 1 and wrong[0].startswith("docs/evaluation.md: expected") and "0.549" in wrong[0]
    assert gd.stale_files(root) == []  # prose is not a generated block: write_all cannot fix it


def test_number_formats():
    assert tables.points(-0.0103) == "-1.0 point" and tables.points(0.0154) == "+1.5 points"
    assert tables.span([0.883, 0.909, 0.9], tables.pct1, " %") == "88.3-90.9 %"
    assert tables.span([0.5, 0.5], tables.dec3) == "0.500"
    assert tables.word(5) == "five" and tables.word(40) == "40"
