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


# ---------------------------------------------------------------- sign-in and roles
class AccessError(ValueError):
    """The sign-in or role settings are unusable; ``str(err)`` is one line naming the setting to fix."""


# ---------------------------------------------------------------- quiz
class QuizError(Exception):
    """A quiz problem to tell the user: ``str(error)`` is one line."""

class StorageError(QuizError):
    """The project's database (quiz, audit trail) cannot be used: read-only, locked, unreachable, not made by
    this workbench, or made by a newer release. A QuizError too, as the quiz pages catch it that way."""

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

class KeyWithheld(QuizError):
    """The truth is asked for before the teacher closed a quiz that reveals it only then."""


# ---------------------------------------------------------------- audit trail
class AuditError(ValueError):
    """An audit event is refused: unknown action or outcome, a bad count, or a study reference not made by
    ``study_reference`` (so no identifier is ever stored)."""


# ---------------------------------------------------------------- a site's reads and thresholds
class SiteReadError(ValueError):
    """A read or a threshold adoption is refused: an unknown class or source, a reader name that is not one
    printable line, a film without a score, or nothing to revert."""


# ---------------------------------------------------------------- site check and validation
class SiteDataError(ValueError):
    """A site's films or reads cannot give the figure asked for (one class only, too few reads for a threshold,
    too few films for the shift check); ``str(err)`` says so in one line."""


# ---------------------------------------------------------------- messages
def first_line(exc: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of ``exc``'s message, at most ``limit`` characters; the exception's
    type name when the message is empty (``str(exc).splitlines()[0]`` raises IndexError there)."""
    text = str(exc)
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__ if isinstance(exc, BaseException) else ""
