"""``audit export``: the audit trail of PACS searches, retrievals and store-backs (newest first), for an auditor."""
from __future__ import annotations

import json

from pneumo_core.cli.common import EXIT_OK, error_line, int_at_least

COLUMNS = ("at", "actor", "role", "action", "count", "study_refs", "outcome")


def export_text(args) -> str:
    """The events as CSV (default) or JSON; a database that cannot be used raises StorageError."""
    import pandas as pd

    from pneumo_core.review.csv_export import safe_csv
    from pneumo_core.storage.audit import AuditTrail

    trail = AuditTrail()  # its own engine, disposed below: a CLI run holds no connection afterwards
    try:
        events = trail.events(args.limit)
    finally:
        trail.dispose()
    rows = [{"at": e.at.isoformat(), "actor": e.actor, "role": e.role, "action": e.action, "count": e.count,
             "study_refs": list(e.study_refs), "outcome": e.outcome} for e in events]
    if args.json:
        return json.dumps(rows, indent=2, ensure_ascii=False)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["study_refs"] = [" ".join(refs) for refs in table["study_refs"]]
    return safe_csv(table).rstrip("\n")  # actor and role are typed by people: no formula reaches a spreadsheet


def cmd_audit(args) -> int:
    """Output on stdout; a database failure is one ``error:`` line on stderr, exit status 2."""
    from pneumo_core.errors import StorageError

    try:
        out = export_text(args)
    except StorageError as exc:
        return error_line(str(exc))
    print(out)
    return EXIT_OK


def register(sub) -> None:
    """``audit`` and its ``export`` on the subparsers ``sub``."""
    a = sub.add_parser("audit", help="the audit trail of PACS searches, retrievals and store-backs (database: "
                       "$PNEUMO_DB_URL, default a SQLite file in the user's data folder)")
    subs = a.add_subparsers(dest="audit_command", required=True)
    export = subs.add_parser("export", help="every event, newest first: when, who, role, action, count, hashed "
                             "study references (never identifiers), outcome")
    fmt = export.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV, one row per event (the default)")
    fmt.add_argument("--json", action="store_true", help="a JSON list of events")
    export.add_argument("--limit", type=int_at_least(1), metavar="N", help="only the N newest events")
    a.set_defaults(func=cmd_audit)
