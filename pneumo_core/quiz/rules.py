"""Reader-quiz rules: quizzes, their films, readers and answers (stored by :mod:`pneumo_core.quiz.database`).

What the store enforces for every caller (the dashboard, the CLI, tests):

- A teacher creates a quiz and gets a short join code and a separate teacher key; only a salted
  scrypt hash of the key is stored. A reader joins with the code and a nickname (no real name is
  asked; 1-40 characters, unique per quiz ignoring case, stored and returned as typed) and gets a
  reader token to resume with; only its SHA-256 is stored.
- Each film is answered once (NORMAL/PNEUMONIA and a confidence 1-5), each answer in its own
  transaction. Sending the same answer again is a no-op; a different second answer is refused.
  Answers after the reader's time limit (counted from joining) or on a closed quiz are refused.
- Each reader gets the films in their own order, shuffled by a seed drawn when they join; seed and order are
  stored, so a reload shows the same order. A film keeps its number in the quiz (film 5 is the same film for
  every reader and in the class view); only the order in which it comes differs.
- A reader gets only their own answers. The truth per film (and the model's scores, and the reader's figures,
  which would give it away) comes by the quiz's reveal policy: "on_close" (the default for new quizzes) once
  the teacher closes the quiz; "at_end" (quizzes made before this policy existed) once the reader has finished
  (all films answered, time up, or quiz closed). All readers' answers need the teacher key.

Every refusal is a :class:`QuizError` whose text is one line for the person at the keyboard.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import numbers
import secrets
import unicodedata
from datetime import timedelta

import numpy as np
import pandas as pd
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, update

from pneumo_core.config import CLASS_NAMES, SHIPPED_VARIANTS
from pneumo_core.errors import (
    AnswerConflict,
    InvalidAnswer,
    KeyWithheld,
    NicknameError,
    NicknameTaken,
    NotFinished,
    QuizClosed,
    QuizError,
    StorageError,
    TimeUp,
    UnknownQuiz,
    UnknownReader,
    WrongKey,
)
from pneumo_core.quiz.database import (
    CODE_LENGTH,
    NICKNAME_MAX,
    REVEAL_POLICIES,
    QuizDatabase,
    answers,
    aware,
    films_table,
    guarded,
    quizzes,
    readers,
)
from pneumo_core.quiz.records import DEFAULT_REVEAL, Answer, NewQuiz, QuizResults, ReaderFilm, ReaderState
from pneumo_core.review.examples import example_films, film_path, score_column, source_name, thresholds

__all__ = ["QuizStore", "QuizError", "StorageError", "UnknownQuiz", "QuizClosed", "WrongKey", "NicknameError",
           "NicknameTaken", "UnknownReader", "InvalidAnswer", "AnswerConflict", "TimeUp", "NotFinished", "KeyWithheld",
           "NewQuiz", "REVEAL_POLICIES", "DEFAULT_REVEAL",
           "ReaderState", "ReaderFilm", "Answer", "QuizResults", "normalize_code", "check_nickname"]

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off a projector without mistakes
CONFIDENCE_LEVELS = (1, 2, 3, 4, 5)
DEFAULT_QUIZ_FILMS = 20
MAX_TIME_LIMIT_MINUTES = 24 * 60
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}


# ---------------------------------------------------------------------------- helpers
def normalize_code(text: str) -> str:
    """A join code as typed (any case, spaces or dashes) -> its stored form."""
    return "".join(ch for ch in str(text).upper() if ch not in " -\t")


def check_nickname(text: str) -> str:
    """The nickname trimmed, or :class:`NicknameError`. Kept as typed (HTML included): pages show it as text."""
    name = unicodedata.normalize("NFC", str(text)).strip()
    if not name:
        raise NicknameError("choose a nickname (any name you like; no real name needed)")
    if len(name) > NICKNAME_MAX:
        raise NicknameError(f"the nickname is {len(name)} characters long; use at most {NICKNAME_MAX}")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise NicknameError("the nickname holds control or invisible characters; use letters, digits and punctuation")
    return name


def _key_hash(key: str, salt: bytes) -> bytes:
    return hashlib.scrypt(key.encode(), salt=salt, **_SCRYPT)


def _token_hash(token: str) -> str:
    return hashlib.sha256(str(token).encode()).hexdigest()


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _reader_query():
    """A reader with what their state needs of their quiz (one row; no clashing column names)."""
    return (select(readers.c.id, readers.c.quiz_id, readers.c.nickname, readers.c.joined_at, readers.c.film_order,
                   quizzes.c.code, quizzes.c.source, quizzes.c.n_films, quizzes.c.time_limit_s, quizzes.c.closed_at,
                   quizzes.c.reveal)
            .join(quizzes, readers.c.quiz_id == quizzes.c.id))


def film_order(seed: int, n_films: int) -> tuple[int, ...]:
    """Film numbers 1..``n_films`` shuffled by ``seed`` (a reader's order)."""
    return tuple(int(p) + 1 for p in np.random.default_rng(seed).permutation(n_films))


def _stored_order(text: str | None, n_films: int) -> tuple[int, ...]:
    """The recorded order; a reader who joined before orders were recorded has the quiz's."""
    return tuple(int(p) for p in text.split(",")) if text else tuple(range(1, n_films + 1))


def _whole(value, what: str, low: int, high: int) -> int:
    """``value`` as an int from ``low`` to ``high`` (numpy integers too), else :class:`InvalidAnswer`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise InvalidAnswer(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------- the store
class QuizStore(QuizDatabase):
    """The quiz rules over one database (see :class:`QuizDatabase` for ``url``, ``busy_timeout_s``,
    ``clock``). Thread-safe: each call takes its own connection from the engine's pool, so one store
    can serve every session of a dashboard process."""

    # ------------------------------------------------------------------ teacher
    def new_quiz(self, n_films: int = DEFAULT_QUIZ_FILMS, seed: int | None = None, source=None,
                 time_limit_minutes: float | None = None, reveal: str = DEFAULT_REVEAL) -> NewQuiz:
        """A quiz of ``n_films`` drawn from ``source`` (None: the bundled set; else a dataset folder) in
        a seeded order (a random seed when None, recorded so the quiz can be repeated); ``reveal``: when
        readers see the truth, "on_close" or "at_end" (see the module's text)."""
        seed = secrets.randbelow(2 ** 31) if seed is None else int(seed)
        try:
            films = example_films(source, n=n_films, seed=seed)
            source = source_name(source)
        except (ValueError, FileNotFoundError) as exc:  # too many films, not a dataset folder
            raise QuizError(str(exc)) from None
        return self.create_quiz(films, source, seed, time_limit_minutes, reveal)

    @guarded
    def create_quiz(self, films: pd.DataFrame, source: str, seed: int,
                    time_limit_minutes: float | None = None, reveal: str = DEFAULT_REVEAL) -> NewQuiz:
        """Store a quiz of ``films`` (an :func:`examples.example_films` table, in quiz order)."""
        if reveal not in REVEAL_POLICIES:
            raise QuizError(f"the reveal policy must be {' or '.join(REVEAL_POLICIES)}, got {reveal!r}")
        if time_limit_minutes is not None and not (0 < time_limit_minutes <= MAX_TIME_LIMIT_MINUTES):
            raise QuizError(f"the time limit must be more than 0 and at most {MAX_TIME_LIMIT_MINUTES} minutes, "
                            f"got {time_limit_minutes}")
        if films.empty:
            raise QuizError("a quiz needs at least one film")
        key, salt = secrets.token_urlsafe(16), secrets.token_bytes(16)
        limits = thresholds()
        row = {"key_salt": salt, "key_hash": _key_hash(key, salt), "source": str(source), "seed": int(seed),
               "n_films": len(films), "created_at": self.now(), "reveal": reveal,
               "time_limit_s": None if time_limit_minutes is None else max(1, round(time_limit_minutes * 60)),
               **{f"threshold_{v}": limits.get(v) for v in SHIPPED_VARIANTS}}
        for _attempt in range(20):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            try:
                with self.transaction(write=True) as conn:
                    quiz_id = conn.execute(insert(quizzes).values(code=code, **row)).inserted_primary_key[0]
                    conn.execute(insert(films_table), [
                        {"quiz_id": quiz_id, "position": k + 1, "key": f.key, "example": f.example, "truth": f.truth,
                         "subtype": f.subtype, **{score_column(v): _number(getattr(f, score_column(v)))
                                                  for v in SHIPPED_VARIANTS}}
                        for k, f in enumerate(films.itertuples())])
            except sa_exc.IntegrityError:
                continue  # the random code is taken: draw another
            return NewQuiz(code, key, len(films), str(source), int(seed), time_limit_minutes, reveal)
        raise QuizError("could not find a free join code; try again")

    def _quiz(self, conn, code: str):
        quiz = conn.execute(select(quizzes).where(quizzes.c.code == normalize_code(code))).first()
        if quiz is None:
            shown = normalize_code(code)
            shown = repr(shown) if len(shown) <= 2 * CODE_LENGTH else f"of {len(shown)} characters"
            raise UnknownQuiz(f"no quiz has the code {shown}; check the code with your teacher")
        return quiz

    def _teacher_quiz(self, conn, code: str, teacher_key: str):
        quiz = self._quiz(conn, code)
        if not hmac.compare_digest(_key_hash(str(teacher_key), quiz.key_salt), quiz.key_hash):
            raise WrongKey(f"wrong teacher key for quiz {quiz.code}")
        return quiz

    @guarded
    def close(self, code: str, teacher_key: str) -> None:
        """Close the quiz: no more joins or answers; every reader may see their results and the truth."""
        with self.transaction(write=True) as conn:
            quiz = self._teacher_quiz(conn, code, teacher_key)
            if quiz.closed_at is None:
                conn.execute(update(quizzes).where(quizzes.c.id == quiz.id).values(closed_at=self.now()))

    @guarded
    def results(self, code: str, teacher_key: str) -> QuizResults:
        """Every reader's answers with the truth (teacher key only)."""
        with self.transaction() as conn:
            quiz = self._teacher_quiz(conn, code, teacher_key)
            return self._results(conn, quiz, reader_id=None)

    # ------------------------------------------------------------------ reader
    @guarded
    def quiz_info(self, code: str) -> dict:
        """What a join page may show before joining: films, time limit, open or closed."""
        with self.transaction() as conn:
            quiz = self._quiz(conn, code)
        return {"code": quiz.code, "films": quiz.n_films, "closed": quiz.closed_at is not None,
                "time_limit_minutes": None if quiz.time_limit_s is None else quiz.time_limit_s / 60,
                "reveal": quiz.reveal}

    @guarded
    def join(self, code: str, nickname: str) -> ReaderState:
        """A new reader of an open quiz, with their own film order; keep ``state.token`` to resume
        (see :meth:`resume`)."""
        name = check_nickname(nickname)
        token = secrets.token_urlsafe(24)
        order_seed = secrets.randbelow(2 ** 31)
        try:
            with self.transaction(write=True) as conn:
                quiz = self._quiz(conn, code)
                if quiz.closed_at is not None:
                    raise QuizClosed(f"quiz {quiz.code} is closed; ask your teacher for a new code")
                order = ",".join(map(str, film_order(order_seed, quiz.n_films)))
                conn.execute(insert(readers).values(quiz_id=quiz.id, nickname=name, nickname_key=name.casefold(),
                                                    token_hash=_token_hash(token), joined_at=self.now(),
                                                    order_seed=order_seed, film_order=order))
        except sa_exc.IntegrityError:
            raise NicknameTaken(f"the nickname {name!r} is taken in this quiz; choose another") from None
        return self.resume(token)

    def _reader(self, conn, token: str):
        row = conn.execute(_reader_query().where(readers.c.token_hash == _token_hash(token))).first()
        if row is None:
            raise UnknownReader("this quiz session is not known here; join again with the code and a nickname")
        return row

    def _state(self, conn, row, token: str) -> ReaderState:
        done = tuple(conn.execute(select(answers.c.position).where(answers.c.reader_id == row.id)
                                  .order_by(answers.c.position)).scalars())
        deadline = None if row.time_limit_s is None else aware(row.joined_at) + timedelta(seconds=row.time_limit_s)
        left = None if deadline is None else (deadline - self.now()).total_seconds()
        return ReaderState(token, row.code, row.nickname, row.n_films, done, deadline, left,
                           row.closed_at is not None, _stored_order(row.film_order, row.n_films), row.reveal)

    @guarded
    def resume(self, token: str) -> ReaderState:
        """The reader's state after a reload or a dropped connection."""
        with self.transaction() as conn:
            return self._state(conn, self._reader(conn, token), token)

    @guarded
    def film(self, token: str, position: int) -> ReaderFilm:
        """Film ``position`` (1-based) for the reader: its image and their own answer, never the truth."""
        with self.transaction() as conn:
            row = self._reader(conn, token)
            film = self._film(conn, row, position)
            mine = conn.execute(select(answers).where(answers.c.reader_id == row.id,
                                                      answers.c.position == film.position)).first()
        return ReaderFilm(film.position, row.n_films, film_path(row.source, film.key),
                          mine.answer if mine else None, mine.confidence if mine else None)

    def _film(self, conn, row, position: int):
        position = _whole(position, "the film number", 1, row.n_films)
        return conn.execute(select(films_table).where(films_table.c.quiz_id == row.quiz_id,
                                                      films_table.c.position == position)).one()

    @guarded
    def answer(self, token: str, position: int, answer: str, confidence: int) -> Answer:
        """Store the reader's answer to film ``position`` in its own transaction (idempotent for the same answer)."""
        label = str(answer).strip().upper()
        if label not in CLASS_NAMES:
            raise InvalidAnswer(f"answer {answer!r} is neither {' nor '.join(CLASS_NAMES)}")
        confidence = _whole(confidence, "the confidence", CONFIDENCE_LEVELS[0], CONFIDENCE_LEVELS[-1])
        try:
            with self.transaction(write=True) as conn:
                row = self._reader(conn, token)
                position = self._film(conn, row, position).position
                earlier = conn.execute(select(answers).where(answers.c.reader_id == row.id,
                                                             answers.c.position == position)).first()
                if earlier is None:
                    self._check_open(self._state(conn, row, token))
                    conn.execute(insert(answers).values(reader_id=row.id, position=position, answer=label,
                                                        confidence=confidence, answered_at=self.now()))
                    return Answer(position, label, confidence, repeated=False)
        except sa_exc.IntegrityError:  # the same film stored meanwhile by another request of this reader
            with self.transaction() as conn:
                row = self._reader(conn, token)
                earlier = conn.execute(select(answers).where(answers.c.reader_id == row.id,
                                                             answers.c.position == position)).one()
        if (earlier.answer, earlier.confidence) != (label, confidence):
            raise AnswerConflict(f"film {position} is already answered ({earlier.answer}, confidence "
                                 f"{earlier.confidence}); an answer cannot be changed")
        return Answer(position, label, confidence, repeated=True)

    @staticmethod
    def _check_open(state: ReaderState) -> None:
        if state.closed:
            raise QuizClosed(f"quiz {state.code} is closed; your {len(state.answered)} answers are saved")
        if state.time_up:
            raise TimeUp(f"time is up (the limit ended at {state.deadline:%H:%M} UTC); your "
                         f"{len(state.answered)} answers are saved")

    @guarded
    def my_answers(self, token: str) -> pd.DataFrame:
        """The reader's own answers so far, in their order, without the truth: film, answer, confidence."""
        with self.transaction() as conn:
            row = self._reader(conn, token)
            given = conn.execute(select(answers.c.position, answers.c.answer, answers.c.confidence)
                                 .where(answers.c.reader_id == row.id)).all()
        place = {p: k for k, p in enumerate(_stored_order(row.film_order, row.n_films))}
        return pd.DataFrame(sorted(given, key=lambda g: place[g.position]),
                            columns=["film", "answer", "confidence"])

    @guarded
    def review(self, token: str) -> QuizResults:
        """The reader's own answers with the truth, once the quiz's reveal policy allows it (else
        :class:`NotFinished` or :class:`KeyWithheld`)."""
        with self.transaction() as conn:
            row = self._reader(conn, token)
            state = self._state(conn, row, token)
            if not state.finished:
                left = row.n_films - len(state.answered)
                raise NotFinished(f"finish the quiz first: {left} of {row.n_films} films still to answer")
            if not state.truth_shown:
                raise KeyWithheld(f"your {len(state.answered)} answers are saved; the truth and your figures are "
                                  "shown when the teacher closes the quiz")
            quiz = conn.execute(select(quizzes).where(quizzes.c.id == row.quiz_id)).one()
            return self._results(conn, quiz, reader_id=row.id)

    def _results(self, conn, quiz, reader_id: int | None) -> QuizResults:
        films = pd.DataFrame(conn.execute(select(films_table).where(films_table.c.quiz_id == quiz.id)
                                          .order_by(films_table.c.position)).mappings().all())
        films = films.drop(columns="quiz_id")
        films.insert(3, "path", [str(film_path(quiz.source, k)) for k in films["key"]])
        who = _reader_query().where(readers.c.quiz_id == quiz.id)
        if reader_id is not None:
            who = who.where(readers.c.id == reader_id)
        people = conn.execute(who.order_by(readers.c.id)).all()
        states = [self._state(conn, person, "") for person in people]
        given = pd.DataFrame(conn.execute(
            select(readers.c.nickname, answers.c.position, answers.c.answer, answers.c.confidence,
                   answers.c.answered_at).join(readers, answers.c.reader_id == readers.c.id)
            .where(answers.c.reader_id.in_([person.id for person in people]))
            .order_by(readers.c.id, answers.c.position)).all(),
            columns=["nickname", "position", "answer", "confidence", "answered_at"])
        given["answered_at"] = [aware(t) for t in given["answered_at"]]
        roster = pd.DataFrame({"nickname": [person.nickname for person in people],
                               "joined_at": [aware(person.joined_at) for person in people],
                               "answered": [len(state.answered) for state in states],
                               "finished": [state.finished for state in states]},
                              columns=["nickname", "joined_at", "answered", "finished"])
        return QuizResults(quiz.code, quiz.source, quiz.n_films, quiz.closed_at is not None,
                           None if quiz.time_limit_s is None else quiz.time_limit_s / 60,
                           {v: getattr(quiz, f"threshold_{v}") for v in SHIPPED_VARIANTS}, films, given, roster,
                           quiz.reveal)
