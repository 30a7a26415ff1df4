"""What the quiz store hands back: a new quiz, a reader's state and film, a stored answer, results.

Plain frozen records (no database); the rules that make them are in :mod:`pneumo_core.quiz.rules`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

DEFAULT_REVEAL = "on_close"  # new quizzes keep the key from readers until the teacher closes the quiz


@dataclass(frozen=True)
class NewQuiz:
    """A created quiz. The teacher key is only ever here: the store keeps its hash."""

    code: str
    teacher_key: str
    n_films: int
    source: str
    seed: int
    time_limit_minutes: float | None
    reveal: str = DEFAULT_REVEAL

    def to_json(self) -> dict:
        """The quiz's public fields for the CLI's JSON output."""
        return {"code": self.code, "teacher_key": self.teacher_key, "films": self.n_films, "source": self.source,
                "seed": self.seed, "time_limit_minutes": self.time_limit_minutes, "reveal": self.reveal}


@dataclass(frozen=True)
class ReaderState:
    """Where a reader stands: what is answered, what comes next, and whether they have finished."""

    token: str
    code: str
    nickname: str
    n_films: int
    answered: tuple[int, ...]
    deadline: datetime | None
    seconds_left: float | None  # None: no time limit
    closed: bool
    order: tuple[int, ...] = ()  # the films' numbers in the order this reader gets them
    reveal: str = "at_end"

    def __post_init__(self):
        if not self.order:
            object.__setattr__(self, "order", tuple(range(1, self.n_films + 1)))

    @property
    def time_up(self) -> bool:
        """True when the quiz has a time limit and it has run out."""
        return self.seconds_left is not None and self.seconds_left <= 0

    @property
    def finished(self) -> bool:
        """All films answered, time up, or quiz closed: the reader may now see the truth."""
        return len(self.answered) == self.n_films or self.time_up or self.closed

    @property
    def truth_shown(self) -> bool:
        """The reader may see the truth per film: the quiz is closed, or it reveals at the end and they finished."""
        return self.closed or (self.reveal == "at_end" and self.finished)

    @property
    def next_position(self) -> int | None:
        """The number of the next film in this reader's order not answered yet, None when finished."""
        if self.finished:
            return None
        return next(p for p in self.order if p not in self.answered)


@dataclass(frozen=True)
class ReaderFilm:
    """Film ``position`` of ``n_films`` as a reader may see it: the image and their own answer, no truth."""

    position: int
    n_films: int
    path: Path
    answer: str | None
    confidence: int | None


@dataclass(frozen=True)
class Answer:
    """One stored answer of a reader to the film at ``position``."""

    position: int
    answer: str
    confidence: int
    repeated: bool  # True: the same answer had been stored before; nothing was written


@dataclass(frozen=True)
class QuizResults:
    """Films with truth and saved model scores, and answers: every reader's for the teacher, the
    reader's own in a review. ``films``: position, example, key, path, truth, subtype, p_<variant>;
    ``answers``: nickname, position, answer, confidence, answered_at; ``readers``: nickname, joined_at,
    answered, finished."""

    code: str
    source: str
    n_films: int
    closed: bool
    time_limit_minutes: float | None
    thresholds: dict
    films: pd.DataFrame
    answers: pd.DataFrame
    readers: pd.DataFrame
    reveal: str = "at_end"
