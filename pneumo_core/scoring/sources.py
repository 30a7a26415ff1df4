"""What ``score`` scores: films from folders (recursively), from lists of paths (text, CSV or Parquet), or
instances found on a PACS. Each film is one dict, its ``file`` the key its result is stored under: the path
as listed, or for a PACS instance a hashed reference (:func:`film_reference`), never a UID."""
from __future__ import annotations

import hashlib
from pathlib import Path

from pneumo_core.imaging.decode import READABLE_SUFFIXES

#: Suffixes read as lists of paths; any other file is a film.
LIST_SUFFIXES = (".txt", ".lst", ".csv", ".parquet")
#: Columns of a CSV or Parquet list holding the paths, the first present wins (else a CSV's first column).
PATH_COLUMNS = ("file", "path", "filename")
_INSTANCE_PREFIX = b"pneumo-workbench instance reference v1\x00"


def list_folder(folder: str | Path) -> list[str]:
    """The image and DICOM files under ``folder`` (recursively, sorted), hidden files (``.DS_Store``,
    editor backups) left out."""
    return sorted(str(f) for f in Path(folder).rglob("*")
                  if f.is_file() and f.suffix.lower() in READABLE_SUFFIXES and not f.name.startswith("."))


def read_list(path: str | Path) -> list[str]:
    """The paths a list names, relative ones taken from the list's own folder (a list moved with its films
    still works). Text: one path a line, blank lines and ``#`` comments skipped. CSV and Parquet: the first
    of :data:`PATH_COLUMNS` present (a CSV without a header row: its first column). Raises ValueError
    with one line when the list cannot be read."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(p)
            except (OSError, pa.ArrowException):
                raise ValueError(f"cannot read list {p.name}: not a Parquet file, or a damaged one") from None
            column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
            if column is None:
                raise ValueError(f"list {p.name} has no {'/'.join(PATH_COLUMNS)} column")
            names = [str(v) for v in table.column(column).to_pylist() if v is not None]
        elif suffix == ".csv":
            import csv

            with p.open(newline="", encoding="utf-8") as fh:
                rows = [row for row in csv.reader(fh) if row and any(cell.strip() for cell in row)]
            header = [cell.strip().lower() for cell in rows[0]] if rows else []
            column = next((header.index(c) for c in PATH_COLUMNS if c in header), None)
            names = [row[column if column is not None else 0] for row in rows[1 if column is not None else 0:]
                     if len(row) > (column or 0)]
        else:
            names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
            names = [n for n in names if n and not n.startswith("#")]
    except UnicodeDecodeError:
        raise ValueError(f"list {p.name} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"cannot read list {p}: {exc.strerror or type(exc).__name__}") from None
    except csv_error() as exc:
        raise ValueError(f"cannot read list {p.name}: {exc}") from None
    return [str(p.parent / n.strip()) if not Path(n.strip()).is_absolute() else n.strip() for n in names if n.strip()]


def csv_error():
    import csv

    return csv.Error


def expand_sources(items) -> tuple[list[dict], list[str]]:
    """Folders, lists and films -> (one ``{"file": path}`` per film, each path once, in order; warnings).
    A missing or unreadable film stays in (its result row says why); a missing folder or list is an error
    (ValueError), as nothing in it can be named."""
    seen, films, warnings = set(), [], []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = list_folder(p)
            if not found:
                warnings.append(f"no image or DICOM files in folder {p}")
        elif p.suffix.lower() in LIST_SUFFIXES:
            if not p.is_file():
                raise ValueError(f"list not found: {p}")
            found = read_list(p)
            if not found:
                warnings.append(f"list {p.name} names no file")
        else:
            found = [str(item)]
        for path in found:
            if path not in seen:
                seen.add(path)
                films.append({"file": path})
    return films, warnings


def film_reference(study_uid: str, sop_uid: str) -> str:
    """The stored ``file`` of a PACS instance: the study's audit reference (:func:`storage.audit.study_reference`,
    which a site's auditors can recompute from the UID) and ``in-`` with 16 hex digits of SHA-256 over a fixed
    prefix and the SOP Instance UID. No UID is stored."""
    from pneumo_core.storage.audit import study_reference

    digest = hashlib.sha256(_INSTANCE_PREFIX + str(sop_uid).strip().encode("utf-8")).hexdigest()[:16]
    return f"{study_reference(study_uid)}/in-{digest}"


def pacs_films(pacs, studies, modalities) -> tuple[list[dict], list[dict]]:
    """The instances of ``modalities`` in each study, as films to score (``file``: :func:`film_reference`; the
    UIDs to retrieve them, kept in memory only), and one result row per study that could not be listed
    (``file``: the study's reference, ``error``: why)."""
    from pneumo_core.errors import PacsError
    from pneumo_core.storage.audit import study_reference

    films, failed, seen = [], [], set()
    for uid in studies:
        try:
            refs = pacs.list_instances(uid, modalities)
            if not refs:
                raise PacsError(f"the study has no {'/'.join(modalities)} instance")
        except PacsError as exc:
            failed.append({"file": study_reference(uid), "error": str(exc).replace(uid, study_reference(uid))})
            continue
        for ref in refs:
            key = film_reference(ref.study_uid, ref.sop_uid)
            if key not in seen:
                seen.add(key)
                films.append({"file": key, "study_uid": ref.study_uid, "series_uid": ref.series_uid,
                              "sop_uid": ref.sop_uid})
    return films, failed
