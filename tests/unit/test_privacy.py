"""Privacy: pydicom never prints a header value; the result stored on a PACS burns in a short hash, not the SOP
Instance UID; the PACS study list shows the year at most and no description; PACS errors name no URL, host, user
or server text; an uploaded film's pseudonym is its short content hash."""
from __future__ import annotations

import hashlib
import http.server
import io
import logging
import socket
import threading
import warnings
from contextlib import contextmanager

import numpy as np
import pytest

from tests.helpers.dicom_files import grey, make_dicom

UID_WITH_A_NAME = "1.2.826.0.SMITH.JOHNNY"  # a Study Instance UID a careless system filled with a name


def _film_with_a_name_in_a_uid(test_normal) -> bytes:
    from pydicom import config

    modes = config.settings.reading_validation_mode, config.settings.writing_validation_mode
    config.settings.reading_validation_mode = config.settings.writing_validation_mode = config.IGNORE
    try:
        return make_dicom(grey(test_normal), StudyInstanceUID=UID_WITH_A_NAME)
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = modes


def test_pydicom_reports_no_header_value_once_a_film_is_read(test_normal, capfd, caplog):
    """The header is read as the PACS path reads it (the filing attributes of a result, which hold the UID)."""
    from pydicom import config, dcmread

    from pneumo_core.imaging.dicom import load_dicom
    from pneumo_core.pacs.secondary_capture import filing_attributes

    data = _film_with_a_name_in_a_uid(test_normal)
    config.settings.reading_validation_mode = config.WARN  # pydicom's default, as a fresh process has it
    logging.getLogger("pydicom").disabled = False
    caplog.set_level(logging.DEBUG)
    with pytest.warns(UserWarning, match="SMITH"):  # the control: plain pydicom quotes the value
        filing_attributes(dcmread(io.BytesIO(data)))
    assert "SMITH" in caplog.text  # and logs it
    capfd.readouterr()
    caplog.clear()

    film = load_dicom(data)  # the workbench reads a DICOM: from now on pydicom is quiet in this process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = filing_attributes(dcmread(io.BytesIO(data)))
    assert str(kept.StudyInstanceUID) == UID_WITH_A_NAME  # read all the same
    assert film.pixels.size and not any("SMITH" in note for note in film.notes)
    out, err = capfd.readouterr()
    assert not [w for w in caught if "SMITH" in str(w.message)]
    assert "SMITH" not in out + err and "SMITH" not in caplog.text


def test_the_stored_result_burns_in_a_short_hash_not_the_uid(monkeypatch, test_normal):
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.prediction import Prediction, heatmap_at
    from pneumo_core.pacs import secondary_capture
    from pneumo_core.review import report_image

    sop = "1.2.826.0.1.3680043.8.498.12345678901234567890"
    burned = {}
    real = report_image.study_report_png

    def spy(*args, **kwargs):
        burned.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(report_image, "study_report_png", spy)
    film = load_path(test_normal)
    pred = Prediction(file=f"studies/1.2.3/series/1.2.3.4/instances/{sop}", label="NORMAL", p_pneumonia=0.2,
                      threshold=0.5, model="frozen", film=film, heatmap=heatmap_at(np.ones((7, 7)), film.pixels.shape))
    page = secondary_capture.result_image(pred)
    assert page.ndim == 3 and page.dtype == np.uint8
    want = "#" + hashlib.sha256(sop.encode()).hexdigest()[:8]
    assert burned["file_name"] == f"PACS film {want}" and sop not in burned["file_name"]
    assert "12345678901234567890" not in " ".join(map(str, burned["notes"]))


def test_the_study_list_shows_the_year_at_most_and_no_description():
    from pneumo_core.pacs.dicomweb import StudyMatch
    from ui.pacs_source import _study_label

    label = _study_label(StudyMatch("1.2.3.4.5", "2024-03-17", ("DX",), 2))
    assert "2024" in label and "03" not in label.replace("2024", "") and "17" not in label
    assert "1.2.3.4.5" not in label
    assert not hasattr(StudyMatch("1.2.3", None, (), None), "description")  # never asked of the PACS


@contextmanager
def _server(status: int, body: bytes):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(status, "SECRET-REASON from the server")
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()


def _pacs(url: str):
    from pneumo_core.pacs.dicomweb import Pacs
    from pneumo_core.pacs.settings import load_settings

    env = {"PNEUMO_DICOMWEB_URL": url, "PNEUMO_DICOMWEB_USER": "radiology-bob",
           "PNEUMO_DICOMWEB_PASSWORD": "Pw-Secret-99", "PNEUMO_DICOMWEB_TIMEOUT": "2"}
    return Pacs(load_settings(environ=env, secrets={}))


@pytest.mark.parametrize("status, words", [(401, "refused the credentials (HTTP 401)"),
                                           (500, "answered HTTP 500 (Internal Server Error)")])
def test_pacs_errors_name_no_url_host_user_or_server_text(status, words):
    from pneumo_core.errors import PacsError

    with _server(status, b"SECRET-BODY at host pacs.internal, user radiology-bob") as url:
        with pytest.raises(PacsError) as err:
            _pacs(url).search_studies()
    message = str(err.value)
    port = url.split(":")[2].split("/")[0]
    assert words in message and "\n" not in message, message
    for secret in ("127.0.0.1", port, "radiology-bob", "Pw-Secret-99", "SECRET", "dicom-web", "http"):
        assert secret not in message, (secret, message)


def test_an_unreachable_pacs_error_names_no_host():
    from pneumo_core.errors import PacsError

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PacsError) as err:
        _pacs(f"http://127.0.0.1:{port}/dicom-web").search_studies()
    message = str(err.value)
    assert "cannot connect to the PACS" in message and "127.0.0.1" not in message and str(port) not in message


def test_a_pseudonym_is_the_short_content_hash_and_keeps_a_known_suffix():
    from ui.uploads import film_of, pseudonym

    data = b"any bytes"
    digest = hashlib.sha256(data).hexdigest()[:8]
    assert pseudonym(film_of("SMITH_JOHN_19800101.DCM", data)).name == f"film {digest}.dcm"
    assert pseudonym(film_of("DOE.weird", data)).name == f"film {digest}"
    assert pseudonym(film_of("x.png", data)).sha256 == hashlib.sha256(data).hexdigest()  # same content, same key
