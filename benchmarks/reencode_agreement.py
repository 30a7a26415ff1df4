"""Does the label survive the ways a film is re-encoded before it reaches us?

    python -m benchmarks.reencode_agreement [--n 200] [--seed 0] [--models finetuned]

Takes ``--n`` films from the official test split (stratified by class, seeded), re-encodes each
one in memory as

* DICOM MONOCHROME2, 12-bit, with Rescale Slope/Intercept and a VOI window,
* DICOM MONOCHROME1, 16-bit signed, inverted, with Rescale Slope/Intercept and no window
  (so the loader's min..max fallback is exercised),
* 16-bit greyscale PNG upscaled 4-8x (896-1792 px),
* JPEG at quality 25,
* rotations by +5 and -5 degrees (black corners, as a film rotated on a scanner),
* a portrait resize (aspect 3:4, 600x800),

sends every file through ``Predictor.predict`` exactly as an upload, and reports per transform
how often the label equals the clean JPEG's label (target >= 95 % overall). A file refused by the
loader or the chest-X-ray check counts as a disagreement. Nothing is written to disk.
"""
from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _encode(img: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt, **kw)
    return buf.getvalue()


def _dicom(stored: np.ndarray, photometric: str, bits: int, signed: bool, slope: float, intercept: float,
           window: tuple[float, float] | None) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "DX", "ANONYMOUS", "0"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, int(signed)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom_mono2_12bit(g, rng):
    # stored 16 g, modality 2 s - 1024, window spanning the whole modality range
    return _dicom(g.astype(np.int64) * 16, "MONOCHROME2", 12, False, 2.0, -1024.0, (3056.5, 8161.0))


def dicom_mono1_16bit(g, rng):
    stored = (65535 - g.astype(np.int64) * 257) - 32768  # inverted, signed
    return _dicom(stored, "MONOCHROME1", 16, True, 1.0, 32768.0, None)


def png16_upscaled(g, rng):
    import cv2

    k = float(rng.uniform(4, 8))
    size = int(round(g.shape[1] * k)), int(round(g.shape[0] * k))
    big = cv2.resize(g.astype(np.uint16) * 257, size, interpolation=cv2.INTER_CUBIC)
    return _encode(big, "PNG", compress_level=1)


def jpeg_q25(g, rng):
    return _encode(g, "JPEG", quality=25)


def _rotate(g, deg):
    import cv2

    h, w = g.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return _encode(cv2.warpAffine(g, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0), "PNG")


def rotate_plus5(g, rng):
    return _rotate(g, 5.0)


def rotate_minus5(g, rng):
    return _rotate(g, -5.0)


def portrait_600x800(g, rng):
    import cv2

    return _encode(cv2.resize(g, (600, 800), interpolation=cv2.INTER_CUBIC), "PNG")


TRANSFORMS = {
    "DICOM MONO2 12-bit slope+window": dicom_mono2_12bit,
    "DICOM MONO1 16-bit, no window": dicom_mono1_16bit,
    "PNG 16-bit, 4-8x upscaled": png16_upscaled,
    "JPEG quality 25": jpeg_q25,
    "rotation +5 deg": rotate_plus5,
    "rotation -5 deg": rotate_minus5,
    "portrait resize 600x800": portrait_600x800,
}


def sample(data: Path, n: int, seed: int):
    from pneumo_core.datasets.listing import list_images, resolve_split_dir

    df = list_images(resolve_split_dir(data, "test"))
    rng = np.random.default_rng(seed)
    parts = []
    for label, group in df.groupby("label"):
        k = int(round(n * len(group) / len(df)))
        parts.append(group.iloc[np.sort(rng.choice(len(group), size=min(k, len(group)), replace=False))])
    import pandas as pd

    return pd.concat(parts).reset_index(drop=True)


def evaluate(model: str, df, seed: int) -> dict:
    from PIL import Image

    from pneumo_core.inference.predictor import Predictor

    t0 = time.time()
    pred = Predictor(model)
    rows = {name: {"agree": 0, "rejected": 0, "dp": []} for name in TRANSFORMS}
    clean_rejected = 0
    n_used = 0
    for i, path in enumerate(df.path):
        ref = pred.predict(path)
        if ref.error is not None:
            clean_rejected += 1
            continue
        n_used += 1
        g = np.asarray(Image.open(path).convert("L"))
        for k, (name, fn) in enumerate(TRANSFORMS.items()):
            rng = np.random.default_rng([seed, i, k])
            r = pred.predict(fn(g, rng), name=name)
            if r.error is not None:
                rows[name]["rejected"] += 1
                continue
            rows[name]["agree"] += int(r.label == ref.label)
            rows[name]["dp"].append(abs(r.p_pneumonia - ref.p_pneumonia))
    total = sum(v["agree"] for v in rows.values())
    overall = total / max(1, n_used * len(TRANSFORMS))
    n_normal, n_pneumonia = (df.label == 0).sum(), (df.label == 1).sum()
    print(f"\n== model {model} (sha256 {pred.sha256[:12]}): {n_used} films ({n_normal} NORMAL / "
          f"{n_pneumonia} PNEUMONIA "
          f"sampled, seed {seed}); {clean_rejected} clean films refused and left out; threshold {pred.threshold:.3f}")
    print(f"{'transform':34s} {'agreement':>10s} {'refused':>8s} {'mean|dp|':>9s} {'max|dp|':>8s}")
    out = {}
    for name, v in rows.items():
        agree = v["agree"] / max(1, n_used)
        dp = np.array(v["dp"]) if v["dp"] else np.array([np.nan])
        out[name] = agree
        print(f"{name:34s} {agree:10.1%} {v['rejected']:8d} {np.nanmean(dp):9.3f} {np.nanmax(dp):8.3f}")
    print(f"{'overall':34s} {overall:10.1%}   (target >= 95%: {'PASS' if overall >= 0.95 else 'FAIL'})")
    print(f"({time.time() - t0:.0f} s)")
    return {"model": model, "overall": overall, "per_transform": out}


def main(argv=None) -> int:
    from pneumo_core.config import MODELS_DIR, data_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", default=["finetuned"])
    ap.add_argument("--data", type=Path, default=data_dir())
    args = ap.parse_args(argv)
    df = sample(args.data, args.n, args.seed)
    results = []
    for m in args.models:
        if not (MODELS_DIR / f"{m}.keras").exists() and not Path(m).is_file():
            print(f"[{m}] model file not found, skipped")
            continue
        results.append(evaluate(m, df, args.seed))
    return 0 if results and all(r["overall"] >= 0.95 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
