"""The app's pages, each title and icon written once: app.py builds the navigation from
:data:`PAGES`, and pages link to each other with :func:`page_link`.

Adding a page is one line in :data:`PAGES` (and its file in ``app_pages/``; not ``pages/``,
which switches Streamlit to its legacy multipage mode).
"""
from __future__ import annotations

from typing import NamedTuple

import streamlit as st

PAGES_DIR = "app_pages"


class PageEntry(NamedTuple):
    """A page: its file name in ``app_pages/``, title, icon, URL path and the line the Home
    page links it with ("" for no link)."""

    file: str
    title: str
    icon: str
    url_path: str
    summary: str = ""

    @property
    def path(self) -> str:
        """The page's script, relative to app.py."""
        return f"{PAGES_DIR}/{self.file}"


PAGES = {
    "home": PageEntry("home.py", "Home", ":material/home:", "home"),
    "analyse": PageEntry("analyse.py", "Analyse X-rays", ":material/radiology:", "analyse",
                         "Analyse X-rays: upload films, get labels and heatmaps"),
    "compare": PageEntry("compare.py", "Compare models", ":material/bar_chart:", "compare",
                         "Compare models: metrics with 95% CIs, training curves"),
    "roc": PageEntry("roc.py", "ROC and confusion matrices", ":material/show_chart:", "roc",
                     "ROC and confusion matrices at any threshold"),
    "quiz": PageEntry("quiz.py", "Reader quiz", ":material/quiz:", "quiz",
                      "Reader quiz: read films blind, then see yourself on the model's ROC curve"),
    "class_view": PageEntry("class_view.py", "Class view", ":material/groups:", "class",
                            "Class view (teacher key): every reader on the model's ROC curve"),
    "site": PageEntry("site.py", "Your site", ":material/local_hospital:", "site",
                      "Your site: the model against your own reads, drift, a proposed site threshold"),
    "protocols": PageEntry("protocols.py", "Why results differ", ":material/science:", "protocols",
                           "Why results differ: the same recipes under three evaluation protocols"),
    "about": PageEntry("about.py", "About / model card", ":material/info:", "about",
                       "About: limitations, model card, how to retrain"),
}
DEFAULT_PAGE = "home"


def streamlit_pages() -> list:
    """``st.Page`` objects for ``st.navigation``, in :data:`PAGES` order (Home the default)."""
    return [st.Page(entry.path, title=entry.title, icon=entry.icon, url_path=entry.url_path,
                    default=name == DEFAULT_PAGE) for name, entry in PAGES.items()]


def page_link(name: str, label: str | None = None) -> None:
    """A link to page ``name`` (a key of :data:`PAGES`) with its icon; ``label`` defaults to its summary."""
    entry = PAGES[name]
    st.page_link(entry.path, label=label or entry.summary or entry.title, icon=entry.icon)


def linked_pages() -> list[str]:
    """The pages the Home page lists (those with a summary), in order."""
    return [name for name, entry in PAGES.items() if entry.summary]
