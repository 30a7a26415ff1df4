"""Sign-in, roles and the audit trail on the real pages (app.py, Analyse's "From PACS" tab, the class view) through
Streamlit's AppTest: ``[auth]`` in the test's secrets, the signed-in user in ``AppTest.user``, the bind address
patched in Streamlit's config, the audit trail in a real SQLite file. The PACS is a closed local port, so a
search fails the way an unreachable server does; the full sign-in and PACS round trip is in
tests/browser/test_sign_in.py (a real OpenID provider, Orthanc and Chromium)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from pneumo_core.access.settings import MIN_COOKIE_SECRET
from pneumo_core.storage.audit import audit_trail
from tests.helpers.orthanc import ENV_NAMES, free_port
from ui.text import literal

ROOT = Path(__file__).resolve().parents[2]
ANALYSE, CLASS_VIEW = "app_pages/analyse.py", "app_pages/class_view.py"
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "k" * MIN_COOKIE_SECRET,
        "client_id": "pneumo", "client_secret": "not-a-real-secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
RADIOLOGIST = {"is_logged_in": True, "email": "ana@hospital.test", "email_verified": True, "sub": "ana"}
TEACHER = {"is_logged_in": True, "email": "tom@school.test", "sub": "tom"}
SIGNED_OUT = {"is_logged_in": False}


@pytest.fixture
def settings(tmp_path, monkeypatch) -> str:
    """A PACS that refuses connections, the two role lists, and the audit trail's database in ``tmp_path``."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'pneumo.sqlite3'}"
    monkeypatch.setenv("PNEUMO_DB_URL", url)
    monkeypatch.setenv("PNEUMO_DICOMWEB_URL", f"http://127.0.0.1:{free_port()}/dicom-web")
    monkeypatch.setenv("PNEUMO_DICOMWEB_TIMEOUT", "2")
    monkeypatch.setenv("PNEUMO_ROLE_RADIOLOGIST", "ana@hospital.test")
    monkeypatch.setenv("PNEUMO_ROLE_TEACHER", "tom@school.test")
    return url


@contextmanager
def bound_to(address: str):
    """Streamlit's ``server.address`` set to ``address`` (as ``--server.address`` would), then put back."""
    before, where = config.get_option("server.address"), config.get_where_defined("server.address")
    config.set_option("server.address", address, "test")
    try:
        yield
    finally:
        config.set_option("server.address", before, where)


def open_page(path: str, user: dict | None = None, auth: dict | None = None, address: str = "127.0.0.1"):
    """``path`` through app.py as ``user`` (None: AppTest's default, not signed in), with ``auth`` as the
    ``[auth]`` secrets section (None: no sign-in configured) on a server bound to ``address``."""
    with bound_to(address):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        if auth is not None:
            at.secrets["auth"] = auth
        if user is not None:
            at.user = user
        at.run()
        at.switch_page(path)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def run(at, address: str = "127.0.0.1"):
    with bound_to(address):
        return at.run()


def texts(at, *kinds: str) -> list[str]:
    return [str(element.value) for kind in kinds for element in getattr(at, kind)]


def pacs_form_shown(at) -> bool:
    return any(b.label == "Search studies" for b in at.button)


def events(url: str):
    return audit_trail(url).events()


def test_a_local_install_without_sign_in_keeps_the_pacs_and_audits_the_local_user(settings):
    at = open_page(ANALYSE)
    assert pacs_form_shown(at) and not at.sidebar.button  # no sign-in box without [auth]
    at = run(next(b for b in at.button if b.label == "Search studies").click())
    assert any("cannot connect" in e for e in texts(at, "error"))
    (event,) = events(settings)
    assert (event.actor, event.role, event.action, event.count, event.outcome) == (
        "local", "local", "pacs_search", 0, "error")
    assert "Audit trail: PACS searches, retrievals and store-backs" in [e.label for e in at.expander]


def test_a_shared_bind_without_sign_in_refuses_the_pacs_once_per_session(settings):
    at = open_page(ANALYSE, address="0.0.0.0")
    assert not pacs_form_shown(at)
    assert any("The PACS is off on a shared server without sign-in" in w for w in texts(at, "warning"))
    assert not any(e.label.startswith("Audit trail") for e in at.expander)
    at = run(at, address="0.0.0.0")  # a second run of the same session: no second row
    (event,) = events(settings)
    assert (event.actor, event.role, event.action, event.count, event.outcome) == (
        "anonymous", "none", "pacs_search", 0, "refused")


def test_signed_out_the_pacs_asks_for_sign_in(settings):
    at = open_page(ANALYSE, SIGNED_OUT, AUTH, address="0.0.0.0")
    assert not pacs_form_shown(at)
    assert any("The PACS needs the radiologist role: sign in first." in w for w in texts(at, "warning"))
    assert [b.label for b in at.sidebar.button] == ["Sign in"]
    assert any(b.label == "Sign in" and b.key == "sign_in_pacs" for b in at.button)
    assert [(e.actor, e.outcome) for e in events(settings)] == [("anonymous", "refused")]


def test_a_teacher_sees_no_pacs_and_a_radiologist_searches(settings):
    at = open_page(ANALYSE, TEACHER, AUTH, address="0.0.0.0")
    assert not pacs_form_shown(at)
    assert any("needs the radiologist role, which this account does not have" in w for w in texts(at, "warning"))
    # the address shown as typed (escaped for Markdown), with the roles it holds
    assert f"Signed in as {literal('tom@school.test')} · roles: teacher" in texts(at.sidebar, "caption")
    assert not any(e.label.startswith("Audit trail") for e in at.expander)

    at = open_page(ANALYSE, RADIOLOGIST, AUTH, address="0.0.0.0")
    assert pacs_form_shown(at) and [b.label for b in at.sidebar.button] == ["Sign out"]
    at = run(next(b for b in at.button if b.label == "Search studies").click(), address="0.0.0.0")
    newest, older = events(settings)
    assert (newest.actor, newest.role, newest.action, newest.outcome) == (
        "ana@hospital.test", "radiologist", "pacs_search", "error")
    assert (older.actor, older.role, older.outcome) == ("tom@school.test", "teacher", "refused")
    trail = next(e for e in at.expander if e.label.startswith("Audit trail"))
    table = trail.dataframe[0].value
    assert list(table["who"]) == ["ana@hospital.test", "tom@school.test"]
    assert list(table["outcome"]) == ["error", "refused"]


def test_roles_from_the_identity_providers_claim(settings, monkeypatch):
    monkeypatch.setenv("PNEUMO_ROLES_CLAIM", "roles")
    someone = {"is_logged_in": True, "email": "kim@hospital.test", "roles": ["radiologist"]}
    assert pacs_form_shown(open_page(ANALYSE, someone, AUTH, address="0.0.0.0"))
    monkeypatch.delenv("PNEUMO_ROLES_CLAIM")
    assert not pacs_form_shown(open_page(ANALYSE, someone, AUTH, address="0.0.0.0"))


def test_the_class_view_needs_the_teacher_role_when_sign_in_is_configured(settings):
    def key_form(at) -> bool:
        return [w.label for w in at.text_input] == ["Join code", "Teacher key"]

    at = open_page(CLASS_VIEW, RADIOLOGIST, AUTH, address="0.0.0.0")
    assert not key_form(at)
    assert any("The class view needs the teacher role" in w for w in texts(at, "warning"))
    assert key_form(open_page(CLASS_VIEW, TEACHER, AUTH, address="0.0.0.0"))  # the quiz's key is still asked
    assert key_form(open_page(CLASS_VIEW))  # local, no sign-in: the key alone, as before
    assert key_form(open_page(CLASS_VIEW, address="0.0.0.0"))  # shared without sign-in: the key guards it


def test_a_misconfigured_sign_in_shuts_the_pacs_with_what_to_fix(settings):
    at = open_page(ANALYSE, RADIOLOGIST, {**AUTH, "cookie_secret": "short"})
    assert not pacs_form_shown(at)
    message = f"sign-in is misconfigured ([auth] cookie_secret must be a random string of at least {MIN_COOKIE_SECRET}"
    assert any(message in w for w in texts(at, "warning"))
    assert any("Sign-in is misconfigured" in w for w in texts(at.sidebar, "warning"))


def test_a_bad_role_list_shuts_the_pacs_without_echoing_it(settings, monkeypatch):
    monkeypatch.setenv("PNEUMO_ROLE_RADIOLOGIST", "ana@hospital.test; radiology")
    at = open_page(ANALYSE, RADIOLOGIST, AUTH)
    assert not pacs_form_shown(at)
    shown = texts(at, "warning") + texts(at.sidebar, "warning")
    assert any("PNEUMO_ROLE_RADIOLOGIST must list e-mail addresses" in w for w in shown)
    assert not any("radiology" in w.replace("radiologist", "") for w in shown)


def test_an_audit_trail_that_cannot_be_written_shuts_the_pacs(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("PNEUMO_DB_URL", f"sqlite:///{tmp_path / 'a file' / 'under a file.sqlite3'}")
    (tmp_path / "a file").write_text("not a folder")
    at = open_page(ANALYSE)
    assert not pacs_form_shown(at)
    (error,) = [e for e in texts(at, "error") if e.startswith("The PACS is off: its audit trail cannot be written (")]
    assert "\n" not in error and "File exists" in error
