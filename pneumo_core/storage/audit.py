"""The audit trail: every PACS search, retrieval and store-back, appended to the project's database.

An event says who (the dashboard user's name and role), when (UTC), what (the action, a count, hashed study
references) and how it ended; never a patient identifier, a UID or a PACS response. There is no update or
delete: the API only appends, and on SQLite and PostgreSQL a trigger refuses UPDATE and DELETE on the table.

A study reference is ``"st-"`` + the first 16 hex digits of SHA-256 over a fixed prefix and the Study Instance
UID. Not salted, on purpose: the site's own auditors, who hold the PACS, can hash a UID again to find its
events, and the same study has the same reference in every export; a per-site secret would have to be kept
somewhere this code reads and would make that impossible. The prefix keeps the references from matching a
plain SHA-256 of the UIDs published elsewhere; 64 bits make a collision unlikely below billions of studies.
"""
from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from pneumo_core.errors import AuditError
from pneumo_core.storage.database import Database, aware, default_url, guarded
from pneumo_core.storage.schema import AUDIT_ACTIONS, AUDIT_NAME_MAX, AUDIT_OUTCOMES, audit_events

__all__ = ["ACTIONS", "OUTCOMES", "AuditEvent", "AuditTrail", "audit_trail", "study_reference"]

ACTIONS = AUDIT_ACTIONS
OUTCOMES = AUDIT_OUTCOMES
_REFERENCE = re.compile(r"st-[0-9a-f]{16}")
_HASH_PREFIX = b"pneumo-workbench study reference v1\x00"


def study_reference(study_instance_uid: str) -> str:
    """The hashed reference stored for a study (see the module's text): ``st-`` and 16 hex digits."""
    uid = str(study_instance_uid).strip()
    if not uid:
        raise AuditError("a study reference needs a Study Instance UID")
    return "st-" + hashlib.sha256(_HASH_PREFIX + uid.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class AuditEvent:
    """One recorded event. ``at``: UTC; ``study_refs``: the references of :func:`study_reference`."""

    at: datetime
    actor: str
    role: str
    action: str
    count: int
    study_refs: tuple[str, ...]
    outcome: str


def _name(value, what: str) -> str:
    text = str(value).strip() if isinstance(value, str) else ""
    if not text:
        raise AuditError(f"an audit event needs {what}")
    if len(text) > AUDIT_NAME_MAX or any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise AuditError(f"{what} of an audit event must be at most {AUDIT_NAME_MAX} printable characters")
    return text


class AuditTrail(Database):
    """The audit trail on one database (see :class:`~pneumo_core.storage.database.Database` for the
    arguments): :meth:`record` appends, :meth:`events` reads; nothing changes or deletes an event."""

    def record(self, *, actor: str, role: str, action: str, count: int, study_refs: Sequence[str] = (),
               outcome: str = "ok") -> None:
        """Append one event. ``action``: one of :data:`ACTIONS`; ``outcome``: one of :data:`OUTCOMES`;
        ``count``: studies found, retrieved or stored (0 or more); ``study_refs``: references made by
        :func:`study_reference` (anything else, a raw UID above all, is refused)."""
        if action not in ACTIONS:
            raise AuditError(f"unknown audit action {action!r}: use one of {', '.join(ACTIONS)}")
        if outcome not in OUTCOMES:
            raise AuditError(f"unknown audit outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise AuditError("the count of an audit event must be a whole number, 0 or more")
        if isinstance(study_refs, str):
            raise AuditError("study_refs must be a list of study references, not one string")
        refs = tuple(study_refs)
        if not all(isinstance(ref, str) and _REFERENCE.fullmatch(ref) for ref in refs):
            raise AuditError("study references must come from study_reference() (st- and 16 hex digits); "
                             "an identifier is never recorded")
        row = {"at": self.now(), "actor": _name(actor, "an actor"), "role": _name(role, "a role"), "action": action,
               "count": count, "study_refs": " ".join(refs), "outcome": outcome}
        self._append(row)

    @guarded
    def _append(self, row: dict) -> None:
        with self.transaction(write=True) as conn:
            conn.execute(insert(audit_events).values(**row))

    @guarded
    def events(self, limit: int | None = None) -> list[AuditEvent]:
        """The recorded events, newest first; at most ``limit`` (None: all)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise AuditError("the limit must be a whole number, 0 or more")
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        with self.transaction() as conn:
            rows = conn.execute(query).mappings().all()
        return [AuditEvent(at=aware(row["at"]), actor=row["actor"], role=row["role"], action=row["action"],
                           count=row["count"], study_refs=tuple(row["study_refs"].split()), outcome=row["outcome"])
                for row in rows]


@functools.lru_cache(maxsize=8)
def _open(url: str) -> AuditTrail:
    return AuditTrail(url)


def audit_trail(url: str | None = None) -> AuditTrail:
    """The audit trail on ``url``, else on the project's database (``PNEUMO_DB_URL`` or the default SQLite
    file); one per URL in this process. Raises :class:`~pneumo_core.errors.StorageError` when the database
    cannot be used (not cached: the next call tries again)."""
    return _open(url or default_url())
