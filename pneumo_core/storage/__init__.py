"""The project's database: URL and engine, one schema (quiz, audit trail) and its Alembic migrations."""
