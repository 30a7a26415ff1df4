"""Training throughput on a subset of ``train/``: the tf.data pipeline, and why the head is trained
on cached features.

    python -m benchmarks.train_throughput [--images 512] [--batch-size 32] [--head-epochs 10]

On ``--images`` training films (a seeded, class-stratified sample):

* ``tf.data, no augmentation``: ``data.make_dataset`` (read, decode, resize, preprocess,
  batch, prefetch) iterated to the end, no model: images/s the input pipeline can supply.
* ``tf.data + augmentation``: the same with the training augmentation (photometric per image,
  geometric per batch), as the fine-tuning phase uses it.
* ``feature cache``: one pass of the frozen backbone over the films (``train.pooled_features``),
  paid once.
* ``head on cached features``: one epoch of the head (``build_head`` + Adam) on those features.
* ``frozen base end to end``: one epoch of the whole frozen-variant model on augmented films
  (what training the head without the cache would cost per epoch).
* ``fine-tuned end to end``: one epoch with the top layers unfrozen (the fine-tuning phase).

Each model figure is the median of ``--repeats`` epochs after a warm-up epoch (tracing).
The ImageNet weights come from ``config.backbone_weights()`` when present (random otherwise:
the same cost).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks import _bench as bench


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--head-epochs", type=int, default=10, help="epochs of head training timed")
    ap.add_argument("--repeats", type=int, default=2, help="timed end-to-end epochs (after a warm-up epoch)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    bench.warn_if_busy()
    import keras
    import pandas as pd

    from pneumo_core.config import backbone_weights, data_dir
    from pneumo_core.datasets import listing
    from pneumo_core.training import data as dataset
    from pneumo_core.training.builders import build_backbone, build_head, build_model
    from pneumo_core.training.trainer import pooled_features

    df = listing.list_images(listing.resolve_split_dir(args.data or data_dir(), "train"))
    df = pd.concat([g.sample(min(len(g), args.images // 2), random_state=0) for _, g in df.groupby("label")])
    df = df.sort_values("path").reset_index(drop=True)
    n = len(df)
    y = df.label.to_numpy("float32")
    w = backbone_weights()
    weights = w if w != "imagenet" else None
    out = {"machine": bench.machine(), "images": n, "batch_size": args.batch_size,
           "weights": "ImageNet (local file)" if weights else "random (same cost)"}

    def drain(ds):
        t0 = time.perf_counter()
        for _ in ds:
            pass
        return time.perf_counter() - t0

    plain = dataset.make_dataset(df, args.batch_size)
    aug = dataset.make_dataset(df, args.batch_size, shuffle=True, augment=dataset.Augment(), seed=0)
    drain(plain), drain(aug)  # warm-up: traces the map functions, fills the file cache
    t_plain = np.median([drain(plain) for _ in range(args.repeats + 1)])
    t_aug = np.median([drain(aug) for _ in range(args.repeats + 1)])
    out["tf.data, no augmentation"] = {"images_per_s": round(n / t_plain, 1)}
    out["tf.data + augmentation"] = {"images_per_s": round(n / t_aug, 1)}

    keras.utils.set_random_seed(0)
    base = build_backbone(weights)
    base.trainable = False
    pooled_features(base, df.iloc[: args.batch_size], args.batch_size)  # warm-up
    t0 = time.perf_counter()
    feats = pooled_features(base, df, args.batch_size)
    t_feat = time.perf_counter() - t0
    out["feature cache (one backbone pass)"] = {"images_per_s": round(n / t_feat, 1), "seconds": round(t_feat, 2)}

    head = build_head("frozen", feats.shape[-1])
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    head.fit(feats, y, batch_size=args.batch_size, epochs=1, verbose=0)  # warm-up
    t0 = time.perf_counter()
    head.fit(feats, y, batch_size=args.batch_size, epochs=args.head_epochs, verbose=0, shuffle=True)
    t_head = (time.perf_counter() - t0) / args.head_epochs
    out["head on cached features (per epoch)"] = {"images_per_s": round(n / t_head, 1), "seconds": round(t_head, 3)}

    def epochs(variant):
        keras.utils.set_random_seed(0)
        model = build_model(variant, base=build_backbone(weights))
        lr = 1e-3 if variant == "frozen" else 5e-5
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
        model.fit(aug, epochs=1, verbose=0, shuffle=False)  # warm-up (tracing)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.fit(aug, epochs=1, verbose=0, shuffle=False)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    t_frozen = epochs("frozen")
    out["frozen base end to end (per epoch)"] = {"images_per_s": round(n / t_frozen, 1), "seconds": round(t_frozen, 2)}
    t_ft = epochs("finetuned")
    out["fine-tuned end to end (per epoch)"] = {"images_per_s": round(n / t_ft, 1), "seconds": round(t_ft, 2)}
    out["head epoch speed-up, cached vs end to end"] = round(t_frozen / t_head, 1)
    e = 40
    out[f"{e} head epochs: cache + cached epochs vs end-to-end epochs (s)"] = [
        round(t_feat + e * t_head, 1), round(e * t_frozen, 1)]

    m = out["machine"]
    print(f"{n} training films, batch {args.batch_size}, weights {out['weights']}; {m['cpu']}, {m['cpus']} CPUs; "
          f"TF {m.get('tensorflow')}; CPU busy before run {m['cpu_busy_before_run']}")
    rows = [{"stage": k, **v} for k, v in out.items() if isinstance(v, dict) and "images_per_s" in v]
    bench.print_table(rows, ["stage", "images_per_s", "seconds"])
    print(f"head epoch on cached features is {out['head epoch speed-up, cached vs end to end']}x faster than a "
          f"frozen-base end-to-end epoch; for {e} head epochs on these {n} films: "
          f"{out[f'{e} head epochs: cache + cached epochs vs end-to-end epochs (s)'][0]} s (cache + epochs) vs "
          f"{out[f'{e} head epochs: cache + cached epochs vs end-to-end epochs (s)'][1]} s")
    bench.dump(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
