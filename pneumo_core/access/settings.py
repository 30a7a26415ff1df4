"""Role and sign-in settings, from the environment or Streamlit secrets (same key names; the environment wins),
never from a page. Validated here, so a bad setting is one clear line and the features it guards stay shut.

    PNEUMO_ROLE_RADIOLOGIST   e-mail addresses given the radiologist role (PACS search, retrieval, store-back,
                              the audit trail), comma-separated, or a TOML list in secrets.toml
    PNEUMO_ROLE_TEACHER       e-mail addresses given the teacher role (the class view), the same way
    PNEUMO_ROLES_CLAIM        optional: the name of an identity-token claim (e.g. ``roles``, ``groups``) whose
                              values name roles (``radiologist``, ``teacher``): roles kept at the identity provider

Sign-in itself is Streamlit's OpenID Connect (``st.login``): an ``[auth]`` section in ``.streamlit/secrets.toml``
with ``redirect_uri``, ``cookie_secret``, ``client_id``, ``client_secret`` and ``server_metadata_url``;
:func:`sign_in_problem` says whether such a section is usable.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pneumo_core.config import server_setting
from pneumo_core.errors import AccessError

RADIOLOGIST, TEACHER = "radiologist", "teacher"
ROLES = (RADIOLOGIST, TEACHER)
ENV_ROLES = {RADIOLOGIST: "PNEUMO_ROLE_RADIOLOGIST", TEACHER: "PNEUMO_ROLE_TEACHER"}
ENV_ROLES_CLAIM = "PNEUMO_ROLES_CLAIM"
AUTH_SHARED_KEYS = ("redirect_uri", "cookie_secret")
AUTH_PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
# The cookie secret signs every identity cookie: a short one could be guessed and a radiologist's cookie forged.
MIN_COOKIE_SECRET = 32
_EMAIL = re.compile(r"[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+")
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_:./-]{1,64}")


@dataclass(frozen=True)
class RoleSettings:
    """Who holds each role: e-mail addresses (lower case) per role, and the claim whose values name roles."""

    emails: Mapping[str, frozenset[str]] = field(default_factory=dict)
    claim: str | None = None

    def __repr__(self) -> str:  # counts only: the addresses are staff identities, not for logs
        counts = ", ".join(f"{role}={len(self.emails.get(role, ()))}" for role in ROLES)
        return f"RoleSettings({counts}, claim={self.claim!r})"


def _entries(value: object) -> list[str]:
    """A comma-separated string or a list (TOML array) as stripped, non-empty entries."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def load_role_settings(environ: Mapping | None = None, secrets=None) -> RoleSettings:
    """Role settings from ``environ`` (default ``os.environ``), then ``secrets`` (e.g. ``st.secrets``).
    Raises AccessError for an entry that is not an e-mail address or a malformed claim name."""
    environ = os.environ if environ is None else environ
    emails = {}
    for role, name in ENV_ROLES.items():
        entries = _entries(server_setting(name, environ, secrets))
        bad = [entry for entry in entries if not _EMAIL.fullmatch(entry)]
        if bad:
            raise AccessError(f"{name} must list e-mail addresses separated by commas; "
                              f"{len(bad)} entr{'y is' if len(bad) == 1 else 'ies are'} not one")
        emails[role] = frozenset(entry.lower() for entry in entries)
    claim = server_setting(ENV_ROLES_CLAIM, environ, secrets)
    claim = None if claim is None or str(claim).strip() == "" else str(claim).strip()
    if claim is not None and not _CLAIM_NAME.fullmatch(claim):
        raise AccessError(f"{ENV_ROLES_CLAIM} must be the name of one claim, e.g. roles or groups")
    return RoleSettings(emails, claim)


def _claim_values(value: object) -> set[str]:
    """A claim's values: a list, or one string of names separated by spaces or commas; lower case."""
    items = value if isinstance(value, (list, tuple, set, frozenset)) else re.split(r"[\s,]+", str(value or ""))
    return {str(item).strip().lower() for item in items if str(item).strip()}


def roles_for(claims: Mapping, settings: RoleSettings) -> frozenset[str]:
    """The roles of a signed-in user with identity ``claims`` (``st.user``): each role whose e-mail list holds the
    user's address (unless the provider says that address is unverified), and each role named by the values of
    the settings' roles claim."""
    roles = set()
    email = str(claims.get("email") or "").strip().lower()
    if email and claims.get("email_verified") is not False:
        roles |= {role for role, emails in settings.emails.items() if email in emails}
    if settings.claim:
        roles |= _claim_values(claims.get(settings.claim)) & set(ROLES)
    return frozenset(roles)


def sign_in_problem(auth: Mapping | None, authlib_installed: bool = True) -> str | None:
    """Why an ``[auth]`` secrets section cannot be used for ``st.login()`` (the default provider), or None when it
    can. ``auth`` None or empty means no sign-in is configured: also None, check that first."""
    if not auth:
        return None
    if not authlib_installed:
        return "sign-in needs the Authlib package (pip install -r requirements.txt)"
    provider = auth.get("default") if isinstance(auth.get("default"), Mapping) else auth
    missing = [key for key in AUTH_SHARED_KEYS if not str(auth.get(key) or "").strip()]
    missing += [key for key in AUTH_PROVIDER_KEYS if not str(provider.get(key) or "").strip()]
    if missing:
        return f"the [auth] section of secrets.toml lacks {', '.join(missing)}"
    if not str(auth["redirect_uri"]).strip().endswith("/oauth2callback"):
        return "[auth] redirect_uri must be the dashboard's address ending in /oauth2callback"
    if len(str(auth["cookie_secret"])) < MIN_COOKIE_SECRET:
        return f"[auth] cookie_secret must be a random string of at least {MIN_COOKIE_SECRET} characters"
    return None
