"""Single-image latency: bytes -> label (+ Grad-CAM), against the bare compiled model.

    python -m benchmarks.latency [--model finetuned] [--runs 100] [--json out.json]

Measured in one process, round-robin (so a change in machine load hits every variant alike),
``--runs`` calls each after warm-up:

* ``bare forward``: ``tf.function(model(x))`` with a fixed input signature on a ready tensor,
  batch 1: the least any inference path can cost.
* ``bare forward+backward``: the same plus the gradient of the logit with respect to
  ``out_relu`` (what Grad-CAM needs), nothing else.
* ``predict``: ``Predictor.predict(jpeg_bytes)``: decode, checks, preprocessing, compiled
  forward, OOD distance, label.
* ``predict + Grad-CAM``: ``Predictor.predict(jpeg_bytes, explain=True)``: the same with the
  compiled forward+backward, the 7x7 map and its upsampling to the image size.
* ``model.predict``: Keras' ``model.predict`` on one image, for comparison only (never used per
  image by the package).

Two inputs: a test-split film (224x224 JPEG, like every film in the data set) and a 2000x1700
greyscale JPEG made in memory from it (a typical full-size upload). Targets: predict+Grad-CAM
<= 1.3x bare forward+backward, well under 100 ms.
"""
from __future__ import annotations

import argparse
import io
import sys

from benchmarks import _bench as bench


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="finetuned")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--data", default=None, help="dataset root (default: config.data_dir())")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    bench.warn_if_busy()
    import cv2
    import tensorflow as tf
    from PIL import Image

    from pneumo_core.config import IMAGE_SIZE
    from pneumo_core.imaging.decode import load_image
    from pneumo_core.inference.gradcam import normalise_heatmap
    from pneumo_core.inference.model_files import split_model
    from pneumo_core.inference.predictor import Predictor
    from pneumo_core.inference.preprocess import model_input

    pred = Predictor(args.model, kind="keras")  # the Keras model itself is measured here
    model = pred.model
    backbone, head = split_model(model)
    sig = [tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)]

    @tf.function(input_signature=sig)
    def bare_forward(x):
        return model(x, training=False)

    @tf.function(input_signature=sig)
    def bare_forward_backward(x):
        fmap = backbone(x, training=False)
        with tf.GradientTape() as tape:
            tape.watch(fmap)
            logit = head(fmap, training=False)
        return logit, tape.gradient(logit, fmap)

    films = bench.test_files(args.data)
    small = open(films[len(films) // 2], "rb").read()
    loaded = load_image(small)
    big = cv2.resize(loaded.rgb()[..., 0], (2000, 1700), interpolation=cv2.INTER_CUBIC)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="JPEG", quality=92)
    large = buf.getvalue()

    x = tf.constant(model_input(loaded)[None])
    x_np = x.numpy()
    # Keras' model.predict, for the record (slow: fewer runs)
    keras_predict = bench.stats(bench.timeit(lambda: model.predict(x_np, verbose=0), runs=max(10, args.runs // 5),
                                             warmup=3))

    rows, results = [], {"machine": bench.machine(), "model": pred.name, "runs": args.runs}
    for label, data in (("224x224 JPEG (test film)", small), ("2000x1700 JPEG (upload)", large)):
        shape = load_image(data).pixels.shape
        t = bench.interleaved({
            "bare forward": lambda: bare_forward(x).numpy(),
            "bare forward+backward": lambda: [t.numpy() for t in bare_forward_backward(x)],
            "predict": lambda: pred.predict(data),
            "predict + Grad-CAM": lambda: pred.predict(data, explain=True),
        }, runs=args.runs, warmup=args.warmup)
        lim = load_image(data)
        xin = model_input(lim)[None]
        _, cam, pooled = pred.explain_arrays(xin)
        stages = bench.interleaved({
            "decode (load_image)": lambda: load_image(data),
            "prepare (checks + preprocessing)": lambda: model_input(lim),
            "compiled explain (fwd+bwd+cam+pooled)": lambda: pred.explain_arrays(xin),
            "heatmap upsampling": lambda: normalise_heatmap(cam[0], lim.pixels.shape[:2]),
            "OOD distance": (lambda: pred.ood.distance(pooled)) if pred.ood is not None else (lambda: None),
        }, runs=args.runs, warmup=args.warmup)
        s = {k: bench.stats(v) for k, v in t.items()}
        s["ratio predict / bare forward"] = round(s["predict"]["median_ms"] / s["bare forward"]["median_ms"], 3)
        s["ratio predict+Grad-CAM / bare forward+backward"] = round(
            s["predict + Grad-CAM"]["median_ms"] / s["bare forward+backward"]["median_ms"], 3)
        s["stages"] = {k: bench.stats(v) for k, v in stages.items()}
        results[label] = {"pixels": list(shape), **s}
        for k in t:
            rows.append({"input": label, "path": k, **s[k]})
        for k, v in s["stages"].items():
            rows.append({"input": label, "path": "  stage: " + k, **v})
    rows.append({"input": "224x224", "path": "Keras model.predict (reference only)", **keras_predict})
    results["keras model.predict"] = keras_predict

    m = results["machine"]
    print(f"model {pred.name}; {m['cpu']}, {m['cpus']} CPUs; TF {m.get('tensorflow')}; "
          f"CPU busy before run {m['cpu_busy_before_run']}; {args.runs} runs each after {args.warmup} warm-up")
    bench.print_table(rows, ["input", "path", "median_ms", "p95_ms", "min_ms", "runs"])
    for label in ("224x224 JPEG (test film)", "2000x1700 JPEG (upload)"):
        r = results[label]
        print(f"{label}: predict / bare forward = {r['ratio predict / bare forward']:.2f}x; "
              f"predict+Grad-CAM / bare forward+backward = "
              f"{r['ratio predict+Grad-CAM / bare forward+backward']:.2f}x (target <= 1.30)")
    bench.dump(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
