"""The threshold in force for a model on this site: the site threshold adopted on the "Your site" page (the active
adoption of this model version, :mod:`pneumo_core.storage.reads`), else the shipped one. Every page that labels films
takes it from :func:`active_threshold` (through the operating-point picker) and says where it came from."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from sqlalchemy.engine import make_url

from pneumo_core.errors import StorageError, first_line
from pneumo_core.storage.database import default_url
from pneumo_core.storage.reads import Adoption, site_reads_db
from ui.cache import file_sha256, model_file
from ui.text import literal

SITE_PRESET = "site threshold (adopted)"
_SEEN_KEY = "_site_threshold_seen"  # variant -> the adoption id this session's picker last followed


@dataclass(frozen=True)
class ActiveThreshold:
    """The threshold in force for one model version and where it came from."""

    threshold: float
    shipped: float
    adoption: Adoption | None = None
    problem: str | None = None  # the database could not be read: the shipped threshold applies

    @property
    def note(self) -> str:
        """One Markdown-safe line: which threshold is active and where it came from."""
        if self.adoption is None:
            text = f"Shipped threshold {self.shipped:.3f} (chosen on the validation split); no site threshold adopted."
            return text if self.problem is None else f"{text} Site threshold unknown: {literal(self.problem)}."
        a = self.adoption
        if a.source:
            return (f"Site threshold {a.new_threshold:.3f} adopted by {literal(a.adopted_by)} on "
                    f"{a.adopted_at:%Y-%m-%d} ({literal(a.source)}); shipped {self.shipped:.3f}.")
        return (f"Site threshold {a.new_threshold:.3f} adopted by {literal(a.adopted_by)} on "
                f"{a.adopted_at:%Y-%m-%d} ({a.n_reads} reads: {a.n_normal} NORMAL, {a.n_pneumonia} PNEUMONIA); "
                f"shipped {self.shipped:.3f}.")


def no_database_yet() -> bool:
    """A default SQLite file not made yet holds no adoption: pages do not create it just to look."""
    url = make_url(default_url())
    return url.get_backend_name() == "sqlite" and bool(url.database) and not Path(url.database).is_file()


def model_sha256(variant: str) -> str | None:
    """SHA-256 of the model file the pages run for ``variant`` (the version reads and adoptions belong to)."""
    path = model_file(variant)
    return file_sha256(path) if path.is_file() else None


def active_threshold(variant: str, shipped: float) -> ActiveThreshold:
    """The threshold in force for ``variant`` (its current file), read on every run: an adoption made or reverted
    in another session shows on the next rerun."""
    sha = model_sha256(variant)
    if sha is None or no_database_yet():
        return ActiveThreshold(shipped, shipped)
    try:
        adoption = site_reads_db().active(sha)
    except StorageError as exc:
        return ActiveThreshold(shipped, shipped, problem=first_line(exc))
    return ActiveThreshold(adoption.new_threshold if adoption else shipped, shipped, adoption)


def follow_adoption(variant: str, active: ActiveThreshold, preset_key: str, threshold_key: str,
                    shipped_preset: str) -> None:
    """Move this session's operating point to the threshold in force when an adoption is made or reverted (here or
    in another session); a threshold the user picks afterwards stays theirs."""
    seen = st.session_state.setdefault(_SEEN_KEY, {})
    current = active.adoption.id if active.adoption else None
    if variant in seen and seen[variant] == current:
        return
    first_visit = variant not in seen
    seen[variant] = current
    if first_visit and current is None:
        return  # the picker's own default (the shipped threshold) stands
    st.session_state[preset_key] = SITE_PRESET if current is not None else shipped_preset
    st.session_state[threshold_key] = float(active.threshold)


def adoption_control(decision, new: float, current: float, *, what: str, confirm: str, button: str, key: str,
                     sure_key: str, on_click, args: tuple, primary: bool = False) -> None:
    """The explicit adoption of threshold ``new`` (``what`` names it, e.g. "proposed threshold"): the role's refusal,
    or a note that it is already in force, or a confirmation box (``confirm``) and then the ``button``."""
    if not decision.allowed:
        st.caption(decision.reason)
    elif abs(new - current) < 5e-4:
        st.caption(f"The {what} {new:.3f} is the one in force.")
    else:
        sure = st.checkbox(confirm, key=sure_key)
        st.button(button, key=key, disabled=not sure, type="primary" if primary else "secondary", on_click=on_click,
                  args=args, icon=":material/done_all:")
