"""Roles from settings and identity claims, the bind-address check and the access rules (pneumo_core.access)."""
from __future__ import annotations

import pytest

from pneumo_core.access.policy import Action, Decision, Requester, decide, is_loopback
from pneumo_core.access.settings import (
    MIN_COOKIE_SECRET,
    RADIOLOGIST,
    TEACHER,
    RoleSettings,
    load_role_settings,
    roles_for,
    sign_in_problem,
)
from pneumo_core.errors import AccessError

AUTH = {"redirect_uri": "https://pneumo.example.org/oauth2callback", "cookie_secret": "c" * MIN_COOKIE_SECRET,
        "client_id": "pneumo", "client_secret": "s3cret", "server_metadata_url":
        "https://idp.example.org/.well-known/openid-configuration"}
PACS = (Action.PACS_SEARCH, Action.PACS_RETRIEVE, Action.PACS_STORE, Action.AUDIT_VIEW)


class FakeSecrets(dict):
    """st.secrets' get(); Streamlit's raises when there is no secrets.toml at all."""


class MissingSecrets:
    def get(self, name):
        raise FileNotFoundError("no secrets.toml")


# ---------------------------------------------------------------- role settings
def test_role_lists_from_the_environment_are_e_mail_addresses_in_any_case():
    settings = load_role_settings({"PNEUMO_ROLE_RADIOLOGIST": " Ana@Hospital.test, bo@hospital.test ,",
                                   "PNEUMO_ROLE_TEACHER": "teach@school.test", "PNEUMO_ROLES_CLAIM": "roles"})
    assert settings.emails == {RADIOLOGIST: {"ana@hospital.test", "bo@hospital.test"},
                               TEACHER: {"teach@school.test"}}
    assert settings.claim == "roles"


def test_secrets_may_hold_toml_lists_and_the_environment_wins():
    secrets = FakeSecrets(PNEUMO_ROLE_RADIOLOGIST=["rad@hospital.test"], PNEUMO_ROLE_TEACHER="t@school.test",
                          PNEUMO_ROLES_CLAIM="groups")
    settings = load_role_settings({"PNEUMO_ROLE_TEACHER": "other@school.test"}, secrets)
    assert settings.emails[RADIOLOGIST] == {"rad@hospital.test"}
    assert settings.emails[TEACHER] == {"other@school.test"}
    assert settings.claim == "groups"


def test_no_settings_and_no_secrets_file_give_nobody_a_role():
    settings = load_role_settings({}, MissingSecrets())
    assert settings.emails == {RADIOLOGIST: frozenset(), TEACHER: frozenset()} and settings.claim is None
    assert roles_for({"email": "anyone@hospital.test", "roles": ["radiologist"]}, settings) == frozenset()


@pytest.mark.parametrize("value", ["radiology-group", "ana@hospital.test; bo@hospital.test", "ana@", "@x.org"])
def test_an_entry_that_is_not_an_address_is_one_line_naming_the_setting(value):
    with pytest.raises(AccessError) as caught:
        load_role_settings({"PNEUMO_ROLE_RADIOLOGIST": value})
    message = str(caught.value)
    assert "PNEUMO_ROLE_RADIOLOGIST must list e-mail addresses" in message and "\n" not in message
    assert value not in message  # the entry may be a mistyped address: not echoed


def test_a_claim_setting_must_name_one_claim():
    with pytest.raises(AccessError, match="PNEUMO_ROLES_CLAIM must be the name of one claim"):
        load_role_settings({"PNEUMO_ROLES_CLAIM": "roles groups"})


def test_the_settings_repr_counts_addresses_without_showing_them():
    settings = load_role_settings({"PNEUMO_ROLE_RADIOLOGIST": "ana@hospital.test,bo@hospital.test"})
    assert repr(settings) == "RoleSettings(radiologist=2, teacher=0, claim=None)"


# ---------------------------------------------------------------- roles from claims
SETTINGS = RoleSettings({RADIOLOGIST: frozenset({"ana@hospital.test"}), TEACHER: frozenset({"tom@school.test"})},
                        claim="roles")


@pytest.mark.parametrize("claims, roles", [
    ({"email": "ANA@hospital.test", "email_verified": True}, {RADIOLOGIST}),
    ({"email": "ana@hospital.test"}, {RADIOLOGIST}),  # no email_verified claim: the address is taken as given
    ({"email": "ana@hospital.test", "email_verified": False}, set()),  # an unverified address grants nothing
    ({"email": "tom@school.test", "roles": ["radiologist"]}, {TEACHER, RADIOLOGIST}),
    ({"email": "x@else.test", "roles": "Teacher, admin"}, {TEACHER}),  # a string of names; unknown ones ignored
    ({"email": "x@else.test", "roles": "radiologist teacher"}, {RADIOLOGIST, TEACHER}),
    ({"email": "x@else.test", "groups": ["radiologist"]}, set()),  # only the configured claim counts
    ({"sub": "12345"}, set()),
])
def test_roles_come_from_listed_addresses_and_the_roles_claim(claims, roles):
    assert roles_for(claims, SETTINGS) == roles


def test_without_a_claim_setting_claims_grant_nothing():
    settings = RoleSettings(SETTINGS.emails, claim=None)
    assert roles_for({"email": "x@else.test", "roles": ["radiologist"]}, settings) == frozenset()


# ---------------------------------------------------------------- the [auth] section
def test_a_complete_auth_section_has_no_problem_and_none_is_not_configured():
    assert sign_in_problem(AUTH) is None
    assert sign_in_problem(None) is None and sign_in_problem({}) is None
    nested = {key: AUTH[key] for key in ("redirect_uri", "cookie_secret")}
    nested["default"] = {key: AUTH[key] for key in ("client_id", "client_secret", "server_metadata_url")}
    assert sign_in_problem(nested) is None  # [auth.default] is Streamlit's other spelling of the default provider


@pytest.mark.parametrize("change, problem", [
    ({"client_secret": ""}, "lacks client_secret"),
    ({"redirect_uri": None, "server_metadata_url": " "}, "lacks redirect_uri, server_metadata_url"),
    ({"redirect_uri": "https://pneumo.example.org/"}, "ending in /oauth2callback"),
    ({"cookie_secret": "short"}, f"at least {MIN_COOKIE_SECRET} characters"),
])
def test_an_unusable_auth_section_says_what_to_fix(change, problem):
    found = sign_in_problem({**AUTH, **change})
    assert found is not None and problem in found
    assert AUTH["client_secret"] not in found and AUTH["cookie_secret"] not in found


def test_sign_in_without_authlib_says_what_to_install():
    assert "Authlib" in sign_in_problem(AUTH, authlib_installed=False)


# ---------------------------------------------------------------- the bind address
@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LocalHost", True), ("0.0.0.0", False), ("::", False), ("", False), (None, False), ("10.1.2.3", False),
    ("192.168.0.7", False), ("pneumo.example.org", False), ("localhost.example.org", False),
])
def test_only_loopback_addresses_count_as_local(address, loopback):
    assert is_loopback(address) is loopback


# ---------------------------------------------------------------- the rules
LOCAL = Requester(loopback=True, sign_in=False)
SHARED_OPEN = Requester(loopback=False, sign_in=False)
SIGNED_OUT = Requester(loopback=False, sign_in=True)
RADIOLOGIST_USER = Requester(loopback=False, sign_in=True, signed_in=True, roles=frozenset({RADIOLOGIST}),
                             identity="ana@hospital.test")
TEACHER_USER = Requester(loopback=False, sign_in=True, signed_in=True, roles=frozenset({TEACHER}),
                         identity="tom@school.test")
BROKEN = Requester(loopback=True, sign_in=True, sign_in_problem="the [auth] section of secrets.toml lacks client_id")


def test_a_local_install_without_sign_in_keeps_everything_open():
    for action in (*PACS, Action.CLASS_VIEW):
        assert decide(action, LOCAL) == Decision(True, role="local")
    assert LOCAL.actor == "local"


def test_a_shared_server_without_sign_in_refuses_the_pacs_and_keeps_the_class_view():
    for action in PACS:
        decision = decide(action, SHARED_OPEN)
        assert not decision.allowed and "shared server without sign-in" in decision.reason
        assert not decision.needs_sign_in and decision.role == "none"
    assert decide(Action.CLASS_VIEW, SHARED_OPEN).allowed  # the teacher key guards it, as before
    assert SHARED_OPEN.actor == "anonymous"


def test_with_sign_in_nobody_signed_in_is_asked_to_sign_in():
    for action in (*PACS, Action.CLASS_VIEW):
        decision = decide(action, SIGNED_OUT)
        assert not decision.allowed and decision.needs_sign_in and "sign in first" in decision.reason
    assert SIGNED_OUT.actor == "anonymous"
    # sign-in configured on a loopback server still asks: configuring [auth] means accounts are wanted
    assert not decide(Action.PACS_SEARCH, Requester(loopback=True, sign_in=True)).allowed


def test_each_role_opens_its_own_features_only():
    for action in PACS:
        assert decide(action, RADIOLOGIST_USER) == Decision(True, role=RADIOLOGIST)
        refused = decide(action, TEACHER_USER)
        assert not refused.allowed and "needs the radiologist role" in refused.reason and refused.role == TEACHER
        assert not refused.needs_sign_in
    assert decide(Action.CLASS_VIEW, TEACHER_USER) == Decision(True, role=TEACHER)
    refused = decide(Action.CLASS_VIEW, RADIOLOGIST_USER)
    assert not refused.allowed and "needs the teacher role" in refused.reason
    assert RADIOLOGIST_USER.actor == "ana@hospital.test"


def test_a_misconfigured_sign_in_shuts_every_guarded_feature_even_locally():
    for action in (*PACS, Action.CLASS_VIEW):
        decision = decide(action, BROKEN)
        assert not decision.allowed and "sign-in is misconfigured" in decision.reason and "client_id" in decision.reason


def test_every_reason_is_one_line():
    for who in (SHARED_OPEN, SIGNED_OUT, TEACHER_USER, RADIOLOGIST_USER, BROKEN):
        for action in (*PACS, Action.CLASS_VIEW):
            assert "\n" not in decide(action, who).reason
