"""Concurrent dashboard sessions: ``--sessions`` browser sessions (headless Chromium) each upload ``--films``
test films to the Analyse page at once; the server's CPU time per labelled film, beside a bare Keras forward
pass of the same model (CPU time per film, batch 1, in this process), for each backend.

    python -m benchmarks.concurrent_sessions [--sessions 10] [--films 6] [--lean-python .venv-lean/bin/python]

* ``LiteRT, lean venv``: ``streamlit run app.py`` by the venv made from requirements.txt alone (the default
  backend: LiteRT, the interpreter pool of docs/design.md).
* ``Keras backend``: the same server in this venv with ``PNEUMO_BACKEND=keras``.

Server CPU is the user + system time of the Streamlit process (``/proc/<pid>/stat``) from the first upload to
the last label; it includes everything the server does for a film (decoding, the model with Grad-CAM, OOD
check, display JPEGs, the page). Each session's films are distinct; every film must be labelled and the
server's stderr must hold no traceback. Issue target: at most 2x the bare forward pass per film.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _bench as bench


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_forward_cpu_per_film(files: list[str], repeats: int = 3) -> float:
    """CPU seconds per film of the compiled Keras model on one preprocessed film at a time (median of passes)."""
    import tensorflow as tf

    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.model_files import load_model
    from pneumo_core.inference.preprocess import model_input

    model = tf.function(load_model("finetuned"), reduce_retracing=True)
    xs = [tf.constant(model_input(load_path(f))[None]) for f in files]
    model(xs[0]).numpy()
    passes = []
    for _ in range(repeats):
        t0 = time.process_time()
        for x in xs:
            model(x).numpy()
        passes.append((time.process_time() - t0) / len(xs))
    return float(np.median(passes))


def sessions_run(python: str | None, env: dict, files: list[str], sessions: int, films: int) -> dict:
    """One server, ``sessions`` pages uploading ``films`` films each at once; the server's CPU per film."""
    from playwright.sync_api import sync_playwright

    from scripts import screenshots as shots

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with shots.Server(bench.ROOT / "test-artifacts" / "bench-sessions", python=python) as server, \
                sync_playwright() as pw:
            browser = shots.launch_browser(pw)
            pages = [browser.new_context(viewport={"width": 1366, "height": 900}).new_page() for _ in range(sessions)]
            for page in pages:  # every session open and its model loaded before the clock starts
                page.goto(f"{server.url}/analyse")
                shots.wait_page_idle(page)
            shots.upload_and_wait(pages[0], Path(files[-1]))  # warm-up film, not counted
            pages[0].goto(f"{server.url}/analyse")
            shots.wait_page_idle(pages[0])
            cpu0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
            for k, page in enumerate(pages):
                batch = files[k * films:(k + 1) * films]
                page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(batch)
            deadline = time.time() + 900
            for page in pages:  # every session's films labelled (or the deadline)
                while shots.label_locator(page).count() < films and time.time() < deadline:
                    page.wait_for_timeout(250)
            cpu1, wall = cpu_seconds(server.proc.pid), time.perf_counter() - t0
            labelled = sum(shots.label_locator(page).count() for page in pages)
            browser.close()
        log = server.stderr_path.read_text(errors="replace")
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    n = sessions * films
    return {"films": n, "labelled": labelled, "traceback": "Traceback" in log, "wall_s": round(wall, 1),
            "server_cpu_s": round(cpu1 - cpu0, 2), "server_cpu_ms_per_film": round((cpu1 - cpu0) / n * 1000, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--films", type=int, default=6)
    ap.add_argument("--lean-python", default=bench.LEAN_PYTHON)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    if bench.missing_lean_venv(args.lean_python):
        return 2
    bench.warn_if_busy()
    files = bench.test_files()[:: 7][: args.sessions * args.films + 1]
    bare = bare_forward_cpu_per_film(files[:24])
    rows = [{"run": "bare Keras forward (batch 1)", "server_cpu_ms_per_film": round(bare * 1000, 1)}]
    for name, python, env in (("LiteRT, lean venv", args.lean_python, {"PNEUMO_BACKEND": "litert"}),
                              ("Keras backend", None, {"PNEUMO_BACKEND": "keras"})):
        result = sessions_run(python, env, files, args.sessions, args.films)
        rows.append({"run": name, **result, "ratio_to_bare": round(result["server_cpu_ms_per_film"] / 1000 / bare, 2)})
    m = bench.machine()
    print(f"{args.sessions} sessions x {args.films} films; {m['cpu']}, {m['cpus']} CPUs; "
          f"CPU busy before run {m['cpu_busy_before_run']}")
    bench.print_table(rows, ["run", "films", "labelled", "traceback", "wall_s", "server_cpu_ms_per_film",
                             "ratio_to_bare"])
    bench.dump(args.json, {"machine": m, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
