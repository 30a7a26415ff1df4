"""``score`` at archive scale (issue 23): the local engine against Ray, and a job killed half way then resumed.

    python -m benchmarks.scale [--data DIR] [--repeats 1] [--batch 256] [--json FILE]

Every film under ``--data`` (default ``$PNEUMO_DATA_DIR``: train/ and test/, all of Kermany's films there) is
listed once in a text file, then, ``--repeats`` times, each a fresh process timed whole (start-up, model load,
Ray's start and stop included):

1. ``score LIST --engine local`` and ``score LIST --engine ray``, one after the other in each repeat; the label
   of every film compared between the two outputs;
2. ``score LIST --engine local`` SIGKILLed once its parts hold half the films, then ``score LIST --resume``: the
   resumed run's time against the full local run of the same repeat, and every film checked to be stored once.

Prints the medians (and each repeat); the machine's load before and after, as other jobs may share the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import _bench as bench


def score(listing: Path, out: Path, *extra: str) -> tuple[float, dict]:
    """One ``score`` process: (its wall time in s, its JSON summary)."""
    start = time.perf_counter()
    job = subprocess.run([sys.executable, "-m", "pneumo_core", "score", str(listing), "--out", str(out), "--json",
                          *extra], cwd=bench.ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if job.returncode != 0:
        raise SystemExit(f"score failed: {job.stderr.strip().splitlines()[-1:]}")
    return seconds, json.loads(job.stdout)


def labels(out: Path) -> dict[str, str | None]:
    import pyarrow.parquet as pq

    table = pq.read_table(out, columns=["file", "label"]).to_pydict()
    if len(set(table["file"])) != len(table["file"]):
        raise SystemExit(f"{out} holds a film twice")
    return dict(zip(table["file"], table["label"]))


def killed_then_resumed(listing: Path, out: Path, films: int, batch: int) -> dict:
    """A local job SIGKILLed once its parts hold half the films, then resumed."""
    argv = [sys.executable, "-m", "pneumo_core", "score", str(listing), "--out", str(out), "--batch", str(batch)]
    start = time.perf_counter()
    job = subprocess.Popen(argv, cwd=bench.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(list(out.glob("part-*.parquet"))) * batch < films // 2 and job.poll() is None:
        time.sleep(0.1)
    job.send_signal(signal.SIGKILL)
    job.wait()
    killed_after = time.perf_counter() - start
    stored = len(labels(out))
    seconds, summary = score(listing, out, "--batch", str(batch), "--resume")
    if len(labels(out)) != films or summary["skipped"] != stored:
        raise SystemExit("the resumed job did not end with every film exactly once")
    return {"killed_after_s": round(killed_after, 1), "stored_when_killed": stored,
            "resume_s": round(seconds, 1), "resume_scored": summary["scored"]}


def main(argv=None) -> int:
    from pneumo_core.config import data_dir
    from pneumo_core.scoring.engines import ray_available
    from pneumo_core.scoring.sources import expand_sources

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder of films (default: $PNEUMO_DATA_DIR)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    if not ray_available():
        print("error: Ray is not installed: pip install -r requirements-scale.txt", file=sys.stderr)
        return 2
    films, _ = expand_sources([args.data or data_dir()])
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        tmp = Path(tmp)
        listing = tmp / "films.txt"
        listing.write_text("".join(os.path.abspath(f["file"]) + "\n" for f in films))
        load_before, busy_before = os.getloadavg(), bench.warn_if_busy()
        runs = []
        for r in range(args.repeats):
            run = {}
            for engine in ("local", "ray"):
                seconds, summary = score(listing, tmp / f"{engine}-{r}", "--engine", engine, "--batch", str(args.batch))
                run[f"{engine}_s"], run[f"{engine}_films_per_s"] = round(seconds, 1), summary["films_per_s"]
            local, ray = labels(tmp / f"local-{r}"), labels(tmp / f"ray-{r}")
            run["films"] = len(local)
            run["label_disagreements"] = sum(local[f] != ray.get(f) for f in local) + len(set(ray) - set(local))
            run |= killed_then_resumed(listing, tmp / f"killed-{r}", len(films), args.batch)
            run["ray_over_local"] = round(run["ray_s"] / run["local_s"], 3)
            run["resume_over_full"] = round(run["resume_s"] / run["local_s"], 3)
            runs.append(run)
            print(json.dumps(run), flush=True)
    medians = {k: round(float(np.median([run[k] for run in runs])), 3) for k in runs[0]}
    result = {"machine": bench.machine(), "load_avg_before": [round(x, 2) for x in load_before],
              "cpu_busy_before": busy_before, "load_avg_after": [round(x, 2) for x in os.getloadavg()],
              "repeats": args.repeats, "batch": args.batch, "median": medians, "runs": runs}
    print(json.dumps(result, indent=2))
    bench.dump(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
