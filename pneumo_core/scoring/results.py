"""Results as Parquet, written as the job goes: a folder of part files, one per flushed batch, each written
under a hidden temporary name and renamed into place (atomic), so a job killed at any moment leaves only whole
parts. ``pyarrow.parquet.read_table(folder)`` reads them all (it skips the hidden temporary files).

Resuming reads the ``file`` column of every part and skips those films; the writer also drops a row whose
``file`` is already written, so no film is ever stored twice. :func:`read_results` de-duplicates again on
read (first row kept), for parts copied in by hand."""
from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

#: One row per film (the contract of ``score``'s output).
SCHEMA = pa.schema([
    ("file", pa.string()),             # the path as listed, or a hashed PACS reference (never a UID)
    ("content_sha256", pa.string()),   # of the bytes scored; null when none could be read
    ("label", pa.string()),            # NORMAL or PNEUMONIA at `threshold`; null with an error
    ("p_pneumonia", pa.float64()),
    ("threshold", pa.float64()),
    ("is_chest_xray", pa.bool_()),     # the OOD guard's verdict (null: not checked)
    ("ood_distance", pa.float64()),
    ("error", pa.string()),            # why there is no label (unreadable, not a chest X-ray, PACS failure)
    ("model", pa.string()),
    ("model_sha256", pa.string()),
    ("scored_at", pa.timestamp("us", tz="UTC")),
])
PART_GLOB = "part-*.parquet"
_TEMP_PREFIX = ".writing-"


def as_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with any of :data:`SCHEMA`'s fields) as a table of exactly that schema."""
    return pa.Table.from_pylist([{name: row.get(name) for name in SCHEMA.names} for row in rows], schema=SCHEMA)


def now() -> datetime:
    return datetime.now(UTC)


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob(PART_GLOB))


def _read_parts(folder: Path, columns=None) -> pa.Table:
    import pyarrow.parquet as pq

    tables = []
    for part in _parts(folder):
        try:
            tables.append(pq.read_table(part, columns=columns))
        except Exception as exc:  # an atomic writer leaves none; a part damaged or copied in by hand
            raise ValueError(f"results part {part.name} cannot be read ({type(exc).__name__}); move it away "
                             "and run again with --resume to score its films again") from None
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
    return pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()


def read_results(folder: str | Path) -> pa.Table:
    """Every part of ``folder`` as one table, one row per ``file`` (the first written kept)."""
    table = _read_parts(Path(folder))
    first, keep = set(), []
    for i, key in enumerate(table.column("file").to_pylist()):
        if key not in first:
            first.add(key)
            keep.append(i)
    return table if len(keep) == table.num_rows else table.take(pa.array(keep, pa.int64()))


class ResultsWriter:
    """The results folder of one job. ``resume``: carry on a job (films already stored are in :attr:`done`);
    without it the folder must be new or empty, so results are never mixed up by mistake."""

    def __init__(self, folder: str | Path, resume: bool = False):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"--out {self.folder} is a file; give a folder for the results' parts")
        if self.folder.is_dir():
            for stale in self.folder.glob(_TEMP_PREFIX + "*"):  # a part cut off by a kill: never renamed in
                stale.unlink(missing_ok=True)
            if _parts(self.folder) and not resume:
                raise ValueError(f"{self.folder} already holds results; add --resume to carry on that job, "
                                 "or give a new folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = set(_read_parts(self.folder, ["file"]).column("file").to_pylist())
        self._run = f"{now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        self._seq = 0

    def write(self, table: pa.Table) -> pa.Table:
        """Store ``table``'s rows not stored yet as one new part; returns the rows stored."""
        keys = table.column("file").to_pylist()
        keep, fresh = [], set()
        for i, key in enumerate(keys):
            if key not in self.done and key not in fresh:
                fresh.add(key)
                keep.append(i)
        if len(keep) < len(keys):
            table = table.take(pa.array(keep, pa.int64()))
        if table.num_rows:
            self._write_part(table.cast(SCHEMA))
            self.done |= fresh
        return table

    def _write_part(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        self._seq += 1
        name = f"part-{self._run}-{self._seq:06d}.parquet"
        temp = self.folder / f"{_TEMP_PREFIX}{name}"
        with open(temp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())  # the bytes on disk before the name: a power cut leaves no empty part
        os.replace(temp, self.folder / name)
