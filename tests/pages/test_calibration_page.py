"""Calibrated probabilities on the pages, driven with Streamlit's AppTest on the bundled teaching films and the shipped
models: Analyse shows the calibrated probability beside the raw score (and in the review table), equal to
``Calibration.apply`` of the film's score, with the ECE of the model's own calibration.json in its help; without a
readable calibration file the raw score stands alone with one line why; the ROC page draws each model's reliability
diagrams (validation and test, raw and calibrated) from calibration.json with its ECE in the caption; the "Your site"
page recalibrates from the site's reads only past the per-class minimum, its figures equal to those recomputed from
the stored rows.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pneumo_core.site.calibration import Calibration, calibration_figures, expected_calibration_error, log_loss
from pneumo_core.site.validation import MIN_READS_PER_CLASS, site_recalibration
from pneumo_core.storage.reads import film_truths
from tests.helpers.charts import Chart, chart_titled, charts
from tests.pages import test_site_page as site_tests
from tests.pages.test_model_errors import frozen_only
from tests.pages.test_site_page import EXAMPLES, TABLE, healthy, open_page, seed_reads, stored, texts

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "models" / "reports"
ANALYSE, ROC, SITE = "app_pages/analyse.py", "app_pages/roc.py", "app_pages/site.py"
CALIBRATED = "Calibrated probability"
db_url, scored = site_tests.db_url, site_tests.scored  # the site page's fixtures: a private database, the films' scores


def calibration_of(variant: str) -> tuple[Calibration, dict, dict]:
    """The shipped calibration of ``variant`` and its validation and test figures, read straight from the file."""
    data = json.loads((REPORTS / variant / "calibration.json").read_text())
    (test_key,) = [k for k in data["figures"] if k.startswith("test")]
    return Calibration.from_json(data), data["figures"]["validation"], data["figures"][test_key]


def upload(at, files: list[str]):
    at.file_uploader(key="uploads").set_value([(f, (EXAMPLES / f).read_bytes(), "image/jpeg") for f in files]).run()
    healthy(at)
    return at


def reliability_panels(chart: Chart) -> list[tuple[str, list[tuple[list, list, list]]]]:
    """(panel title, [(x, y, n) of the raw score, (x, y, n) of the calibrated score]) of each panel, left to right,
    read from the data each panel draws (Streamlit sends it as named datasets beside the spec)."""
    panels = []
    for view in chart.spec["hconcat"]:
        (layer,) = [layer for layer in view["layer"] if "n" in chart.frames[layer["data"]["name"]]]  # not the diagonal
        assert "n" in [tip["field"] for tip in layer["encoding"]["tooltip"]], "each bin's film count in its tooltip"
        bins = chart.frames[layer["data"]["name"]]
        panels.append((view["title"], [(list(g["mean_p"]), list(g["observed"]), list(g["n"]))
                                       for g in (bins[bins["score"] == s] for s in ("raw score", "calibrated score"))]))
    return panels


def bins_xyn(bins: list[dict]) -> tuple[list, list, list]:
    return [b["mean_p"] for b in bins], [b["observed"] for b in bins], [b["n"] for b in bins]


# ---------------------------------------------------------------------------- Analyse
def test_analyse_shows_the_calibrated_probability_of_each_film_with_the_files_ece(shipped_predictor):
    files = ["ex01.jpeg", "ex12.jpeg"]
    at = upload(open_page(ANALYSE), files)
    calibration, validation, test = calibration_of("finetuned")
    p = [shipped_predictor.predict((EXAMPLES / f).read_bytes(), name=f).p_pneumonia for f in files]
    wanted = [f"{float(calibration.apply(x)):.3f}" for x in p]
    assert [m.value for m in at.metric if m.label == "P(pneumonia)"] == [f"{x:.3f}" for x in p]
    shown = [m for m in at.metric if m.label == CALIBRATED]
    assert [m.value for m in shown] == wanted
    assert wanted != [f"{x:.3f}" for x in p]  # the calibration moves these scores: the test can tell them apart
    help_text = shown[0].proto.help
    assert f"ECE {test['ece_calibrated']:.3f} (raw score {test['ece_raw']:.3f})" in help_text
    assert f"there {validation['ece_raw']:.3f} raw, {validation['ece_calibrated']:.3f} calibrated" in help_text
    assert f"validation split ({calibration.n} films" in help_text
    assert "not a risk estimate until recalibrated from the site's own reads" in help_text
    assert texts(at, "caption").count(f"Calibrated for films like the validation films ({calibration.prevalence:.0%} "
                                      "pneumonia); the label comes from the raw score and the threshold.") == 2
    table = at.dataframe[0].value
    assert list(table["file"]) == files and list(table["p_calibrated"]) == wanted


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_without_a_readable_calibration_file_the_raw_score_stands_alone(tmp_path, monkeypatch, damage):
    from ui import cache

    models = frozen_only(tmp_path, damage=False)
    reports = models / "reports" / "frozen"
    reports.unlink()  # the linked folder, replaced by one whose calibration.json is missing or not JSON
    reports.mkdir()
    for path in (REPORTS / "frozen").iterdir():
        if path.name != "calibration.json":
            (reports / path.name).symlink_to(path)
    if damage == "unreadable":
        (reports / "calibration.json").write_text('{"slope": 1.2, "bias":')
    monkeypatch.delenv("PNEUMO_BACKEND", raising=False)
    monkeypatch.setattr(cache, "MODELS_DIR", models)
    at = upload(open_page(ANALYSE), ["ex01.jpeg"])
    assert [m.label for m in at.metric] == ["P(pneumonia)"]
    why = ("the model has no calibration.json (`pneumo site calibrate` writes it)" if damage == "missing"
           else "its calibration.json cannot be read (JSONDecodeError)")
    assert f"No calibrated probability: {why}." in texts(at, "caption")
    at.switch_page(ROC).run()
    healthy(at)
    assert any(c.endswith(f": no reliability diagram, {why}.") for c in texts(at, "caption")), texts(at, "caption")
    assert chart_titled(at, "ROC curves on the test split")  # the page drew its charts, this one only is missing
    assert not [c for c in charts(at) if "Calibration (reliability)" in c.title]


# ---------------------------------------------------------------------------- ROC
def test_the_roc_page_draws_each_models_reliability_diagrams_from_its_calibration_file():
    from pneumo_core.evaluation.reports import load_reports

    at = open_page(ROC)
    captions = texts(at, "caption")
    for variant, rep in load_reports(ROOT / "models").items():
        calibration, validation, test = calibration_of(variant)
        (caption,) = [c for c in captions if c.startswith(f"ECE (10 equal-width bins), {rep.name}:")]
        assert (f"validation {validation['ece_raw']:.3f} raw, {validation['ece_calibrated']:.3f} calibrated "
                f"({validation['n']} films, fitted here)") in caption
        assert (f"test {test['ece_raw']:.3f} raw, {test['ece_calibrated']:.3f} calibrated ({test['n']} films, "
                "reported only, never fitted on)") in caption
        assert f"reports/{variant}/calibration.json" in caption
        chart = chart_titled(at, f"Calibration (reliability): {rep.name}")
        assert reliability_panels(chart) == [
            (f"Validation (fitted on), {validation['n']} films",
             [bins_xyn(validation["reliability_raw"]), bins_xyn(validation["reliability_calibrated"])]),
            (f"Test (reported only), {test['n']} films",
             [bins_xyn(test["reliability_raw"]), bins_xyn(test["reliability_calibrated"])])]
        assert f"temperature {calibration.temperature:.2f}, offset {calibration.bias:+.2f}" in chart.title


# ---------------------------------------------------------------------------- Your site
def test_site_recalibration_waits_for_the_minimum_then_shows_figures_of_the_stored_rows(db_url, scored):
    normal = list(TABLE.file[TABLE.truth == "NORMAL"])
    pneumonia = list(TABLE.file[TABLE.truth == "PNEUMONIA"])
    assert len(normal) == len(pneumonia) == MIN_READS_PER_CLASS  # the teaching set is exactly the minimum
    seed_reads(db_url, scored, "dr a", files=set(normal[:-3] + pneumonia))
    at = open_page(SITE)
    (told,) = [i for i in texts(at, "info") if i.startswith("Not yet: a recalibration")]
    assert told == (f"Not yet: a recalibration from this site's reads needs {MIN_READS_PER_CLASS} films of each class "
                    f"({MIN_READS_PER_CLASS - 3} NORMAL and {MIN_READS_PER_CLASS} PNEUMONIA now): 3 more NORMAL.")
    assert not [c for c in charts(at) if "Recalibration from this site" in c.title]

    seed_reads(db_url, scored, "dr a", files=set(normal[-3:]))
    at = open_page(SITE)
    assert not [i for i in texts(at, "info") if i.startswith("Not yet: a recalibration")]
    films = film_truths(stored(db_url)[0])
    films = films[films["truth"].notna()]
    y, p = (films["truth"] == "PNEUMONIA").astype(int).to_numpy(), films["p_pneumonia"].to_numpy()
    refit = site_recalibration(y, p)
    expected = calibration_figures(y, p, refit)
    shipped = calibration_of("finetuned")[0].apply(p)
    table = next(d.value for d in at.dataframe if "ECE" in d.value.columns).set_index("score")
    assert table.loc["raw", "ECE"] == f"{expected['ece_raw']:.3f}"
    assert table.loc["recalibrated on these reads", "ECE"] == f"{expected['ece_calibrated']:.3f}"
    assert table.loc["recalibrated on these reads", "log-loss"] == f"{expected['log_loss_calibrated']:.3f}"
    assert table.loc["calibrated on validation (shipped)", "ECE"] == f"{expected_calibration_error(y, shipped):.3f}"
    assert table.loc["calibrated on validation (shipped)", "log-loss"] == f"{log_loss(y, shipped):.3f}"
    assert reliability_panels(chart_titled(at, "Recalibration from this site")) == [
        (f"This site's reads, {len(y)} films",
         [bins_xyn(expected["reliability_raw"]), bins_xyn(expected["reliability_calibrated"])])]
    assert any(f"fitted on the site's {len(y)} films with a class and shown on the same films" in c
               and f"temperature {refit.temperature:.2f}" in c for c in texts(at, "caption"))
