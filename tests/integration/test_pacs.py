"""The PACS source (issue 14): settings, a real Orthanc round trip, and servers that fail.

Orthanc (Debian's orthanc + orthanc-dicomweb) holds DICOMs made here from test-split films; the CLI
queries it, retrieves and scores every CR/DX instance, stores one Secondary Capture per scored
film, and a second query finds exactly those. Servers that are down, slow, refuse the
credentials or answer garbage are real sockets on 127.0.0.1: each gets one clear line within the
timeout, and the other studies go on.
"""
from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from pneumo_core.cli import build_parser, main
from pneumo_core.cli.predict import from_pacs
from pneumo_core.errors import PacsError
from pneumo_core.pacs.dicomweb import (
    InstanceRef,
    Pacs,
    find_studies,
    score_instances,
    score_studies,
    store_results,
)
from pneumo_core.pacs.secondary_capture import RESULT_SERIES_DESCRIPTION, SECONDARY_CAPTURE
from pneumo_core.pacs.settings import load_settings, pacs_configured
from tests.helpers import orthanc as orthanc_helper
from tests.helpers.dicom_files import PATIENT_ID, PATIENT_NAME, SECRETS, compress, dx_film, grey, missing_tools
from tests.helpers.orthanc import ENV_NAMES
from tests.helpers.support import require


@pytest.fixture
def pacs_env(monkeypatch):
    """Sets the PNEUMO_DICOMWEB_* variables for an in-process CLI run (and clears the others)."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)

    def apply(env: dict):
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return apply


def run(argv, capsys) -> tuple[int, str, str]:
    """The CLI in this process (TensorFlow is started once per test session)."""
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- settings
def test_settings_come_from_env_or_secrets_and_never_show_credentials():
    env = {"PNEUMO_DICOMWEB_URL": "https://pacs.example.org/dicom-web/", "PNEUMO_DICOMWEB_USER": "alice",
           "PNEUMO_DICOMWEB_PASSWORD": "pw-Xy7-secret"}
    settings = load_settings(environ=env)
    assert settings.url == "https://pacs.example.org/dicom-web" and settings.timeout == 10.0
    assert settings.auth_kind.startswith("basic") and not settings.cleartext_credentials
    for text in (repr(settings), str(settings), repr(Pacs(settings)), f"{settings}"):
        assert "pw-Xy7-secret" not in text and "alice" not in text
    secrets = {"PNEUMO_DICOMWEB_URL": "http://10.1.2.3:8042/dicom-web", "PNEUMO_DICOMWEB_TOKEN": "tok-Qq9-secret",
               "PNEUMO_DICOMWEB_TIMEOUT": "2.5"}
    from_secrets = load_settings(environ={}, secrets=secrets)
    assert from_secrets.token == "tok-Qq9-secret" and from_secrets.timeout == 2.5
    assert from_secrets.cleartext_credentials  # a token over http:// to another machine
    assert "tok-Qq9-secret" not in repr(from_secrets) + repr(Pacs(from_secrets))
    assert load_settings("https://other.example.org/wado", environ=env).url == "https://other.example.org/wado"
    assert pacs_configured(environ={}, secrets=secrets) and not pacs_configured(environ={}, secrets={})


@pytest.mark.parametrize("env, words", [
    ({}, "no PACS configured"),
    ({"PNEUMO_DICOMWEB_URL": "https://bob:hunter2@pacs.example.org/dicom-web"}, "never in the URL"),
    ({"PNEUMO_DICOMWEB_URL": "ftp://pacs.example.org/dicom-web"}, "https://"),
    ({"PNEUMO_DICOMWEB_URL": "https://pacs.example.org/dicom-web?x=1"}, "without ?query"),
    ({"PNEUMO_DICOMWEB_URL": "https://pacs.example.org", "PNEUMO_DICOMWEB_USER": "bob"}, "both"),
    ({"PNEUMO_DICOMWEB_URL": "https://pacs.example.org", "PNEUMO_DICOMWEB_USER": "bob",
      "PNEUMO_DICOMWEB_PASSWORD": "hunter2", "PNEUMO_DICOMWEB_TOKEN": "t"}, "not both"),
    ({"PNEUMO_DICOMWEB_URL": "https://pacs.example.org", "PNEUMO_DICOMWEB_TIMEOUT": "soon"}, "seconds"),
    ({"PNEUMO_DICOMWEB_URL": "https://pacs.example.org", "PNEUMO_DICOMWEB_CA_BUNDLE": "/no/such.pem"}, "not exist"),
])
def test_bad_settings_get_one_line(env, words):
    with pytest.raises(PacsError) as info:
        load_settings(environ=env)
    assert words in str(info.value) and "\n" not in str(info.value) and "hunter2" not in str(info.value)


def test_cli_wants_files_or_dicomweb_not_both(capsys, test_normal):
    for argv in (["predict", "--json"], ["predict", str(test_normal), "--dicomweb", "https://pacs.example.org"],
                 ["predict", str(test_normal), "--store-results"]):
        code, out, err = run(argv, capsys)
        assert code == 2 and out == "" and err.startswith("error:") and err.count("\n") == 1, err


# ---------------------------------------------------------------- servers that fail
class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status, headers, body = self.server.reply(self)
        if status is None:  # hold the connection without answering
            time.sleep(self.server.hold)
            return
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):  # quiet
        pass


@contextmanager
def fake_pacs(reply, tls_context=None, hold: float = 5.0):
    """An HTTP(S) server on 127.0.0.1 answering every request with ``reply(handler)``; its DICOMweb URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads, server.reply, server.hold = True, reply, hold
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls_context else 'http'}://127.0.0.1:{server.server_address[1]}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def raw_socket_server(answer: bytes):
    """A TCP server on 127.0.0.1 that sends ``answer`` (not HTTP) to each client and hangs up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()


def pacs_at(url: str, timeout: str = "2", **env) -> Pacs:
    return Pacs(load_settings(environ={"PNEUMO_DICOMWEB_URL": url, "PNEUMO_DICOMWEB_TIMEOUT": timeout, **env}))


def one_line_error(call, *words, within: float) -> str:
    started = time.perf_counter()
    with pytest.raises(PacsError) as info:
        call()
    elapsed = time.perf_counter() - started
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 300 and all(w in msg for w in words), msg
    assert elapsed < within, f"{elapsed:.1f} s: {msg}"
    return msg


def test_a_pacs_that_is_down_is_reported_at_once():
    port = orthanc_helper.free_port()  # nothing listens there
    pacs = pacs_at(f"http://127.0.0.1:{port}/dicom-web")
    msg = one_line_error(pacs.search_studies, "cannot connect to the PACS", within=2)
    assert "127.0.0.1" not in msg and str(port) not in msg  # no host or URL in a message a visitor reads


def test_a_slow_pacs_times_out_on_every_call():
    with fake_pacs(lambda handler: (None, {}, b""), hold=8) as url:
        pacs = pacs_at(url, timeout="1")
        one_line_error(pacs.search_studies, "did not answer within 1 s", within=3)
        one_line_error(lambda: pacs.retrieve(InstanceRef("1.2.3", "1.2.3.4", "1.2.3.4.5")), "within 1 s", within=3)


def _answers(status, content_type, body, **headers):
    return lambda handler: (status, {"Content-Type": content_type, "Content-Length": str(len(body)), **headers}, body)


@pytest.mark.parametrize("reply, words", [
    (_answers(200, "text/html", b"<html><body>Welcome to nginx</body></html>"), "not DICOMweb"),
    (_answers(200, "application/dicom+json", b'{"hello": "world"}'), "not DICOMweb"),
    (_answers(200, "application/dicom+json", b'[1, 2, 3]'), "not DICOMweb"),
    (_answers(200, "application/dicom+json", b'[{"0020000D": {"vr": "UI", "Value": ["not-a-uid; DROP"]}}]'),
     "without a valid UID (0020,000D)"),
    (_answers(401, "text/plain", b"no"), "refused the credentials (HTTP 401)"),
    (_answers(403, "text/plain", b"no"), "refused the credentials (HTTP 403)"),
    (_answers(500, "text/plain", b"boom"), "HTTP 500 (Internal Server Error)"),  # never the server's words
    (_answers(503, "text/plain", b"busy"), "HTTP 503"),  # no retry with back-off: at once
    (lambda h: (200, {"Content-Type": "application/dicom+json", "Content-Length": "900000000"}, b"[]"),
     "858 MB, over the 64 MB limit"),
])
def test_a_pacs_answering_garbage_gets_a_clear_line(reply, words):
    with fake_pacs(reply) as url:
        one_line_error(pacs_at(url).search_studies, "searching studies", words, within=3)


def test_a_garbage_instance_and_a_non_http_server(monkeypatch):
    multipart = b"--xyz\r\nContent-Type: application/dicom\r\n\r\nthis is not DICOM at all\r\n--xyz--"
    reply = _answers(200, 'multipart/related; type="application/dicom"; boundary=xyz', multipart)
    with fake_pacs(reply) as url:
        one_line_error(lambda: pacs_at(url).retrieve(InstanceRef("1.2.3", "1.2.3.4", "1.2.3.4.5")),
                       "retrieving studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5", "not DICOMweb", within=3)
    with raw_socket_server(b"\x00\xff SSH-2.0-OpenSSH_9.2 \x07\r\n\r\n") as url:
        one_line_error(pacs_at(url).search_studies, "broke off the connection or did not answer in HTTP", within=3)
    monkeypatch.setattr("pneumo_core.pacs.dicomweb.MAX_RESPONSE_BYTES", 1000)  # an answer without a length, too long

    def big(handler):
        return 200, {"Content-Type": "application/dicom+json", "Connection": "close"}, b"[" + b" " * 5000

    with fake_pacs(big) as url:
        one_line_error(pacs_at(url).search_studies, "over the 0 MB limit", within=3)


def test_cli_warns_of_cleartext_credentials_before_the_error_of_a_failing_search(pacs_env, capsys):
    """The library returns its warnings; the CLI prints each as it arises, so a search that fails
    still comes after the warning that the credentials went unencrypted."""
    port = orthanc_helper.free_port()  # nothing listens there; 127.0.0.2 counts as another machine
    pacs_env({"PNEUMO_DICOMWEB_USER": "bob", "PNEUMO_DICOMWEB_PASSWORD": "pw-Cl3ar-secret",
              "PNEUMO_DICOMWEB_TIMEOUT": "2"})
    code, out, err = run(["predict", "--dicomweb", f"http://127.0.0.2:{port}/dicom-web", "--json"], capsys)
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 2, err
    assert lines[0] == f"warning: credentials go unencrypted (http://) to http://127.0.0.2:{port}"
    assert lines[1].startswith("error: searching studies: ") and "cannot connect" in lines[1]
    assert "pw-Cl3ar-secret" not in err


def test_cli_warns_when_a_search_finds_nothing_and_prints_an_empty_list(pacs_env, capsys):
    with fake_pacs(_answers(200, "application/dicom+json", b"[]")) as url:
        assert find_studies(pacs_at(url), ("CR", "DX")) == ([], ["no CR/DX study on the PACS"])
        assert find_studies(pacs_at(url), ("DX",), ["1.2.3"], 5) == (["1.2.3"], [])  # named: no search
        pacs_env({"PNEUMO_DICOMWEB_TIMEOUT": "2"})
        code, out, err = run(["predict", "--dicomweb", url, "--model", "frozen", "--json"], capsys)
    assert code == 0 and json.loads(out) == [], err
    told = [line for line in err.splitlines() if line.startswith(("warning:", "error:"))]
    assert told == ["warning: no CR/DX study on the PACS"]


def test_tls_is_verified_and_a_private_ca_can_be_named(tmp_path):
    require(subprocess.run(["openssl", "version"], capture_output=True).returncode == 0, "openssl not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                           str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with fake_pacs(_answers(200, "application/dicom+json", b"[]"), tls_context=context) as url:
        one_line_error(pacs_at(url).search_studies, "TLS certificate", "PNEUMO_DICOMWEB_CA_BUNDLE", within=3)
        assert pacs_at(url, PNEUMO_DICOMWEB_CA_BUNDLE=str(cert)).search_studies() == []


# ---------------------------------------------------------------- a real Orthanc
@pytest.fixture(scope="module")
def stored_films(orthanc, data_root, tmp_path_factory, shipped_predictor):
    """Three studies of one patient: A (DX: a plain film and a MONOCHROME1 JPEG-LS film), B (CR: a
    deflated film; DX: a lateral), C (CT). Returns {study: [(SOP UID, clean p) or lateral]} and UIDs."""
    from pydicom.uid import generate_uid

    missing = missing_tools()
    require(not missing, f"DICOM tools missing: {', '.join(missing)}")
    tmp = tmp_path_factory.mktemp("pacs-films")
    normal = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))
    pneumonia = sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))
    studies = {name: generate_uid() for name in "ABC"}
    plan = [("A", normal[0], "MONOCHROME2", "DX", None, "PA"),
            ("A", pneumonia[0], "MONOCHROME1", "DX", "jpeg-ls-lossless", "AP"),
            ("B", normal[1], "MONOCHROME2", "CR", "deflate", "PA"),
            ("B", pneumonia[1], "MONOCHROME2", "DX", None, "LATERAL"),
            ("C", pneumonia[2], "MONOCHROME2", "CT", None, "")]
    expected = {}
    for i, (study, film, photometric, modality, tool, view) in enumerate(plan):
        sop = generate_uid()
        path = tmp / f"{i}.dcm"
        path.write_bytes(dx_film(grey(film), photometric, Modality=modality, ViewPosition=view,
                                 StudyInstanceUID=studies[study], SeriesInstanceUID=generate_uid(),
                                 SOPInstanceUID=sop, StudyDate="20240105", StudyTime="101500", StudyID="S1"))
        if tool:
            path = compress(path, tool, tmp / f"{i}-{tool}.dcm")
        orthanc.upload(path.read_bytes())
        expected.setdefault(study, []).append((sop, view, shipped_predictor.predict(film).p_pneumonia))
    return studies, expected


def secrets_absent(*texts):
    text = " ".join(texts)
    for secret in SECRETS:
        assert secret not in text, secret


def test_round_trip_query_retrieve_score_store_and_query_again(orthanc, stored_films, shipped_predictor, pacs_env,
                                                               capsys, caplog, monkeypatch):
    import requests
    from dicomweb_client.api import DICOMwebClient

    studies, expected = stored_films
    caplog.set_level(logging.DEBUG)
    pacs_env(orthanc.env())
    code, out, err = run(["predict", "--dicomweb", orthanc.dicomweb, "--store-results", "--json"], capsys)
    assert code == 0, err
    rows = {row["file"]: row for row in json.loads(out)}
    assert len(rows) == 4  # A: 2, B: 2 (CR and the lateral DX), C (CT) not searched
    scored = 0
    for study in "AB":
        for sop, view, clean_p in expected[study]:
            (path, row), = [(p, r) for p, r in rows.items() if p.endswith(f"/instances/{sop}")]
            assert path.startswith(f"studies/{studies[study]}/series/") and "/instances/" in path
            if view == "LATERAL":
                assert row["label"] is None and "View Position LATERAL" in row["error"]
                continue
            assert row["error"] is None and row["p_pneumonia"] == pytest.approx(clean_p, abs=1e-5)
            assert any(n.startswith("result stored as studies/") for n in row["notes"])
            scored += 1
    assert scored == 3
    secrets_absent(out, err, caplog.text)
    assert orthanc.password not in out + err + caplog.text

    # the second query: one result per scored film, in one new series per study, filed correctly
    session = requests.Session()
    session.auth = (orthanc.user, orthanc.password)
    client = DICOMwebClient(orthanc.dicomweb, session=session)
    for study, films in expected.items():
        series = [s for s in client.search_for_series(studies[study], fields=["SeriesDescription"])
                  if s.get("0008103E", {}).get("Value") == [RESULT_SERIES_DESCRIPTION]]
        wanted = [sop for sop, view, _ in films if view != "LATERAL"] if study != "C" else []
        assert len(series) == (1 if wanted else 0)
        if not wanted:
            continue
        series_uid = series[0]["0020000E"]["Value"][0]
        results = client.search_for_instances(studies[study], series_uid)
        assert len(results) == len(wanted)
        for item in results:
            ds = client.retrieve_instance(studies[study], series_uid, item["00080018"]["Value"][0])
            assert ds.SOPClassUID == SECONDARY_CAPTURE and ds.Modality == "OT" and ds.BurnedInAnnotation == "YES"
            assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.SeriesDescription == RESULT_SERIES_DESCRIPTION
            assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID in wanted
            source = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
            assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == source
            assert str(ds.PatientName) == PATIENT_NAME and ds.PatientID == PATIENT_ID  # to file it with the patient
            assert ds.StudyInstanceUID == studies[study] and ds.AccessionNumber == "ACC-4242-SECRET"
            assert ds.PatientBirthDate == "" and ds.PatientSex == "" and ds.ReferringPhysicianName == ""
            assert "InstitutionName" not in ds and "ViewPosition" not in ds and "RESEARCH USE ONLY" in ds.ImageComments
            banner = ds.pixel_array[:64]
            assert (banner[..., 0] > 150).mean() > 0.5 and (banner[..., 1] < 60).mean() > 0.4  # red banner

    # named studies: the results (Modality OT) are never scored again, and a study that is not
    # there gets its own error while the other goes on
    # (the CLI's steps with the session's model: a second model load would add nothing)
    bogus = "1.2.826.0.1.3680043.99.1"
    args = build_parser().parse_args(["predict", "--dicomweb", orthanc.dicomweb, "--study", studies["A"],
                                      "--study", bogus, "--modality", "DX", "--json"])
    pacs = Pacs(load_settings(url=args.dicomweb))
    named, warnings = find_studies(pacs, ("DX",), args.study, args.limit)
    assert named == [studies["A"], bogus] and warnings == []
    again = score_studies(pacs, shipped_predictor, named, ("DX",), store=args.store_results)
    assert [pred.file for pred in again[:2]] == [p for p in rows if p.startswith(f"studies/{studies['A']}/")]
    assert all(pred.label for pred in again[:2]) and len(again) == 3
    assert again[2].file == f"studies/{bogus}" and again[2].error == f"study {bogus} has no DX instance"
    monkeypatch.setattr("pneumo_core.cli.predict.load_predictor", lambda _: shipped_predictor)
    _, via_cli = from_pacs(args)  # the CLI's handler: the same predictions
    assert [(r.file, r.label, r.error) for r in via_cli] == [(r.file, r.label, r.error) for r in again]


def test_wrong_password_is_one_line_and_shows_no_password(orthanc, stored_films, pacs_env, capsys):
    pacs_env(orthanc.env(PNEUMO_DICOMWEB_PASSWORD="Wr0ng-Guess-42"))
    started = time.perf_counter()
    code, out, err = run(["predict", "--dicomweb", orthanc.dicomweb], capsys)
    assert code == 2 and out == "" and time.perf_counter() - started < 5
    assert err.startswith("error: searching studies: the PACS refused") and err.count("\n") == 1
    assert "127.0.0.1" not in err and orthanc.user not in err
    assert "refused the credentials (HTTP 401)" in err and "Wr0ng-Guess-42" not in err
    assert orthanc.password not in err


def test_the_pages_calls_search_score_with_progress_and_store(orthanc, stored_films, shipped_predictor, caplog):
    studies, expected = stored_films
    caplog.set_level(logging.DEBUG)
    pacs = Pacs(load_settings(environ=orthanc.env()))
    found = pacs.search_studies(patient_id=PATIENT_ID, date_from="2024-01-01", date_to="2024-01-31", limit=10)
    assert {s.study_uid for s in found} == {studies["A"], studies["B"]}
    match = next(s for s in found if s.study_uid == studies["A"])
    assert match.date == "2024-01-05" and "DX" in match.modalities
    assert pacs.search_studies(patient_id="NOBODY-0000") == [] and len(pacs.search_studies(limit=1)) == 1
    assert pacs.search_studies(date_from="2025-01-01") == []
    (deflated,) = [ref for ref in pacs.list_instances(studies["B"]) if ref.modality == "CR"]
    data, filing = pacs.retrieve(deflated)  # stored deflated: asked for again uncompressed, never inflated here
    assert b"1.2.840.10008.1.2.1.99" not in data[:4096] and filing.SOPInstanceUID == deflated.sop_uid
    refs = pacs.list_instances(studies["A"]) + [InstanceRef(studies["A"], "1.2.3.4", "1.2.3.4.5", "DX")]
    calls = []
    scored = score_instances(pacs, shipped_predictor, refs, explain=True, progress=lambda *a: calls.append(a),
                             keep_loaded=True)
    assert [c[:2] for c in calls] == [(0, 3), (1, 3), (2, 3), (3, 3)] and calls[-1][2] is None
    assert [s.prediction.label is not None for s in scored] == [True, True, False]  # the bogus one fails alone
    assert "not found" in scored[2].prediction.error or "not DICOMweb" in scored[2].prediction.error
    assert scored[0].prediction.heatmap is not None and PATIENT_ID not in repr(scored[0])
    # the MONOCHROME1 JPEG-LS film, kept for the viewer: values to window, facts to show
    loaded = next(item.loaded for item in scored[:2] if item.loaded.raw_inverted)
    assert loaded.dicom["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.80" and loaded.raw.dtype == np.uint16
    assert loaded.dicom["pixel_spacing_mm"] == [0.139, 0.139] and scored[2].loaded is None
    stored = store_results(pacs, scored, shipped_predictor.sha256)
    assert [s is not None for s in stored] == [True, True, False]
    assert stored[0].series_uid == stored[1].series_uid  # one new series for the study
    secrets_absent(caplog.text)  # the patient ID searched for is in a query string: hidden from the logs
