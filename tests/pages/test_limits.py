"""Limits on what one session asks of the server, each said on the page with its number when reached: uploads
per session (count and total size), and scoring at once across sessions (a session that finds every slot
taken waits, then says the film was not scored, and scores it on a later run)."""
from __future__ import annotations

import io
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def _analyse(monkeypatch, **limits) -> AppTest:
    for name, value in limits.items():
        monkeypatch.setenv(name, str(value))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/analyse.py")
    at.run()
    return at


def _upload(at, films: list[tuple[str, bytes]]) -> AppTest:
    at.file_uploader(key="uploads").set_value([(name, data, "image/jpeg") for name, data in films])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _scores(at) -> int:
    return [m.label for m in at.metric].count("P(pneumonia)")


def _warnings(at, words: str) -> list[str]:
    return [w.value for w in at.warning if words in w.value]


def test_uploads_beyond_the_count_limit_are_not_scored_and_the_page_says_so(monkeypatch, data_root):
    films = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[:3]
    at = _upload(_analyse(monkeypatch, PNEUMO_MAX_UPLOADS=2), [(f.name, f.read_bytes()) for f in films])
    (told,) = _warnings(at, "not scored")
    assert "1 of 3 files are not scored" in told and "at most 2 files" in told
    assert _scores(at) == 2 and len(at.dataframe[0].value) == 2  # the review table lists the two scored


def test_uploads_beyond_the_size_limit_are_not_scored(monkeypatch, test_normal):
    from PIL import Image

    big = Image.open(test_normal).convert("L").resize((1500, 1500))  # a real film as a 2.2 MB BMP
    buf = io.BytesIO()
    big.save(buf, "BMP")
    assert buf.tell() > 2**20
    at = _upload(_analyse(monkeypatch, PNEUMO_MAX_UPLOAD_MB=1),
                 [(test_normal.name, test_normal.read_bytes()), ("big.bmp", buf.getvalue())])
    (told,) = _warnings(at, "not scored")
    assert "1 of 2 files are not scored" in told and "1 MB per session" in told
    assert _scores(at) == 1


def test_a_session_finding_every_scoring_slot_taken_says_so_and_scores_later(monkeypatch, test_normal):
    from ui.cache import BUSY, _scoring_slots

    at = _analyse(monkeypatch, PNEUMO_MAX_SCORING=1, PNEUMO_SCORING_WAIT_S=1)
    slots = _scoring_slots(1)  # the server's one slot, shared with every session (st.cache_resource)
    assert slots.acquire(timeout=5)  # another session is scoring
    try:
        _upload(at, [(test_normal.name, test_normal.read_bytes())])
    finally:
        slots.release()
    assert _warnings(at, BUSY) and _scores(at) == 0 and not at.error
    at.run()  # the slot is free again: the film is scored on the next run (the busy result was not kept)
    assert _scores(at) == 1 and not _warnings(at, BUSY)
