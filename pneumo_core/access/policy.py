"""What a request may do, from where the server listens, whether sign-in is configured, and the user's roles.

- **Local** (bound to a loopback address, no sign-in configured): today's single-user workbench, everything open
  to the one person at this machine (the class view still asks for the quiz's teacher key).
- **Shared without sign-in** (any other bind address, including Streamlit's default of every interface): the PACS
  features and the audit trail are refused (fail closed); the quiz and the class view (teacher key) stay open.
- **Sign-in configured**: the PACS features and the audit trail need the radiologist role, the class view the
  teacher role (and still the quiz's key); quiz readers never need an account.
- **Sign-in configured but unusable** (an incomplete ``[auth]`` section): every guarded feature is refused.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

from pneumo_core.access.settings import RADIOLOGIST, TEACHER

LOCAL_ACTOR, ANONYMOUS_ACTOR = "local", "anonymous"


class Action(str, Enum):
    """What may be guarded; the PACS values are also the audit trail's action names."""

    PACS_SEARCH = "pacs_search"
    PACS_RETRIEVE = "pacs_retrieve"
    PACS_STORE = "pacs_store"
    AUDIT_VIEW = "audit_view"
    CLASS_VIEW = "class_view"
    SITE_READ = "site_read"  # recording a read that feeds the site's figures
    SITE_THRESHOLD = "site_threshold"  # adopting or reverting a site threshold


PACS_ACTIONS = (Action.PACS_SEARCH, Action.PACS_RETRIEVE, Action.PACS_STORE, Action.AUDIT_VIEW)
SITE_ACTIONS = (Action.SITE_READ, Action.SITE_THRESHOLD)  # like the PACS: radiologists, or the local user
NEEDED_ROLE = {**{action: RADIOLOGIST for action in (*PACS_ACTIONS, *SITE_ACTIONS)}, Action.CLASS_VIEW: TEACHER}
WHAT = {Action.PACS_SEARCH: "The PACS", Action.PACS_RETRIEVE: "The PACS", Action.PACS_STORE: "The PACS",
        Action.AUDIT_VIEW: "The audit trail", Action.CLASS_VIEW: "The class view",
        Action.SITE_READ: "Recording reads", Action.SITE_THRESHOLD: "Adopting a site threshold"}


def is_loopback(address: str | None) -> bool:
    """Whether a server bound to ``address`` (Streamlit's ``server.address``) listens on loopback only. Unset or
    empty means every interface (Streamlit's default): not loopback. Host names other than ``localhost`` are
    not resolved and count as shared (fail closed)."""
    text = (address or "").strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Requester:
    """One browser session as the access rules see it."""

    loopback: bool  # the server listens on loopback only
    sign_in: bool  # an [auth] section is configured (usable or not)
    sign_in_problem: str | None = None  # why that section is unusable
    signed_in: bool = False
    roles: frozenset[str] = frozenset()
    identity: str | None = None  # the signed-in user's e-mail address, or subject when there is none

    @property
    def actor(self) -> str:
        """Who the audit trail names: the signed-in identity, ``local`` on a local install, else ``anonymous``."""
        if self.signed_in and self.identity:
            return self.identity
        return LOCAL_ACTOR if self.loopback and not self.sign_in else ANONYMOUS_ACTOR


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # one line for the user when refused
    role: str = ""  # the role it was allowed or refused under: radiologist, teacher, local, or "none"
    needs_sign_in: bool = False  # refused only because nobody is signed in: offer the sign-in button


def decide(action: Action, who: Requester) -> Decision:
    """Whether ``who`` may do ``action``; a refusal carries its one-line reason."""
    what, needed = WHAT[action], NEEDED_ROLE[action]
    held = ",".join(sorted(who.roles)) or "none"
    if who.sign_in and who.sign_in_problem:
        return Decision(False, f"{what} is off: sign-in is misconfigured ({who.sign_in_problem}).", held)
    if not who.sign_in:
        if action is Action.CLASS_VIEW or who.loopback:
            return Decision(True, role=LOCAL_ACTOR)
        return Decision(False, f"{what} is off on a shared server without sign-in: configure sign-in and roles "
                        "(docs/security.md), or run the dashboard on 127.0.0.1.", "none")
    if not who.signed_in:
        return Decision(False, f"{what} needs the {needed} role: sign in first.", "none", needs_sign_in=True)
    if needed not in who.roles:
        return Decision(False, f"{what} needs the {needed} role, which this account does not have "
                        "(roles are set by the server's operator).", held)
    return Decision(True, role=needed)
