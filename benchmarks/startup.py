"""Start-up: model load in a fresh process, and the dashboard's cold start.

    python -m benchmarks.startup [--model finetuned] [--repeats 5] [--no-dashboard]

Model load, each in a new Python process (the files are in the page cache after the first):

* ``import``: ``import tensorflow`` + ``pneumo_core.inference.predictor``;
* ``load``: ``keras.models.load_model`` with the SHA-256 check (``safe_mode=True``);
* ``warm-up``: tracing the compiled forward and Grad-CAM graphs (``Predictor(warm_up=True)``);
* ``first predict``: the first ``predict(..., explain=True)`` on a test film after that;
* ``tflite``: the same process for a ``.tflite`` export when ``--tflite PATH`` is given.

Dashboard cold start: ``streamlit run app.py --server.headless true --server.port P`` launched
``--repeats`` times; the time from launch to the first HTTP 200 on ``/`` and to
``/_stcore/health`` answering ``ok``. Streamlit runs ``app.py`` (and loads a model) only when
a browser session connects, so these are server readiness times: the model load above comes on
top of them for the first visitor of a fresh server (models are cached per server process).
With Playwright and Chromium installed (``requirements-dev.txt``, ``make chromium``) it also
times, from launch, until a headless browser shows the Home page's title (the first script run).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np

from benchmarks import _bench as bench

PROBE = r"""
import json, os, sys, time
t0 = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from pneumo_core.inference.predictor import Predictor
t1 = time.perf_counter()
p = Predictor({model!r}, warm_up=False)
t2 = time.perf_counter()
import numpy as np
z = np.zeros((1, 224, 224, 3), np.float32)
if hasattr(p, "_forward"):
    p._forward(z); p._explain(z)
else:
    p.predict_arrays(z)
t3 = time.perf_counter()
r = p.predict({film!r}, explain=True)
t4 = time.perf_counter()
assert r.error is None, r.error
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "warmup_s": t3 - t2, "first_predict_s": t4 - t3,
                  "total_s": t4 - t0}}))
"""


def model_load(model: str, film: str, repeats: int) -> dict:
    rows = []
    for _ in range(repeats):
        code = PROBE.format(root=str(bench.ROOT), model=model, film=film)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=bench.ROOT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["process_wall_s"] = wall
        rows.append(row)
    return {k: round(float(np.median([r[k] for r in rows])), 2) for k in rows[0]} | {"repeats": repeats}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 1.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read(200).decode("utf-8", "replace")


def _browser():
    """(playwright context manager, browser) with headless Chromium, or (None, None)."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, None
    if exe is None:
        return None, None
    pw = sync_playwright().start()
    return pw, pw.chromium.launch(executable_path=exe, headless=True)


def dashboard_cold_start(repeats: int, timeout: float = 120.0, browser: bool = True) -> dict:
    streamlit = os.path.join(os.path.dirname(sys.executable), "streamlit")
    pw, br = _browser() if browser else (None, None)
    rows = []
    for _ in range(repeats):
        port = free_port()
        cmd = [streamlit, "run", "app.py", "--server.headless", "true", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=bench.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t_root = t_health = t_page = None
        try:
            while time.perf_counter() - t0 < timeout and (t_root is None or t_health is None):
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {proc.returncode}")
                try:
                    if t_health is None:
                        status, body = _get(f"http://127.0.0.1:{port}/_stcore/health")
                        if status == 200 and body.strip() == "ok":
                            t_health = time.perf_counter() - t0
                    if t_root is None:
                        status, _ = _get(f"http://127.0.0.1:{port}/")
                        if status == 200:
                            t_root = time.perf_counter() - t0
                except OSError:
                    time.sleep(0.05)
            if br is not None and t_root is not None:
                page = br.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.get_by_text("Pneumonia chest X-ray workbench").first.wait_for(timeout=timeout * 1000)
                t_page = time.perf_counter() - t0
                page.close()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if t_root is None or t_health is None:
            raise RuntimeError(f"dashboard not ready within {timeout:.0f} s")
        row = {"first_200_on_root_s": t_root, "health_ok_s": t_health}
        if br is not None:
            row["home_page_rendered_s"] = t_page
        rows.append(row)
    if pw is not None:
        br.close()
        pw.stop()
    return {k: round(float(np.median([r[k] for r in rows])), 2) for k in rows[0]} | {
        "max_first_200_on_root_s": round(max(r["first_200_on_root_s"] for r in rows), 2), "repeats": repeats}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="finetuned")
    ap.add_argument("--tflite", help="also measure loading this .tflite export")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-dashboard", action="store_true")
    ap.add_argument("--no-browser", action="store_true", help="skip the headless-browser page-render timing")
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    bench.warn_if_busy()
    film = bench.test_files(args.data)[0]
    out = {"machine": bench.machine(), "model_load": {args.model: model_load(args.model, film, args.repeats)}}
    if args.tflite:
        out["model_load"][args.tflite] = model_load(args.tflite, film, args.repeats)
    if not args.no_dashboard:
        if (bench.ROOT / "app.py").exists():
            out["dashboard"] = dashboard_cold_start(args.repeats, browser=not args.no_browser)
        else:
            out["dashboard"] = "app.py not found"

    m = out["machine"]
    print(f"{m['cpu']}, {m['cpus']} CPUs; TF {m.get('tensorflow')}; CPU busy before run {m['cpu_busy_before_run']}; "
          f"medians of {args.repeats} fresh processes")
    rows = [{"model": k, **v} for k, v in out["model_load"].items()]
    bench.print_table(rows, ["model", "import_s", "load_s", "warmup_s", "first_predict_s", "total_s", "process_wall_s"])
    if isinstance(out.get("dashboard"), dict):
        d = out["dashboard"]
        print(f"dashboard cold start: first HTTP 200 on / after {d['first_200_on_root_s']:.2f} s "
              f"(max {d['max_first_200_on_root_s']:.2f} s), /_stcore/health ok after {d['health_ok_s']:.2f} s")
        if "home_page_rendered_s" in d:
            print(f"  headless Chromium shows the Home page title after {d['home_page_rendered_s']:.2f} s from launch")
    elif "dashboard" in out:
        print(f"dashboard: {out['dashboard']}")
    bench.dump(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
