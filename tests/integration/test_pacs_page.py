"""The "From PACS" source (ui/pacs_source.py) through Streamlit's AppTest, against a real Orthanc
(tests/orthanc.py: Debian's Orthanc in its own network namespace) and against servers that fail.

A harness page (tests/helpers/harness/pacs_page.py) renders the source alone; the test fills the search
form, picks the studies, clicks "Retrieve and score" and "Store results to PACS" as a user would,
then queries the server itself for the stored results.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from pneumo_core.pacs.secondary_capture import RESULT_SERIES_DESCRIPTION
from tests.helpers import orthanc as orthanc_helper
from tests.helpers.dicom_files import PATIENT_ID, SECRETS, compress, dx_film, grey, missing_tools
from tests.helpers.orthanc import ENV_NAMES
from tests.helpers.support import require
from ui.text import WORD_JOINER

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "helpers" / "harness" / "pacs_page.py"


@pytest.fixture(scope="module")
def films_on_pacs(orthanc, data_root, tmp_path_factory, shipped_predictor):
    """Two studies of one patient: A (DX: a normal film, a MONOCHROME1 JPEG-LS pneumonia film),
    B (CR: a pneumonia film, a lateral). {study UID: [(SOP UID, the clean film's label or None)]}."""
    from pydicom.uid import generate_uid

    missing = missing_tools()
    require(not missing, f"DICOM tools missing: {', '.join(missing)}")
    tmp = tmp_path_factory.mktemp("page-films")
    normal = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))
    pneumonia = sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))
    study_a, study_b = generate_uid(), generate_uid()
    plan = [(study_a, normal[2], "MONOCHROME2", "DX", None, "PA"),
            (study_a, pneumonia[3], "MONOCHROME1", "DX", "jpeg-ls-lossless", "AP"),
            (study_b, pneumonia[4], "MONOCHROME2", "CR", None, "PA"),
            (study_b, normal[5], "MONOCHROME2", "CR", None, "LATERAL")]  # refused with a reason, alone
    expected: dict[str, list] = {}
    for i, (study, film, photometric, modality, tool, view) in enumerate(plan):
        sop = generate_uid()
        path = tmp / f"{i}.dcm"
        path.write_bytes(dx_film(grey(film), photometric, Modality=modality, StudyInstanceUID=study,
                                 SeriesInstanceUID=generate_uid(), SOPInstanceUID=sop, StudyDate="20240312",
                                 StudyDescription="CHEST PA", ViewPosition=view))
        if tool:
            path = compress(path, tool, tmp / f"{i}-{tool}.dcm")
        orthanc.upload(path.read_bytes())
        label = None if view == "LATERAL" else shipped_predictor.predict(film).label
        expected.setdefault(study, []).append((sop, label))
    return expected


@pytest.fixture
def page(monkeypatch, shipped_predictor):
    """A fresh harness page with the PACS settings ``env`` (all others cleared) and the session's model."""
    from streamlit.testing.v1 import AppTest

    def make(env: dict):
        for name in ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        at = AppTest.from_file(str(HARNESS), default_timeout=300)
        at.session_state["predictor"] = shipped_predictor
        return at.run()

    return make


def shown(text: str) -> str:
    """Markdown text as a reader sees it: the backslash escapes and the invisible word joiners of ui.text.literal
    removed."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", str(text)).replace(WORD_JOINER, "")


def page_text(at) -> str:
    """Everything the page shows as text (as a reader sees it): messages, captions, labels, options, table cells."""
    parts = []
    for kind in ("title", "markdown", "caption", "info", "warning", "error", "success", "exception"):
        parts += [shown(element.value) for element in getattr(at, kind)]
    for widget in list(at.multiselect) + list(at.selectbox):
        parts += [widget.label, *map(str, widget.options)]
    for table in at.dataframe:
        parts.append(table.value.to_csv())
    return "\n".join(parts)


def no_identifiers(text: str, *uids: str) -> None:
    for secret in (*SECRETS, *uids):
        assert secret not in text, secret


def search(at, patient: str = "", date_from=None, date_to=None):
    if patient:
        at.text_input(key="pacs-patient").input(patient)
    if date_from:
        at.date_input(key="pacs-from").set_value(date_from)
    if date_to:
        at.date_input(key="pacs-to").set_value(date_to)
    return click(at, "Search studies")


def click(at, label: str):
    return next(b for b in at.button if b.label == label).click().run()


def test_unset_url_explains_the_settings_without_an_error(page):
    at = page({})
    assert not at.exception and not at.error
    text = page_text(at)
    assert "No PACS is configured" in text and "PNEUMO_DICOMWEB_URL" in text and "PNEUMO_DICOMWEB_TOKEN" in text
    assert not at.text_input and not at.button  # no search form, and never a URL box


def test_search_retrieve_score_and_store_against_orthanc(page, orthanc, films_on_pacs):
    import datetime as dt

    import requests
    from dicomweb_client.api import DICOMwebClient

    at = page(orthanc.env())
    assert [w.label for w in at.text_input] == ["Patient ID (optional)"]  # no URL box
    text = page_text(at)  # the server (from settings) and the kind of sign-in, never the credentials
    assert f"PACS: {orthanc.rest} · sign-in: basic" in text
    assert orthanc.password not in text and orthanc.user not in text
    at = search(at, PATIENT_ID, dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    assert not at.exception and not at.error, page_text(at)
    picker = at.multiselect(key="pacs-chosen")
    assert len(picker.options) == 2 and sorted(picker.value) == sorted(picker.options)
    # the year at most, and no Study Description (free text that can name the patient)
    assert all(" · 2024 · " in option and "03-12" not in option and "CHEST PA" not in option
               for option in picker.options)
    no_identifiers(page_text(at), *films_on_pacs)

    at = click(at, "Retrieve and score")
    assert not at.exception and not at.error, page_text(at)
    assert len(at.get("progress")) == 1
    table = at.dataframe[0].value
    wanted = [label for films in films_on_pacs.values() for _, label in films if label]
    assert len(table) == 4
    scored, refused = table[table["problem"] == ""], table[table["problem"] != ""]
    assert sorted(scored["label"]) == sorted(wanted)  # every frontal film scored like its clean source
    (problem,) = refused["problem"]  # the lateral: its own reason, and the others went on
    assert "View Position LATERAL" in problem and list(refused["label"]) == ["-"]
    from tests.helpers.charts import charts

    viewers = charts(at)  # each scored film in the viewer (an image mark), with its heatmap caption
    assert [c.spec["mark"]["type"] for c in viewers] == ["image"] * 3
    assert "not a lesion outline" in page_text(at)
    shown = " ".join([page_text(at), *(c.title for c in viewers)])
    no_identifiers(shown, *films_on_pacs, *(sop for films in films_on_pacs.values() for sop, _ in films))

    at = click(at, "Store results to PACS")
    assert not at.exception and not at.error, page_text(at)
    assert any("Stored 3 research-use result(s)" in s.value for s in at.success)
    assert next(b for b in at.button if b.label == "Store results to PACS").disabled  # a second click would duplicate

    session = requests.Session()
    session.auth = (orthanc.user, orthanc.password)
    client = DICOMwebClient(orthanc.dicomweb, session=session)
    for study, films in films_on_pacs.items():
        series = [s for s in client.search_for_series(study, fields=["SeriesDescription"])
                  if s.get("0008103E", {}).get("Value") == [RESULT_SERIES_DESCRIPTION]]
        assert len(series) == 1
        results = client.search_for_instances(study, series[0]["0020000E"]["Value"][0])
        assert len(results) == len([sop for sop, label in films if label])  # one stored result per scored film


def test_a_study_gone_between_search_and_retrieval_is_one_warning_and_the_others_are_scored(
        page, orthanc, films_on_pacs, data_root):
    """A third study is found, then deleted on the PACS before "Retrieve and score": one warning for it
    (its UID shortened), and the two other studies' films are still retrieved and scored."""
    import requests
    from pydicom.uid import generate_uid

    film = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[7]
    gone_study = generate_uid()
    orthanc_id = orthanc.upload(dx_film(grey(film), "MONOCHROME2", Modality="DX", StudyInstanceUID=gone_study,
                                        SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid(),
                                        StudyDate="20240312", StudyDescription="CHEST PA", ViewPosition="PA"))
    try:
        at = search(page(orthanc.env()), PATIENT_ID)
        assert len(at.multiselect(key="pacs-chosen").value) == 3
        requests.delete(f"{orthanc.rest}/instances/{orthanc_id}", auth=(orthanc.user, orthanc.password),
                        timeout=30).raise_for_status()
        orthanc_id = None
        at = click(at, "Retrieve and score")
    finally:
        if orthanc_id:  # keep the module's PACS as the other tests expect it
            requests.delete(f"{orthanc.rest}/instances/{orthanc_id}", auth=(orthanc.user, orthanc.password),
                            timeout=30)
    assert not at.exception and not at.error, page_text(at)
    (warning,) = [shown(w.value) for w in at.warning if "has no" in w.value]
    assert warning.startswith("study #") and "CR/DX" in warning and gone_study not in warning
    assert len(at.dataframe[0].value) == sum(len(films) for films in films_on_pacs.values())


def test_limits_on_studies_listed_and_films_scored_are_said_with_their_numbers(page, orthanc, films_on_pacs,
                                                                             monkeypatch):
    """PNEUMO_MAX_PACS_STUDIES caps the search's limit and the page says when more studies matched;
    PNEUMO_MAX_PACS_FILMS caps one retrieval and the page says how many films were left out."""
    monkeypatch.setenv("PNEUMO_MAX_PACS_STUDIES", "1")
    monkeypatch.setenv("PNEUMO_MAX_PACS_FILMS", "2")
    at = page(orthanc.env())
    at = search(at, PATIENT_ID)
    assert len(at.multiselect(key="pacs-chosen").options) == 1  # two studies match: one listed
    assert any("More studies match than the limit of 1" in shown(i.value) for i in at.info), page_text(at)
    monkeypatch.setenv("PNEUMO_MAX_PACS_STUDIES", "5")
    at = search(page(orthanc.env()), PATIENT_ID)
    assert len(at.multiselect(key="pacs-chosen").value) == 2 and not any("More studies" in i.value for i in at.info)
    at = click(at, "Retrieve and score")  # both studies, four films
    assert not at.exception, page_text(at)
    (told,) = [shown(w.value) for w in at.warning if "films found" in shown(w.value)]
    assert told.startswith("4 films found") and "at most 2 per retrieval" in told
    assert len(at.dataframe[0].value) == 2


def test_a_search_that_finds_nothing_says_so(page, orthanc, films_on_pacs):
    at = search(page(orthanc.env()), "NOBODY-0000")
    assert not at.exception and not at.error
    assert any("No CR/DX study matches" in i.value for i in at.info)
    assert [w.key for w in at.multiselect] == ["pacs-modality"]  # no study picker


def test_wrong_password_gives_one_clear_line_within_the_timeout(page, orthanc, films_on_pacs):
    at = page(orthanc.env(PNEUMO_DICOMWEB_PASSWORD="Wr0ng-Guess-42"))
    started = time.perf_counter()
    at = search(at)
    assert time.perf_counter() - started < 10
    assert not at.exception
    message = shown(at.error[0].value) if len(at.error) == 1 else at.error
    assert "refused the credentials (HTTP 401)" in message and "PNEUMO_DICOMWEB_PASSWORD" in message
    text = page_text(at)
    assert "Wr0ng-Guess-42" not in text and orthanc.password not in text and orthanc.user not in text


def test_an_unreachable_pacs_gives_one_clear_line_within_the_timeout(page):
    port = orthanc_helper.free_port()  # nothing listens there
    at = page({"PNEUMO_DICOMWEB_URL": f"http://127.0.0.1:{port}/dicom-web", "PNEUMO_DICOMWEB_USER": "reader",
               "PNEUMO_DICOMWEB_PASSWORD": "S3cret-Pw-77", "PNEUMO_DICOMWEB_TIMEOUT": "2"})
    started = time.perf_counter()
    at = search(at)
    assert time.perf_counter() - started < 6 and not at.exception
    message = shown(at.error[0].value) if len(at.error) == 1 else at.error
    assert "cannot connect" in message and "127.0.0.1" not in message and "reader" not in message
    assert "S3cret-Pw-77" not in page_text(at)


def test_bad_settings_are_one_error_line(page):
    at = page({"PNEUMO_DICOMWEB_URL": "https://bob:hunter2@pacs.example.org/dicom-web"})
    assert not at.exception and len(at.error) == 1 and "never in the URL" in shown(at.error[0].value)
    assert "hunter2" not in page_text(at) and not at.text_input


def test_orthanc_runs_in_a_network_namespace_of_its_own(orthanc):
    """Reachable through the relay only: its namespace is not ours and has nothing but loopback."""
    pid = orthanc.namespace_pid
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    links = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-o", "link"], capture_output=True,
                           text=True, timeout=20)
    assert links.returncode == 0, links.stderr
    assert [line.split(":")[1].strip() for line in links.stdout.splitlines()] == ["lo"]
    listening = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ss", "-Htln"], capture_output=True,
                               text=True, timeout=20)
    assert listening.returncode == 0 and f":{orthanc_helper.ORTHANC_PORT}" in listening.stdout, listening.stdout


def test_a_slow_pacs_gives_one_clear_line_within_the_timeout(page):
    from tests.integration.test_pacs import fake_pacs

    with fake_pacs(lambda handler: (None, {}, b""), hold=8) as url:  # accepts, never answers
        at = page({"PNEUMO_DICOMWEB_URL": url, "PNEUMO_DICOMWEB_TIMEOUT": "1"})
        started = time.perf_counter()
        at = search(at)
        assert time.perf_counter() - started < 5 and not at.exception
    (error,) = at.error
    assert "did not answer within 1 s" in shown(error.value) and "searching studies" in shown(error.value)


def test_the_analyse_page_scores_pacs_films_like_uploads(orthanc, films_on_pacs, monkeypatch):
    """The real Analyse page (through app.py): its "From PACS" tab finds, retrieves and scores the
    studies, each film drawn as a study named by a short hash, never by UIDs or patient data."""
    import datetime as dt

    from streamlit.testing.v1 import AppTest

    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in orthanc.env().items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.switch_page("app_pages/analyse.py").run()
    assert not at.exception, page_text(at)
    at = search(at, PATIENT_ID, dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    at = click(at, "Retrieve and score")
    assert not at.exception, page_text(at)
    headings = [shown(m.value) for m in at.markdown if shown(m.value).startswith("#### study #")]
    assert len(headings) == 4, headings  # every film a study; the lateral one with its reason
    labels = [m.value.split("#### ")[-1] for m in at.markdown if m.value.startswith("Label at this threshold:")]
    wanted = [label for films in films_on_pacs.values() for _, label in films if label]
    assert sorted(labels) == sorted(wanted)
    assert any("View Position LATERAL" in shown(e.value) for e in at.error)
    text = page_text(at) + " ".join(shown(e.value) for e in at.error)
    no_identifiers(text, *films_on_pacs, *(sop for films in films_on_pacs.values() for sop, _ in films))


def test_the_pacs_labels_and_the_results_stored_follow_an_adopted_site_threshold(orthanc, films_on_pacs, monkeypatch):
    """The real Analyse page: films retrieved at the shipped threshold, then a site threshold adopted (in this test's
    database, as the "Your site" page records it) and chosen so that at least one film changes label: on the next run
    the PACS summary labels at it, and the Secondary Captures stored back carry it and its labels."""
    import json

    import requests
    from dicomweb_client.api import DICOMwebClient
    from streamlit.testing.v1 import AppTest

    from pneumo_core.config import label_at
    from pneumo_core.storage.reads import SiteReads
    from ui.site_threshold import model_sha256

    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in orthanc.env().items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.switch_page("app_pages/analyse.py").run()
    at = click(search(at, PATIENT_ID), "Retrieve and score")
    assert not at.exception, page_text(at)
    shipped = at.slider(key="thr_finetuned").value

    def summary():
        return next(d.value for d in at.dataframe if "problem" in d.value.columns).query("problem == ''")

    scores = sorted(summary()["P(pneumonia)"])  # three decimals: a threshold 0.002 from each keeps labels exact
    cuts = [(low + high) / 2 for low, high in zip([0.0, *scores], [*scores, 1.0]) if high - low > 0.004]
    adopted = next(t for t in cuts if [label_at(p, t) for p in scores] != [label_at(p, shipped) for p in scores])
    db = SiteReads(os.environ["PNEUMO_DB_URL"])
    try:
        db.adopt(model="finetuned", model_sha256=model_sha256("finetuned"), shipped_threshold=shipped,
                 new_threshold=adopted, n_normal=20, n_pneumonia=20, who="dr site")
    finally:
        db.dispose()
    at.run()
    assert not at.exception, page_text(at)
    assert at.slider(key="thr_finetuned").value == pytest.approx(adopted)
    table = summary()
    assert list(table["label"]) == [label_at(p, adopted) for p in table["P(pneumonia)"]]
    assert any(f"threshold {adopted:.3f} (the one in force on this page" in shown(c.value) for c in at.caption)

    at = click(at, "Store results to PACS")
    assert not at.exception and any("Stored 3 research-use result(s)" in s.value for s in at.success), page_text(at)
    session = requests.Session()
    session.auth = (orthanc.user, orthanc.password)
    client = DICOMwebClient(orthanc.dicomweb, session=session)
    comments = []
    for study in films_on_pacs:
        for series in client.search_for_series(study, fields=["SeriesDescription"]):
            if series.get("0008103E", {}).get("Value") == [RESULT_SERIES_DESCRIPTION]:
                uid = series["0020000E"]["Value"][0]
                comments += [meta["00204000"]["Value"][0] for meta in client.retrieve_series_metadata(study, uid)]
    ours = [dict(part.split("=", 1) for part in c.removeprefix("RESEARCH USE ONLY. ").split("; ")) for c in comments
            if f"threshold={adopted:.4f}" in c]
    assert len(ours) == 3, json.dumps(comments)  # one per scored film, at the adopted threshold
    assert sorted(float(r["p_pneumonia"]) for r in ours) == pytest.approx(sorted(table["P(pneumonia)"]), abs=6e-4)
    assert all(r["label"] == label_at(float(r["p_pneumonia"]), adopted) for r in ours)


def test_score_studies_labels_at_the_threshold_it_is_given(orthanc, films_on_pacs, shipped_predictor):
    """``score_studies(threshold=...)`` (the library call under the page and the CLI) labels every film at that
    threshold, the refused film included, without changing a score; None keeps the model's own."""
    from pneumo_core.config import label_at
    from pneumo_core.pacs.dicomweb import Pacs, score_studies
    from pneumo_core.pacs.settings import load_settings

    pacs = Pacs(load_settings(environ=orthanc.env()))
    own = score_studies(pacs, shipped_predictor, list(films_on_pacs), ("CR", "DX"))
    scores = sorted(p.p_pneumonia for p in own if p.p_pneumonia is not None)
    threshold = (scores[0] + scores[1]) / 2  # between the two lowest scores: the second lowest changes label or not
    if [label_at(p, threshold) for p in scores] == [label_at(p, shipped_predictor.threshold) for p in scores]:
        threshold = scores[0] / 2  # then every film is PNEUMONIA, the lowest was not
    moved = score_studies(pacs, shipped_predictor, list(films_on_pacs), ("CR", "DX"), threshold=threshold)
    assert [p.p_pneumonia for p in moved] == [p.p_pneumonia for p in own]
    assert {p.threshold for p in own} == {shipped_predictor.threshold} and {p.threshold for p in moved} == {threshold}
    assert [p.label for p in moved] == [None if p.p_pneumonia is None else label_at(p.p_pneumonia, threshold)
                                        for p in own]
    assert [p.label for p in moved] != [p.label for p in own]
