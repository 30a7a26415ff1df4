"""The audit trail on a real SQLite file and a real PostgreSQL cluster: what an event holds, what is refused,
that the table is append-only below the API too (database triggers), and ``audit export``."""
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy import exc as sa_exc

from pneumo_core import cli
from pneumo_core.errors import AuditError, StorageError
from pneumo_core.storage.audit import AuditTrail, audit_trail, study_reference
from tests.helpers.postgres import postgres  # noqa: F401 (a fixture)

UID = "1.2.826.0.1.3680043.8.498.10293847561029384756"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'project.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()


class Clock:
    def __init__(self):
        self.now = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)

    def __call__(self):
        self.now += timedelta(minutes=1)
        return self.now


def test_a_study_reference_is_a_short_stable_hash_never_the_uid():
    ref = study_reference(UID)
    assert ref.startswith("st-") and len(ref) == 19 and int(ref[3:], 16) >= 0
    assert study_reference(f"  {UID} ") == ref  # the same study from a padded DICOM value
    assert study_reference(UID + "1") != ref and UID not in ref
    with pytest.raises(AuditError, match="needs a Study Instance UID"):
        study_reference("  ")


def test_events_are_recorded_and_read_newest_first(db_url):
    trail = AuditTrail(db_url, clock=Clock())
    refs = [study_reference(UID), study_reference("1.2.3")]
    trail.record(actor="dr ann", role="radiologist", action="pacs_search", count=2, study_refs=refs)
    trail.record(actor="dr ann", role="radiologist", action="pacs_retrieve", count=1, study_refs=refs[:1])
    trail.record(actor="<b>bob</b>", role="radiologist", action="pacs_store", count=0, outcome="error")
    events = trail.events()
    assert [(e.actor, e.action, e.count, e.study_refs, e.outcome) for e in events] == [
        ("<b>bob</b>", "pacs_store", 0, (), "error"),
        ("dr ann", "pacs_retrieve", 1, (refs[0],), "ok"),
        ("dr ann", "pacs_search", 2, tuple(refs), "ok")]
    assert [e.at for e in events] == [datetime(2026, 5, 4, 8, m, tzinfo=UTC) for m in (3, 2, 1)]
    assert [e.action for e in trail.events(limit=1)] == ["pacs_store"] and trail.events(limit=0) == []
    trail.dispose()
    engine = create_engine(db_url)  # nothing in the database holds the UID
    with engine.connect() as conn:
        stored = " ".join(str(v) for name in inspect(conn).get_table_names()
                          for row in conn.execute(text(f'SELECT * FROM "{name}"')) for v in row)
    engine.dispose()
    assert UID not in stored and refs[0] in stored


def test_anything_but_a_known_event_is_refused(db_url):
    trail = AuditTrail(db_url)
    good = {"actor": "dr ann", "role": "radiologist", "action": "pacs_search", "count": 1}
    for change, words in [
        ({"action": "pacs_delete"}, "unknown audit action 'pacs_delete'"),
        ({"outcome": "maybe"}, "unknown audit outcome 'maybe'"),
        ({"count": -1}, "whole number, 0 or more"), ({"count": True}, "whole number"), ({"count": 1.5}, "whole"),
        ({"study_refs": [UID]}, "must come from study_reference\\(\\)"),
        ({"study_refs": ["st-" + "0" * 15]}, "must come from study_reference"),
        ({"study_refs": study_reference(UID)}, "not one string"),
        ({"actor": "  "}, "needs an actor"), ({"actor": "x" * 81}, "at most 80 printable"),
        ({"role": "nurse\nadmin"}, "at most 80 printable"), ({"actor": None}, "needs an actor"),
    ]:
        with pytest.raises(AuditError, match=words):
            trail.record(**{**good, **change})
    with pytest.raises(AuditError, match="the limit"):
        trail.events(limit=-1)
    assert trail.events() == []
    assert not hasattr(trail, "update") and not hasattr(trail, "delete")
    trail.dispose()


def test_the_table_refuses_update_and_delete_below_the_api(db_url):
    trail = AuditTrail(db_url)
    trail.record(actor="dr ann", role="radiologist", action="pacs_store", count=1,
                 study_refs=[study_reference(UID)])
    trail.dispose()
    engine = create_engine(db_url)
    statements = ["UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_events")
    for statement in statements:
        with pytest.raises(sa_exc.DatabaseError, match="audit_events is append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor, count FROM audit_events")).all() == [("dr ann", 1)]
    engine.dispose()
    assert [e.actor for e in AuditTrail(db_url).events()] == ["dr ann"]


def test_audit_trail_opens_the_project_database(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'from env.sqlite3'}"
    monkeypatch.setenv("PNEUMO_DB_URL", url)
    trail = audit_trail()
    assert trail is audit_trail(url)  # one per database in a process
    trail.record(actor="dr ann", role="radiologist", action="pacs_search", count=0)
    assert (tmp_path / "from env.sqlite3").is_file()
    monkeypatch.setenv("PNEUMO_DB_URL", "not a url")
    with pytest.raises(StorageError, match="PNEUMO_DB_URL is not a database URL"):
        audit_trail()


def test_cli_audit_export(monkeypatch, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'project.sqlite3'}"
    monkeypatch.setenv("PNEUMO_DB_URL", url)
    trail = AuditTrail(url, clock=Clock())
    trail.record(actor="dr ann", role="radiologist", action="pacs_search", count=2,
                 study_refs=[study_reference(UID), study_reference("1.2.3")])
    trail.record(actor="=HYPERLINK(\"https://evil.example\")", role="radiologist", action="pacs_store", count=1,
                 study_refs=[study_reference(UID)], outcome="refused")
    trail.dispose()

    assert cli.main(["audit", "export"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["action"] for r in rows] == ["pacs_store", "pacs_search"]
    assert rows[0]["actor"] == "'=HYPERLINK(\"https://evil.example\")"  # a spreadsheet shows it, never runs it
    assert rows[1]["study_refs"] == f"{study_reference(UID)} {study_reference('1.2.3')}"
    assert rows[1]["at"] == "2026-05-04T08:01:00+00:00" and rows[0]["outcome"] == "refused"

    assert cli.main(["audit", "export", "--json", "--limit", "1"]) == 0
    (event,) = json.loads(capsys.readouterr().out)
    assert event == {"at": "2026-05-04T08:02:00+00:00", "actor": "=HYPERLINK(\"https://evil.example\")",
                     "role": "radiologist", "action": "pacs_store", "count": 1,
                     "study_refs": [study_reference(UID)], "outcome": "refused"}

    (tmp_path / "notes.sqlite3").write_text("lecture notes, not a database\n" * 50)
    monkeypatch.setenv("PNEUMO_DB_URL", f"sqlite:///{tmp_path / 'notes.sqlite3'}")
    assert cli.main(["audit", "export", "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == f"error: {tmp_path / 'notes.sqlite3'} is not a SQLite database: set " \
                                        "PNEUMO_DB_URL to another file\n"
    with pytest.raises(SystemExit):
        cli.main(["audit", "export", "--limit", "0"])
    assert "must be at least 1" in capsys.readouterr().err
