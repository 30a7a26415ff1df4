"""What a reviewer is shown and given: per-film decisions and flags, review tables, the study report PNG,
the teaching examples."""
