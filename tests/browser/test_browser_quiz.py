"""The reader quiz end to end in a real browser: ``streamlit run app.py`` on a free 127.0.0.1 port with a
temporary SQLite quiz database and no dataset folder, driven by headless Chromium (Playwright).

A teacher creates a quiz on the page (it reveals the answer key on close, the default); TWO readers, each in
their own browser context (own cookies, own Streamlit session), join and answer every film at the same time
(their steps interleaved), each in their own order; having finished, neither can see the truth, a figure or the
model's reading, even after a reload; the teacher opens the class view with the key in a third context (checked
against the answers given; a nickname that is a Markdown link shows as typed, no link) and closes the quiz;
then each reader sees their own sensitivity and specificity. Fails on any traceback in the page or in the
server's stderr. Saves screenshots under ``test-artifacts/``; with PNEUMO_SCREENSHOTS=1 it also
refreshes ``docs/screenshots/quiz_result.png`` and ``docs/screenshots/quiz_class.png``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from pneumo_core.quiz.rules import QuizStore
from tests.helpers.browser import require_browser, shots

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
N_FILMS = 10
WAIT_MS = 120_000



@pytest.fixture(scope="module")
def browser_ready():
    require_browser()


def expected_figures(truth: list[str], given: list[tuple[str, int]]) -> tuple[str, str]:
    """Sensitivity and specificity of ``given`` answers, as the pages print them (3 decimals)."""
    tp = sum(a == t == "PNEUMONIA" for (a, _), t in zip(given, truth))
    tn = sum(a == t == "NORMAL" for (a, _), t in zip(given, truth))
    return f"{tp / truth.count('PNEUMONIA'):.3f}", f"{tn / truth.count('NORMAL'):.3f}"


def create_quiz(page, base: str) -> tuple[str, str]:
    page.goto(f"{base}/quiz")
    shots.wait_page_idle(page)
    page.get_by_text("I am a teacher: create a quiz").click()
    page.get_by_role("button", name="Create the quiz").wait_for(timeout=WAIT_MS)
    films = page.get_by_label("Number of films (half NORMAL, half PNEUMONIA; one per patient)")
    films.fill(str(N_FILMS))
    page.get_by_label("Seed of the film order (blank: a random one, recorded)").fill("21")
    page.get_by_role("button", name="Create the quiz").click()
    page.get_by_text("shown only now").wait_for(timeout=WAIT_MS)
    shots.wait_page_idle(page)
    code, key = (c.strip() for c in page.locator('[data-testid="stCode"]').all_inner_texts())
    return code, key


def join(page, base: str, code: str, nickname: str) -> None:
    page.goto(f"{base}/quiz")
    shots.wait_page_idle(page)
    page.get_by_label("Join code (from your teacher)").fill(code)
    page.get_by_label("Nickname (any name you like, up to 40 characters; no real name)").fill(nickname)
    page.get_by_role("button", name="Join").click()
    page.get_by_text(f"0 of {N_FILMS} films answered").wait_for(timeout=WAIT_MS)
    shots.wait_page_idle(page)


def choose(page, done: int, label: str, confidence: int) -> None:
    """Pick the answer to the film shown after ``done`` answers (sent later by :func:`send`)."""
    page.get_by_text(f"{done} of {N_FILMS} films answered").wait_for(timeout=WAIT_MS)
    shots.wait_page_idle(page)
    reading = page.locator('[data-testid="stRadio"]', has_text="Your reading")
    reading.get_by_text(label, exact=True).click()
    sure = page.locator('[data-testid="stRadio"]', has_text="How sure are you?")
    sure.get_by_text({1: "1 guess", 5: "5 sure"}.get(confidence, str(confidence)), exact=True).click()


def send(page) -> None:
    page.get_by_role("button", name="Submit answer").click()


def metric(page, label: str) -> str:
    return page.locator('[data-testid="stMetric"]', has_text=label).locator(
        '[data-testid="stMetricValue"]').first.inner_text().strip()


def dataframe_rows(page, index: int = 0) -> list[list[str]]:
    """The body cells of the ``index``-th st.dataframe, row by row, from the grid's accessible table."""
    table = page.locator('[data-testid="stDataFrame"]').nth(index)
    return [[cell.strip() for cell in row.locator("td").all_inner_texts()] for row in table.locator("tbody tr").all()]


def test_two_readers_at_once_then_the_class_view(browser_ready, tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{tmp_path / 'quiz.sqlite3'}"
    monkeypatch.setenv("PNEUMO_DB_URL", url)
    monkeypatch.setenv("PNEUMO_DATA_DIR", str(tmp_path / "no-dataset"))  # a fresh clone: the bundled set serves
    ARTIFACTS.mkdir(exist_ok=True)
    with shots.Server(ARTIFACTS) as server, sync_playwright() as pw:
        browser = shots.launch_browser(pw)
        try:
            errors = []
            contexts = [browser.new_context(viewport={"width": 1366, "height": 900}) for _ in range(3)]
            teacher, ada, bea = (ctx.new_page() for ctx in contexts)
            for page in (teacher, ada, bea):
                page.on("pageerror", lambda exc: errors.append(str(exc)))
            code, key = create_quiz(teacher, server.url)
            store = QuizStore(url)
            truth = list(store.results(code, key).films.sort_values("position")["truth"])
            assert len(truth) == N_FILMS
            first_normal, last_pneumonia = truth.index("NORMAL"), N_FILMS - 1 - truth[::-1].index("PNEUMONIA")
            other = {"NORMAL": "PNEUMONIA", "PNEUMONIA": "NORMAL"}
            answers = {  # each reader with their own mistakes and confidences
                "[Ada](https://evil.example)": [
                    (other[t] if k == last_pneumonia else t, 2 if k == last_pneumonia else 3 + k % 3)
                    for k, t in enumerate(truth)],
                "<b>Bea</b>": [(other[t] if k in (first_normal, last_pneumonia) else t, 1 + k % 5)
                               for k, t in enumerate(truth)],
            }
            readers = {"[Ada](https://evil.example)": ada, "<b>Bea</b>": bea}
            for name, page in readers.items():
                join(page, server.url, code, name)
            orders = {name: store.resume(page.url.split("reader=")[1].split("&")[0]).order
                      for name, page in readers.items()}
            assert sorted(orders["<b>Bea</b>"]) == list(range(1, N_FILMS + 1))
            for done in range(N_FILMS):  # both readers answering at the same time, each in their own order
                if done == 2:
                    assert "?reader=" in ada.url
                    ada.reload()  # a reload resumes from the ?reader= token in the address, in the same order
                    shots.wait_page_idle(ada)
                for name, page in readers.items():
                    choose(page, done, *answers[name][orders[name][done] - 1])
                for name, page in readers.items():
                    send(page)
                for name, page in readers.items():
                    page.get_by_text(f"Film {orders[name][done]} saved:").wait_for(timeout=WAIT_MS)

            main = '[data-testid="stMain"]'
            for name, page in readers.items():  # finished, but the key stays with the teacher until closing
                for attempt in range(2):  # as left, then after a reload
                    page.get_by_text("the truth, the model's reading and your figures are shown here when the "
                                     "teacher closes the quiz", exact=False).wait_for(timeout=WAIT_MS)
                    shots.wait_page_idle(page)
                    shown = page.locator(main).inner_text()
                    assert "Your result" not in shown and page.locator('[data-testid="stMetric"]').count() == 0
                    assert "truth" not in shown.replace("The truth, the model's reading", "")
                    html = page.content()  # the whole page, hidden parts included
                    assert "truth NORMAL" not in html and "truth PNEUMONIA" not in html and "Film by film" not in html
                    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 0
                    if attempt == 0:
                        page.reload()
            bea.screenshot(path=str(ARTIFACTS / "quiz_key_withheld.png"))

            teacher.goto(f"{server.url}/class")
            shots.wait_page_idle(teacher)
            teacher.get_by_label("Join code").fill(code)
            teacher.get_by_label("Teacher key").fill(key)
            teacher.get_by_role("button", name="Show the results").click()
            teacher.get_by_text("Class mean and spread").wait_for(timeout=WAIT_MS)
            shots.wait_page_idle(teacher)
            teacher.get_by_role("button", name="Close the quiz").click()
            teacher.get_by_text("quiz closed", exact=False).wait_for(timeout=WAIT_MS)
            shots.wait_page_idle(teacher)

            for name, page in readers.items():
                page.get_by_role("button", name="Check whether the quiz is closed").click()
                page.get_by_text("Your result").wait_for(timeout=WAIT_MS)
                shots.wait_page_idle(page)
                sensitivity, specificity = expected_figures(truth, answers[name])
                assert metric(page, "Sensitivity") == sensitivity and metric(page, "Specificity") == specificity
                assert metric(page, "Films answered") == f"{N_FILMS} of {N_FILMS}"
                assert page.get_by_text(f"Reading as: {name}", exact=True).is_visible()
                assert "Traceback" not in page.content()
            assert bea.locator("b", has_text="Bea").count() == 0  # the nickname is text, never markup
            assert "Ada" not in bea.locator(main).inner_text() and "Bea" not in ada.locator(main).inner_text()
            for page in readers.values():  # closed: the truth per film, at last ("Look at a film again" shows film 1)
                assert page.get_by_text("Film by film").is_visible()
                pick = page.locator('[data-testid="stSelectbox"]', has_text="Look at a film again")
                pick.wait_for(timeout=WAIT_MS)
                values = pick.locator("input").evaluate_all("inputs => inputs.map(i => i.value)")
                assert f"Film 1: truth {truth[0]}" in " ".join([pick.inner_text(), *values])

            ada.get_by_text("Your result").evaluate("heading => heading.scrollIntoView({block: 'start'})")
            ada.wait_for_timeout(600)
            ada.screenshot(path=str(ARTIFACTS / "quiz_result.png"))
            if os.environ.get("PNEUMO_SCREENSHOTS") == "1":
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                ada.screenshot(path=str(SCREENSHOTS / "quiz_result.png"))

            teacher.get_by_text("Class mean and spread").wait_for(timeout=WAIT_MS)
            rows = {row[0]: row for row in dataframe_rows(teacher, 0)}
            assert teacher.locator('a[href*="evil.example"]').count() == 0  # the nickname is text, not a link
            assert set(rows) == set(answers)
            for name, given in answers.items():
                sensitivity, specificity = expected_figures(truth, given)
                # columns: nickname, answered, finished, correct, sensitivity, specificity, auc, kappa
                assert rows[name][1] == str(N_FILMS) and rows[name][4:6] == [sensitivity, specificity], rows[name]
            with teacher.expect_download(timeout=WAIT_MS) as download:
                teacher.get_by_role("button", name="Download every answer (CSV)").click()
            exported = pd.read_csv(download.value.path())
            assert len(exported) == 2 * N_FILMS and set(exported["nickname"]) == set(answers)
            for name, given in answers.items():
                mine = exported[exported["nickname"] == name].sort_values("film")
                assert list(zip(mine["answer"], mine["confidence"])) == given
            teacher.get_by_text(f"Quiz {code}", exact=True).evaluate("title => title.scrollIntoView({block: 'start'})")
            teacher.wait_for_timeout(600)
            teacher.screenshot(path=str(ARTIFACTS / "quiz_class.png"))
            if os.environ.get("PNEUMO_SCREENSHOTS") == "1":
                teacher.screenshot(path=str(SCREENSHOTS / "quiz_class.png"))
            assert "Traceback" not in teacher.content()
            assert not errors, errors
            stored = store.results(code, key).answers
            assert len(stored) == 2 * N_FILMS  # nothing lost, nothing doubled
            store.dispose()
        finally:
            browser.close()
        stderr = server.stderr()
    assert "Traceback" not in stderr, stderr[-3000:]
