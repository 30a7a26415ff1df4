"""Every exception class of the library, and turning an exception into the one-line reason a user is shown.

Each error's ``str()`` is one line for the user: no traceback, path of another machine, credential or
patient identifier.
"""
from __future__ import annotations


# ---------------------------------------------------------------- images
class ImageError(ValueError):
    """The input cannot be used; ``str(err)`` is a one-line reason for the user."""


# ---------------------------------------------------------------- models
class ModelLoadError(RuntimeError):
    """A model file is missing, tampered with, truncated or not a model."""

class MissingDependency(ModelLoadError):
    """What was asked for needs a package that is not installed (TensorFlow for training and the Keras backend,
    ai-edge-litert for LiteRT); ``str(err)`` is one line saying what to install."""


# ---------------------------------------------------------------- PACS
class PacsError(ValueError):
    """A PACS call failed; ``str(err)`` is one line for the user, without credentials."""

class DeflatedOnTheWire(PacsError):
    """An instance came as deflated DICOM (which pydicom would inflate without a size cap)."""


# ---------------------------------------------------------------- quiz
class QuizError(Exception):
    """A quiz problem to tell the user: ``str(error)`` is one line."""

class StorageError(QuizError):
    """The database cannot be used: read-only, locked, unreachable, or not a quiz database of this version."""

class UnknownQuiz(QuizError):
    """No quiz has this join code."""

class QuizClosed(QuizError):
    """The teacher closed the quiz."""

class WrongKey(QuizError):
    """The teacher key does not match the quiz."""

class NicknameError(QuizError):
    """The nickname is empty, too long or holds control characters."""

class NicknameTaken(NicknameError):
    """Another reader of this quiz has the nickname (ignoring case)."""

class UnknownReader(QuizError):
    """No reader has this token."""

class InvalidAnswer(QuizError):
    """Not a film of the quiz, not NORMAL/PNEUMONIA, or a confidence outside 1-5."""

class AnswerConflict(QuizError):
    """The film already has a different answer from this reader."""

class TimeUp(QuizError):
    """The reader's time limit has passed."""

class NotFinished(QuizError):
    """The truth is asked for before the reader has finished."""


# ---------------------------------------------------------------- messages
def first_line(exc: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of ``exc``'s message, at most ``limit`` characters; the exception's
    type name when the message is empty (``str(exc).splitlines()[0]`` raises IndexError there)."""
    text = str(exc)
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__ if isinstance(exc, BaseException) else ""
