"""The Streamlit dashboard, driven headlessly with ``streamlit.testing.v1.AppTest``.

Every page renders without an exception and shows the disclaimer; the Analyse page, given a real
test-split X-ray through its file uploader, shows the same label and probability as
``Predictor("finetuned").predict(path)``; a bad upload is reported for that file only; thresholds
re-label without re-running the model; a missing model variant gives a message, not a crash.
Also the pure helpers behind the pages (pneumo_core.evaluation.reports, pneumo_core.review.report_image).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers.support import require
from ui.text import literal

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
MODELS = ROOT / "models"
TIMEOUT = 300  # first model load on a busy 2-core machine
PAGES = ["app_pages/home.py", "app_pages/analyse.py", "app_pages/compare.py", "app_pages/roc.py", "app_pages/about.py",
         "app_pages/quiz.py", "app_pages/class_view.py", "app_pages/protocols.py", "app_pages/site.py"]
DISCLAIMER_TEXT = "not a diagnostic device"



# ---------------------------------------------------------------------------- helpers
def open_page(page: str | None = None) -> "AppTest":
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def assert_healthy(at) -> None:
    assert not at.exception, f"page raised: {[e.value for e in at.exception]}"
    assert any(DISCLAIMER_TEXT in w.value for w in at.warning), "research/teaching disclaimer missing"


def metrics(at) -> list[tuple[str, str]]:
    return [(m.label, m.value) for m in at.metric]


def studies(at) -> list[dict]:
    """(label, probability) of each study shown, in page order."""
    from ui.study import LABEL_HEADING

    labels = [m.value.split("\n", 1)[1].lstrip("# ").strip() for m in at.markdown if m.value.startswith(LABEL_HEADING)]
    probs = [v for k, v in metrics(at) if k == "P(pneumonia)"]
    assert len(labels) == len(probs)
    return [{"label": a, "p": b} for a, b in zip(labels, probs)]


def both_models_required() -> None:
    for v in ("finetuned", "frozen"):
        require((MODELS / f"{v}.keras").is_file() and (MODELS / "reports" / v / "metrics.json").is_file(),
                f"shipped model {v} and its reports are needed (train and evaluate it first)")


def upload(at, files: list[tuple[str, bytes, str]]):
    at.file_uploader(key="uploads").set_value(files)
    at.run()
    return at


def dicom_16bit(path: Path) -> bytes:
    """A 16-bit MONOCHROME2 DICOM made in memory from a JPEG film."""
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    px = np.asarray(Image.open(path).convert("L")).astype(np.uint16) * 257
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = px.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def png_16bit_large(path: Path, size=(1600, 1300)) -> bytes:
    """A 16-bit greyscale PNG, upscaled past the display size, made in memory."""
    import cv2

    px = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    px = cv2.resize(px, size, interpolation=cv2.INTER_CUBIC).astype(np.uint16) * 257
    ok, buf = cv2.imencode(".png", px)
    assert ok
    return buf.tobytes()


# ---------------------------------------------------------------------------- every page renders
def test_home_page_lists_models_and_links():
    both_models_required()
    at = open_page()
    assert_healthy(at)
    assert at.title[0].value == "Pneumonia chest X-ray workbench"
    table = at.dataframe[0].value
    assert set(table["model"]) == {"Fine-tuned MobileNetV2", "Frozen MobileNetV2 (head only)"}
    from pneumo_core.evaluation.reports import display_name

    for v in ("finetuned", "frozen"):
        m = json.loads((MODELS / "reports" / v / "metrics.json").read_text())
        row = table[table["model"] == display_name(v)].iloc[0]
        assert row["test AUC"] == pytest.approx(m["at_threshold"]["auc"], abs=1e-3)
        assert row["test accuracy"] == pytest.approx(m["at_threshold"]["accuracy"], abs=1e-3)
        assert row["status"] == "ready"
        assert row["matches evaluated model"] == "yes", "model file hash differs from the evaluated one"
    from ui import navigation

    links = at.get("page_link")
    assert len(links) == len(navigation.linked_pages()) == len(navigation.PAGES) - 1  # every page but Home
    assert not any("not available" in i.value for i in at.info)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page):
    at = open_page(page)
    assert_healthy(at)
    assert at.title, f"{page} has no title"


def test_compare_page_shows_both_models_with_cis():
    both_models_required()
    at = open_page("app_pages/compare.py")
    assert_healthy(at)
    wide = at.dataframe[0].value
    for v, name in (("finetuned", "Fine-tuned MobileNetV2"), ("frozen", "Frozen MobileNetV2 (head only)")):
        m = json.loads((MODELS / "reports" / v / "metrics.json").read_text())["at_threshold"]
        lo, hi = m["ci95"]["auc"]
        assert wide.loc["ROC AUC", name] == f"{m['auc']:.3f} [{lo:.3f}, {hi:.3f}]"
    from pneumo_core.evaluation.reports import METRIC_SHORT, load_reports, short_name
    from tests.helpers.charts import chart_titled, charts

    souped = [v for v in ("finetuned", "frozen")
              if {"soup", "ensemble"} & set(json.loads((MODELS / "reports" / v / "training.json").read_text()))]
    curves = [v for v in ("finetuned", "frozen") if (MODELS / "reports" / v / "history_head.csv").is_file()]
    # metrics bars + one training-curve chart per model with a history; a soup also lists its runs
    assert len(charts(at)) == 1 + len(curves)
    if souped:
        members = [df.value for df in at.dataframe if "in model" in getattr(df.value, "columns", [])]
        assert len(members) == len(souped) and (members[0]["in model"] == "yes").any()

    def assert_bars_are(which: str, basis: str) -> None:
        """Each model's bar and 95% CI equal metrics.json's block ``which``; the title says the basis."""
        bar = chart_titled(at, "Test metrics, 95% CIs")
        assert basis in bar.title and "official Kermany test split" in bar.title
        rows = bar.rows().set_index(["series", "metric"])
        for v in ("finetuned", "frozen"):
            block = json.loads((MODELS / "reports" / v / "metrics.json").read_text())[which]
            series = f"{short_name(v)} at {block['threshold']:.3f}"
            for metric, short in METRIC_SHORT.items():
                shown = rows.loc[(series, short), ["value", "ci_lo", "ci_hi"]]
                assert list(shown) == pytest.approx([block[metric], *block["ci95"][metric]])
        assert len(rows) == 2 * len(METRIC_SHORT)
        (whiskers,) = [layer for layer in bar.spec["layer"] if layer["mark"]["type"] == "errorbar"]
        assert (whiskers["encoding"]["y"]["field"], whiskers["encoding"]["y2"]["field"]) == ("ci_lo", "ci_hi")

    assert_bars_are("at_threshold", "at each model's validation-chosen threshold")
    for v in curves:  # the training curves are the history's epochs
        rep = load_reports(MODELS)[v]
        history = chart_titled(at, f"Training curves: {rep.name}").rows()
        training = history[history["split"] == "training"].sort_values("epoch")
        assert list(training["loss"]) == pytest.approx(list(rep.history["loss"]))
        assert list(history.loc[history["split"] == "validation", "auc"]) == pytest.approx(list(rep.history["val_auc"]))
    # switching the basis to 0.5 changes the numbers to metrics.json's "at_0.5", in the table and the chart
    at.radio(key="compare_basis").set_value("threshold 0.5 for both").run()
    m05 = json.loads((MODELS / "reports" / "frozen" / "metrics.json").read_text())["at_0.5"]
    assert at.dataframe[0].value.loc["Accuracy", "Frozen MobileNetV2 (head only)"].startswith(f"{m05['accuracy']:.3f}")
    assert_bars_are("at_0.5", "at threshold 0.5 for both")


def test_roc_page_confusion_follows_threshold():
    both_models_required()
    import pandas as pd

    from pneumo_core.evaluation.metrics import metrics_at
    from tests.helpers.charts import chart_titled

    at = open_page("app_pages/roc.py")
    assert_healthy(at)
    preds = pd.read_csv(MODELS / "reports" / "frozen" / "test_predictions.csv")

    classes = ["NORMAL", "PNEUMONIA"]
    for t in (0.2, 0.9):
        at.slider(key="thr_frozen").set_value(t).run()
        assert_healthy(at)
        expected = metrics_at(preds["label"], preds["p_pneumonia"], t)["confusion_matrix"]
        matrix = chart_titled(at, "Confusion matrix: frozen")
        cells = matrix.rows().set_index(["true", "predicted"])
        assert [[cells.loc[(a, b), "count"] for b in classes] for a in classes] == expected
        for a in classes:  # each cell's rate is its share of the true class
            assert [cells.loc[(a, b), "rate"] for b in classes] == pytest.approx(
                [n / sum(expected[classes.index(a)]) for n in expected[classes.index(a)]])
        assert f"threshold {t:.3f}" in matrix.title
        heat = matrix.spec["layer"][0]["encoding"]
        assert heat["y"]["sort"] == heat["x"]["sort"] == classes  # true NORMAL on the top row, as in the caption
        assert at.selectbox(key="op_frozen").value == "custom (slider)"
    # a preset moves the slider to its validation threshold
    training = json.loads((MODELS / "reports" / "frozen" / "training.json").read_text())
    at.selectbox(key="op_frozen").set_value("0.5").run()
    assert at.slider(key="thr_frozen").value == pytest.approx(training["operating_points"]["0.5"]["threshold"])
    roc = chart_titled(at, "ROC curves on the test split")
    curves = roc.spec["layer"][0]["layer"][-1]["encoding"]  # equal units on both axes: a square plot, in pixels
    side = {"expr": "min(width, height)"}
    assert curves["x"]["scale"]["range"] == [0, side]
    assert curves["y"]["scale"]["range"] == [{"expr": "height"}, {"expr": "height - min(width, height)"}]
    assert curves["x"]["scale"]["domain"] == curves["y"]["scale"]["domain"]
    assert "markers = current thresholds:" in roc.title and "frozen 0.500" in roc.title
    rows = roc.rows()
    names = set(rows["curve"].dropna())
    assert "chance" in names
    assert any(n.startswith("fine-tuned (AUC 0.9") for n in names) and any(n.startswith("frozen (AUC") for n in names)
    (frozen_name,) = [n for n in names if n.startswith("frozen (AUC")]
    drawn = rows[rows["curve"] == frozen_name].sort_values("order")[["fpr", "tpr", "threshold"]]
    saved = pd.read_csv(MODELS / "reports" / "frozen" / "roc_curve.csv")[["fpr", "tpr", "threshold"]]
    assert np.allclose(drawn.to_numpy(float), saved.to_numpy(float))  # the report's curve, point for point
    at_05 = metrics_at(preds["label"], preds["p_pneumonia"], 0.5)
    (marker,) = rows[rows["marker"] == "frozen at 0.500"].itertuples()
    assert (marker.fpr, marker.tpr) == pytest.approx((1 - at_05["specificity"], at_05["recall"]))


# ---------------------------------------------------------------------------- Analyse X-rays
@pytest.mark.parametrize("which", ["test_normal", "test_pneumonia"])
def test_analyse_upload_matches_predictor(which, request, shipped_predictor):
    both_models_required()
    path: Path = request.getfixturevalue(which)
    at = open_page("app_pages/analyse.py")
    assert at.radio(key="model").value == "finetuned", "fine-tuned must be the default model"
    upload(at, [(path.name, path.read_bytes(), "image/jpeg")])
    assert_healthy(at)
    assert not at.error, [e.value for e in at.error]
    expected = shipped_predictor.predict(path)
    assert expected.error is None
    (shown,) = studies(at)
    assert shown["label"] == expected.label
    assert float(shown["p"]) == pytest.approx(expected.p_pneumonia, abs=5e-4)  # shown with 3 decimals
    assert at.slider(key="thr_finetuned").value == pytest.approx(shipped_predictor.threshold)
    assert len(at.get("image")) == 3, "original, Grad-CAM overlay and its colour scale expected"
    assert any("what drove the score" in c.value for c in at.caption)
    # the threshold re-labels without re-running the model
    p = expected.p_pneumonia
    for nudge, label in ((0.002, "NORMAL"), (-0.002, "PNEUMONIA")):
        at.slider(key="thr_finetuned").set_value(min(1.0, max(0.0, p + nudge))).run()
        (shown,) = studies(at)
        assert shown["label"] == label and float(shown["p"]) == pytest.approx(p, abs=5e-4)


def test_analyse_bad_file_only_affects_that_file(test_pneumonia):
    both_models_required()
    at = open_page("app_pages/analyse.py")
    upload(at, [("x.png", b"this is plain text, not an image\n" * 4, "image/png"),
                (test_pneumonia.name, test_pneumonia.read_bytes(), "image/jpeg"),
                ("film16.dcm", dicom_16bit(test_pneumonia), "application/dicom"),
                ("empty.jpg", b"", "image/jpeg"),
                ("big16.png", png_16bit_large(test_pneumonia), "image/png")])
    assert_healthy(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 2, errors
    assert literal("x.png") in errors[0] and "not an image" in errors[0]  # the name shown as typed (ui.text)
    assert literal("empty.jpg") in errors[1]
    shown = studies(at)
    assert len(shown) == 3  # the JPEG, the 16-bit DICOM and the large 16-bit PNG still work
    assert all(s["label"] in ("NORMAL", "PNEUMONIA") for s in shown)
    assert len(at.get("image")) == 9  # original, overlay and its colour scale for each good file
    review = at.dataframe[0].value
    assert list(review["file"]) == ["x.png", test_pneumonia.name, "film16.dcm", "empty.jpg", "big16.png"]
    assert list(review["flag"][[0, 3]]) == ["unreadable file", "unreadable file"]
    assert review["label"][0] == "" and review["label"][1] == shown[0]["label"]
    assert float(review["p_pneumonia"][1]) == pytest.approx(float(shown[0]["p"]), abs=6e-4)
    assert review["p_pneumonia"][0] == "-" and "not an image" in review["error"][0]


def test_analyse_uploads_survive_a_visit_to_another_page(test_pneumonia, test_normal):
    """Streamlit empties a file uploader when its page is left; the study must still be there
    when the user comes back, a file added then must join it, and Clear must drop the kept ones."""
    both_models_required()
    at = open_page("app_pages/analyse.py")
    upload(at, [(test_pneumonia.name, test_pneumonia.read_bytes(), "image/jpeg")])
    (first,) = studies(at)
    at.switch_page("app_pages/roc.py")
    at.run()
    at.switch_page("app_pages/analyse.py")
    at.run()
    assert_healthy(at)
    assert studies(at) == [first]
    assert any("1 file uploaded earlier in this session" in c.value for c in at.caption)
    upload(at, [(test_normal.name, test_normal.read_bytes(), "image/jpeg")])
    shown = studies(at)
    assert len(shown) == 2 and shown[0] == first
    at.button(key="clear_study").click().run()
    assert studies(at) == shown[1:]  # the uploader's own file stays


def _run_example(at, films, row) -> None:
    """Pick ``row`` of ``films`` in the example picker and run it; its file name must stay hidden until then."""
    choice = at.selectbox(key="example_choice")
    assert choice.options == list(films["example"])
    choice.set_value(row["path"]).run()  # the picked film is on the page now, but not run: nothing names it
    assert_healthy(at)
    assert row["file"] not in " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    at.button(key="example_run").click().run()
    assert_healthy(at)


def test_analyse_example_shows_true_label(data_root):
    both_models_required()
    from pneumo_core.review.examples import example_films

    bundled = example_films(None)
    # the list mixes the classes and hides the file names, which would give the answer away
    assert bundled["truth"].iloc[:4].nunique() == 2
    at = open_page("app_pages/analyse.py")
    source = at.radio(key="example_source")
    assert source.value.startswith("Bundled teaching set"), "the bundled set is the default source"
    row = bundled[bundled["truth"] == "PNEUMONIA"].iloc[0]
    _run_example(at, bundled, row)
    assert len(studies(at)) == 1
    assert any(f"#### {row['example']}" == m.value for m in at.markdown)
    truth = [i.value for i in at.info if "True label (examples.csv" in i.value]
    assert truth and "**PNEUMONIA**" in truth[0] and literal(row["file"]) in truth[0]
    # picking another example hides the result until it is run: never one film under another's name
    other = bundled["path"].iloc[-1] if bundled["path"].iloc[-1] != row["path"] else bundled["path"].iloc[0]
    at.selectbox(key="example_choice").set_value(other).run()
    assert studies(at) == []
    # the dataset's test split, when there is one
    at.radio(key="example_source").set_value(source.options[1]).run()
    folder = example_films(str(data_root))
    row = folder[folder["truth"] == "NORMAL"].iloc[0]
    _run_example(at, folder, row)
    truth = [i.value for i in at.info if "True label (dataset folder)" in i.value]
    assert truth and "**NORMAL**" in truth[0] and literal(row["file"]) in truth[0]


def test_every_page_without_a_dataset(tmp_path, monkeypatch):
    """A fresh clone: no dataset folder. Every page renders, the example picker uses the bundled
    set without mentioning a dataset, and a picked example gets a label."""
    both_models_required()
    from pneumo_core.review.examples import example_films

    monkeypatch.setenv("PNEUMO_DATA_DIR", str(tmp_path / "no-dataset-here"))
    for page in PAGES:
        at = open_page(page)
        assert_healthy(at)
        assert not at.error, [e.value for e in at.error]
    at = open_page("app_pages/analyse.py")
    assert not at.get("radio") or all(r.key != "example_source" for r in at.radio), "one source: no choice"
    page_text = " ".join(e.value for kind in (at.markdown, at.caption, at.info, at.warning) for e in kind)
    assert "dataset folder" not in page_text.lower() and "PNEUMO_DATA_DIR" not in page_text
    bundled = example_films(None)
    row = bundled[bundled["truth"] == "NORMAL"].iloc[0]
    _run_example(at, bundled, row)
    (shown,) = studies(at)
    assert shown["label"] in ("NORMAL", "PNEUMONIA")
    assert float(shown["p"]) == pytest.approx(row["p_finetuned"], abs=6e-4)  # its saved test score


@pytest.mark.slow
def test_analyse_frozen_model_choice(test_pneumonia):
    both_models_required()
    from pneumo_core.inference.predictor import Predictor

    at = open_page("app_pages/analyse.py")
    at.radio(key="model").set_value("frozen").run()
    upload(at, [(test_pneumonia.name, test_pneumonia.read_bytes(), "image/jpeg")])
    assert_healthy(at)
    expected = Predictor("frozen").predict(test_pneumonia)
    (shown,) = studies(at)
    assert shown["label"] == expected.label and float(shown["p"]) == pytest.approx(expected.p_pneumonia, abs=5e-4)


# ---------------------------------------------------------------------------- missing models
def _models_subset(tmp_path: Path, variants) -> Path:
    """A models folder with the shipped files of ``variants`` only: .keras, LiteRT export, reports, manifest."""
    d = tmp_path / "models"
    (d / "reports").mkdir(parents=True)
    (d / "MANIFEST.json").symlink_to(MODELS / "MANIFEST.json")
    for v in variants:
        for name in (f"{v}.keras", f"{v}.tflite", f"{v}.tflite.json"):
            (d / name).symlink_to(MODELS / name)
        (d / "reports" / v).symlink_to(MODELS / "reports" / v, target_is_directory=True)
    return d


@pytest.mark.parametrize("page", [None, *PAGES])
def test_missing_finetuned_variant_is_explained(page, tmp_path, monkeypatch):
    require((MODELS / "frozen.keras").is_file(), "shipped frozen model needed")
    from ui import cache

    monkeypatch.setattr(cache, "MODELS_DIR", _models_subset(tmp_path, ["frozen"]))
    at = open_page(page)
    assert_healthy(at)
    if page in (None, "app_pages/home.py", "app_pages/compare.py", "app_pages/roc.py"):
        assert any("Fine-tuned MobileNetV2 is not available yet" in i.value for i in at.info)
    if page == "app_pages/analyse.py":
        assert at.radio(key="model").options == ["Frozen MobileNetV2 (head only)"]
        assert at.radio(key="model").value == "frozen"


@pytest.mark.parametrize("page", [None, *PAGES])
def test_no_models_at_all(page, tmp_path, monkeypatch):
    from ui import cache

    monkeypatch.setattr(cache, "MODELS_DIR", _models_subset(tmp_path, []))
    at = open_page(page)
    assert_healthy(at)
    if page in ("app_pages/analyse.py", "app_pages/compare.py", "app_pages/roc.py"):
        assert at.error, "an empty models folder must be explained"


# ---------------------------------------------------------------------------- helpers behind the pages
def test_reports_match_metrics_json():
    both_models_required()
    from pneumo_core.evaluation import reports

    reps = reports.load_reports(MODELS)
    for v, rep in reps.items():
        assert rep.available, rep.status_message()
        block = rep.metrics["at_threshold"]
        m = reports.confusion_at(rep, block["threshold"])
        assert m["confusion_matrix"] == block["confusion_matrix"]
        assert m["auc"] == pytest.approx(block["auc"])
        assert np.allclose(np.sum(m["rates"], axis=1), 1.0)
        # the operating point the model ships with is one of the presets, and the validation
        # scores reproduce the sensitivity/specificity recorded for it
        (name,) = [n for n, o in rep.operating_points.items() if o["threshold"] == pytest.approx(rep.threshold)][:1]
        val = reports.validation_at(rep, rep.threshold)
        assert val["val_sensitivity"] == pytest.approx(rep.operating_points[name]["val_sensitivity"])
        assert val["val_specificity"] == pytest.approx(rep.operating_points[name]["val_specificity"])
        if rep.ensemble:  # an ensemble lists its runs and has no curve of its own
            members = reports.run_members(rep)
            assert len(members) >= 2 and (members["in model"] == "yes").all()
            assert "output ensemble" in reports.protocol(rep)["Training"] and rep.history is None
        elif rep.soup:  # a weight soup lists its runs; it has a curve only when it is a single run
            members = reports.run_members(rep)
            assert (members["in model"] == "yes").any() and members["validation AUC"].between(0.5, 1).all()
            assert "weight soup" in reports.protocol(rep)["Training"]
            assert (rep.history is not None) == ((members["in model"] == "yes").sum() == 1)
        else:
            assert rep.history is not None and rep.history["step"].is_monotonic_increasing
    table = reports.metrics_table(reps)
    assert len(table) == 12 and (table["ci_lo"] <= table["value"] + 1e-9).all()
    assert (table["value"] <= table["ci_hi"] + 1e-9).all()
    fine = reps["finetuned"]
    assert fine.soup or fine.ensemble or "fine-tune" in set(fine.history["phase"])


def test_label_and_confidence_helpers():
    from pneumo_core.config import label_at
    from pneumo_core.evaluation.reports import confidence

    assert label_at(0.5, 0.5) == "PNEUMONIA" and label_at(0.4999, 0.5) == "NORMAL"
    assert confidence(0.51, 0.5)["level"] == "low"
    assert confidence(0.99, 0.5)["level"] == "high"
    assert confidence(0.0, 0.3)["margin"] == 1.0
    assert confidence(0.3, 0.3)["margin"] == 0.0


def test_missing_report_files_are_listed(tmp_path):
    from pneumo_core.evaluation.reports import load_report

    rep = load_report("finetuned", tmp_path)
    assert not rep.available
    assert "models/finetuned.keras" in rep.status_message()
    assert "metrics.json" in rep.missing


def test_study_report_png_contents():
    import cv2

    from pneumo_core.review.report_image import study_report_png

    img = (np.random.default_rng(0).random((300, 260)) * 255).astype(np.uint8)
    heat = np.zeros((300, 260), np.float32)
    heat[100:200, 50:150] = 1.0
    png = study_report_png(img, heat, file_name="a.png", p_pneumonia=0.8, label="PNEUMONIA", threshold=0.4,
                           model_name="Fine-tuned MobileNetV2", model_sha256="ab" * 32, operating_point="balanced")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape[0] > 480 and decoded.shape[1] >= 900


def test_streamlit_config():
    import tomllib

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["enableXsrfProtection"] is True
    assert cfg["server"]["headless"] is True
    assert cfg["server"]["maxUploadSize"] <= 64
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["client"]["showErrorDetails"] == "none"
    assert cfg["runner"]["postScriptGC"] is False  # a full GC after each rerun costs more than the rerun


def test_every_page_is_registered_once():
    """ui/navigation.py lists every file in app_pages/ once, with its own title, icon and URL."""
    from ui import navigation

    entries = navigation.PAGES.values()
    files = sorted(p.name for p in (ROOT / "app_pages").glob("*.py"))
    assert sorted(e.file for e in entries) == files
    for field in ("title", "url_path"):
        values = [getattr(e, field) for e in entries]
        assert len(set(values)) == len(values), f"two pages share a {field}"
    assert all(e.icon.startswith(":material/") for e in entries)
    assert navigation.DEFAULT_PAGE in navigation.PAGES and navigation.DEFAULT_PAGE not in navigation.linked_pages()
    assert sorted(f"app_pages/{f}" for f in files) == sorted(PAGES), "test_page_renders must render every page"


def test_app_is_only_the_frame():
    text = (ROOT / "app.py").read_text()
    assert len(text.splitlines()) <= 60
    assert "st.navigation(" in text and "page.run()" in text and "keep_kernels_between_reruns()" in text


def test_no_legacy_pages_folder():
    """A ``pages/`` folder beside app.py makes Streamlit run fresh sessions in its legacy multipage
    mode (file-named pages, app.py skipped) until some session runs st.navigation."""
    assert not (ROOT / "pages").exists()


def test_pages_hold_no_model_or_metric_logic():
    """Pages lay out what ui/ and pneumo_core return: no TensorFlow, sklearn, metric maths or file writes."""
    banned = ("tensorflow", "keras", "sklearn", "metrics_at", "Predictor(", "open(", "write_bytes", "to_csv(")
    for f in [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]:
        text = f.read_text()
        hits = [b for b in banned if b in text]
        assert not hits, f"{f.name} contains {hits}"


def test_a_study_opens_in_the_viewer_with_window_presets_for_a_12_bit_dicom(test_normal):
    """The viewer is drawn only on request; a 12-bit DICOM upload keeps its raw values, so the
    viewer offers window/level presets, and a JPEG upload none."""
    from tests.helpers.charts import charts
    from tests.helpers.dicom_files import dx_film, grey

    at = open_page("app_pages/analyse.py")
    at = upload(at, [("film.dcm", dx_film(grey(test_normal)), "application/dicom"),
                     ("film.jpeg", test_normal.read_bytes(), "image/jpeg")])
    assert_healthy(at)
    assert not charts(at), "no viewer until asked for: it would cost an encode on every rerun"
    toggles = [t for t in at.toggle if t.key.startswith("viewer_")]
    assert len(toggles) == 2 and "window/level" in toggles[0].label and "window/level" not in toggles[1].label
    for toggle in toggles:
        toggle.set_value(True)
    at.run()
    assert_healthy(at)
    films = charts(at)  # each an image mark over its film's JPEG (one data URI), zoomable and pannable
    assert [c.spec["mark"]["type"] for c in films] == ["image", "image"]
    assert all(c.spec["params"][0]["bind"] == "scales" for c in films)
    for chart in films:
        (row,) = chart.frames["film"].to_dict("records")
        assert row["url"].startswith("data:image/jpeg;base64,") and row["right"] > 0 and row["bottom"] > 0
    windows = [box for box in at.selectbox if "indow" in box.label]  # only the DICOM has values to re-window
    assert [box.key for box in windows] == ["film_upload_0-window"] and len(windows[0].options) > 1
    assert any("not a lesion outline" in c.value for c in at.caption)
