"""Every figure table of the docs, generated from the report files; nothing is re-run.

README.md, models/MODEL_CARD.md, docs/evaluation.md and docs/protocols.md hold generated blocks, each marker
on a line of its own::

    <!-- generated:results-table -->
    ...written from the report files...
    <!-- /generated -->

:func:`write_all` rewrites the text between the markers (the writers: :mod:`pneumo_core.evaluation.doc_tables`,
docs/protocols.md's through :func:`pneumo_core.evaluation.protocol_markdown.report_markdown`);
:func:`stale_files` names the docs whose blocks differ from what it would write
(``python -m pneumo_core docs [--check]``). Prose outside the markers stays hand-written; the figures it
repeats are checked by :func:`prose_mismatches` (:mod:`pneumo_core.evaluation.doc_prose`,
tests/unit/test_generated_docs.py).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from pneumo_core.evaluation.doc_prose import prose_mismatches
from pneumo_core.evaluation.doc_tables import (
    Reports,
    checkout_root,
    data_table,
    every_run_table,
    protocol_tables,
    protocols_table,
    readme_results,
    results_table,
)

__all__ = ["BLOCK", "DOCS", "prose_mismatches", "render", "stale_files", "write_all"]

#: One generated block: ``<!-- generated:NAME -->``, its text, ``<!-- /generated -->``, each marker on a line
#: of its own (a marker quoted in prose is not one).
BLOCK = re.compile(r"^<!-- generated:(?P<name>[a-z0-9-]+) -->\n(?P<body>.*?)^<!-- /generated -->$", re.S | re.M)


#: Which generated blocks each doc holds, and what writes each.
DOCS: dict[str, dict[str, Callable[[Reports], str]]] = {
    "README.md": {"results-table": readme_results},
    "models/MODEL_CARD.md": {"data-table": data_table, "results-table": results_table,
                             "every-run-table": every_run_table, "protocols-table": protocols_table},
    "docs/evaluation.md": {"results-table": results_table},
    "docs/protocols.md": {"protocol-tables": protocol_tables},
}


# ---------------------------------------------------------------------------- rewriting
def render(doc: str, text: str, reports: Reports) -> str:
    """``text`` (the content of ``doc``, a key of :data:`DOCS`) with each generated block rewritten.
    A block the doc lacks, or one this module does not know, is a ValueError."""
    writers = DOCS[doc]
    found = [m.group("name") for m in BLOCK.finditer(text)]
    missing = [name for name in writers if name not in found]
    unknown = [name for name in found if name not in writers]
    if missing or unknown:
        raise ValueError(f"{doc}: " + "; ".join(
            [f"no <!-- generated:{n} --> ... <!-- /generated --> block" for n in missing]
            + [f"unknown generated block {n!r}" for n in unknown]))
    return BLOCK.sub(lambda m: f"<!-- generated:{m.group('name')} -->\n{writers[m.group('name')](reports)}\n"
                               "<!-- /generated -->", text)


def write_all(root: str | Path | None = None) -> list[str]:
    """Rewrite every generated block of every doc in :data:`DOCS` under ``root`` (default: this
    checkout) from its report files; the docs' paths (relative to ``root``) that changed. Every doc is
    rendered before any is written, so an error (a missing report or block) leaves all of them as they were."""
    root, reports = checkout_root(root), Reports(root)
    texts = {doc: (root / doc).read_text() for doc in DOCS}
    new = {doc: render(doc, text, reports) for doc, text in texts.items()}
    written = [doc for doc in DOCS if new[doc] != texts[doc]]
    for doc in written:
        (root / doc).write_text(new[doc])
    return written


def stale_files(root: str | Path | None = None) -> list[str]:
    """The docs (relative to ``root``, default: this checkout) whose generated blocks differ from what
    :func:`write_all` would write; [] when every figure table is current. What :func:`write_all` could not
    mend either raises, as it does there: a missing doc or report (OSError), a doc without one of its
    blocks (ValueError)."""
    root, reports = checkout_root(root), Reports(root)
    return [doc for doc in DOCS if render(doc, text := (root / doc).read_text(), reports) != text]
