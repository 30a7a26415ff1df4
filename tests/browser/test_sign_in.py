"""Sign-in and roles on a dashboard bound as for sharing, in a real Chromium: Streamlit's own OpenID Connect sign-in
(``st.login``, Authlib) against a real provider started on loopback (tests/helpers/oidc.py), a real Orthanc as the
PACS (tests/helpers/orthanc.py), and the audit trail in a real SQLite file.

"Bound as for sharing" is ``--server.address 0.0.0.0``, the README's command for opening the dashboard to a room:
the app decides from the address it was told to bind (``server.address``), not from the peer, and every 127.x
address is loopback, so binding 127.0.0.2 would still count as local. The browser reaches the server through
127.0.0.1 (which 0.0.0.0 includes); for the minutes the test runs, the test server is reachable on this machine's
other interfaces too, with test data only, and its sign-in provider listens on 127.0.0.1 alone.

Cases: signed out, no PACS; a radiologist signs in, searches, retrieves, scores and stores back (three audit rows,
studies as hashed references); a teacher (role from the token's ``roles`` claim) gets no PACS but the class view,
until signing out;
the same bind without sign-in configured refuses the PACS (fail closed).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import requests

from pneumo_core.pacs.secondary_capture import RESULT_SERIES_DESCRIPTION
from pneumo_core.storage.audit import audit_trail, study_reference
from scripts import screenshots as shots
from tests.helpers.browser import ROOT, require_browser
from tests.helpers.dicom_files import dx_film, grey
from tests.helpers.oidc import auth_section, running_provider, write_secrets
from tests.helpers.orthanc import ENV_NAMES

RADIOLOGIST, TEACHER = "ana@hospital.test", "tom@school.test"
USERS = {RADIOLOGIST: {"email": RADIOLOGIST, "email_verified": True, "name": "Ana Radiologist"},
         TEACHER: {"email": TEACHER, "email_verified": True, "name": "Tom Teacher", "roles": ["teacher"]}}
TIMEOUT_MS = 180_000


class SharedServer(shots.Server):
    """``streamlit run app.py --server.address 0.0.0.0`` reading its secrets from ``secrets_file`` only (a
    developer's own .streamlit/secrets.toml never leaks in)."""

    def __init__(self, log_dir: Path, secrets_file: Path, port: int):
        super().__init__(log_dir, port=port)
        self.secrets_file = secrets_file

    def __enter__(self) -> SharedServer:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(self.port), "--server.address", "0.0.0.0",
               "--secrets.files", str(self.secrets_file), "--browser.gatherUsageStats", "false"]
        self._err, self._out = open(self.stderr_path, "w"), open(self.stdout_path, "w")
        self.proc = shots.subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._out, stderr=self._err)
        self.wait_ready(timeout=300)  # a loaded 2-core machine; not a timing check
        return self


@pytest.fixture(scope="module")
def studies(orthanc, tmp_path_factory) -> list[str]:
    """Two DX studies on the PACS, one frontal film each (bundled teaching films): their Study Instance UIDs."""
    from pydicom.uid import generate_uid

    films = sorted((ROOT / "assets" / "examples").glob("ex0[12].jpeg"))
    uids = []
    for film in films:
        uid = generate_uid()
        orthanc.upload(dx_film(grey(film), "MONOCHROME2", Modality="DX", StudyInstanceUID=uid,
                               SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid(),
                               StudyDate="20240312", StudyDescription="CHEST PA", ViewPosition="PA"))
        uids.append(uid)
    return uids


@pytest.fixture(scope="module")
def environment(orthanc, tmp_path_factory):
    """The servers' environment: the test Orthanc as the PACS, the audit trail's database in a temporary file."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'pneumo.sqlite3'}"
    with pytest.MonkeyPatch.context() as patch:
        for name in (*ENV_NAMES, "PNEUMO_ROLE_RADIOLOGIST", "PNEUMO_ROLE_TEACHER", "PNEUMO_ROLES_CLAIM"):
            patch.delenv(name, raising=False)
        for name, value in {**orthanc.env(), "PNEUMO_DB_URL": url}.items():
            patch.setenv(name, value)
        yield url


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = shots.launch_browser(pw)
        yield chromium
        chromium.close()


def started(server: SharedServer):
    """Enter ``server``; on leaving, its stderr must hold no traceback."""
    with server:
        yield server
        stderr = server.stderr()
    assert "Traceback" not in stderr, stderr[-3000:]


@pytest.fixture(scope="module")
def signed_app(environment, studies, tmp_path_factory):
    """The dashboard bound to 0.0.0.0 with sign-in against the test's provider; radiologists listed by address
    in secrets.toml, teachers named by the token's ``roles`` claim."""
    folder = tmp_path_factory.mktemp("signed-app")
    port = shots.free_port()
    with running_provider(USERS) as provider:
        secrets = write_secrets(folder / "secrets.toml", auth_section(provider, f"http://127.0.0.1:{port}"),
                                PNEUMO_ROLE_RADIOLOGIST=RADIOLOGIST, PNEUMO_ROLES_CLAIM="roles")
        yield from started(SharedServer(folder, secrets, port))


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})  # cookies of its own: one user
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


def open_pacs_tab(page, url: str):
    page.goto(f"{url}/analyse")
    shots.wait_page_idle(page, TIMEOUT_MS)
    page.get_by_role("tab", name="From PACS").click()
    shots.wait_page_idle(page, TIMEOUT_MS)
    return page.get_by_role("tabpanel", name="From PACS")


def sign_in(page, url: str, user: str) -> None:
    """Through the sidebar's button, the provider's sign-in page (pick ``user``) and back."""
    page.goto(url)
    shots.wait_page_idle(page, TIMEOUT_MS)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name=user).click(timeout=TIMEOUT_MS)  # the provider's page
    page.wait_for_url(f"{url}/**", timeout=TIMEOUT_MS)
    shots.wait_page_idle(page, TIMEOUT_MS)
    signed_in = sidebar.get_by_text("Signed in as")
    signed_in.wait_for(timeout=TIMEOUT_MS)
    # the address is user text: shown through ui.text.literal, with invisible word joiners against autolinks
    assert signed_in.inner_text().replace("\u2060", "").startswith(f"Signed in as {user}")


def events_of(db_url: str, actor: str):
    return [event for event in audit_trail(db_url).events() if event.actor == actor]


def test_signed_out_there_is_no_pacs(signed_app, page, environment):
    tab = open_pacs_tab(page, signed_app.url)
    tab.get_by_text("The PACS needs the radiologist role: sign in first.").wait_for()
    assert tab.get_by_role("button", name="Search studies").count() == 0
    assert tab.get_by_role("button", name="Sign in").count() == 1
    assert [(e.role, e.action, e.outcome) for e in events_of(environment, "anonymous")][:1] == [
        ("none", "pacs_search", "refused")]


@pytest.mark.slow
def test_a_radiologist_searches_retrieves_and_stores_with_every_step_audited(signed_app, page, environment,
                                                                              studies, orthanc):
    sign_in(page, signed_app.url, RADIOLOGIST)
    assert page.get_by_test_id("stSidebar").get_by_text("roles: radiologist").count() == 1
    tab = open_pacs_tab(page, signed_app.url)
    tab.get_by_role("button", name="Search studies").click()
    tab.get_by_text("Studies found (2)").wait_for(timeout=TIMEOUT_MS)
    tab.get_by_role("button", name="Retrieve and score").click()
    tab.get_by_text("2 film(s) retrieved and scored").wait_for(timeout=TIMEOUT_MS)
    tab.get_by_role("button", name="Store results to PACS").click()
    tab.get_by_text("Stored 2 research-use result(s)").wait_for(timeout=TIMEOUT_MS)
    shots.wait_page_idle(page, TIMEOUT_MS)

    store, retrieve, search = events_of(environment, RADIOLOGIST)
    refs = tuple(sorted(study_reference(uid) for uid in studies))
    assert [(e.action, e.role, e.count, e.outcome) for e in (search, retrieve, store)] == [
        ("pacs_search", "radiologist", 2, "ok"), ("pacs_retrieve", "radiologist", 2, "ok"),
        ("pacs_store", "radiologist", 2, "ok")]
    assert search.study_refs == retrieve.study_refs == store.study_refs == refs
    text = page.get_by_test_id("stMain").inner_text()
    assert not any(uid in text for uid in studies)
    # the radiologist sees the trail: a table drawn on a canvas, so its rows are checked in the database above
    page.get_by_text("Audit trail: PACS searches, retrievals and store-backs").click()
    page.get_by_test_id("stDataFrame").last.wait_for()
    for uid in studies:  # the results really went back to the PACS: one result series in each study
        series = requests.get(f"{orthanc.dicomweb}/studies/{uid}/series", auth=(orthanc.user, orthanc.password),
                              params={"includefield": "SeriesDescription"}, timeout=30).json()
        assert [s.get("0008103E", {}).get("Value") for s in series].count([RESULT_SERIES_DESCRIPTION]) == 1


def test_a_teacher_gets_no_pacs_but_the_class_view_until_signing_out(signed_app, page, environment):
    sign_in(page, signed_app.url, TEACHER)
    assert page.get_by_test_id("stSidebar").get_by_text("roles: teacher").count() == 1
    tab = open_pacs_tab(page, signed_app.url)
    tab.get_by_text("The PACS needs the radiologist role, which this account does not have").wait_for()
    assert tab.get_by_role("button", name="Search studies").count() == 0
    assert page.get_by_text("Audit trail: PACS searches").count() == 0
    (refused,) = events_of(environment, TEACHER)
    assert (refused.role, refused.action, refused.count, refused.outcome) == ("teacher", "pacs_search", 0, "refused")
    page.goto(f"{signed_app.url}/class")
    shots.wait_page_idle(page, TIMEOUT_MS)
    assert page.get_by_label("Teacher key").count() == 1  # the quiz's own key is still asked

    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="End session").click(timeout=TIMEOUT_MS)  # the provider's page, then back
    page.wait_for_url(f"{signed_app.url}/**", timeout=TIMEOUT_MS)
    page.goto(f"{signed_app.url}/class")
    shots.wait_page_idle(page, TIMEOUT_MS)
    page.get_by_text("The class view needs the teacher role: sign in first.").wait_for()
    assert page.get_by_label("Teacher key").count() == 0


def test_a_shared_bind_without_sign_in_refuses_the_pacs(environment, studies, page, tmp_path):
    secrets = write_secrets(tmp_path / "secrets.toml", PNEUMO_ROLE_RADIOLOGIST=RADIOLOGIST)  # roles, no [auth]
    for server in started(SharedServer(tmp_path, secrets, shots.free_port())):
        tab = open_pacs_tab(page, server.url)
        tab.get_by_text("The PACS is off on a shared server without sign-in").wait_for()
        assert tab.get_by_role("button", name="Search studies").count() == 0
        assert page.get_by_test_id("stSidebar").get_by_role("button", name="Sign in").count() == 0
