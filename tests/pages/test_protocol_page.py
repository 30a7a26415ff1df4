"""The "Why results differ" page (app_pages/protocols.py) and the tabulation behind it
(pneumo_core.evaluation.protocol_results): rendered with AppTest from the real report files (with the dataset
folder pointed at nowhere), one displayed figure checked against its metrics.json, a missing or
unreadable report shown as pending, the Markdown docs generator, and the page in a real browser.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pneumo_core.datasets.protocols import PROTOCOLS
from pneumo_core.evaluation import protocol_markdown as markdown
from pneumo_core.evaluation import protocol_results as results
from tests.helpers.charts import Chart, charts
from tests.helpers.support import require
from ui.protocol_figures import WRITEUP_LABEL

ROOT = Path(__file__).resolve().parents[2]
PAGE = "app_pages/protocols.py"
REPORTS = results.PROTOCOLS_DIR
PENDING = "this run has not been evaluated yet"


# ---------------------------------------------------------------------------- helpers
def evaluated_runs() -> list[tuple[str, str]]:
    """(protocol, variant) of every report on disk, in page order; at least one is required."""
    found = [(p, v) for p in PROTOCOLS for v in results.VARIANTS if (REPORTS / p / v / "metrics.json").is_file()]
    require(bool(found), f"no protocol report under {REPORTS} (run scripts/protocol_runs.py)")
    return found


def metrics_of(protocol: str, variant: str, root: Path = REPORTS) -> dict:
    return json.loads((root / protocol / variant / "metrics.json").read_text())


@pytest.fixture
def no_dataset(tmp_path, monkeypatch):
    """The dataset folder points at an empty place: the page must read report files only."""
    monkeypatch.setenv("PNEUMO_DATA_DIR", str(tmp_path / "no-dataset-here"))


def render(**session) -> "AppTest":  # noqa: F821
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)  # the frame shows the disclaimer
    at.run()  # Home first: before a run, switch_page finds a page by file name, not by its url_path
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, f"page raised: {[e.value for e in at.exception]}"
    for key, value in session.items():
        getattr(at, key.split("__")[0])(key=key.split("__")[1]).set_value(value)
        at.run()
        assert not at.exception, f"page raised after {key}={value}: {[e.value for e in at.exception]}"
    return at


def chart(at) -> Chart:
    drawn = charts(at)
    assert len(drawn) == 1, f"expected the one protocol chart, found {len(drawn)}"
    return drawn[0]


def point(drawn: Chart, protocol: str, variant: str) -> tuple[float, float, float] | None:
    """(y, +error, -error) of ``variant``'s point in ``protocol``'s slot of the chart, or None."""
    rows = drawn.rows()
    if "value" not in rows:
        return None
    found = rows[(rows.slot == results.PROTOCOL_NAMES[protocol]) & rows.value.notna()
                 & (rows.series == f"{results.VARIANT_NAMES[variant]} (this project)")].drop_duplicates()
    assert len(found) <= 1, found
    return None if found.empty else (found.value.iloc[0], found.hi.iloc[0] - found.value.iloc[0],
                                     found.value.iloc[0] - found.lo.iloc[0])


def fake_report(root: Path, protocol: str, variant: str, accuracy: float, half: float = 0.01, **training) -> None:
    """A minimal metrics.json + training.json in the layout scripts/protocol_runs.py writes."""
    folder = root / protocol / variant
    folder.mkdir(parents=True)
    block = {"threshold": 0.5, "n": 600, "accuracy": accuracy, "recall": 0.9, "specificity": 0.8, "auc": 0.95,
             "ci95": {"accuracy": [accuracy - half, accuracy + half], "auc": [0.94, 0.96]}}
    (folder / "metrics.json").write_text(json.dumps({"at_threshold": block, "at_0.5": block,
                                                     "threshold_rule": "a rule", "data": "a test part"}))
    parts = {"test": {"images": 600, "patients": 300, "from_official_test": 60},
             "train": {"images": 4800, "patients": 2400, "from_official_test": 480}}
    (folder / "training.json").write_text(json.dumps({"command": f"train {protocol} {variant}", "protocol": {
        "split_seed": 7, "parts": parts, "leakage": {"test": {"patients_also_in_train": 12, "patients": 300,
                                                              "images_of_those_patients": 20}}}, **training}))


def gap_text(root: Path, variant: str = "finetuned") -> str:
    """The gap sentences for the reports under ``root``, joined."""
    return " ".join(results.explain_gap(results.gap_steps(results.overview_table(results.load_runs(root)), variant)))


# ---------------------------------------------------------------------------- the page (AppTest)
def test_page_renders_from_the_report_files_without_the_dataset(no_dataset):
    evaluated = evaluated_runs()
    at = render()
    assert any("not a diagnostic device" in w.value for w in at.warning), "research/teaching disclaimer missing"
    assert at.title[0].value.startswith("Why results differ")
    drawn = chart(at)
    for protocol, variant in evaluated:
        assert point(drawn, protocol, variant) is not None, f"{protocol}/{variant} evaluated but not drawn"
    rows = drawn.rows().dropna(subset=["value"]).drop_duplicates()
    writeup = rows[rows.slot == WRITEUP_LABEL].set_index("series")
    assert set(writeup.index) == {"frozen (head only) (write-up)", "fine-tuned (write-up)"}, writeup
    assert writeup.loc["fine-tuned (write-up)", "value"] == pytest.approx(96.59)
    assert writeup.loc["frozen (head only) (write-up)", "value"] == pytest.approx(87.20)
    assert writeup.lo.isna().all()  # the write-up reported no interval
    pending = [i.value for i in at.info if PENDING in i.value]
    assert len(pending) == 6 - len(evaluated), pending
    # every metric of the chart renders, at both bases
    for metric in ("AUC", "sensitivity", "specificity"):
        at.selectbox(key="protocol_metric").set_value(metric).run()
        assert not at.exception, metric
        drawn = chart(at)
        assert drawn.spec["title"]["text"].startswith(f"{metric[0].upper()}{metric[1:]} by protocol")
        if metric != "AUC":  # the write-up reported accuracy and AUC only: its slot says so
            assert f"write-up: no {metric} reported" in drawn.rows().note.tolist()


def test_displayed_figures_match_metrics_json(no_dataset):
    protocol, variant = evaluated_runs()[-1]
    metrics = metrics_of(protocol, variant)
    for basis, which in (("each protocol's validation-chosen threshold", "at_threshold"),
                         ("threshold 0.5", "at_0.5")):
        at = render(radio__protocol_basis=basis)
        block = metrics[which]
        y, up, down = point(chart(at), protocol, variant)
        assert y == pytest.approx(block["accuracy"] * 100, abs=1e-9)
        assert y + up == pytest.approx(block["ci95"]["accuracy"][1] * 100, abs=1e-9)
        assert y - down == pytest.approx(block["ci95"]["accuracy"][0] * 100, abs=1e-9)
        table = next(m.value for m in at.markdown if m.value.startswith("| protocol | recipe"))
        row = next(line for line in table.splitlines()
                   if line.startswith(f"| {results.PROTOCOL_NAMES[protocol]} | {results.VARIANT_NAMES[variant]} |"))
        lo, hi = block["ci95"]["accuracy"]
        assert f"{block['accuracy'] * 100:.2f} [{lo * 100:.2f}, {hi * 100:.2f}]" in row, row
        # the pre-registered WiSE-FT rows, each from its own report, in their own section
        assert results.load_wise_ft(), "the WiSE-FT reports of models/experiments/protocols/*/wiseft are missing"
        for (wise_protocol, _), run in results.load_wise_ft().items():
            wise = run.metrics[which]
            section = next(m.value for m in at.markdown if m.value.startswith("Pre-registered before"))
            lo, hi = wise["ci95"]["accuracy"]
            assert (f"| {results.PROTOCOL_NAMES[wise_protocol]} | {results.VARIANT_NAMES['wiseft']} | "
                    f"{wise['accuracy'] * 100:.2f} [{lo * 100:.2f}, {hi * 100:.2f}]") in section, section
        assert f"{block['auc']:.4f}" in row and f"| {block['threshold']:.3f} |" in row, row
        assert f"| {block['n']} (" in row, row


def test_site_adaptation_table_shows_the_study_reports(no_dataset):
    study = ROOT / "models" / "experiments" / "site_adaptation"
    reports = {m: json.loads((study / m / "metrics.json").read_text()) for m in ("em", "adabn", "coral")
               if (study / m / "metrics.json").is_file()}
    require(len(reports) == 3, f"the site-adaptation study's reports are not all under {study}")
    at = render()
    (table,) = [d.value for d in at.dataframe if "shipping rule" in d.value.columns]
    assert table.method.tolist() == ["unadapted (shipped)", "EM prior shift", "anchored AdaBN", "CORAL"]
    base = reports["em"]["unadapted_at_threshold"]
    shipped = json.loads((ROOT / "models" / "reports" / "finetuned" / "metrics.json").read_text())["at_threshold"]
    rows = [(table.iloc[0], {**base, "ci95": shipped["ci95"]}, None)] + [
        (table.iloc[i], report["at_threshold"], report) for i, report in enumerate(reports.values(), start=1)]
    for shown, block, report in rows:
        assert shown["accuracy"] == f"{block['accuracy']:.1%}" and shown["AUC"] == f"{block['auc']:.3f}"
        low, high = block["ci95"]["accuracy"]
        assert shown["accuracy 95% CI"] == f"[{low:.1%}, {high:.1%}]"
        low, high = block["ci95"]["auc"]
        assert shown["AUC 95% CI"] == f"[{low:.3f}, {high:.3f}]"
        for key in ("sensitivity", "specificity", "balanced_accuracy"):
            assert shown[key.replace("_", " ")] == f"{block[key]:.1%}"
        assert shown["aim (94.6%, AUC 0.99)"] == "not met"
        if report is not None:
            folds = [f"{f['balanced_accuracy_gain'] * 100:+.2f}" for f in report["folds"]]
            assert shown["balanced accuracy change, fold 1 / fold 2"] == " / ".join(folds) + " points"
            assert shown["shipping rule"].startswith("met") == report["passes_shipping_rule"]
    assert table["shipping rule"].tolist()[1:] == ["met: opt-in site action", "not met", "not met"]
    em = reports["em"]
    assert any(f"**Threshold**: {em['threshold']:.3f}" in c and em["model_sha256"][:12] in c and "624 films" in c
               for c in (c.value for c in at.caption))
    assert any("EM prior shift met the rule by one or two films a fold" in m.value and "**not met** by any method"
               in m.value for m in at.markdown)
    assert any(em["preregistration"] in m.value for m in at.markdown)


def test_missing_or_unreadable_report_is_shown_as_pending(no_dataset, tmp_path, monkeypatch):
    evaluated = evaluated_runs()
    require(len(evaluated) >= 2, "two protocol reports needed (one removed, one corrupted)")
    copy = tmp_path / "protocols"
    shutil.copytree(REPORTS, copy)
    (removed_p, removed_v), (broken_p, broken_v) = evaluated[0], evaluated[1]
    shutil.rmtree(copy / removed_p / removed_v)
    (copy / broken_p / broken_v / "metrics.json").write_text("{ not json")
    monkeypatch.setenv("PNEUMO_PROTOCOLS_DIR", str(copy))
    at = render()
    infos = [i.value for i in at.info]
    for protocol, variant in ((removed_p, removed_v), (broken_p, broken_v)):
        label = f"{results.PROTOCOL_NAMES[protocol].capitalize()}, {results.VARIANT_NAMES[variant]}: {PENDING}"
        assert any(i.startswith(label) for i in infos), (label, infos)
        assert point(chart(at), protocol, variant) is None
    notes = chart(at).rows().dropna(subset=["note"])
    missing = ((removed_p, removed_v), (broken_p, broken_v))
    assert sorted(zip(notes.slot, notes.recipe)) == sorted(
        (results.PROTOCOL_NAMES[p], results.VARIANT_NAMES[v]) for p, v in missing)
    assert set(notes.note) == {"not evaluated yet"}
    # nothing at all evaluated: still a page, six pending notes
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PNEUMO_PROTOCOLS_DIR", str(empty))
    at = render()
    assert len([i for i in at.info if PENDING in i.value]) == 6


def test_page_with_all_six_reports_has_no_pending_note(no_dataset, tmp_path, monkeypatch):
    evaluated = evaluated_runs()
    copy = tmp_path / "protocols"
    shutil.copytree(REPORTS, copy)
    for protocol in PROTOCOLS:  # stand-ins for the runs still being computed: another run's real report
        for variant in results.VARIANTS:
            if (protocol, variant) not in evaluated:
                shutil.copytree(REPORTS / evaluated[-1][0] / evaluated[-1][1], copy / protocol / variant)
    monkeypatch.setenv("PNEUMO_PROTOCOLS_DIR", str(copy))
    at = render()
    assert not [i.value for i in at.info if PENDING in i.value]
    drawn = chart(at)
    assert all(point(drawn, p, v) is not None for p in PROTOCOLS for v in results.VARIANTS)
    assert "note" not in drawn.rows()  # nothing pending in the chart either
    words = " ".join(m.value for m in at.markdown)
    assert " pending" not in words.replace("every pending run", ""), words
    assert "Between this recipe's official figure and the write-up's 96.59 %" in words


# ---------------------------------------------------------------------------- tabulation (plain)
def test_overview_and_leakage_tables_read_the_files():
    evaluated = evaluated_runs()
    runs = results.load_runs()
    table = results.overview_table(runs)
    assert list(zip(table.protocol, table.variant)) == [(p, v) for p in PROTOCOLS for v in results.VARIANTS]
    assert set(zip(table[table.evaluated].protocol, table[table.evaluated].variant)) == set(evaluated)
    for protocol, variant in evaluated:
        block = metrics_of(protocol, variant)["at_threshold"]
        row = table[(table.protocol == protocol) & (table.variant == variant)].iloc[0]
        assert (row.accuracy, row.AUC, row.sensitivity, row.specificity) == (
            block["accuracy"], block["auc"], block["recall"], block["specificity"])
        assert (row.sensitivity_lo, row.sensitivity_hi) == tuple(block["ci95"]["recall"])
        assert row.test_films == block["n"]
    leak = results.leakage_table(runs).set_index("protocol")
    protocol, variant = evaluated[0]
    split = json.loads((REPORTS / protocol / variant / "training.json").read_text())["protocol"]
    assert leak.loc[protocol, "test_patients_in_train"] == split["leakage"]["test"]["patients_also_in_train"]
    assert leak.loc[protocol, "later_batch_share_test"] == pytest.approx(
        split["parts"]["test"]["from_official_test"] / split["parts"]["test"]["images"])
    if "patient-resplit" in {p for p, _ in evaluated}:
        assert leak.loc["patient-resplit", "test_patients_in_train"] == 0  # the protocol's promise
    if "image-resplit" in {p for p, _ in evaluated}:
        assert leak.loc["image-resplit", "test_patients_in_train"] > 0


def test_gap_steps_gain_and_wording_on_synthetic_reports(tmp_path):
    accuracies = {"official": (0.84, 0.90), "patient-resplit": (0.95, 0.965), "image-resplit": (0.97, 0.975)}
    for protocol, (frozen, finetuned) in accuracies.items():
        fake_report(tmp_path, protocol, "frozen", frozen)
        fake_report(tmp_path, protocol, "finetuned", finetuned, half=0.02)
    table = results.overview_table(results.load_runs(tmp_path))
    assert table.evaluated.all()
    steps = results.gap_steps(table, "finetuned")
    assert steps["batch_shift"] == pytest.approx(0.065) and steps["leakage"] == pytest.approx(0.01)
    assert steps["total"] == pytest.approx(0.075) and steps["writeup"] == pytest.approx(0.9659)
    text = " ".join(results.explain_gap(steps))
    assert "+6.50 points" in text and "+1.00 points" in text
    assert "87% is the batch shift and 13% leakage" in text
    assert "smaller than the wider 95 % CI half-width" in text  # 1 point < 2 points
    assert "at least the wider 95 % CI half-width" in text  # 6.5 points > 2 points
    assert "0.91 points above the write-up's 96.59 %" in text
    assert "lie +6.59 points" in text and "the rest (recipe and random draw) -0.91 points" in text
    gains = results.gain_table(table).set_index("protocol")
    assert gains.loc["official split", "accuracy gain"] == pytest.approx(0.06)
    assert gains.loc["image-level random split", "accuracy gain"] == pytest.approx(0.9659 - 0.8720)
    # opposite signs: no share is claimed; a pending run: the step says so
    shutil.rmtree(tmp_path / "image-resplit" / "finetuned")
    fake_report(tmp_path, "image-resplit", "finetuned", 0.93)
    text = gap_text(tmp_path)
    assert "no share of it is given" in text and "below the write-up's" in text
    shutil.rmtree(tmp_path / "official" / "finetuned")
    text = gap_text(tmp_path)
    assert "official split pending" in text and "batch shift step" in text and "waits for a run" in text
    assert pd.isna(results.gain_table(results.overview_table(results.load_runs(tmp_path))).set_index("protocol").loc[
        "official split", "accuracy gain"])


def test_markdown_and_docs_section_are_generated_from_the_files(tmp_path):
    fake_report(tmp_path, "patient-resplit", "finetuned", 0.9612)
    out = markdown.report_markdown(tmp_path)
    assert "| patient re-split | fine-tuned | 96.12 [95.12, 97.12] |" in out
    assert out.count("not evaluated yet") >= 5 * 4  # five pending rows, four figure cells each
    assert "12 of 300" in out and "10.0%" in out  # leakage and later-batch share from training.json
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{markdown.START}\nold\n{markdown.END}\noutro\n")
    markdown.write_into(doc, tmp_path)
    assert doc.read_text() == f"intro\n{markdown.START}\n{markdown.report_markdown(tmp_path)}{markdown.END}\noutro\n"
    # the shipped docs page holds the tables of the files in the repository
    shipped = (ROOT / "docs" / "protocols.md").read_text()
    assert markdown.report_markdown() in shipped, ("docs/protocols.md is stale: run "
                                             "python -m pneumo_core docs")


def test_wise_ft_section_applies_the_preregistered_rules_to_the_report_files(tmp_path):
    """The goal (image re-split, against 96.59 %) and the shipping rule (official, validation only, against
    the shipped ensemble's record) are decided from the files, whichever way they fall."""
    shipped = results.shipped_table().set_index("variant").loc["finetuned"]
    assert 0 < shipped.val_log_loss < 1 and 0.5 < shipped.validation_auc <= 1
    def section() -> str:
        return markdown.wise_ft_markdown(results.overview_table(results.load_runs(tmp_path)),
                                         results.load_wise_ft(tmp_path), results.shipped_table())

    assert "Not evaluated yet" in section()

    def wise(protocol, accuracy, log_loss, auc):
        fake_report(tmp_path, protocol, "wiseft", accuracy, wise_ft={"alpha": 0.5, "val_log_loss": log_loss},
                    validation={"auc": auc})

    fake_report(tmp_path, "image-resplit", "finetuned", 0.9555)
    wise("image-resplit", 0.9675, 0.07, 0.99)
    wise("official", 0.9101, shipped.val_log_loss + 0.01, 1.0)
    text = section()
    assert "| image re-split | fine-tuned, WiSE-FT alpha 0.5 (pre-registered) | 96.75 [95.75, 97.75] |" in text
    assert "Image re-split: accuracy 96.75%, +1.20 points against the plain fine-tuned run's 95.55%" in text
    assert "- Goal (match or beat the write-up's 96.59% under its own protocol): **met**." in text
    assert "Shipping rule" in text and "**not met**: the shipped models" in text  # log-loss above the ensemble's

    shutil.rmtree(tmp_path / "official" / "wiseft")
    shutil.rmtree(tmp_path / "image-resplit" / "wiseft")
    wise("image-resplit", 0.9555, 0.07, 0.99)
    wise("official", 0.9101, shipped.val_log_loss - 0.01, shipped.validation_auc)
    text = section()
    assert "**not met** (-1.04 points)" in text.split("Goal")[1].split("\n")[0]
    assert "**met**: it replaces the shipped fine-tuned model" in text
    assert "the plain run is not evaluated yet" in text  # no plain official report in tmp_path


# ---------------------------------------------------------------------------- real browser
@pytest.mark.slow
@pytest.mark.browser  # Chromium, though the page's other tests are AppTest
def test_protocols_page_in_a_real_browser():
    from tests.helpers.browser import app_in_browser, require_browser, shots

    require_browser()
    protocol, variant = evaluated_runs()[-1]
    block = metrics_of(protocol, variant)["at_threshold"]
    expected = f"{block['accuracy'] * 100:.2f} [{block['ci95']['accuracy'][0] * 100:.2f}"
    artifacts = ROOT / "test-artifacts"
    with app_in_browser(artifacts) as (server, page, errors):
        page.goto(f"{server.url}/protocols")
        shots.wait_page_idle(page)
        assert page.get_by_text("not a diagnostic device").first.is_visible()
        assert "Why results differ" in page.locator('[data-testid="stSidebarNav"]').inner_text()
        chart_el = page.locator('[data-testid="stVegaLiteChart"]').first
        chart_el.scroll_into_view_if_needed()
        chart_el.locator("svg .mark-symbol path").first.wait_for(timeout=60_000)
        # one symbol a drawn figure (+ the write-up's two) and four in the legend
        assert chart_el.locator("svg .mark-symbol path").count() >= len(evaluated_runs()) + 2 + 4
        assert page.get_by_text(expected).first.is_visible(), expected
        assert page.get_by_text("96.59", exact=False).first.is_visible()
        page.screenshot(path=str(artifacts / "browser_protocols.png"), full_page=True)
        assert "Traceback" not in page.content()
        assert not errors, errors
