"""A PACS as a film source over DICOMweb (dicomweb-client): search studies (QIDO-RS), retrieve
instances (WADO-RS), score them like uploads, store results back (STOW-RS).

The server and its credentials are settings, from the environment or Streamlit secrets, never from
a page's user: a URL typed into a browser would let anyone make the server fetch arbitrary
addresses. On the CLI the operator may give the URL; credentials still come from the environment.
TLS certificates are verified (``PNEUMO_DICOMWEB_CA_BUNDLE`` for a private CA) and every call has a
timeout. Credentials never appear in a repr, a message or a log line, and messages name neither the
server's URL, host nor user, nor quote its answers (a page's visitor reads them); third-party log lines that
quote request URLs lose their query strings (they carry search values such as a patient ID).
A failing call raises :class:`PacsError` with one line for the user; in a batch, the other
studies go on.
"""
from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass, field

from pneumo_core.errors import DeflatedOnTheWire, PacsError
from pneumo_core.imaging.decode import MAX_FILE_BYTES
from pneumo_core.imaging.dicom import quiet_pydicom
from pneumo_core.pacs.settings import (
    DEFAULT_MODALITIES,
    ENV_CA_BUNDLE,
    ENV_PASSWORD,
    ENV_TOKEN,
    ENV_USER,
    PacsSettings,
)

#: One answer (a search result or an instance) is read at most this far, like an uploaded file.
MAX_RESPONSE_BYTES = MAX_FILE_BYTES
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DEFLATED = b"1.2.840.10008.1.2.1.99"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"


# ---------------------------------------------------------------- the connection
class _HideQueries(logging.Filter):
    """Strips query strings from log lines that quote request URLs (dicomweb-client, urllib3)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "?" in text:
            record.msg, record.args = re.sub(r"\?[^\s\"']*", "?<query hidden>", text), ()
        return True


def _quiet_third_party_logs() -> None:
    for name in ("dicomweb_client.web", "dicomweb_client.api", "urllib3.connectionpool"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideQueries) for f in logger.filters):
            logger.addFilter(_HideQueries())
    # retrying logs a traceback for every failed attempt; the client's retries are off (see Pacs)
    logging.getLogger("retrying").setLevel(logging.ERROR)


def _bounded_body(response, *args, **kwargs):
    """requests response hook, run before the body is read: reads it here, at most
    ``MAX_RESPONSE_BYTES``, so a server cannot fill memory; spots deflated instances."""
    declared = response.headers.get("Content-Length", "")
    limit = f"over the {MAX_RESPONSE_BYTES // 2**20} MB limit"
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        response.close()
        raise PacsError(f"the PACS answer is {int(declared) / 2**20:.0f} MB, {limit}")
    body = bytearray()
    for chunk in response.iter_content(1 << 20):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            response.close()
            raise PacsError(f"the PACS answer is {limit}")
    response._content = bytes(body)  # requests' own cache of the body: .content and .json() read it
    if response.ok and "json" not in response.headers.get("Content-Type", "") and _DEFLATED in body[:8192]:
        raise DeflatedOnTheWire("deflated instance")
    return response


def _verifying_session(ca_bundle: str | None):
    """A requests Session verifying TLS with ``ca_bundle`` when one is set: requests would otherwise
    let REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the environment replace it on every request."""
    import requests

    class Session(requests.Session):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if ca_bundle:
                merged["verify"] = ca_bundle
            return merged

    session = Session()
    session.verify = ca_bundle or True
    return session


class _BearerAuth:
    """requests auth adding ``Authorization: Bearer``; its repr hides the token."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


@dataclass(frozen=True)
class StudyMatch:
    """One study found by a search: what a page may list (no patient identifiers; no Study Description, free text
    that can name the patient, is asked for)."""

    study_uid: str
    date: str | None  # YYYY-MM-DD (a page shows the year at most)
    modalities: tuple[str, ...]
    instances: int | None


@dataclass(frozen=True)
class InstanceRef:
    """One instance on the PACS."""

    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str | None = None

    @property
    def path(self) -> str:
        """``studies/<StudyUID>/series/<SeriesUID>/instances/<SOPInstanceUID>``, the CLI's ``file``."""
        return f"studies/{self.study_uid}/series/{self.series_uid}/instances/{self.sop_uid}"


def _value(item, tag: str):
    """First value of one attribute in a DICOM JSON data set, else None."""
    values = item.get(tag, {}).get("Value") if isinstance(item.get(tag), dict) else None
    return values[0] if isinstance(values, list) and values else None


def _status_phrase(status: int) -> str:
    """The standard phrase of an HTTP status (never the server's own reason text, which may quote anything)."""
    import http

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "non-standard status"


def _valid_uid(text, what: str) -> str:
    text = str(text or "").strip()
    if len(text) > 64 or not _UID.match(text):
        raise PacsError(f"{what} is not a DICOM UID (digits and dots, at most 64): {text[:70]!r}")
    return text


def _dicom_date(value, what: str) -> str:
    import datetime as dt

    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    text = str(value).strip().replace("-", "")
    try:
        dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise PacsError(f"{what} must be a date (YYYY-MM-DD), got {str(value)[:20]!r}") from None
    return text


class Pacs:
    """One DICOMweb server: the calls the Analyse page and the CLI share. Every call raises
    :class:`PacsError` with a one-line reason within the timeout."""

    def __init__(self, settings: PacsSettings):
        import requests
        from dicomweb_client.api import DICOMwebClient

        _quiet_third_party_logs()
        quiet_pydicom()  # dicomweb-client parses and writes DICOM with pydicom
        self.settings = settings
        session = _verifying_session(settings.ca_bundle)
        if settings.token:
            session.auth = _BearerAuth(settings.token)
        elif settings.user:
            session.auth = requests.auth.HTTPBasicAuth(settings.user, settings.password)
        try:
            self._client = DICOMwebClient(settings.url, session=session, callback=_bounded_body,
                                          timeout=(settings.timeout, settings.timeout))
        except ValueError:
            raise PacsError("the DICOMweb URL in the settings is not one dicomweb-client accepts") from None
        # The client retries 429/503/504 five times with exponential back-off (30 s and more): a busy
        # server must fail within the timeout instead, and the batch goes on.
        self._client.set_http_retry_params(retry=False)

    def __repr__(self) -> str:
        return f"Pacs({self.settings!r})"

    def _call(self, what: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` with every failure turned into one PacsError line."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # dicomweb-client warns about non-conformant servers
                return fn(*args, **kwargs)
        except DeflatedOnTheWire:
            raise
        except PacsError as exc:
            raise PacsError(f"{what}: {exc}") from None
        except Exception as exc:
            raise PacsError(f"{what}: {self._reason(exc)}") from None

    def _reason(self, exc: Exception) -> str:
        import requests
        from pydicom.errors import InvalidDicomError

        # never the URL, host, user or the server's own words: a visitor reads this line
        where, seconds = "the PACS", f"{self.settings.timeout:g} s"
        if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            if status in (401, 403):
                return (f"{where} refused the credentials (HTTP {status}); check {ENV_USER}/{ENV_PASSWORD} "
                        f"or {ENV_TOKEN}")
            if status == 404:
                return f"not found on {where} (HTTP 404)"
            return f"{where} answered HTTP {status} ({_status_phrase(status)})"
        if isinstance(exc, requests.exceptions.SSLError):
            return (f"the TLS certificate of {where} could not be verified (for a private certificate "
                    f"authority set {ENV_CA_BUNDLE})")
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return f"{where} did not accept a connection within {seconds}"
        if isinstance(exc, requests.exceptions.Timeout):
            return f"{where} did not answer within {seconds}"
        if isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            if "refused" in text.lower() or "NewConnectionError" in text or "resolve" in text.lower():
                return f"cannot connect to {where} (it is down, or the URL is wrong)"
            return f"{where} broke off the connection or did not answer in HTTP"
        if isinstance(exc, (ValueError, KeyError, TypeError, IndexError, AttributeError, EOFError, InvalidDicomError)):
            # JSON that does not parse or has the wrong shape, a multipart body that is not one,
            # bytes pydicom cannot read: a server that is not (or not only) DICOMweb
            return f"{where} answered something that is not DICOMweb ({type(exc).__name__})"
        return f"unexpected failure talking to {where} ({type(exc).__name__})"

    # ------------------------------------------------------------ QIDO-RS
    def search_studies(self, patient_id: str | None = None, date_from=None, date_to=None,
                       modalities=DEFAULT_MODALITIES, limit: int = 50) -> list[StudyMatch]:
        """Studies with any of ``modalities``, optionally one patient's and within a date range,
        newest first as the server sends them; at most ``limit``."""
        # one comma-separated value (PS3.18 list matching): for a Python list dicomweb-client repeats
        # the parameter, and Orthanc 1.10 keeps only the last one, hiding every CR-only study
        filters = {"ModalitiesInStudy": ",".join(modalities)}
        if patient_id is not None and str(patient_id).strip():
            patient_id = str(patient_id).strip()
            if len(patient_id) > 64 or "\\" in patient_id or not patient_id.isprintable():
                raise PacsError("a patient ID is at most 64 printable characters, without backslashes")
            filters["PatientID"] = patient_id
        if date_from or date_to:
            start = _dicom_date(date_from, "the first date") if date_from else ""
            end = _dicom_date(date_to, "the last date") if date_to else ""
            if start and end and start > end:
                raise PacsError("the first date is after the last date")
            filters["StudyDate"] = f"{start}-{end}"
        if not 1 <= int(limit) <= 1000:
            raise PacsError("the result limit must be from 1 to 1000")
        found = self._call("searching studies", self._client.search_for_studies, search_filters=filters,
                           fields=["StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedInstances"],
                           limit=int(limit))
        return [self._study(item) for item in self._listing(found, "searching studies")][: int(limit)]

    def _listing(self, found, what: str) -> list:
        if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
            raise PacsError(f"{what}: the PACS answered something that is not DICOMweb (not a list of data sets)")
        return found

    def _answered_uid(self, item: dict, tag: str, what: str) -> str:
        """A UID from a search answer; a server sending anything else is not DICOMweb."""
        try:
            return _valid_uid(_value(item, tag), "UID")
        except PacsError:
            raise PacsError(f"{what}: the PACS answered something that is not DICOMweb (an entry without a valid "
                            f"UID ({tag[:4]},{tag[4:]}))") from None

    def _study(self, item: dict) -> StudyMatch:
        uid = self._answered_uid(item, "0020000D", "searching studies")
        date = str(_value(item, "00080020") or "")
        modalities = item.get("00080061", {}).get("Value") or []
        count = _value(item, "00201208")
        return StudyMatch(uid, f"{date[:4]}-{date[4:6]}-{date[6:8]}" if re.fullmatch(r"\d{8}", date) else None,
                          tuple(str(m)[:16] for m in modalities if isinstance(m, str)),
                          int(count) if isinstance(count, (int, float, str)) and str(count).isdigit() else None)

    def list_instances(self, study_uid: str, modalities=DEFAULT_MODALITIES) -> list[InstanceRef]:
        """The instances of one study whose series Modality is one of ``modalities`` (so stored
        results, Modality OT, are never scored again)."""
        study_uid = _valid_uid(study_uid, "the study")
        found = self._call(f"listing study {study_uid}", self._client.search_for_instances,
                           study_instance_uid=study_uid, fields=["Modality", "InstanceNumber"])
        refs = []
        for item in self._listing(found, f"listing study {study_uid}"):
            modality = str(_value(item, "00080060") or "").upper()
            if modality in modalities:
                what = f"listing study {study_uid}"
                refs.append(InstanceRef(study_uid, self._answered_uid(item, "0020000E", what),
                                        self._answered_uid(item, "00080018", what), modality))
        return refs

    # ------------------------------------------------------------ WADO-RS
    def retrieve(self, ref: InstanceRef) -> tuple[bytes, object]:
        """One instance as stored, as Part 10 bytes for the loader, with the few header attributes a
        stored result needs (:func:`dicom_results.filing_attributes`)."""
        from pneumo_core.pacs.secondary_capture import filing_attributes

        what = f"retrieving {ref.path}"
        args = (ref.study_uid, ref.series_uid, ref.sop_uid)
        try:
            ds = self._call(what, self._client.retrieve_instance, *args)  # as stored: the loader decodes
        except DeflatedOnTheWire:  # ask the server to inflate it; the answer is size-capped like any other
            try:
                ds = self._call(what, self._client.retrieve_instance, *args,
                                media_types=(("application/dicom", _EXPLICIT_LE),))
            except DeflatedOnTheWire:
                raise PacsError(f"{what}: the PACS sends this instance deflated even when asked for it "
                                "uncompressed") from None
        if str(getattr(ds, "SOPInstanceUID", "")) != ref.sop_uid:
            raise PacsError(f"{what}: the PACS sent a different instance")
        buf = io.BytesIO()
        try:
            ds.save_as(buf, enforce_file_format=True)
        except Exception as exc:
            raise PacsError(f"{what}: the instance cannot be written as a DICOM file ({type(exc).__name__})") from None
        return buf.getvalue(), filing_attributes(ds)

    # ------------------------------------------------------------ STOW-RS
    def store(self, ds) -> InstanceRef:
        """Store one data set in its study; the stored instance's reference."""
        ref = InstanceRef(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), "OT")
        answer = self._call(f"storing {ref.path}", self._client.store_instances, [ds],
                            study_instance_uid=ref.study_uid)
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reason = failed[0].get("FailureReason") if isinstance(failed[0], dict) else None
            raise PacsError("the PACS refused to store the result"
                            + (f" (failure reason {int(reason):#06x})" if str(reason).isdigit() else ""))
        return ref


# ---------------------------------------------------------------- retrieve + score + store
@dataclass
class ScoredInstance:
    """One instance retrieved and scored (``prediction.error`` says why not)."""

    ref: InstanceRef
    prediction: object  # inference.prediction.Prediction (immutable: store_results replaces it with a copy)
    filing: object = field(default=None, repr=False)  # patient/study attributes to file a result; never shown
    loaded: object = field(default=None, repr=False)  # prediction.film with keep_loaded (for the viewer)


def score_instances(pacs: Pacs, predictor, refs, explain: bool = False, progress=None,
                    keep_loaded: bool = False, display_size: int | None = None) -> list[ScoredInstance]:
    """Retrieve and score each instance like an upload (``predictor.predict`` on its bytes: decoded once,
    there); one failing instance never stops the others. ``progress(done, total, ref)`` is called before
    each instance and once at the end (``ref`` None). ``keep_loaded`` keeps each film's display copy
    (``prediction.film``, also as ``loaded``: pixels and windowing values, at most ``display_size`` px a
    side; None: as decoded, up to ~25 MB a film) for a viewer."""
    from pneumo_core.inference.prediction import Prediction

    refs, scored = list(refs), []
    for i, ref in enumerate(refs):
        if progress is not None:
            progress(i, len(refs), ref)
        try:
            data, filing = pacs.retrieve(ref)
        except PacsError as exc:
            failed = Prediction(file=ref.path, threshold=predictor.threshold, model=predictor.name, error=str(exc))
            scored.append(ScoredInstance(ref, failed))
            continue
        pred = predictor.predict(data, name=ref.path, explain=explain, keep_image=keep_loaded,
                                 display_size=display_size)
        scored.append(ScoredInstance(ref, pred, filing, pred.film if keep_loaded else None))
    if progress is not None:
        progress(len(refs), len(refs), None)
    return scored


def store_results(pacs: Pacs, scored, model_sha256: str | None = None) -> list[InstanceRef | None]:
    """One Secondary Capture per scored instance (needs ``explain=True``), in one new series per study and call;
    each instance's prediction is replaced by a copy noting where its result went, or why not (they are immutable)."""
    from dataclasses import replace

    from pydicom.uid import generate_uid

    from pneumo_core.pacs.secondary_capture import result_dataset

    series, counts, stored = {}, {}, []
    for item in scored:
        pred = item.prediction
        if pred.label is None or item.filing is None:
            stored.append(None)  # nothing was scored: nothing to store
            continue
        study = item.ref.study_uid
        series.setdefault(study, generate_uid())
        counts[study] = counts.get(study, 0) + 1
        try:
            ds = result_dataset(item.filing, pred, series_uid=series[study], instance_number=counts[study],
                                model_sha256=model_sha256)
            ref = pacs.store(ds)
        except (PacsError, ValueError) as exc:
            item.prediction = replace(pred, notes=(*pred.notes, f"result not stored: {exc}"))
            stored.append(None)
            continue
        item.prediction = replace(pred, notes=(*pred.notes, f"result stored as {ref.path}"))
        stored.append(ref)
    return stored


def find_studies(pacs: Pacs, modalities, studies=None, limit: int | None = None) -> tuple[list[str], list[str]]:
    """``predict --dicomweb``'s Study Instance UIDs: ``studies`` as given (each checked), else every study
    of ``modalities`` found (at most ``limit``, default 100); and the warnings. A failing search raises PacsError."""
    if studies:
        return [_valid_uid(uid, "--study") for uid in studies], []
    found = [s.study_uid for s in pacs.search_studies(modalities=modalities, limit=limit or 100)]
    return found, [] if found else [f"no {'/'.join(modalities)} study on the PACS"]


def score_studies(pacs: Pacs, predictor, studies, modalities, store: bool = False, threshold=None) -> list:
    """Every instance of ``modalities`` in each study scored and labelled at ``threshold`` (None: the predictor's);
    ``store``: a result stored per scored film. A study that fails gets one Prediction with its ``error``."""
    from pneumo_core.inference.predictor import Prediction
    from pneumo_core.review.decisions import at_threshold

    results = []
    for uid in studies:
        try:
            refs = pacs.list_instances(uid, modalities)
            if not refs:
                raise PacsError(f"study {uid} has no {'/'.join(modalities)} instance")
        except PacsError as exc:
            results.append(Prediction(file=f"studies/{uid}", threshold=predictor.threshold, model=predictor.name,
                                      error=str(exc)))
            continue
        scored = score_instances(pacs, predictor, refs, explain=store)
        for item in scored:  # before storing: the stored result carries the label and threshold
            item.prediction = at_threshold(item.prediction, threshold)
        if store:
            store_results(pacs, scored, getattr(predictor, "sha256", None))
        results += [item.prediction for item in scored]
    return [at_threshold(pred, threshold) for pred in results]
