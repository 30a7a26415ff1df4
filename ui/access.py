"""Sign-in, roles and the audit trail on the dashboard: who this browser session is, what it may do, and the gates
pages put before the PACS and the class view (the rules themselves: :mod:`pneumo_core.access.policy`).

Sign-in is Streamlit's own OpenID Connect (``st.login``/``st.user``, Authlib), switched on by an ``[auth]`` section
in ``.streamlit/secrets.toml``; roles come from the settings (:mod:`pneumo_core.access.settings`). Without
``[auth]`` on a loopback-bound server (``make run``) everything stays open to the local user, as before. Every PACS
search, retrieval and store-back, and every session refused the PACS, is appended to the audit trail
(:mod:`pneumo_core.storage.audit`): who, role, action, a count of studies and their hashed references.
"""
from __future__ import annotations

from importlib.util import find_spec

import streamlit as st

from pneumo_core.access.policy import Action, Decision, Requester, decide, is_loopback
from pneumo_core.access.settings import load_role_settings, roles_for, sign_in_problem
from pneumo_core.errors import AccessError, AuditError, StorageError, first_line
from pneumo_core.pacs.settings import pacs_configured
from pneumo_core.storage.audit import audit_trail, study_reference
from pneumo_core.storage.schema import AUDIT_NAME_MAX
from ui.text import literal

AUDIT_SHOWN = 200  # events in the page's table (newest first); the CLI exports them all


def _auth_section() -> dict | None:
    """The ``[auth]`` secrets section, or None (also when there is no secrets file at all)."""
    try:
        section = st.secrets.get("auth")
    except Exception:  # Streamlit raises when no secrets.toml exists
        return None
    return dict(section) if section else None


def requester() -> Requester:
    """This browser session as the access rules see it (read again on every run: secrets may change)."""
    auth = _auth_section()
    problem = sign_in_problem(auth, authlib_installed=find_spec("authlib") is not None) if auth else None
    user = st.user.to_dict()
    signed_in = bool(auth) and problem is None and user.get("is_logged_in") is True
    roles = frozenset()
    if auth and problem is None:
        try:
            settings = load_role_settings(secrets=st.secrets)
        except AccessError as exc:  # a bad role list shuts every guarded feature, as a bad [auth] does
            problem = str(exc)
        else:
            roles = roles_for(user, settings) if signed_in else frozenset()
    identity = str(user.get("email") or user.get("sub") or "").strip() or None
    return Requester(loopback=is_loopback(st.get_option("server.address")), sign_in=bool(auth),
                     sign_in_problem=problem, signed_in=signed_in and problem is None, roles=roles,
                     identity=identity if signed_in else None)


def allowed(action: Action) -> Decision:
    """Whether this session may do ``action`` now (nothing is shown)."""
    return decide(action, requester())


def _sign_in_button(key: str) -> None:
    if st.button("Sign in", key=key, type="primary", icon=":material/login:"):
        st.login()


def sign_in_control() -> None:
    """The sidebar's sign-in box (only when sign-in is configured): who is signed in with which roles, and the
    button to sign in or out. Quiz readers never need it."""
    who = requester()
    if not who.sign_in:
        return
    with st.sidebar:
        if who.sign_in_problem:
            st.warning(f"Sign-in is misconfigured: {who.sign_in_problem}.", icon=":material/lock:")
        elif who.signed_in:
            st.caption(f"Signed in as {literal(who.identity)} · roles: {', '.join(sorted(who.roles)) or 'none'}")
            if st.button("Sign out", key="sign_out", icon=":material/logout:"):
                st.logout()
        else:
            st.caption("Radiologists (PACS) and teachers (class view) sign in; quiz readers need no account.")
            _sign_in_button("sign_in")


def require(action: Action) -> None:
    """Stop the page here, after a one-line reason (and the sign-in button when that is all that is missing),
    unless this session may do ``action``."""
    decision = allowed(action)
    if not decision.allowed:
        st.warning(decision.reason, icon=":material/lock:")
        if decision.needs_sign_in:
            _sign_in_button(f"sign_in_{action.value}")
        st.stop()


def pacs_gate() -> bool:
    """Whether the PACS source may be shown to this session. A refusal is shown in one line and, when a PACS is
    configured, recorded once per browser session; an audit trail that cannot be written also shuts the PACS."""
    decision = allowed(Action.PACS_SEARCH)
    if not decision.allowed:
        st.warning(decision.reason, icon=":material/lock:")
        if decision.needs_sign_in:
            _sign_in_button("sign_in_pacs")
        if pacs_configured(secrets=st.secrets) and not st.session_state.get("access-pacs-refused"):
            st.session_state["access-pacs-refused"] = True
            audit(Action.PACS_SEARCH, 0, outcome="refused", decision=decision)
        return False
    if pacs_configured(secrets=st.secrets):
        try:
            audit_trail()
        except StorageError as exc:
            st.error(f"The PACS is off: its audit trail cannot be written ({literal(first_line(exc))}).")
            return False
    return True


def still_allowed(action: Action) -> bool:
    """For a PACS action run from a callback (before the page's gate runs again): checked anew, and a refusal
    recorded and shown."""
    decision = allowed(action)
    if not decision.allowed:
        audit(action, 0, outcome="refused", decision=decision)
        st.warning(decision.reason, icon=":material/lock:")
    return decision.allowed


def audit(action: Action, count: int, study_uids=(), outcome: str = "ok", decision: Decision | None = None) -> None:
    """Append one PACS event for this session: ``count`` studies, their UIDs stored only as hashed references.
    A failure to write is one error line on the page (the action itself has already happened)."""
    who = requester()
    decision = decision or decide(action, who)
    try:
        audit_trail().record(actor=who.actor[:AUDIT_NAME_MAX], role=decision.role or "none", action=action.value,
                             count=count, study_refs=sorted({study_reference(uid) for uid in study_uids}),
                             outcome=outcome)
    except (AuditError, StorageError) as exc:
        st.error(f"Audit trail not written: {literal(first_line(exc))}")


def show_audit_trail() -> None:
    """The audit trail, newest first, in an expander, for those who may see it (radiologists; the local user);
    nothing for anyone else or when no PACS is configured."""
    if not pacs_configured(secrets=st.secrets) or not allowed(Action.AUDIT_VIEW).allowed:
        return
    with st.expander("Audit trail: PACS searches, retrievals and store-backs", icon=":material/history:"):
        try:
            events = audit_trail().events(AUDIT_SHOWN)
        except (AuditError, StorageError) as exc:
            st.error(f"The audit trail cannot be read: {literal(first_line(exc))}")
            return
        if not events:
            st.caption("No PACS event recorded yet.")
            return
        st.dataframe([{"when (UTC)": event.at.strftime("%Y-%m-%d %H:%M:%S"), "who": event.actor, "role": event.role,
                       "action": event.action, "studies": event.count, "study references": " ".join(event.study_refs),
                       "outcome": event.outcome} for event in events], hide_index=True, width="stretch")
        st.caption(f"Newest first, at most {AUDIT_SHOWN}. Studies are hashed references, never UIDs or patient "
                   "data; the records cannot be changed or deleted from the dashboard.")
