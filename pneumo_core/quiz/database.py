"""The reader quiz's storage: its tables in the project's database (:mod:`pneumo_core.storage`).

Where the database is, its engine, its migrations and its error messages are the storage package's; this
module names what the quiz rules (:mod:`pneumo_core.quiz.rules`) use of it.
"""
from __future__ import annotations

from pneumo_core.storage.database import Database, aware, default_url, guarded
from pneumo_core.storage.schema import (
    CODE_LENGTH,
    NICKNAME_MAX,
    REVEAL_POLICIES,
    answers,
    films_table,
    quizzes,
    readers,
)

__all__ = ["QuizDatabase", "CODE_LENGTH", "NICKNAME_MAX", "REVEAL_POLICIES", "answers", "aware", "default_url",
           "films_table", "guarded", "quizzes", "readers"]


class QuizDatabase(Database):
    """The project's database, opened for the quiz (see :class:`~pneumo_core.storage.database.Database`)."""
