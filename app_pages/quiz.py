"""Reader quiz: a teacher creates a quiz; readers join with its code and a nickname, read each film
blind, answer NORMAL/PNEUMONIA with a confidence of 1-5, and at the end see themselves on the
model's ROC curve. The class view (teacher key) is its own page.

The reader's token lives in the session and in the URL (``?reader=``), so a reload, a dropped
connection or a bookmarked link resumes where they were. Every refusal of the store (unknown or
closed code, taken nickname, a second different answer, time up, database read-only or locked)
is one clear message; answers already stored are never lost.
"""
from __future__ import annotations

import streamlit as st

from pneumo_core.config import CLASS_NAMES, data_dir
from pneumo_core.errors import QuizError
from pneumo_core.quiz.database import NICKNAME_MAX
from pneumo_core.quiz.rules import (
    DEFAULT_QUIZ_FILMS,
    DEFAULT_REVEAL,
    MAX_TIME_LIMIT_MINUTES,
    REVEAL_POLICIES,
    QuizStore,
    ReaderState,
)
from pneumo_core.review.examples import bundled_table, sources
from ui.quiz_results import show_reader_results
from ui.quiz_widgets import (
    flash,
    forget_token,
    get_store,
    remember_token,
    resume_reader,
    show_blind_film,
    show_error,
    show_flash,
)

CONFIDENCE_LABELS = {1: "1 guess", 2: "2", 3: "3", 4: "4", 5: "5 sure"}
CREATED_KEY = "quiz_created"  # the new quiz (code and teacher key) until the teacher dismisses it
SEED_LIMIT = 2 ** 31  # the store keeps the seed as a 32-bit integer column
ROLES = ("I am a reader", "I am a teacher: create a quiz")
REVEAL_LABELS = {"on_close": "When I close the quiz (readers cannot pass the key on)",
                 "at_end": "As soon as each reader has finished"}


# ---------------------------------------------------------------------------- reader
def join_form(store: QuizStore) -> None:
    """Join with the teacher's code and a nickname (no real name)."""
    st.subheader("Join a quiz")
    with st.form("quiz_join"):
        code = st.text_input("Join code (from your teacher)", key="quiz_join_code", placeholder="e.g. K7QM2X")
        nickname = st.text_input(f"Nickname (any name you like, up to {NICKNAME_MAX} characters; no real name)",
                                 key="quiz_join_nickname")
        joined = st.form_submit_button("Join", type="primary", icon=":material/login:")
    if not joined:
        return
    try:
        state = store.join(code, nickname)
    except QuizError as exc:
        show_error(exc, "Could not join: ")
        return
    remember_token(state.token)
    st.rerun()


def submit_answer(store: QuizStore, token: str, position: int) -> None:
    """Store the answer to film ``position`` (callback: runs before the page is drawn again)."""
    label = st.session_state.get(f"quiz_label_{position}")
    confidence = st.session_state.get(f"quiz_conf_{position}")
    if label is None or confidence is None:
        flash("error", f"Film {position}: choose NORMAL or PNEUMONIA and how sure you are, then submit.")
        return
    try:
        saved = store.answer(token, position, label, confidence)
    except QuizError as exc:
        flash("error", f"Film {position} not saved: {exc}")
        return
    again = " (it was already saved)" if saved.repeated else ""
    flash("success", f"Film {position} saved: {saved.answer}, confidence {saved.confidence}{again}.")


def answer_view(store: QuizStore, state: ReaderState) -> None:
    """The next unanswered film, blind, with the answer form."""
    position = state.next_position
    done = len(state.answered)
    st.progress(done / state.n_films, text=f"{done} of {state.n_films} films answered")
    if state.seconds_left is not None:
        minutes, seconds = divmod(max(0, int(state.seconds_left)), 60)
        st.caption(f"Time left: {minutes} min {seconds:02d} s (the clock runs on the server from when you joined).")
    try:
        film = store.film(state.token, position)
    except QuizError as exc:
        show_error(exc)
        return
    show_blind_film(film.path, position, state.n_films, key=f"quiz_film_{position}")
    with st.form(f"quiz_answer_{position}"):
        st.radio("Your reading", CLASS_NAMES, index=None, horizontal=True, key=f"quiz_label_{position}")
        st.radio("How sure are you?", list(CONFIDENCE_LABELS), index=None, horizontal=True,
                 format_func=CONFIDENCE_LABELS.get, key=f"quiz_conf_{position}")
        st.form_submit_button("Submit answer", type="primary", icon=":material/send:", on_click=submit_answer,
                              args=(store, state.token, position))
    when = "the teacher closes the quiz" if state.reveal == "on_close" else "you have finished"
    st.caption(f"An answer cannot be changed once submitted. The truth and the model's reading are shown when {when}.")


def reader_view(store: QuizStore) -> None:
    """Join, answer or see the results, depending on where this reader stands."""
    try:
        state = resume_reader(store)
    except QuizError as exc:
        show_error(exc)
        return
    if state is None:
        join_form(store)
        return
    st.text(f"Reading as: {state.nickname}")  # st.text: the nickname exactly as typed, never Markdown or HTML
    st.caption(f"Quiz {state.code}. Keep this page's address (it holds your session) to come back after a reload.")
    if st.sidebar.button("Leave this quiz on this device", icon=":material/logout:",
                         help="Your answers stay saved; with this page's old address you can come back."):
        forget_token()
        st.rerun()
    if not state.finished:
        answer_view(store, state)
        return
    if len(state.answered) < state.n_films:
        why = "the quiz was closed" if state.closed else "time is up"
        st.info(f"{why.capitalize()}: {len(state.answered)} of {state.n_films} films answered; your result counts "
                "those.", icon=":material/timer_off:")
    if not state.truth_shown:
        answers_waiting(store, state)
        return
    try:
        results = store.review(state.token)
    except QuizError as exc:
        show_error(exc)
        return
    show_reader_results(results)


def answers_waiting(store: QuizStore, state: ReaderState) -> None:
    """A finished reader of a quiz that reveals on close: their own answers, no truth, no figures."""
    st.info(f"Done: your {len(state.answered)} answers are saved. The truth, the model's reading and your "
               "figures are shown here when the teacher closes the quiz.", icon=":material/hourglass_top:")
    try:
        mine = store.my_answers(state.token)
    except QuizError as exc:
        show_error(exc)
        return
    st.dataframe(mine, hide_index=True, key="quiz_my_answers")
    st.button("Check whether the quiz is closed", icon=":material/refresh:", key="quiz_check_closed")


# ---------------------------------------------------------------------------- teacher
def create_form(store: QuizStore) -> None:
    """A new quiz: films from the bundled set or the dataset folder of the settings, seeded order,
    optional time limit. The teacher key is shown once."""
    st.subheader("Create a quiz")
    offered = sources(data_dir())
    with st.form("quiz_create"):
        pick = st.selectbox("Films from", range(len(offered)), format_func=lambda k: offered[k][0],
                            key="quiz_new_source")
        n_films = st.number_input("Number of films (half NORMAL, half PNEUMONIA; one per patient)", min_value=2,
                                  max_value=400, value=min(DEFAULT_QUIZ_FILMS, len(bundled_table())), step=1,
                                  key="quiz_new_films")
        seed = st.text_input("Seed of the film order (blank: a random one, recorded)", key="quiz_new_seed")
        limit = st.number_input("Time limit per reader in minutes (0: none)", min_value=0.0,
                                max_value=float(MAX_TIME_LIMIT_MINUTES), value=0.0, step=5.0, key="quiz_new_limit")
        reveal = st.radio("Readers see the truth per film", REVEAL_POLICIES, format_func=REVEAL_LABELS.get,
                          index=REVEAL_POLICIES.index(DEFAULT_REVEAL), key="quiz_new_reveal")
        made = st.form_submit_button("Create the quiz", type="primary", icon=":material/add_circle:")
    if made:
        seed_text = seed.strip()
        if seed_text and not (seed_text.isascii() and seed_text.isdigit() and int(seed_text) < SEED_LIMIT):
            st.error(f"The seed must be a whole number from 0 to {SEED_LIMIT - 1}, got {seed_text[:40]!r}.",
                     icon=":material/error:")
            return
        try:
            new = store.new_quiz(int(n_films), int(seed_text) if seed_text else None, offered[pick][1],
                                 float(limit) if limit > 0 else None, reveal)
        except QuizError as exc:
            show_error(exc, "Could not create the quiz: ")
            return
        st.session_state[CREATED_KEY] = new.to_json()
    new = st.session_state.get(CREATED_KEY)
    if not new:
        return
    limit_text = f"{new['time_limit_minutes']:g} minutes a reader" if new["time_limit_minutes"] else "no time limit"
    reveal_text = ("readers see the truth when you close it" if new["reveal"] == "on_close"
                   else "each reader sees the truth on finishing")
    st.success(f"Quiz created: {new['films']} films, seed {new['seed']}, {limit_text}, {reveal_text}.",
               icon=":material/check:")
    st.markdown("**Join code** (give it to the readers):")
    st.code(new["code"], language=None)
    st.markdown("**Teacher key** (for the class view and to close the quiz):")
    st.code(new["teacher_key"], language=None)
    st.warning("The teacher key is shown only now and is not stored anywhere readable: copy it somewhere safe. "
               "Without it no one can see the class results.", icon=":material/key:")
    if st.button("I have copied the key: hide it", key="quiz_hide_key"):
        st.session_state.pop(CREATED_KEY, None)
        st.rerun()


# ---------------------------------------------------------------------------- page
st.title("Reader quiz")
st.markdown("Read chest X-rays blind, then see where you stand on the model's ROC curve. A teaching exercise "
            "with public, de-identified films; it measures nothing clinical.")
store = get_store()
if store is None:
    st.stop()
show_flash()
role = st.radio("Role", ROLES, horizontal=True, key="quiz_role", label_visibility="collapsed")
if role == ROLES[0]:
    reader_view(store)
else:
    create_form(store)
    st.caption("The class results are on the Class view page (needs the teacher key).")
