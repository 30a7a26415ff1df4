"""LiteRT threads and interpreters per use: one interpreter on every core, or a pool of one-thread interpreters.

    python -m benchmarks.litert_pool [--model finetuned] [--rounds 3] [--json out.json]

What the dashboard does per upload (``Predictor.predict(bytes, explain=True, display_size=768)`` on the 40
bundled films) from 1 and from 2 sessions at once (threads sharing one cached predictor), and what the CLI's
batch path does (``predict_arrays`` on batches of 32), for each layout ``interpreters x threads``:

* ``batch``: one interpreter using every core (the CLI's use; before the pool, the dashboard's too, its calls
  serialised by a lock);
* ``one thread each``: one single-thread interpreter per core (at most 4);
* ``serve``: as many interpreters, each with twice its share of the cores (the dashboard's use:
  :func:`pneumo_core.config.litert_layout`).

Each figure is the median over ``--rounds`` rounds, the layouts interleaved within a round so a change in machine
load hits them alike. The decision and the figures are in docs/design.md ("LiteRT threads and interpreters").
"""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import _bench as bench

EXAMPLES = sorted((bench.ROOT / "assets" / "examples").glob("ex*.jpeg"))


def sessions(predictor, blobs: list[tuple[str, bytes]], n: int) -> tuple[float, float]:
    """``n`` sessions each scoring every film with Grad-CAM at once: (median ms per call, calls per second)."""
    times: list[float] = []
    lock = threading.Lock()

    def session():
        for name, data in blobs:
            t = time.perf_counter()
            predictor.predict(data, name=name, explain=True, display_size=768)
            with lock:
                times.append(time.perf_counter() - t)

    threads = [threading.Thread(target=session) for _ in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return float(np.median(times) * 1000), len(times) / wall


def batch_rate(predictor, x: np.ndarray, repeats: int = 3) -> float:
    """Images per second of ``predict_arrays`` on batches of 32 (the CLI's batch path)."""
    predictor.predict_arrays(x)
    start = time.perf_counter()
    for _ in range(repeats):
        predictor.predict_arrays(x)
    return repeats * len(x) / (time.perf_counter() - start)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="finetuned")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)

    bench.warn_if_busy()
    machine = bench.machine()  # before the runs (it imports TensorFlow, when installed, for its version)
    from pneumo_core.config import litert_layout
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.litert import _cpu_count
    from pneumo_core.inference.predictor import Predictor
    from pneumo_core.inference.preprocess import model_input

    cores = _cpu_count()
    pool = min(cores, 4)
    layouts = {f"batch 1x{cores}": (1, cores), f"one thread each {pool}x1": (pool, 1),
               "serve {}x{}".format(*litert_layout("serve", cores)): litert_layout("serve", cores)}
    preds = {k: Predictor(args.model, kind="litert", interpreters=i, num_threads=t) for k, (i, t) in layouts.items()}
    blobs = [(p.name, Path(p).read_bytes()) for p in EXAMPLES]
    x = np.stack([model_input(load_path(p)) for p in EXAMPLES[:32]])
    figures: dict = {k: {"1 session ms": [], "2 sessions ms": [], "2 sessions calls/s": [], "batch img/s": []}
                     for k in layouts}
    for _ in range(args.rounds):
        for k, pred in preds.items():
            figures[k]["1 session ms"].append(sessions(pred, blobs, 1)[0])
            ms, rate = sessions(pred, blobs, 2)
            figures[k]["2 sessions ms"].append(ms)
            figures[k]["2 sessions calls/s"].append(rate)
            figures[k]["batch img/s"].append(batch_rate(pred, x))
    rows = [{"layout": k, **{name: float(np.median(v)) for name, v in f.items()}} for k, f in figures.items()]
    print(f"{args.model} on LiteRT, {cores} cores; medians of {args.rounds} rounds")
    bench.print_table(rows, ["layout", "1 session ms", "2 sessions ms", "2 sessions calls/s", "batch img/s"])
    bench.dump(args.json, {"machine": machine, "model": args.model, "rounds": args.rounds,
                           "figures": figures, "medians": rows})


if __name__ == "__main__":
    main()
