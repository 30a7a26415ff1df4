"""User text shown as text: nicknames, file names, DICOM values and PACS responses never become Markdown, HTML
or LaTeX on a page.

Streamlit renders Markdown in ``st.markdown``, headings, captions, labels and ``st.table`` cells. Text that came
from a user or a file goes through :func:`literal` before it is placed in any of those, or is shown with
``st.text`` / ``st.code`` / ``st.dataframe`` (which show cells as typed). CommonMark lets a backslash escape any
ASCII punctuation, so escaping all of it leaves nothing Markdown, HTML or LaTeX (``$``) can act on.
"""
from __future__ import annotations

import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_BREAKS = re.compile(r"[\r\n\t\v\f\u2028\u2029]+")
# Streamlit links bare addresses *after* Markdown is parsed (escapes and entities do not stop it: checked in
# Chromium), so a word joiner (U+2060, invisible, no width) goes where GFM's autolinks start: "://", "www." and "@".
WORD_JOINER = "\u2060"
_AUTOLINK_STARTS = re.compile(r"(?=:)|(?=@)|(?i:(?<=www)(?=\.))")


def literal(text: object) -> str:
    """``text`` for a Markdown context (headings, captions, labels, table cells): every ASCII punctuation
    character backslash-escaped, a word joiner before what would start a bare link, and line breaks folded to one
    space, so it shows as typed, on one line, with no link."""
    joined = _AUTOLINK_STARTS.sub(WORD_JOINER, _BREAKS.sub(" ", str(text)))
    return _PUNCTUATION.sub(r"\\\1", joined)


def shown(markdown: str) -> str:
    """What a reader sees of :func:`literal`'s output (escapes and word joiners removed): for tests and logs."""
    return re.sub(r"\\(.)", r"\1", markdown).replace(WORD_JOINER, "")
