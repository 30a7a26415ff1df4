"""Quiz storage against real databases: a SQLite file (the default) and a PostgreSQL 15 cluster
that a fixture (tests/helpers/postgres.py) makes in a temporary folder, on a free 127.0.0.1 port, and stops afterwards.

The same storage tests run on both; SQLite-only failures (read-only file, locked file, not a
database) and the CLI follow."""
import io
import json
import os
import pwd
import shutil
import socket
import sqlite3
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from pneumo_core import cli
from pneumo_core.config import CLASS_NAMES
from pneumo_core.errors import (
    AnswerConflict,
    InvalidAnswer,
    KeyWithheld,
    NicknameError,
    NicknameTaken,
    NotFinished,
    QuizClosed,
    StorageError,
    TimeUp,
    UnknownQuiz,
    UnknownReader,
    WrongKey,
)
from pneumo_core.quiz.database import default_url
from pneumo_core.quiz.reader_study import reader_table
from pneumo_core.quiz.rules import QuizStore
from pneumo_core.review.examples import example_films
from pneumo_core.storage.migrate import head_revision
from tests.helpers.postgres import postgres  # noqa: F401 (a fixture)
from tests.unit.test_cli import run_cli


class Clock:
    """A settable UTC clock, so a test can step past a time limit without waiting."""

    def __init__(self):
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self):
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'quiz.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def store(db_url):
    opened = QuizStore(db_url)
    yield opened
    opened.dispose()


def _answers(k: int, n: int) -> dict[int, tuple[str, int]]:
    """Reader k's answers: a fixed, varied pattern so every reader's row can be checked."""
    return {p: (CLASS_NAMES[(k + p) % 2], (k * p) % 5 + 1) for p in range(1, n + 1)}


# ---------------------------------------------------------------------------- both databases
def test_a_reader_takes_a_quiz_and_sees_the_truth_only_at_the_end(store):
    quiz = store.new_quiz(n_films=6, seed=3, reveal="at_end")
    assert len(quiz.code) == 6 and set(quiz.code) <= set("ABCDEFGHJKMNPQRSTUVWXYZ23456789")
    ann = store.join(quiz.code.lower(), "  Ann  ")  # codes are typed in any case; names are trimmed
    bob = store.join(f" {quiz.code[:3]}-{quiz.code[3:]} ", "Bob")
    assert (ann.nickname, ann.n_films, ann.answered, ann.next_position) == ("Ann", 6, (), ann.order[0])
    assert sorted(ann.order) == [1, 2, 3, 4, 5, 6]
    film = store.film(ann.token, 1)
    assert film.path.is_file() and film.answer is None
    assert not hasattr(film, "truth") and film.path.name.startswith("ex")  # neutral name, no truth
    for position, (answer, confidence) in _answers(1, 5).items():
        store.answer(ann.token, position, answer, confidence)
    assert store.resume(ann.token).next_position == 6
    with pytest.raises(NotFinished, match="1 of 6 films still to answer"):
        store.review(ann.token)
    store.answer(bob.token, 1, "PNEUMONIA", 2)
    store.answer(ann.token, 6, "NORMAL", 5)
    state = store.resume(ann.token)
    assert state.finished and state.next_position is None
    review = store.review(ann.token)
    assert set(review.answers["nickname"]) == {"Ann"} and list(review.readers["nickname"]) == ["Ann"]
    assert len(review.films) == 6 and set(review.films["truth"]) <= set(CLASS_NAMES)
    assert review.thresholds["finetuned"] == pytest.approx(0.5485, abs=1e-3)
    with pytest.raises(NotFinished):
        store.review(bob.token)  # Bob has not finished: no truth for him, and never Ann's answers
    everything = store.results(quiz.code, quiz.teacher_key)
    assert list(everything.readers["nickname"]) == ["Ann", "Bob"]
    assert list(everything.readers["answered"]) == [6, 1] and list(everything.readers["finished"]) == [True, False]


def test_answers_survive_a_server_restart(db_url):
    first = QuizStore(db_url)
    quiz = first.new_quiz(n_films=5, seed=8)
    token = first.join(quiz.code, "night owl").token
    order = first.resume(token).order
    for position in (1, 2, 3):
        first.answer(token, position, "PNEUMONIA", position)
    first.dispose()  # the server goes away: every pooled connection closed

    second = QuizStore(db_url)  # a new process, a new engine, the same database
    state = second.resume(token)
    assert state.answered == (1, 2, 3) and state.nickname == "night owl"
    assert state.order == order and state.next_position == [p for p in order if p > 3][0]
    assert second.film(token, 2).answer == "PNEUMONIA" and second.film(token, 2).confidence == 2
    second.answer(token, 4, "NORMAL", 1)
    second.answer(token, 5, "NORMAL", 5)
    results = second.results(quiz.code, quiz.teacher_key)
    assert results.answers[["position", "answer", "confidence"]].values.tolist() == [
        [1, "PNEUMONIA", 1], [2, "PNEUMONIA", 2], [3, "PNEUMONIA", 3], [4, "NORMAL", 1], [5, "NORMAL", 5]]
    second.dispose()


def test_a_double_submit_is_stored_once_and_a_changed_answer_refused(store):
    quiz = store.new_quiz(n_films=3, seed=1)
    token = store.join(quiz.code, "clicker").token
    assert store.answer(token, 1, "NORMAL", 4).repeated is False
    assert store.answer(token, 1, "normal", 4).repeated is True
    with pytest.raises(AnswerConflict, match="film 1 is already answered \\(NORMAL, confidence 4\\)"):
        store.answer(token, 1, "PNEUMONIA", 4)
    with pytest.raises(AnswerConflict):
        store.answer(token, 1, "NORMAL", 3)
    assert len(store.results(quiz.code, quiz.teacher_key).answers) == 1


def test_the_same_answer_sent_at_once_from_ten_tabs_is_stored_once(store):
    quiz = store.new_quiz(n_films=2, seed=2)
    token = store.join(quiz.code, "tabs").token
    barrier, outcomes = threading.Barrier(10), []

    def send():
        barrier.wait()
        outcomes.append(store.answer(token, 2, "PNEUMONIA", 5).repeated)

    threads = [threading.Thread(target=send) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False] + [True] * 9
    assert len(store.results(quiz.code, quiz.teacher_key).answers) == 1


def test_30_readers_answering_at_once_lose_and_duplicate_nothing(db_url):
    n_readers, n_films = 30, 6
    teacher = QuizStore(db_url)
    quiz = teacher.new_quiz(n_films=n_films, seed=4)
    barrier, errors = threading.Barrier(n_readers), []

    def reader(k):
        own = QuizStore(db_url)  # its own engine and connections, as a separate server process has
        try:
            barrier.wait()
            token = own.join(quiz.code, f"reader {k}").token
            for position, (answer, confidence) in _answers(k, n_films).items():
                assert own.answer(token, position, answer, confidence).repeated is False
                assert own.answer(token, position, answer, confidence).repeated is True  # a double click
        except Exception as exc:  # reported below: a thread's failure must fail the test
            errors.append(repr(exc))
        finally:
            own.dispose()

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(n_readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    results = teacher.results(quiz.code, quiz.teacher_key)
    assert len(results.readers) == n_readers and results.readers["finished"].all()
    assert len(results.answers) == n_readers * n_films
    assert not results.answers.duplicated(["nickname", "position"]).any()
    stored = {(r.nickname, r.position): (r.answer, r.confidence) for r in results.answers.itertuples()}
    assert stored == {(f"reader {k}", p): a for k in range(n_readers) for p, a in _answers(k, n_films).items()}
    teacher.dispose()


def test_nicknames_are_checked_and_kept_as_typed(store):
    quiz = store.new_quiz(n_films=2, seed=5)
    with pytest.raises(NicknameError, match="10000 characters long; use at most 40"):
        store.join(quiz.code, "x" * 10_000)
    for empty in ("", "   ", "\t"):
        with pytest.raises(NicknameError, match="choose a nickname"):
            store.join(quiz.code, empty)
    with pytest.raises(NicknameError, match="control or invisible"):
        store.join(quiz.code, "two\nlines")
    script = "<script>alert('x')</script>"
    assert store.join(quiz.code, script).nickname == script
    store.join(quiz.code, "Zoë")
    with pytest.raises(NicknameTaken, match="taken"):
        store.join(quiz.code, "ZOË")
    with pytest.raises(NicknameTaken):
        store.join(quiz.code, f"  {script.upper()}  ")
    assert store.join(quiz.code, "y" * 40).nickname == "y" * 40
    names = store.results(quiz.code, quiz.teacher_key).readers["nickname"].tolist()
    assert names == [script, "Zoë", "y" * 40]


def test_codes_keys_closing_and_time_limits(db_url):
    clock = Clock()
    store = QuizStore(db_url, clock=clock)
    quiz = store.new_quiz(n_films=4, seed=6, time_limit_minutes=10)
    with pytest.raises(UnknownQuiz, match="no quiz has the code 'NOPE99'"):
        store.join("nope99", "a")
    with pytest.raises(UnknownQuiz, match="of 10000 characters"):
        store.join("Q" * 10_000, "a")
    with pytest.raises(WrongKey, match=f"wrong teacher key for quiz {quiz.code}"):
        store.results(quiz.code, quiz.teacher_key[:-1] + ("A" if quiz.teacher_key[-1] != "A" else "B"))
    with pytest.raises(UnknownReader):
        store.resume("not-a-token")
    late = store.join(quiz.code, "late")
    assert late.seconds_left == pytest.approx(600)
    clock.now += timedelta(minutes=9, seconds=59)
    store.answer(late.token, 1, "NORMAL", 2)
    clock.now += timedelta(seconds=2)
    with pytest.raises(TimeUp, match="time is up .* your 1 answers are saved"):
        store.answer(late.token, 2, "NORMAL", 2)
    assert store.answer(late.token, 1, "NORMAL", 2).repeated  # a resent answer is still no error
    assert store.resume(late.token).finished
    with pytest.raises(KeyWithheld, match="your 1 answers are saved; the truth .* when the teacher closes the quiz"):
        store.review(late.token)  # a new quiz reveals on close
    early = store.join(quiz.code, "early")  # each reader's limit counts from their own join
    store.answer(early.token, 1, "PNEUMONIA", 3)
    store.close(quiz.code, quiz.teacher_key)
    store.close(quiz.code, quiz.teacher_key)  # closing twice is fine
    with pytest.raises(QuizClosed, match="closed"):
        store.answer(early.token, 2, "PNEUMONIA", 3)
    with pytest.raises(QuizClosed, match="closed"):
        store.join(quiz.code, "later")
    assert store.resume(early.token).finished and store.quiz_info(quiz.code)["closed"]
    assert len(store.review(late.token).answers) == 1 and set(store.review(late.token).films["truth"]) <= {
        "NORMAL", "PNEUMONIA"}
    with pytest.raises(WrongKey):
        store.close(quiz.code, "guess")
    store.dispose()


def test_answers_must_be_a_class_a_confidence_and_a_film(store):
    quiz = store.new_quiz(n_films=3, seed=7)
    token = store.join(quiz.code, "careful").token
    for position, answer, confidence, words in [
        (1, "maybe", 3, "neither NORMAL nor PNEUMONIA"), (1, "NORMAL", 0, "from 1 to 5"),
        (1, "NORMAL", 6, "from 1 to 5"), (1, "NORMAL", 2.5, "whole number"), (1, "NORMAL", True, "whole number"),
        (0, "NORMAL", 3, "film number"), (4, "NORMAL", 3, "from 1 to 3"),
    ]:
        with pytest.raises(InvalidAnswer, match=words):
            store.answer(token, position, answer, confidence)
    assert store.resume(token).answered == ()


def test_the_teacher_key_and_reader_tokens_are_stored_only_hashed(store, db_url):
    quiz = store.new_quiz(n_films=2, seed=9)
    token = store.join(quiz.code, "hash check").token
    engine = create_engine(db_url)
    with engine.connect() as conn:
        stored = [str(v) for name in inspect(conn).get_table_names()
                  for row in conn.execute(text(f'SELECT * FROM "{name}"')) for v in row]
    engine.dispose()
    assert quiz.code in stored
    assert not any(quiz.teacher_key in v or token in v for v in stored)


def test_a_database_of_a_newer_release_is_refused(db_url):
    QuizStore(db_url).dispose()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(StorageError, match=f"made by a newer version of the workbench \\(schema revision 0099; this "
                                           f"version knows up to {head_revision()}\\): use that version, or set "
                                           "PNEUMO_DB_URL"):
        QuizStore(db_url)


# ---------------------------------------------------------------------------- SQLite only
def test_the_default_is_a_sqlite_file_in_the_users_data_folder_in_wal_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("PNEUMO_DB_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data home"))
    path = tmp_path / "data home" / "pneumo-workbench" / "quiz.sqlite3"
    assert default_url() == f"sqlite:///{path}"
    store = QuizStore()
    store.new_quiz(n_films=2, seed=1)
    store.dispose()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version FROM quiz_schema").fetchall() == [(2,)]  # the release before refuses it
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]


def test_a_locked_database_gets_a_clear_message_and_loses_nothing(tmp_path):
    path = tmp_path / "quiz.sqlite3"
    store = QuizStore(f"sqlite:///{path}", busy_timeout_s=0.2)
    quiz = store.new_quiz(n_films=3, seed=2)
    token = store.join(quiz.code, "patient reader").token
    store.answer(token, 1, "NORMAL", 1)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        with pytest.raises(StorageError, match=f"the database {path} is locked by another program; try again"):
            store.answer(token, 2, "NORMAL", 2)
        with pytest.raises(StorageError, match="locked"):
            store.join(quiz.code, "newcomer")
        assert store.resume(token).answered == (1,)  # reading goes on (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.answer(token, 2, "NORMAL", 2).repeated is False
    assert store.resume(token).answered == (1, 2)
    store.dispose()


def test_a_read_only_database_file_gets_a_clear_message(tmp_path):
    """As root (CI) chmod means nothing, so a forked child drops to ``nobody`` before opening the file."""
    folder = Path(tempfile.mkdtemp(prefix="pneumo-ro-"))
    folder.chmod(0o777)
    path = folder / "quiz.sqlite3"
    url = f"sqlite:///{path}"
    try:
        store = QuizStore(url)
        quiz = store.new_quiz(n_films=3, seed=3)
        token = store.join(quiz.code, "reader").token
        store.answer(token, 1, "PNEUMONIA", 4)
        store.dispose()
        path.chmod(0o444)
        films = example_films(n=2, seed=1)  # read here: the child may not be allowed to read the checkout
        outcome = _unprivileged(lambda: _try_writes(url, quiz, token, films))
        assert outcome["answer"].startswith(f"StorageError: the database {path} is read-only")
        assert outcome["join"].startswith("StorageError: ") and "read-only" in outcome["join"]
        assert outcome["new"].startswith("StorageError: ") and "read-only" in outcome["new"]
        assert outcome["answered"] == [1]  # what was stored can still be read
        path.chmod(0o644)
        reopened = QuizStore(url)
        assert reopened.resume(token).answered == (1,)
        reopened.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _try_writes(url, quiz, token, films) -> dict:
    store = QuizStore(url)
    out = {"answered": list(store.resume(token).answered)}
    for name, attempt in (("answer", lambda: store.answer(token, 2, "NORMAL", 1)),
                          ("join", lambda: store.join(quiz.code, "another")),
                          ("new", lambda: store.create_quiz(films, "bundled", seed=1))):
        try:
            attempt()
            out[name] = "stored"
        except Exception as exc:  # the message is the point of the test
            out[name] = f"{type(exc).__name__}: {exc}"
    store.dispose()
    return out


def _unprivileged(work) -> dict:
    """Run ``work`` without root's right to write any file: in a forked child as ``nobody`` when
    root, else in this process."""
    if os.geteuid() != 0:
        return work()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            nobody = pwd.getpwnam("nobody")
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            result = json.dumps(work())
        except BaseException as exc:
            result = json.dumps({"child error": repr(exc)})
        with os.fdopen(write_end, "w") as pipe:
            pipe.write(result)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        result = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert "child error" not in result, result
    return result


def test_a_file_that_is_not_a_database_gets_a_clear_message(tmp_path):
    path = tmp_path / "notes.sqlite3"
    path.write_text("these are my lecture notes, not a database\n" * 100)
    with pytest.raises(StorageError, match=f"{path} is not a SQLite database"):
        QuizStore(f"sqlite:///{path}")
    with pytest.raises(StorageError, match="not a database URL"):
        QuizStore("this is not a url")


# ---------------------------------------------------------------------------- PostgreSQL only
def test_the_postgres_login_and_host_are_never_shown(postgres):  # noqa: F811 (the fixture)
    wrong = postgres.url("postgres").replace(postgres.password, "wrong-" + postgres.password)
    with pytest.raises(StorageError) as caught:
        QuizStore(wrong)
    message = str(caught.value)
    assert message == ("the database postgresql database postgres refused the login: check the user and password "
                       "in PNEUMO_DB_URL")
    unreachable = postgres.url("postgres").replace(f":{postgres.port}/", f":{_closed_port()}/")
    with pytest.raises(StorageError) as caught:
        QuizStore(unreachable)
    message = str(caught.value)
    assert message.startswith("cannot reach the database postgresql database postgres: check the host")
    for secret in (postgres.password, "quiz:", "127.0.0.1", str(postgres.port), "\n"):
        assert secret not in message


def _closed_port() -> int:
    with socket.socket() as probe:  # bound then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------------------- CLI
def test_cli_new_results_and_refusals(monkeypatch, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("PNEUMO_DB_URL", url)
    made = run_cli("quiz", "new", "--films", "4", "--seed", "11", "--json")
    assert made.returncode == 0, made.stderr
    quiz = json.loads(made.stdout)
    assert set(quiz) >= {"code", "teacher_key", "films"} and quiz["films"] == 4 and quiz["reveal"] == "on_close"
    store = QuizStore(url)
    for k, name in enumerate(["ann", "<b>bob</b>"]):
        token = store.join(quiz["code"], name).token
        for position, (answer, confidence) in _answers(k, 4).items():
            store.answer(token, position, answer, confidence)
    expected = store.results(quiz["code"], quiz["teacher_key"])
    store.dispose()

    shown = run_cli("quiz", "results", quiz["code"], "--teacher-key", quiz["teacher_key"], "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    figures = reader_table(expected.films, expected.answers, expected.thresholds["finetuned"]).set_index("nickname")
    assert [r["nickname"] for r in report["readers"]] == ["ann", "<b>bob</b>"]
    for reader in report["readers"]:
        assert len(reader["answers"]) == 4
        for col in ("sensitivity", "specificity", "auc", "kappa"):
            want = figures.loc[reader["nickname"], col]
            assert reader[col] == (None if want != want else pytest.approx(want)), col

    # The rest in this process (the same parser and handler, without a Python start each).
    capsys.readouterr()
    assert cli.main(["quiz", "results", quiz["code"], "--teacher-key", "guess", "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.strip() == f"error: wrong teacher key for quiz {quiz['code']}"
    assert cli.main(["quiz", "results", "ZZZZZZ", "--teacher-key", quiz["teacher_key"]]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.strip() == "error: no quiz has the code 'ZZZZZZ'; check the code with your teacher"
    assert cli.main(["quiz", "results", quiz["code"], "--teacher-key", quiz["teacher_key"], "--csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 1 + 8 and rows[0].startswith("nickname,film,example,truth,subtype,answer,confidence")
    assert cli.main(["quiz", "results", quiz["code"], "--teacher-key", quiz["teacher_key"]]) == 0
    table = capsys.readouterr().out
    assert "<b>bob</b>" in table and "sensitivity" in table and "answers (film:answer/confidence" in table
    assert cli.main(["quiz", "close", quiz["code"], "--teacher-key", quiz["teacher_key"]]) == 0
    assert capsys.readouterr().out.strip() == f"quiz {quiz['code']} closed"
    with pytest.raises(QuizClosed):
        QuizStore(url).join(quiz["code"], "too late")
    # no key given: one error line before any database work; the key from $PNEUMO_TEACHER_KEY
    monkeypatch.delenv("PNEUMO_TEACHER_KEY", raising=False)
    assert cli.main(["quiz", "results", quiz["code"], "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == ("error: give the teacher key ($PNEUMO_TEACHER_KEY, --teacher-key - to read "
                                         "it from standard input, or type it at the prompt)\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(quiz["teacher_key"] + "\n"))  # kept out of `ps`: read from stdin
    assert cli.main(["quiz", "results", quiz["code"], "--teacher-key", "-", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["closed"] is True
    monkeypatch.setenv("PNEUMO_TEACHER_KEY", quiz["teacher_key"])
    assert cli.main(["quiz", "results", quiz["code"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["closed"] is True
    assert cli.main(["quiz", "new", "--films", "2", "--reveal", "at-end", "--json"]) == 0
    at_end = json.loads(capsys.readouterr().out)
    assert at_end["reveal"] == "at_end" and QuizStore(url).quiz_info(at_end["code"])["reveal"] == "at_end"
    assert cli.main(["quiz", "new", "--films", "41"]) == 2
    assert "at most 40" in capsys.readouterr().err
    monkeypatch.setenv("PNEUMO_DB_URL", f"sqlite:///{tmp_path / 'no such folder' / 'x' / 'q.sqlite3'}")
    assert cli.main(["quiz", "new", "--films", "2", "--json"]) == 0  # the folder is made on first use
    assert json.loads(capsys.readouterr().out)["films"] == 2
