"""Shared helpers for the benchmark scripts (timing statistics, the machine, quiet-machine check).

Not a benchmark itself: running it prints the machine description and exits.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_BUSY = None  # CPU busy fraction measured by warn_if_busy
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def machine() -> dict:
    """CPU model (lscpu), logical CPUs available to this process, load average, versions."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    info = {"cpu": model, "cpus": cpus, "load_avg_1m": round(os.getloadavg()[0], 2), "cpu_busy_before_run": _BUSY,
            "python": platform.python_version()}
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    except ImportError:
        pass
    return info


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over the next ``seconds`` (from /proc/stat), or None off Linux.
    Unlike the load average it does not remember a run that has just finished."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total

    try:
        i0, t0 = sample()
        time.sleep(seconds)
        i1, t1 = sample()
    except OSError:
        return None
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def warn_if_busy(limit: float = 0.15) -> float | None:
    """Timings on a shared 2-core machine are only meaningful when nothing else runs: warn when
    more than ``limit`` of the CPU is busy in the second before the run; returns that fraction."""
    global _BUSY
    busy = _BUSY = cpu_busy()
    if busy is not None:
        _BUSY = round(busy, 3)
    if busy is not None and busy > limit:
        print(f"WARNING: {busy:.0%} of the CPU was busy just before the run; other processes compete for it "
              "and the figures below will be slower and noisier than on a quiet machine.", file=sys.stderr)
    return busy


def timeit(fn, runs: int = 50, warmup: int = 5) -> np.ndarray:
    """Seconds per call of ``fn`` over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out


def interleaved(fns: dict, runs: int = 50, warmup: int = 5) -> dict:
    """Like :func:`timeit` for several functions, run round-robin so that a change in machine
    load hits every variant alike (fairer ratios than one block after another)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out = {k: np.empty(runs) for k in fns}
    for i in range(runs):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k][i] = time.perf_counter() - t
    return out


def stats(seconds: np.ndarray) -> dict:
    ms = np.asarray(seconds) * 1000.0
    return {"median_ms": round(float(np.median(ms)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "min_ms": round(float(ms.min()), 2), "runs": int(ms.size)}


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def dump(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")


LEAN_PYTHON = str(ROOT / ".venv-lean" / "bin" / "python")  # the venv from requirements.txt alone (make lean-venv)


def missing_lean_venv(python: str) -> bool:
    """True (with the one line that says so on stderr) when ``python`` is not there: run ``make lean-venv``."""
    if Path(python).is_file():
        return False
    print(f"error: no lean venv at {python}: run make lean-venv", file=sys.stderr)
    return True


def test_files(data=None) -> list[str]:
    """The 624 images of the official test split, sorted."""
    from pneumo_core.config import data_dir
    from pneumo_core.datasets import listing

    return list(listing.list_images(listing.resolve_split_dir(data or data_dir(), "test")).path)


if __name__ == "__main__":
    print(json.dumps(machine(), indent=2))
