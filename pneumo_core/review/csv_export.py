"""Tables as CSV text that a spreadsheet cannot run: every text cell that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return gets a leading apostrophe (OWASP, "CSV Injection"), so a nickname or a file name
such as ``=HYPERLINK(...)`` opens as the text it is. Numbers are left as numbers."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value):
    """``value`` as a spreadsheet should show it: a text cell that could start a formula is prefixed with ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_csv(table: pd.DataFrame) -> str:
    """``table`` as CSV text (no index) with every text cell neutralised (:func:`neutralise_cell`)."""
    return table.map(neutralise_cell).to_csv(index=False)
