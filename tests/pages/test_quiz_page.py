"""The reader-quiz pages (app_pages/quiz.py, app_pages/class_view.py) driven with Streamlit's AppTest
against a real SQLite quiz database in a temporary folder, with no dataset folder (a fresh clone:
the bundled teaching set in assets/examples/ serves).

A teacher creates a quiz on the page; a reader joins, answers every film blind in their own order, sees
only their answers until the teacher closes the quiz, then the result chart's operating point, AUC and
kappa, checked against figures computed here from the answers given and the truth (read with the teacher key).
Resuming from ``?reader=<token>``, every refusal of the store (unknown or closed code, taken or bad nickname, a
second different answer, time up, read-only and locked database) shows a message and no exception, and loses no
stored answer. Hostile nicknames show as typed.
"""
from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from streamlit.testing.v1 import AppTest

from pneumo_core.quiz.rules import QuizStore
from tests.helpers.charts import chart_titled, charts
from tests.helpers.support import require

ROOT = Path(__file__).resolve().parents[2]
QUIZ_PAGE = "app_pages/quiz.py"
CLASS_PAGE = "app_pages/class_view.py"
TIMEOUT = 120
TEACHER_ROLE = "I am a teacher: create a quiz"



@pytest.fixture
def db_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'quiz.sqlite3'}"
    monkeypatch.setenv("PNEUMO_DB_URL", url)
    monkeypatch.setenv("PNEUMO_DATA_DIR", str(tmp_path / "no-dataset-here"))  # a fresh clone has none
    return url


# ---------------------------------------------------------------------------- helpers
def healthy(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert any("not a diagnostic device" in w.value for w in at.warning)


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def open_page(path: str = QUIZ_PAGE, token: str | None = None):
    """``path`` opened through app.py, the frame that shows the disclaimer on every page."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if token:
        at.query_params["reader"] = token
    at.run()  # Home first: before a run, switch_page finds a page by file name, not by its url_path
    at.switch_page(path)
    at.run()
    healthy(at)
    return at


def create_on_page(n_films: int, seed: int, reveal: str | None = None) -> tuple[str, str]:
    """A quiz made through the teacher's form (``reveal``: None leaves the form's default); returns
    (code, teacher key) as the page shows them."""
    at = open_page()
    at.radio(key="quiz_role").set_value(TEACHER_ROLE).run()
    assert [label for label in at.selectbox(key="quiz_new_source").options] == ["Bundled teaching set (40 films)"]
    assert at.radio(key="quiz_new_reveal").value == "on_close"  # new quizzes keep the key until closed
    at.number_input(key="quiz_new_films").set_value(n_films)
    at.text_input(key="quiz_new_seed").set_value(str(seed))
    if reveal is not None:
        at.radio(key="quiz_new_reveal").set_value(reveal)
    at.button[0].click().run()
    healthy(at)
    assert not errors(at), errors(at)
    assert any("shown only now" in w.value for w in at.warning)
    code, key = (c.value for c in at.code)
    return code, key


def join(code: str, nickname: str):
    at = open_page()
    at.text_input(key="quiz_join_code").set_value(code)
    at.text_input(key="quiz_join_nickname").set_value(nickname)
    at.button[0].click().run()
    healthy(at)
    return at


def answer(at, position: int, label: str, confidence: int):
    at.radio(key=f"quiz_label_{position}").set_value(label)
    at.radio(key=f"quiz_conf_{position}").set_value(confidence)
    next(b for b in at.button if b.label == "Submit answer").click().run()
    healthy(at)
    return at


def token_of(at) -> str:
    return at.query_params["reader"]


def order_of(url: str, at) -> tuple[int, ...]:
    """The film numbers in the order this reader gets them (recorded when they joined)."""
    store = QuizStore(url)
    try:
        return store.resume(token_of(at)).order
    finally:
        store.dispose()


def open_class_view(code: str, key: str):
    teacher = open_page(CLASS_PAGE)
    teacher.text_input(key="quiz_teacher_code").set_value(code)
    teacher.text_input(key="quiz_teacher_key").set_value(key)
    teacher.button[0].click().run()
    healthy(teacher)
    return teacher


def truth_of(url: str, code: str, key: str) -> list[str]:
    store = QuizStore(url)
    try:
        return list(store.results(code, key).films.sort_values("position")["truth"])
    finally:
        store.dispose()


def stored_answers(url: str, code: str, key: str):
    store = QuizStore(url)
    try:
        return store.results(code, key).answers
    finally:
        store.dispose()


def film_titles(at) -> str:
    """The titles of the charts on the page (the blind film's says which film it is)."""
    return " ".join(c.title for c in charts(at))


def plan(truth: list[str]) -> list[tuple[str, int]]:
    """A reader with mistakes: right on most films, wrong on the first NORMAL and the last PNEUMONIA."""
    first_normal = truth.index("NORMAL")
    last_pneumonia = len(truth) - 1 - truth[::-1].index("PNEUMONIA")
    other = {"NORMAL": "PNEUMONIA", "PNEUMONIA": "NORMAL"}
    return [(other[t] if k in (first_normal, last_pneumonia) else t, 1 + k % 5) for k, t in enumerate(truth)]


# ---------------------------------------------------------------------------- the whole quiz
def test_teacher_creates_reader_answers_blind_and_sees_own_point(db_url):
    code, key = create_on_page(8, seed=11)
    truth = truth_of(db_url, code, key)
    assert len(truth) == 8 and truth.count("NORMAL") == 4
    given = plan(truth)
    at = join(code.lower(), "Reader <b>One</b>")  # the code in any case; the nickname exactly as typed
    assert [t.value for t in at.text] == ["Reading as: Reader <b>One</b>"]
    films = QuizStore(db_url).results(code, key).films
    order = order_of(db_url, at)
    assert sorted(order) == list(range(1, 9))
    for position in order:  # this reader's own order; each film keeps its number in the quiz
        label, confidence = given[position - 1]
        shown = " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.text])
        spec = " ".join(c.text() for c in charts(at))
        assert f"Film {position} of 8" in film_titles(at) and not at.metric and not at.dataframe  # no model output
        for name in films["key"]:
            assert name not in shown and name not in spec  # no file name anywhere
        answer(at, position, label, confidence)
        assert [s.value for s in at.success] == [f"Film {position} saved: {label}, confidence {confidence}."]
    # Finished, but the quiz reveals on close: their own answers only, no truth, no figure, no chart.
    assert at.info[0].value.startswith("Done: your 8 answers are saved. The truth, the model's reading")
    mine = at.dataframe[0].value
    assert list(mine.columns) == ["film", "answer", "confidence"] and list(mine["film"]) == list(order)
    assert not at.metric and not charts(at) and "truth" not in mine.columns
    again = open_page(token=token_of(at))  # a reload gives the same: nothing to read off
    assert not again.metric and list(again.dataframe[0].value["film"]) == list(order)
    teacher = open_class_view(code, key)
    assert "readers see the truth when you close it" in " ".join(m.value for m in teacher.markdown)
    teacher.button(key="quiz_close").click().run()
    healthy(teacher)
    at = open_page(token=token_of(at))  # closed: the reader's result

    # expected figures, computed here from the answers and the truth
    y = np.array([t == "PNEUMONIA" for t in truth])
    called = np.array([a == "PNEUMONIA" for a, _ in given])
    sensitivity, specificity = (called & y).sum() / y.sum(), (~called & ~y).sum() / (~y).sum()
    scores = [c if a == "PNEUMONIA" else -c for a, c in given]
    auc = roc_auc_score(y, scores)
    threshold = QuizStore(db_url).results(code, key).thresholds["finetuned"]
    model_called = films.sort_values("position")["p_finetuned"].to_numpy() >= threshold
    kappa = cohen_kappa_score(called, model_called)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Films answered"] == "8 of 8"
    assert shown["Sensitivity"] == f"{sensitivity:.3f}" and shown["Specificity"] == f"{specificity:.3f}"
    assert shown["Your AUC"] == f"{auc:.3f}"
    assert shown["Kappa with the model"] == f"{kappa:.3f}"
    chart = chart_titled(at, "Your reading against")
    points = chart.rows()
    you = points[points["series"].str.startswith("you:")]
    assert list(you["fpr"]) == [pytest.approx(1 - specificity)] and list(you["tpr"]) == [pytest.approx(sensitivity)]
    series = set(points["series"])
    assert any(name.startswith("model on these films") for name in series)
    assert "model, full test split" in series and any(name.startswith("you, from your confidence") for name in series)
    assert chart.spec["width"] == chart.spec["height"]  # square ROC axes
    title = chart.title
    assert "Fine-tuned MobileNetV2" in title and f"quiz {code}: 8 films" in title and f"{threshold:.3f}" in title
    review = at.dataframe[0].value
    assert list(review["truth"]) == truth and list(review["your answer"]) == [a for a, _ in given]
    assert list(review["correct"]) == [a == t for (a, _), t in zip(given, truth)]

    # the class view: wrong key refused, right key shows this reader's figures
    teacher = open_page(CLASS_PAGE)
    teacher.text_input(key="quiz_teacher_code").set_value(code)
    teacher.text_input(key="quiz_teacher_key").set_value(key + "x")
    teacher.button[0].click().run()
    healthy(teacher)
    assert errors(teacher) == [f"Wrong teacher key for quiz {code}"] and not teacher.table and not teacher.dataframe
    teacher.text_input(key="quiz_teacher_key").set_value(key)
    teacher.button[0].click().run()
    healthy(teacher)
    readers = teacher.dataframe[0].value
    assert list(readers["nickname"]) == ["Reader <b>One</b>"]  # a dataframe cell: shown as typed
    assert readers["sensitivity"].iloc[0] == f"{sensitivity:.3f}"
    assert readers["specificity"].iloc[0] == f"{specificity:.3f}"
    assert teacher.download_button(key="quiz_csv").label == "Download every answer (CSV)"
    hardest = teacher.dataframe[1].value
    assert sorted(hardest["film"]) == sorted(k + 1 for k, ((a, _), t) in enumerate(zip(given, truth)) if a != t)


def test_resume_from_the_token_in_the_url(db_url):
    code, key = create_on_page(4, seed=2)
    first = join(code, "resumer")
    token = token_of(first)
    order = order_of(db_url, first)
    answer(first, order[0], "NORMAL", 4)
    answer(first, order[1], "PNEUMONIA", 2)
    again = open_page(token=token)  # a reload: a new session, only the URL is left
    assert [t.value for t in again.text] == ["Reading as: resumer"]
    assert "2 of 4 films answered" in again.get("progress")[0].proto.text
    assert f"Film {order[2]} of 4" in film_titles(again)  # the same order as before
    answer(again, order[2], "NORMAL", 1)
    assert list(stored_answers(db_url, code, key)["position"]) == sorted(order[:3])

    lost = open_page(token="not-a-token-of-this-server")
    assert errors(lost) == ["This quiz session is not known here; join again with the code and a nickname"]
    assert "reader" not in lost.query_params and lost.text_input(key="quiz_join_code") is not None


# ---------------------------------------------------------------------------- bad input
def test_bad_codes_and_nicknames_get_messages(db_url):
    code, key = create_on_page(2, seed=1)
    assert errors(join("ZZZZZZ", "anna")) == ["Could not join: no quiz has the code 'ZZZZZZ'; check the code with "
                                              "your teacher"]
    join(code, "Anna")
    taken = join(code, "ANNA")
    assert errors(taken) == ["Could not join: the nickname 'ANNA' is taken in this quiz; choose another"]
    assert "reader" not in taken.query_params
    long = join(code, "x" * 10_000)
    assert errors(long) == ["Could not join: the nickname is 10000 characters long; use at most 40"]
    script = join(code, "<script>alert(1)</script>")
    assert not errors(script) and [t.value for t in script.text] == ["Reading as: <script>alert(1)</script>"]
    assert errors(join(code, "   ")) == ["Could not join: choose a nickname (any name you like; no real name needed)"]
    store = QuizStore(db_url)
    store.close(code, key)
    assert errors(join(code, "late")) == [f"Could not join: quiz {code} is closed; ask your teacher for a new code"]
    assert sorted(QuizStore(db_url).results(code, key).readers["nickname"]) == ["<script>alert(1)</script>", "Anna"]


def test_a_second_different_answer_is_refused_and_the_first_kept(db_url):
    code, key = create_on_page(2, seed=4)
    one = join(code, "two-tabs")
    other = open_page(token=token_of(one))  # the same reader in a second tab, both on their first film
    first, second = order_of(db_url, one)
    answer(one, first, "NORMAL", 3)
    answer(other, first, "PNEUMONIA", 5)
    assert errors(other) == [f"Film {first} not saved: film {first} is already answered (NORMAL, confidence 3); an "
                             "answer cannot be changed"]
    assert f"Film {second} of 2" in film_titles(other)  # moved on to the next film
    stored = stored_answers(db_url, code, key)
    assert list(zip(stored["position"], stored["answer"], stored["confidence"])) == [(first, "NORMAL", 3)]
    # a form sent without choosing: a message, nothing stored
    next(b for b in one.button if b.label == "Submit answer").click().run()
    assert errors(one) == [f"Film {second}: choose NORMAL or PNEUMONIA and how sure you are, then submit."]
    assert len(stored_answers(db_url, code, key)) == 1


@pytest.mark.slow
def test_an_answer_after_the_time_limit_is_refused(db_url):
    store = QuizStore(db_url)
    made = store.new_quiz(2, seed=3, time_limit_minutes=4 / 60, reveal="at_end")  # four seconds
    at = join(made.code, "slow")
    assert "Time left: 0 min" in " ".join(c.value for c in at.caption)
    state = store.resume(token_of(at))
    first = state.order[0]
    assert at.radio(key=f"quiz_label_{first}") is not None  # still in time: the answer form is there
    time.sleep(max(0.0, (state.deadline - datetime.now(UTC)).total_seconds()) + 0.5)
    answer(at, first, "PNEUMONIA", 2)
    assert len(errors(at)) == 1 and errors(at)[0].startswith(f"Film {first} not saved: time is up (the limit ended")
    assert any("Time is up: 0 of 2 films answered" in i.value for i in at.info)
    assert {m.label: m.value for m in at.metric}["Films answered"] == "0 of 2"  # results of nothing, no crash
    assert store.results(made.code, made.teacher_key).answers.empty


# ---------------------------------------------------------------------------- the database
def test_a_read_only_database_gets_a_message(db_url, tmp_path, monkeypatch):
    path = tmp_path / "quiz.sqlite3"
    made = QuizStore(db_url).new_quiz(2, seed=1)  # the schema and a quiz exist
    # A read-only connection (as root, chmod would not stop writes); the cwd holds the "file:" folder the
    # store's mkdir makes for a URI filename.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PNEUMO_DB_URL", f"sqlite:///file:{path}?mode=ro&uri=true")
    at = join(made.code, "reader")
    assert len(errors(at)) == 1 and "is read-only: give this program write access" in errors(at)[0]
    assert QuizStore(db_url).results(made.code, made.teacher_key).readers.empty


@pytest.mark.slow
def test_a_locked_database_gets_a_message_and_the_answer_goes_in_afterwards(db_url, tmp_path):
    code, key = create_on_page(2, seed=6)
    at = join(code, "patient")
    first = order_of(db_url, at)[0]
    holder = sqlite3.connect(tmp_path / "quiz.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock past the busy timeout
    try:
        answer(at, first, "NORMAL", 2)
        assert len(errors(at)) == 1 and "is locked by another program; try again in a moment" in errors(at)[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    answer(at, first, "NORMAL", 2)
    assert [s.value for s in at.success] == [f"Film {first} saved: NORMAL, confidence 2."]
    assert len(stored_answers(db_url, code, key)) == 1


def test_a_bad_database_url_is_a_message(db_url, monkeypatch):
    monkeypatch.setenv("PNEUMO_DB_URL", "no url at all")
    for page in (QUIZ_PAGE, CLASS_PAGE):
        at = open_page(page)
        assert errors(at) == ["The quiz database cannot be used: PNEUMO_DB_URL is not a database URL (e.g. "
                              "sqlite:///quiz.sqlite3 or postgresql+psycopg://user@host/db)"]


# ---------------------------------------------------------------------------- review with Grad-CAM, navigation
def test_review_grad_cam_runs_the_shipped_model(db_url):
    require((ROOT / "models" / "finetuned.keras").is_file(), "shipped model models/finetuned.keras needed")
    made = QuizStore(db_url).new_quiz(2, seed=9, reveal="at_end")
    at = join(made.code, "looker")
    for position in order_of(db_url, at):
        answer(at, position, "NORMAL", 5)
    saved = QuizStore(db_url).results(made.code, made.teacher_key).films["p_finetuned"].iloc[0]
    at.toggle(key="quiz_review_gradcam").set_value(True).run(timeout=600)
    healthy(at)
    captions = [c for image in at.get("image") for c in image.captions]
    shown = next(c for c in captions if c.startswith("Grad-CAM"))
    assert f"P(pneumonia) {saved:.3f}" in shown, (shown, saved)
    assert any("**not** an outline of a lesion" in c.value for c in at.caption)


def test_quiz_pages_are_in_the_app_navigation(db_url):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    for page in ("app_pages/quiz.py", "app_pages/class_view.py"):
        at.switch_page(page).run()
        healthy(at)
        assert not errors(at)


def test_bad_quiz_settings_get_messages(db_url):
    at = open_page()
    at.radio(key="quiz_role").set_value(TEACHER_ROLE).run()
    at.number_input(key="quiz_new_films").set_value(60)
    at.button[0].click().run()
    healthy(at)
    assert errors(at) == ["Could not create the quiz: asked for 60 films (30 NORMAL), but the source has 20 NORMAL "
                          "patients; ask for at most 40"]
    at.number_input(key="quiz_new_films").set_value(4)
    for seed in ("seven", "9" * 30, "-1"):
        at.text_input(key="quiz_new_seed").set_value(seed)
        at.button[0].click().run()
        healthy(at)
        assert errors(at) == [f"The seed must be a whole number from 0 to 2147483647, got {seed!r}."] and not at.code


def test_closing_the_quiz_in_the_class_view_shows_the_reader_their_result(db_url):
    code, key = create_on_page(4, seed=8)
    reader = join(code, "half-way")
    first = order_of(db_url, reader)[0]
    answer(reader, first, "PNEUMONIA", 5)
    join(code, "no answers yet")
    teacher = open_class_view(code, key)
    teacher.button(key="quiz_close").click().run()
    healthy(teacher)
    assert "quiz closed" in " ".join(m.value for m in teacher.markdown)
    readers = teacher.dataframe[0].value.set_index("nickname")
    assert list(readers.index) == ["half-way", "no answers yet"]
    assert list(readers.loc["no answers yet", ["answered", "sensitivity", "specificity", "auc", "kappa"]]) == \
        [0, "n/a", "n/a", "n/a", "n/a"]
    back = open_page(token=token_of(reader))
    assert any("The quiz was closed: 1 of 4 films answered" in i.value for i in back.info)
    assert {m.label: m.value for m in back.metric}["Films answered"] == "1 of 4"
    assert list(back.dataframe[0].value["your answer"].fillna("-")) == [
        "PNEUMONIA" if film == first else "-" for film in range(1, 5)]


def test_a_quiz_from_the_dataset_folder_of_the_settings(data_root, db_url, monkeypatch):
    monkeypatch.setenv("PNEUMO_DATA_DIR", str(data_root))
    at = open_page()
    at.radio(key="quiz_role").set_value(TEACHER_ROLE).run()
    source = at.selectbox(key="quiz_new_source")
    assert source.options[1].startswith("Dataset test split (")
    source.set_value(1)
    at.number_input(key="quiz_new_films").set_value(4)
    at.button[0].click().run()
    healthy(at)
    code, key = (c.value for c in at.code)
    films = QuizStore(db_url).results(code, key).films
    test_dir = (data_root / "test").resolve()  # the data folder may be a symbolic link
    assert all(Path(p).resolve().is_relative_to(test_dir) and Path(p).is_file() for p in films["path"])
    reader = join(code, "folder reader")
    assert f"Film {order_of(db_url, reader)[0]} of 4" in film_titles(reader)


# ---------------------------------------------------------------------------- the answer key, user text
def test_a_quiz_revealing_at_the_end_shows_the_truth_on_finishing(db_url):
    code, key = create_on_page(2, seed=5, reveal="at_end")
    assert QuizStore(db_url).quiz_info(code)["reveal"] == "at_end"
    at = join(code, "quick")
    for position in order_of(db_url, at):
        answer(at, position, "NORMAL", 3)
    assert {m.label: m.value for m in at.metric}["Films answered"] == "2 of 2"
    assert set(at.dataframe[0].value["truth"]) <= {"NORMAL", "PNEUMONIA"}
    assert "each reader sees the truth on finishing" in " ".join(m.value for m in open_class_view(code, key).markdown)


HOSTILE = ("[Key expired](https://evil.example)", "<b>html</b>", "$x$", "=1+2")


def test_hostile_nicknames_are_shown_as_typed(db_url):
    store = QuizStore(db_url)
    made = store.new_quiz(2, seed=6)
    for name in HOSTILE:
        at = join(made.code, name)
        assert [t.value for t in at.text] == [f"Reading as: {name}"]  # st.text: never Markdown
        for position in (1, 2):  # both films, one of each class: every reader gets a point on the chart
            store.answer(token_of(at), position, "NORMAL", 2)
    teacher = open_class_view(made.code, made.teacher_key)
    # A dataframe cell is never Markdown (st.table's are: even escaped, a bare URL there becomes a live link; the
    # real browser test checks no link is drawn). No nickname reaches a Markdown element of the page.
    assert list(teacher.dataframe[0].value["nickname"]) == list(HOSTILE)
    for table in teacher.table:
        assert not any(name in str(table.value) for name in HOSTILE)
    markdown = " ".join([m.value for m in teacher.markdown] + [c.value for c in teacher.caption]
                        + [h.value for h in teacher.subheader])
    assert not any(name in markdown for name in HOSTILE)
    # Vega-Lite draws text marks as plain text: each reader's point carries the nickname as typed, never escaped
    chart = chart_titled(teacher, "The class against")
    rows = chart.rows()
    assert sorted(rows["nickname"].dropna()) == sorted(HOSTILE)  # the points' tooltips
    assert sorted(rows["label"].dropna().str.split("\n").explode()) == sorted(HOSTILE)  # the text marks
    assert "&lt;" not in chart.text() and "&amp;" not in chart.text()
