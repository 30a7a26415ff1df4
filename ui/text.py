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


def literal(text: object) -> str:
    """``text`` for a Markdown context (headings, captions, labels, table cells): every ASCII punctuation
    character backslash-escaped and line breaks folded to one space, so it shows exactly as typed, on one line."""
    return _PUNCTUATION.sub(r"\\\1", _BREAKS.sub(" ", str(text)))
