"""A site's reads of films and the site thresholds adopted from them, in the project's database.

A **read** is one reader's class for one film (NORMAL, PNEUMONIA or UNSURE) and, when known, the film's reference
standard (its class and source: follow-up, CT, ...), stored with the film's content hash (SHA-256; never its name
or UIDs), the model and its SHA-256, the model's score, the threshold shown and the OOD distance. There is one row
per reader, film and model version: a reader who changes their read updates that row, so the film is never
counted twice, and every save (the first included) is appended to ``site_read_history``, so nothing chosen is lost.
Two readers of one film have a row each. A film scored by another version of the model is another row: figures
are computed per model version, since a score belongs to the model that gave it.

An **adoption** makes a proposed threshold the site's threshold for one model version: who, when, how many reads
(per class), the old and the new threshold. The active one is the adoption not yet ended; a revert ends it (back to
the shipped threshold), a later adoption replaces it. Nothing is deleted.
"""
from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy import exc as sa_exc

from pneumo_core.errors import SiteReadError
from pneumo_core.storage.database import Database, aware, default_url, guarded
from pneumo_core.storage.schema import (
    READ_CHOICES,
    READER_MAX,
    REFERENCE_SOURCES,
    site_read_history,
    site_reads,
    site_thresholds,
)

__all__ = ["EXPORT_COLUMNS", "READ_CHOICES", "REFERENCE_SOURCES", "Adoption", "FilmScore", "Read", "SiteReads",
           "export_table", "film_truths", "pixels_sha256", "reader_points", "site_reads_db"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
REFERENCE_CLASSES = ("NORMAL", "PNEUMONIA")
EXPORT_COLUMNS = ("reader", "film_sha256", "model", "model_sha256", "p_pneumonia", "threshold", "ood_distance",
                  "read", "reference", "reference_source", "first_at", "updated_at", "saves")


@dataclass(frozen=True)
class FilmScore:
    """What the model said of one film, as a read stores it."""

    film_sha256: str
    model: str
    model_sha256: str
    p_pneumonia: float
    threshold: float
    ood_distance: float | None = None


@dataclass(frozen=True)
class Read:
    """One reader's current read of one film under one model version; ``saves``: how often it was saved."""

    reader: str
    film_sha256: str
    model: str
    model_sha256: str
    p_pneumonia: float
    threshold: float
    ood_distance: float | None
    read: str
    reference: str | None
    reference_source: str | None
    first_at: datetime
    updated_at: datetime
    saves: int = 1

    def to_json(self) -> dict:
        row = asdict(self)
        row["first_at"], row["updated_at"] = self.first_at.isoformat(), self.updated_at.isoformat()
        return row


@dataclass(frozen=True)
class Adoption:
    """One adoption of a site threshold for a model version; ``ended_at`` None while it is the active one."""

    id: int
    model: str
    model_sha256: str
    old_threshold: float
    new_threshold: float
    n_reads: int
    n_normal: int
    n_pneumonia: int
    adopted_by: str
    adopted_at: datetime
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None
    source: str | None = None  # None: proposed from the site's reads by the shipped rule

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @property
    def origin(self) -> str:
        """Where the threshold came from, one line: the adoption's source, else the site's reads."""
        return self.source or f"proposed from the site's reads ({self.n_reads} films)"


def pixels_sha256(pixels) -> str:
    """The content hash of a film known only by its decoded pixels (a PACS film: its file's bytes are not kept):
    SHA-256 over the array's shape, type and values. Files with the same pixels get the same hash."""
    import hashlib

    import numpy as np

    array = np.ascontiguousarray(pixels)
    digest = hashlib.sha256(f"{array.shape}|{array.dtype.str}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def check_reader(name) -> str:
    """The reader's name trimmed (a signed-in identity or a nickname), or :class:`SiteReadError`."""
    text = name.strip() if isinstance(name, str) else ""
    if not text:
        raise SiteReadError("a read needs a reader: sign in, or type a nickname (no real name needed)")
    if len(text) > READER_MAX or any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise SiteReadError(f"the reader's name must be one line of at most {READER_MAX} printable characters")
    return text


def _check_film(film: FilmScore) -> None:
    for what, value in (("film", film.film_sha256), ("model", film.model_sha256)):
        if not (isinstance(value, str) and _SHA256.fullmatch(value)):
            raise SiteReadError(f"the {what}'s SHA-256 must be 64 lower-case hex digits")
    if not film.model or len(film.model) > 40:
        raise SiteReadError("a read needs the model's name (at most 40 characters)")
    for what, value in (("score", film.p_pneumonia), ("threshold", film.threshold)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
            raise SiteReadError(f"a read needs the model's {what}, a number from 0 to 1: was the film scored?")


def _check_choice(read, reference, source) -> None:
    if read not in READ_CHOICES:
        raise SiteReadError(f"a read is one of {', '.join(READ_CHOICES)}, not {read!r}")
    if reference is not None and reference not in REFERENCE_CLASSES:
        raise SiteReadError(f"a reference standard is NORMAL or PNEUMONIA, not {reference!r}")
    if (reference is None) != (source is None):
        raise SiteReadError("a reference standard needs both its class and its source (e.g. follow-up, CT)")
    if source is not None and source not in REFERENCE_SOURCES:
        raise SiteReadError(f"a reference standard's source is one of {', '.join(REFERENCE_SOURCES)}")


def _read(row, saves: int) -> Read:
    return Read(row.reader, row.film_sha256, row.model, row.model_sha256, row.p_pneumonia, row.threshold,
                row.ood_distance, row.read, row.reference, row.reference_source, aware(row.first_at),
                aware(row.updated_at), saves)


def _adoption(row) -> Adoption:
    return Adoption(row.id, row.model, row.model_sha256, row.old_threshold, row.new_threshold, row.n_reads,
                    row.n_normal, row.n_pneumonia, row.adopted_by, aware(row.adopted_at), aware(row.ended_at),
                    row.ended_by, row.end_reason, row.source)


class SiteReads(Database):
    """Reads and adoptions on one database (see :class:`~pneumo_core.storage.database.Database` for the arguments).
    Every method raises :class:`~pneumo_core.errors.StorageError` when the database is locked, read-only or
    unreachable (nothing is half-written: each save is one transaction), and :class:`SiteReadError` for bad
    input."""

    # ------------------------------------------------------------ reads
    def record(self, reader: str, film: FilmScore, read: str, reference: str | None = None,
               reference_source: str | None = None) -> Read:
        """Save ``reader``'s read of ``film`` (see the module's text); the same choice saved again changes nothing.
        Returns the read as stored."""
        reader = check_reader(reader)
        _check_film(film)
        _check_choice(read, reference, reference_source)
        try:
            return self._record(reader, film, read, reference, reference_source)
        except SiteReadError:  # two saves of a new read at once: the other inserted first, so update it
            return self._record(reader, film, read, reference, reference_source)

    @guarded
    def _record(self, reader, film, read, reference, source) -> Read:
        key = and_(site_reads.c.reader == reader, site_reads.c.film_sha256 == film.film_sha256,
                   site_reads.c.model_sha256 == film.model_sha256)
        now = self.now()
        choice = {"read": read, "reference": reference, "reference_source": source}
        try:
            with self.transaction(write=True) as conn:
                row = conn.execute(select(site_reads).where(key)).first()
                if row is None:
                    read_id = conn.execute(insert(site_reads).values(
                        reader=reader, film_sha256=film.film_sha256, model=film.model, model_sha256=film.model_sha256,
                        p_pneumonia=float(film.p_pneumonia), threshold=float(film.threshold),
                        ood_distance=None if film.ood_distance is None else float(film.ood_distance),
                        first_at=now, updated_at=now, **choice)).inserted_primary_key[0]
                elif {name: getattr(row, name) for name in choice} != choice:
                    read_id = row.id
                    conn.execute(update(site_reads).where(site_reads.c.id == read_id).values(
                        threshold=float(film.threshold), updated_at=now, **choice))
                else:
                    read_id = None  # unchanged: no history row
                if read_id is not None:
                    conn.execute(insert(site_read_history).values(read_id=read_id, at=now, **choice))
        except sa_exc.IntegrityError:
            raise SiteReadError("saved at the same moment elsewhere") from None
        found = self._reads(key)
        return found[0]

    def _reads(self, where) -> list[Read]:
        counts = (select(site_read_history.c.read_id, func.count().label("saves"))
                  .group_by(site_read_history.c.read_id).subquery())
        query = (select(site_reads, counts.c.saves).join(counts, counts.c.read_id == site_reads.c.id, isouter=True)
                 .where(where).order_by(site_reads.c.first_at, site_reads.c.id))
        with self.transaction() as conn:
            rows = conn.execute(query).all()
        return [_read(row, row.saves or 1) for row in rows]

    @guarded
    def read_of(self, reader: str, film_sha256: str, model_sha256: str) -> Read | None:
        """``reader``'s read of the film under this model version, or None."""
        found = self._reads(and_(site_reads.c.reader == reader, site_reads.c.film_sha256 == film_sha256,
                                 site_reads.c.model_sha256 == model_sha256))
        return found[0] if found else None

    @guarded
    def other_versions(self, reader: str, film_sha256: str, model_sha256: str) -> list[Read]:
        """``reader``'s reads of the film made when it was scored by another model version, newest first."""
        found = self._reads(and_(site_reads.c.reader == reader, site_reads.c.film_sha256 == film_sha256,
                                 site_reads.c.model_sha256 != model_sha256))
        return sorted(found, key=lambda r: r.updated_at, reverse=True)

    @guarded
    def reads(self, model_sha256: str | None = None) -> list[Read]:
        """Every current read (of one model version when given), oldest first."""
        where = site_reads.c.model_sha256 == model_sha256 if model_sha256 else site_reads.c.id.isnot(None)
        return self._reads(where)

    @guarded
    def history(self, reader: str, film_sha256: str, model_sha256: str) -> list[dict]:
        """Every save of one read, oldest first: ``at``, ``read``, ``reference``, ``reference_source``."""
        query = (select(site_read_history).join(site_reads, site_reads.c.id == site_read_history.c.read_id)
                 .where(site_reads.c.reader == reader, site_reads.c.film_sha256 == film_sha256,
                        site_reads.c.model_sha256 == model_sha256).order_by(site_read_history.c.id))
        with self.transaction() as conn:
            rows = conn.execute(query).all()
        return [{"at": aware(r.at), "read": r.read, "reference": r.reference, "reference_source": r.reference_source}
                for r in rows]

    # ------------------------------------------------------------ adopted thresholds
    @guarded
    def active(self, model_sha256: str) -> Adoption | None:
        """The site threshold adopted for this model version and not ended, or None (the shipped one applies)."""
        query = select(site_thresholds).where(site_thresholds.c.model_sha256 == model_sha256,
                                              site_thresholds.c.ended_at.is_(None))
        with self.transaction() as conn:
            row = conn.execute(query).first()
        return _adoption(row) if row is not None else None

    @guarded
    def adoptions(self, model_sha256: str | None = None) -> list[Adoption]:
        """Every adoption (of one model version when given), newest first."""
        query = select(site_thresholds).order_by(site_thresholds.c.id.desc())
        if model_sha256:
            query = query.where(site_thresholds.c.model_sha256 == model_sha256)
        with self.transaction() as conn:
            return [_adoption(row) for row in conn.execute(query).all()]

    def adopt(self, *, model: str, model_sha256: str, shipped_threshold: float, new_threshold: float,
              n_normal: int, n_pneumonia: int, who: str, source: str | None = None,
              n_films: int | None = None) -> Adoption:
        """Make ``new_threshold`` the site threshold of this model version; an active adoption is ended as
        replaced. The old threshold recorded is the one in force (the active adoption's, else the shipped one).
        ``source``: where it came from when not the reads' proposal (one line, stored and shown); ``n_films``: the
        films it rests on when they have no class (a label-free adaptation), else NORMAL + PNEUMONIA."""
        who = check_reader(who)
        if source is not None and not (isinstance(source, str) and 0 < len(source) <= 80 and source.isprintable()):
            raise SiteReadError("an adoption's source is one line of at most 80 printable characters")
        if n_films is not None and n_films < 0:
            raise SiteReadError("read counts cannot be negative")
        for value in (shipped_threshold, new_threshold):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
                raise SiteReadError("a threshold is a number from 0 to 1")
        if not (isinstance(model_sha256, str) and _SHA256.fullmatch(model_sha256)):
            raise SiteReadError("the model's SHA-256 must be 64 lower-case hex digits")
        if min(n_normal, n_pneumonia) < 0:
            raise SiteReadError("read counts cannot be negative")
        counts = {"n_reads": int(n_normal) + int(n_pneumonia) if n_films is None else int(n_films),
                  "n_normal": int(n_normal), "n_pneumonia": int(n_pneumonia), "source": source}
        return self._adopt(model, model_sha256, float(shipped_threshold), float(new_threshold), counts, who)

    @guarded
    def _adopt(self, model, model_sha256, shipped, new, counts, who) -> Adoption:
        now = self.now()
        try:
            return self._adopt_in(model, model_sha256, shipped, new, counts, who, now)
        except sa_exc.IntegrityError:  # the partial unique index: another adoption got in first
            raise SiteReadError("another threshold was adopted for this model at the same moment; "
                                "reload the page and look again") from None

    def _adopt_in(self, model, model_sha256, shipped, new, counts, who, now) -> Adoption:
        with self.transaction(write=True) as conn:
            current = conn.execute(select(site_thresholds).where(site_thresholds.c.model_sha256 == model_sha256,
                                                                 site_thresholds.c.ended_at.is_(None))).first()
            if current is not None:
                conn.execute(update(site_thresholds).where(site_thresholds.c.id == current.id)
                             .values(ended_at=now, ended_by=who, end_reason="replaced"))
            new_id = conn.execute(insert(site_thresholds).values(
                model=model, model_sha256=model_sha256,
                old_threshold=current.new_threshold if current is not None else shipped, new_threshold=new,
                **counts, adopted_by=who, adopted_at=now)).inserted_primary_key[0]
            row = conn.execute(select(site_thresholds).where(site_thresholds.c.id == new_id)).first()
        return _adoption(row)

    def revert(self, *, model_sha256: str, who: str, adoption_id: int | None = None) -> Adoption:
        """End the active adoption of this model version (back to the shipped threshold). ``adoption_id``: the
        adoption the user saw; refused when it is no longer the active one (someone changed it meanwhile)."""
        return self._revert(model_sha256, check_reader(who), adoption_id)

    @guarded
    def _revert(self, model_sha256, who, adoption_id) -> Adoption:
        with self.transaction(write=True) as conn:
            current = conn.execute(select(site_thresholds).where(site_thresholds.c.model_sha256 == model_sha256,
                                                                 site_thresholds.c.ended_at.is_(None))).first()
            if current is None:
                raise SiteReadError("no site threshold is in force for this model: the shipped one applies")
            if adoption_id is not None and current.id != adoption_id:
                raise SiteReadError("the site threshold was changed meanwhile by someone else; reload and look again")
            conn.execute(update(site_thresholds).where(site_thresholds.c.id == current.id)
                         .values(ended_at=self.now(), ended_by=who, end_reason="reverted"))
            row = conn.execute(select(site_thresholds).where(site_thresholds.c.id == current.id)).first()
        return _adoption(row)


# ---------------------------------------------------------------- the reads as the site's figures use them
def _consensus(calls) -> tuple[str | None, str]:
    """The class most readers gave (UNSURE left out), or None and why there is none."""
    from collections import Counter

    ranked = Counter(calls).most_common()
    if not ranked:
        return None, "every read is unsure"
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None, "the readers disagree and no reference standard is recorded"
    return ranked[0][0], ""


def _reference(references) -> tuple[str | None, str]:
    found = {ref for ref in references if ref is not None}
    if len(found) > 1:
        return None, "reference standards recorded for it disagree"
    return (found.pop() if found else None), ""


def film_truths(reads: list[Read]):
    """One row per film of ``reads`` (one model version): its score, OOD distance, first read, number of readers,
    and the class the site's figures hold it to be: its reference standard where one is recorded, else the class
    most of its readers gave (``truth_from`` says which); ``truth`` is None and ``excluded`` says why when the
    reference standards disagree, the readers are split evenly, or every read is unsure."""
    import pandas as pd

    columns = ["film_sha256", "p_pneumonia", "ood_distance", "first_at", "readers", "truth", "truth_from", "excluded"]
    by_film: dict[str, list[Read]] = {}
    for read in reads:
        by_film.setdefault(read.film_sha256, []).append(read)
    rows = []
    for film, part in by_film.items():
        truth, why = _reference(r.reference for r in part)
        source = "reference standard" if truth else ""
        if truth is None and not why:
            truth, why = _consensus(r.read for r in part if r.read != "UNSURE")
            source = "readers" if truth else ""
        rows.append({"film_sha256": film, "p_pneumonia": part[0].p_pneumonia, "ood_distance": part[0].ood_distance,
                     "first_at": min(r.first_at for r in part), "readers": len(part), "truth": truth,
                     "truth_from": source, "excluded": why})
    return pd.DataFrame(rows, columns=columns)


def reader_points(reads: list[Read], threshold: float) -> list[dict]:
    """Each reader against the films' class without their own read: the reference standard where one is recorded,
    else the other readers' majority (films with neither are left out, as are the reader's unsure reads). Per
    reader: ``n`` films, ``sensitivity``, ``specificity`` (None without films of that class), and Cohen's kappa
    with the model's label at ``threshold`` on the films they read."""
    from pneumo_core.site.validation import cohen_kappa

    by_film: dict[str, list[Read]] = {}
    for read in reads:
        by_film.setdefault(read.film_sha256, []).append(read)
    points = []
    for reader in sorted({r.reader for r in reads}):
        mine = [r for r in reads if r.reader == reader and r.read != "UNSURE"]
        pairs = []
        for read in mine:
            truth, why = _reference(r.reference for r in by_film[read.film_sha256])
            if truth is None and not why:
                truth, _ = _consensus(r.read for r in by_film[read.film_sha256]
                                      if r.reader != reader and r.read != "UNSURE")
            if truth is not None:
                pairs.append((truth == "PNEUMONIA", read.read == "PNEUMONIA"))
        positives = [said for truth, said in pairs if truth]
        negatives = [not said for truth, said in pairs if not truth]
        model = [r.p_pneumonia >= threshold for r in mine]
        said = [r.read == "PNEUMONIA" for r in mine]
        points.append({"reader": reader, "reads": sum(r.reader == reader for r in reads), "n": len(pairs),
                       "sensitivity": sum(positives) / len(positives) if positives else None,
                       "specificity": sum(negatives) / len(negatives) if negatives else None,
                       "kappa_with_model": cohen_kappa(said, model) if mine else None})
    return points


def export_table(reads: list[Read]):
    """The reads as a table for ``site reads export``: :data:`EXPORT_COLUMNS`, times in UTC ISO 8601."""
    import pandas as pd

    return pd.DataFrame([read.to_json() for read in reads], columns=list(EXPORT_COLUMNS))


@functools.lru_cache(maxsize=8)
def _open(url: str) -> SiteReads:
    return SiteReads(url)


def site_reads_db(url: str | None = None) -> SiteReads:
    """The reads on ``url``, else on the project's database; one per URL in this process. Raises
    :class:`~pneumo_core.errors.StorageError` when it cannot be used (not cached: the next call tries again)."""
    return _open(url or default_url())
