"""Batch throughput: ``Predictor.predict_files`` (what ``python -m pneumo_core predict|evaluate``
runs) over the 624 test films, against the bare batched forward pass in the same process.

    python -m benchmarks.throughput [--model finetuned] [--passes 5] [--batch-size 32]

* ``bare batched forward``: the compiled ``tf.function(model(x))`` on the 624 films already
  decoded, preprocessed and stacked in memory, batches of ``--batch-size``: the ceiling.
* ``predict_files``: paths in, ``Prediction`` objects out: file reads, decoding in a thread pool
  overlapped with batched inference, preprocessing, OOD distances, labels.
* ``CLI predict``: one ``python -m pneumo_core predict --json DIR...`` process over the same
  files, wall time including interpreter start, imports and model load (once).

Passes alternate between the two in-process paths; the figures are medians over ``--passes``
full passes after one warm-up pass each, with the per-batch median and p95 of the bare forward
(>= 50 batches in all). Target: predict_files >= 90 % of the bare batched forward's images/s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks import _bench as bench


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="finetuned")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--data", default=None)
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess measurement")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    bench.warn_if_busy()
    import tensorflow as tf

    from pneumo_core.config import IMAGE_SIZE
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.predictor import Predictor
    from pneumo_core.inference.preprocess import model_input

    files = bench.test_files(args.data)
    n = len(files)
    pred = Predictor(args.model, kind="keras")  # the Keras model itself is measured here
    model = pred.model

    @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)])
    def bare_forward(x):
        return model(x, training=False)

    xs = np.stack([model_input(load_path(f)) for f in files])
    batches = [tf.constant(xs[i : i + args.batch_size]) for i in range(0, n, args.batch_size)]
    del xs

    def bare_pass(per_batch):
        t0 = time.perf_counter()
        for b in batches:
            t = time.perf_counter()
            bare_forward(b).numpy()
            per_batch.append(time.perf_counter() - t)
        return time.perf_counter() - t0

    def files_pass():
        t0 = time.perf_counter()
        res = pred.predict_files(files, batch_size=args.batch_size, workers=args.workers, reject_ood=False)
        dt = time.perf_counter() - t0
        assert all(r.error is None for r in res), [r.error for r in res if r.error][:3]
        return dt

    bare_pass([])  # warm-up
    files_pass()
    bare_s, files_s, per_batch = [], [], []
    for _ in range(args.passes):
        bare_s.append(bare_pass(per_batch))
        files_s.append(files_pass())
    bare_ips = n / np.median(bare_s)
    files_ips = n / np.median(files_s)
    out = {
        "machine": bench.machine(), "model": pred.name, "images": n, "batch_size": args.batch_size,
        "workers": args.workers, "passes": args.passes,
        "bare_batched_forward": {"images_per_s": round(bare_ips, 1), "pass_s": [round(s, 2) for s in bare_s],
                                 "per_batch": bench.stats(np.array(per_batch))},
        "predict_files": {"images_per_s": round(files_ips, 1), "pass_s": [round(s, 2) for s in files_s]},
        "ratio_predict_files_to_bare": round(files_ips / bare_ips, 3),
    }
    if not args.no_cli:
        cmd = [sys.executable, "-m", "pneumo_core", "predict", "--model", args.model, "--json",
               "--batch-size", str(args.batch_size), *sorted({os.path.dirname(f) for f in files})]
        env = {**os.environ, "PYTHONPATH": str(bench.ROOT)}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=bench.ROOT, env=env)
        wall = time.perf_counter() - t0
        ok = proc.returncode == 0 and len(json.loads(proc.stdout)) == n
        out["cli_predict"] = {"wall_s": round(wall, 2), "images_per_s_incl_startup": round(n / wall, 1), "ok": ok,
                              "command": "python -m pneumo_core predict --model {} --json DIR...".format(args.model)}

    m = out["machine"]
    print(f"model {pred.name}; {m['cpu']}, {m['cpus']} CPUs; TF {m.get('tensorflow')}; CPU busy before run "
          f"{m['cpu_busy_before_run']}; {n} images, batch {args.batch_size}, {args.workers} decode threads, "
          f"median of {args.passes} passes")
    pb = out["bare_batched_forward"]["per_batch"]
    print(f"bare batched forward   {bare_ips:7.1f} img/s   (per batch of {args.batch_size}: median "
          f"{pb['median_ms']:.0f} ms, p95 {pb['p95_ms']:.0f} ms, {pb['runs']} batches)")
    print(f"predict_files          {files_ips:7.1f} img/s   = {out['ratio_predict_files_to_bare']:.1%} of bare "
          "(target >= 90 %)")
    if "cli_predict" in out:
        c = out["cli_predict"]
        print(f"CLI predict (1 process) {c['wall_s']:.1f} s wall for {n} images incl. start-up "
              f"= {c['images_per_s_incl_startup']:.1f} img/s; ok={c['ok']}")
    bench.dump(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
