"""``docs [--check]``: regenerate the generated documentation from the report files, or (``--check``)
list the generated files that are stale (exit status 1) without writing anything."""
from __future__ import annotations

import importlib
from types import SimpleNamespace

from pneumo_core.cli.common import EXIT_OK, EXIT_STALE

GENERATOR = "pneumo_core.evaluation.generated_docs"  # write_all() and stale_files(): relative paths
PROTOCOLS_DOC = "docs/protocols.md"  # what the fallback regenerates


def _protocols_doc_only() -> SimpleNamespace:
    """The generator's interface for docs/protocols.md alone (:mod:`pneumo_core.evaluation.protocol_markdown`),
    while :data:`GENERATOR` does not exist."""
    from pneumo_core.config import PROJECT_DIR
    from pneumo_core.evaluation.protocol_markdown import report_markdown, write_into

    doc = PROJECT_DIR / PROTOCOLS_DOC

    def stale_files() -> list[str]:
        return [] if report_markdown() in doc.read_text() else [PROTOCOLS_DOC]

    def write_all() -> list[str]:
        stale = stale_files()
        if stale:
            write_into(doc)
        return stale

    return SimpleNamespace(write_all=write_all, stale_files=stale_files)


def generator():
    """The module that writes the generated docs, or the docs/protocols.md fallback while it is missing."""
    try:
        return importlib.import_module(GENERATOR)
    except ModuleNotFoundError as exc:
        if exc.name != GENERATOR:  # the generator is there but needs something that is not
            raise
        return _protocols_doc_only()


def cmd_docs(args) -> int:
    docs = generator()
    if args.check:
        stale = docs.stale_files()
        for path in stale:
            print(f"stale: {path}")
        if stale:
            print(f"{len(stale)} generated file(s) out of date: run python -m pneumo_core docs")
            return EXIT_STALE
        print("generated docs are current")
        return EXIT_OK
    written = docs.write_all()
    for path in written:
        print(f"rewrote {path}")
    if not written:
        print("generated docs are current")
    return EXIT_OK


def register(sub) -> None:
    """``docs`` on the subparsers ``sub``."""
    d = sub.add_parser("docs", help="regenerate the generated documentation (tables from the report files)")
    d.add_argument("--check", action="store_true",
                   help="write nothing; list the stale generated files and exit 1 if there are any")
    d.set_defaults(func=cmd_docs)
