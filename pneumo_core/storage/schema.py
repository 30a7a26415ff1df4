"""Every table of the project's database at this release's revision, in one MetaData.

Change a table here and add a migration (docs/design.md, "Database and migrations"); migrations spell their
tables out themselves, so this file may change without rewriting history.
"""
from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from pneumo_core.config import SHIPPED_VARIANTS
from pneumo_core.review.examples import score_column

CODE_LENGTH = 6
NICKNAME_MAX = 40
REVEAL_POLICIES = ("on_close", "at_end")  # a reader sees the truth: when the teacher closes the quiz, or at their end
AUDIT_ACTIONS = ("pacs_search", "pacs_retrieve", "pacs_store")
AUDIT_OUTCOMES = ("ok", "error", "refused")
AUDIT_NAME_MAX = 80  # actor and role

metadata = MetaData()

# The quiz's version table from before Alembic. Alembic's alembic_version rules now; this one is kept because the
# release before Alembic reads it: revision 0002 sets it to 2, so that release refuses the database ("made by a
# newer version") instead of ignoring the reveal policy and showing a reader the key.
schema_table = Table("quiz_schema", metadata, Column("version", Integer, primary_key=True),
                     Column("created_at", DateTime(timezone=True), nullable=False))
quizzes = Table(
    "quiz_quizzes", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(CODE_LENGTH), nullable=False, unique=True),
    Column("key_salt", LargeBinary(16), nullable=False),
    Column("key_hash", LargeBinary(32), nullable=False),
    Column("source", String(1000), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("n_films", Integer, nullable=False),
    Column("time_limit_s", Integer),
    *[Column(f"threshold_{v}", Float) for v in SHIPPED_VARIANTS],
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("reveal", String(8), nullable=False, server_default="at_end"),  # quizzes made before 0002 kept theirs
)
films_table = Table(
    "quiz_films", metadata,
    Column("quiz_id", ForeignKey("quiz_quizzes.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("key", String(1000), nullable=False),
    Column("example", String(40), nullable=False),
    Column("truth", String(9), nullable=False),
    Column("subtype", String(20), nullable=False),
    *[Column(score_column(v), Float) for v in SHIPPED_VARIANTS],
)
readers = Table(
    "quiz_readers", metadata,
    Column("id", Integer, primary_key=True),
    Column("quiz_id", ForeignKey("quiz_quizzes.id"), nullable=False),
    Column("nickname", String(NICKNAME_MAX), nullable=False),
    Column("nickname_key", String(4 * NICKNAME_MAX), nullable=False),  # casefold() may lengthen a name
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    Column("order_seed", Integer),  # NULL: joined before 0002, films in the quiz's order
    Column("film_order", Text),  # the positions as shown, "3,1,2"; NULL with order_seed
    UniqueConstraint("quiz_id", "nickname_key"),
)
answers = Table(
    "quiz_answers", metadata,
    Column("reader_id", ForeignKey("quiz_readers.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("answer", String(9), nullable=False),
    Column("confidence", Integer, nullable=False),
    Column("answered_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("confidence BETWEEN 1 AND 5", name="confidence_1_to_5"),
    CheckConstraint("answer IN ('NORMAL', 'PNEUMONIA')", name="answer_is_a_class"),
)
audit_events = Table(
    "audit_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(AUDIT_NAME_MAX), nullable=False),
    Column("role", String(AUDIT_NAME_MAX), nullable=False),
    Column("action", String(20), nullable=False),
    Column("count", Integer, nullable=False),
    Column("study_refs", Text, nullable=False),  # space-separated study references, "" for none
    Column("outcome", String(10), nullable=False),
    CheckConstraint("action IN ('pacs_search', 'pacs_retrieve', 'pacs_store')", name="audit_action_known"),
    CheckConstraint("outcome IN ('ok', 'error', 'refused')", name="audit_outcome_known"),
    CheckConstraint("count >= 0", name="audit_count_not_negative"),
)
QUIZ_TABLES = frozenset({"quiz_quizzes", "quiz_films", "quiz_readers", "quiz_answers"})

# ---------------------------------------------------------------- a site's reads and its adopted thresholds (0003)
READ_CHOICES = ("NORMAL", "PNEUMONIA", "UNSURE")
REFERENCE_SOURCES = ("follow-up", "CT", "clinical course", "microbiology", "other")
READER_MAX = 80  # a signed-in identity (e-mail address) or a nickname
site_reads = Table(  # one row per reader, film and model version: a changed read updates it (history below)
    "site_reads", metadata,
    Column("id", Integer, primary_key=True),
    Column("reader", String(READER_MAX), nullable=False),
    Column("film_sha256", String(64), nullable=False),  # the film's content hash, never its name or UIDs
    Column("model", String(40), nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("p_pneumonia", Float, nullable=False),
    Column("threshold", Float, nullable=False),  # the threshold shown when the read was last saved
    Column("ood_distance", Float),
    Column("read", String(9), nullable=False),
    Column("reference", String(9)),  # the reference standard's class, when known
    Column("reference_source", String(20)),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("reader", "film_sha256", "model_sha256", name="site_read_once"),
    CheckConstraint("read IN ('NORMAL', 'PNEUMONIA', 'UNSURE')", name="site_read_known"),
    CheckConstraint("reference IS NULL OR reference IN ('NORMAL', 'PNEUMONIA')", name="site_reference_known"),
    CheckConstraint("(reference IS NULL) = (reference_source IS NULL)", name="site_reference_has_source"),
)
site_read_history = Table(  # every save of a read, the first included: nothing a reader chose is lost
    "site_read_history", metadata,
    Column("id", Integer, primary_key=True),
    Column("read_id", ForeignKey("site_reads.id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("read", String(9), nullable=False),
    Column("reference", String(9)),
    Column("reference_source", String(20)),
)
site_thresholds = Table(  # adoptions of a site threshold; the active one per model version has no ended_at
    "site_thresholds", metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(40), nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("old_threshold", Float, nullable=False),
    Column("new_threshold", Float, nullable=False),
    Column("n_reads", Integer, nullable=False),
    Column("n_normal", Integer, nullable=False),
    Column("n_pneumonia", Integer, nullable=False),
    Column("adopted_by", String(READER_MAX), nullable=False),
    Column("adopted_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("ended_by", String(READER_MAX)),
    Column("end_reason", String(10)),  # reverted, or replaced by a later adoption
    Column("source", String(80)),  # NULL: proposed from the site's reads; else e.g. EM prior-shift adaptation
    CheckConstraint("end_reason IS NULL OR end_reason IN ('reverted', 'replaced')", name="site_threshold_end_known"),
)
# At most one active adoption per model version, even for two adoptions at once (both backends have partial indexes).
Index("site_threshold_active", site_thresholds.c.model_sha256, unique=True,
      sqlite_where=site_thresholds.c.ended_at.is_(None), postgresql_where=site_thresholds.c.ended_at.is_(None))
