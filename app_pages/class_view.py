"""Class view of a reader quiz (teacher key only): every reader on the model's ROC curve, the class
mean and spread, the films most readers got wrong, the CSV of every answer, and closing the quiz.

The key is checked by the store on every run (only its hash is stored) and kept in this browser
session only; it is never put in the URL.
"""
from __future__ import annotations

import streamlit as st

from pneumo_core.access.policy import Action
from pneumo_core.errors import QuizError
from ui.access import require
from ui.quiz_results import show_class_view
from ui.quiz_widgets import get_store, show_error

TEACHER_KEY = "quiz_teacher"  # (code, teacher key) of the quiz shown, this session only

st.title("Class view")
st.markdown("For the teacher of a quiz: the readers' results against the model. Readers see only their own.")
require(Action.CLASS_VIEW)  # with sign-in configured: the teacher role (the quiz's key is still asked below)
store = get_store()
if store is None:
    st.stop()

with st.form("quiz_teacher_login"):
    code = st.text_input("Join code", key="quiz_teacher_code")
    key = st.text_input("Teacher key", type="password", key="quiz_teacher_key")
    opened = st.form_submit_button("Show the results", type="primary", icon=":material/lock_open:")
if opened:
    st.session_state[TEACHER_KEY] = (code, key)

chosen = st.session_state.get(TEACHER_KEY)
if chosen:
    try:
        results = store.results(*chosen)
    except QuizError as exc:
        st.session_state.pop(TEACHER_KEY, None)  # a wrong key is not kept
        show_error(exc)
        st.stop()
    st.subheader(f"Quiz {results.code}")
    left, middle, right = st.columns(3)
    left.button("Refresh", icon=":material/refresh:", key="quiz_refresh",
                help="Readers answer while you watch: refresh to count the new answers")
    if middle.button("Close the quiz", icon=":material/lock:", key="quiz_close", disabled=results.closed,
                     help="No more joins or answers; every reader may then see their result"):
        try:
            store.close(*chosen)
        except QuizError as exc:
            show_error(exc)
        else:
            st.rerun()
    if right.button("Forget the key on this device", icon=":material/logout:", key="quiz_forget"):
        st.session_state.pop(TEACHER_KEY, None)
        st.rerun()
    if results.readers.empty:
        st.info(f"No reader has joined quiz {results.code} yet.", icon=":material/hourglass_empty:")
    else:
        show_class_view(results)
