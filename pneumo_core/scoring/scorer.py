"""The scoring function every engine runs: a batch of films (a column of ``file`` keys, with the UIDs for
PACS instances) -> their result rows as an Arrow table of :data:`results.SCHEMA`. A callable class: the model
loads once, in ``__init__``, then scores batch after batch, the shape both Ray Data's ``map_batches`` (one
instance per actor) and Spark's ``predict_batch_udf`` (``make_predict_fn``) expect.

A film that cannot be read, decoded or retrieved, or is not a chest X-ray, gets a row with its ``error``;
nothing a film holds makes a batch fail."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa

from pneumo_core.imaging.decode import MAX_FILE_BYTES
from pneumo_core.scoring.results import as_table, now


def file_sha256(path: str) -> str | None:
    """SHA-256 of a regular file of at most the size the loader reads, else None (a missing file, a folder,
    a FIFO that would block, a file too large to score)."""
    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size > MAX_FILE_BYTES:
            return None
        digest = hashlib.sha256()
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None


def _columns(batch) -> dict[str, list]:
    """A batch as Python lists by column: an Arrow table, a pandas frame or a dict of arrays or lists."""
    if isinstance(batch, pa.Table):
        return batch.to_pydict()
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):  # pandas
        return {c: batch[c].tolist() for c in batch.columns}
    return {k: list(v) for k, v in dict(batch).items()}


def _scrubbed(message: str, uids, key: str) -> str:
    """``message`` with every UID of the instance replaced by its reference (PACS messages name the path)."""
    for uid in uids:
        message = message.replace(str(uid), "…")
    return message.replace("studies/…/series/…/instances/…", key)


class FilmScorer:
    """Loads the model once (``model``, ``threshold``, ``kind``: as :class:`Predictor`; ``num_threads``: LiteRT
    threads), then scores batches: ``scorer(batch)`` -> an Arrow table of :data:`results.SCHEMA`. ``pacs_url``:
    the DICOMweb server PACS instances are retrieved from (credentials from this process's own settings)."""

    def __init__(self, model: str = "finetuned", threshold: float | None = None, kind: str | None = None,
                 num_threads: int | None = None, batch_size: int | None = None, pacs_url: str | None = None,
                 warm_up: bool = True):
        from pneumo_core.inference.backends import choose_kind
        from pneumo_core.inference.predictor import Predictor

        kind = choose_kind(model, kind)
        options = {"num_threads": num_threads, "interpreters": 1} if num_threads and kind == "litert" else {}
        self.predictor = Predictor(model, threshold=threshold, kind=kind, warm_up=warm_up, **options)
        self.batch_size = batch_size
        self.pacs_url = pacs_url
        self._pacs = None

    def __call__(self, batch) -> pa.Table:
        columns = _columns(batch)
        keys = [str(k) for k in columns["file"]]
        if columns.get("sop_uid") is not None and any(u is not None for u in columns["sop_uid"]):
            rows = self._score_instances(keys, columns)
        else:
            rows = self._score_files(keys)
        return self.table(rows)

    def table(self, rows: list[dict]) -> pa.Table:
        """``rows`` with this model's fields and the time, as a results table."""
        stamp, p = now(), self.predictor
        for row in rows:
            row.update(threshold=p.threshold, model=p.name, model_sha256=p.sha256, scored_at=stamp)
        return as_table(rows)

    @staticmethod
    def _row(key: str, digest: str | None, prediction) -> dict:
        return {"file": key, "content_sha256": digest, "label": prediction.label,
                "p_pneumonia": prediction.p_pneumonia, "is_chest_xray": prediction.is_chest_xray,
                "ood_distance": prediction.ood_distance, "error": prediction.error}

    def _score_files(self, paths: list[str]) -> list[dict]:
        predictions = self.predictor.predict_files(paths, batch_size=self.batch_size)
        return [self._row(path, file_sha256(path), pred) for path, pred in zip(paths, predictions)]

    def _score_instances(self, keys: list[str], columns: dict) -> list[dict]:
        """PACS instances, retrieved one by one (``Pacs.retrieve``: size-capped) and scored like uploads."""
        from pneumo_core.errors import PacsError
        from pneumo_core.pacs.dicomweb import InstanceRef

        rows = []
        for i, key in enumerate(keys):
            uids = (columns["study_uid"][i], columns["series_uid"][i], columns["sop_uid"][i])
            try:
                data, _ = self.pacs().retrieve(InstanceRef(*uids))
            except PacsError as exc:
                rows.append({"file": key, "error": _scrubbed(str(exc), uids, key)})
                continue
            pred = self.predictor.predict(data, name=key)
            rows.append(self._row(key, hashlib.sha256(data).hexdigest(), pred))
        return rows

    def pacs(self):
        """The PACS of ``pacs_url``, opened on first use in this process (a Ray actor opens its own)."""
        if self._pacs is None:
            from pneumo_core.pacs.dicomweb import Pacs
            from pneumo_core.pacs.settings import load_settings

            self._pacs = Pacs(load_settings(url=self.pacs_url))
        return self._pacs
