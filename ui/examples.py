"""The Analyse page's example picker: a film of the bundled teaching set (``assets/examples/``,
shipped with the repository, so it works on a fresh clone), or of a dataset's test split when
the dataset folder exists. Names are neutral ("Example 7"): neither a name nor the list's order
gives the answer away before the model's label is shown."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import streamlit as st

from pneumo_core.config import data_dir
from pneumo_core.review import examples
from ui.cache import example_films, example_sources
from ui.text import literal
from ui.uploads import Film, film_of


class Example(NamedTuple):
    """A picked film: its neutral title, the film, its true label and where the truth comes from."""

    title: str
    film: Film
    truth: str
    truth_source: str


def _source_picker(key: str) -> str | None:
    """The bundled set, or a dataset's test split when there is one (then the user picks)."""
    choices = example_sources(str(data_dir()))
    if len(choices) == 1:
        return choices[0][1]
    labels = dict(choices)
    label = st.radio("Examples from", list(labels), key=f"{key}_source", horizontal=True)
    return labels[label]


def example_picker(key: str = "example") -> Example | None:
    """Pick an example film and press Run: the picked :class:`Example`, or None before that."""
    source = _source_picker(key)
    films = example_films(source)
    if films.empty:
        st.caption("This example source has no films.")
        return None
    names = dict(zip(films["path"], films["example"]))
    where = "the bundled teaching set" if examples.is_bundled(source) else "the dataset's test split"
    choice = st.selectbox(f"Example from {where} (true label and file name shown after the prediction)",
                          list(names), format_func=names.get, key=f"{key}_choice")
    if st.button("Run this example", key=f"{key}_run", icon=":material/play_arrow:"):
        st.session_state[f"{key}_active"] = choice
    active = st.session_state.get(f"{key}_active")
    if active != choice:  # nothing run yet, or another example picked: never show one under another's name
        st.caption("Press the button to score the chosen example; its true label appears after the model's.")
        return None
    row = films.loc[films["path"] == active].iloc[0]
    try:
        data = Path(active).read_bytes()
    except OSError as exc:
        st.error(f"Cannot read {literal(row['example'])}: {literal(exc.strerror)}")
        return None
    truth_source = "examples.csv of the teaching set" if examples.is_bundled(source) else "dataset folder"
    return Example(row["example"], film_of(row["file"], data), row["truth"], truth_source)
