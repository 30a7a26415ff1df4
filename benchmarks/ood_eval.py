"""How well does the not-a-chest-X-ray check separate chest films from everything else?

    python -m benchmarks.ood_eval [--models finetuned frozen] [--data ../shared/data/chest_xray]

For each shipped model it reports

* the false-rejection rate on the official test films (every one *is* a chest X-ray; the
  detector was calibrated on the patient-grouped validation split of ``train/``, never on these),
  target <= 2 %;
* the rejection rate on a varied set of >= 100 images that are not chest X-rays, built here
  from scikit-image's sample images (photos, micrographs, astronomy, a retina, a CT phantom),
  crops, rescales and greyscale copies of them, synthetic documents, noise, gradients and flat
  images, target >= 95 %. An image counts as rejected when ``Predictor.predict`` returns an
  error (the out-of-distribution check, the colour/blank checks, or the loader's size check).

Nothing is written to disk. Runtime on a 2-core CPU: about a minute per model.
"""
from __future__ import annotations

import argparse
import io
import os
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SKIMAGE_NAMES = (
    "astronaut", "binary_blobs", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock",
    "coffee", "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
    "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
    "shepp_logan_phantom", "stereo_motorcycle", "text",
)
WORDS = ("invoice patient total amount date report findings impression chest normal signed account "
         "payment reference number table summary lorem ipsum dolor sit amet consectetur").split()


def _u8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-9) * 255.0
        return np.clip(a + 0.5, 0, 255).astype(np.uint8)
    return a


def _skimage_images() -> dict[str, np.ndarray]:
    import skimage.data as sd

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in SKIMAGE_NAMES:
            try:
                img = getattr(sd, name)()
            except Exception:  # an image needing a download (no network): skip it
                continue
            if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
                img = img[0]
            img = _u8(img)
            if img.ndim == 3 and img.shape[-1] == 4:
                img = img[..., :3]
            out[name] = img
        try:
            faces = sd.lfw_subset()
            for i in (0, 50, 150):
                out[f"lfw_face_{i}"] = _u8(faces[i])
        except Exception:
            pass
    return out


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if w * h < img.shape[0] * img.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(img, (w, h), interpolation=interp)


def _document(rng, h=1100, w=850, dark=False, scanned=False, table=False) -> np.ndarray:
    import cv2

    bg, fg = (25, 230) if dark else (255, 0)
    page = np.full((h, w), bg, np.uint8)
    fonts = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX)
    y = int(rng.integers(60, 120))
    cv2.putText(page, " ".join(rng.choice(WORDS, 3)).upper(), (50, y), fonts[0], 1.4, fg, 3, cv2.LINE_AA)
    y += 60
    scale = float(rng.uniform(0.5, 0.9))
    step = int(34 * scale / 0.7)
    font = fonts[int(rng.integers(len(fonts)))]
    while y < h - 60:
        line = " ".join(rng.choice(WORDS, int(rng.integers(4, 9))))
        cv2.putText(page, line, (50, y), font, scale, fg, 1 + int(scale > 0.7), cv2.LINE_AA)
        y += step
        if table and rng.random() < 0.3:
            cv2.line(page, (40, y - step // 2), (w - 40, y - step // 2), fg, 1)
    if table:
        for x in (40, w // 3, 2 * w // 3, w - 40):
            cv2.line(page, (x, 140), (x, h - 50), fg, 1)
    if scanned:  # a grey, slightly blurred, noisy photocopy
        page = cv2.GaussianBlur(page, (3, 3), 0).astype(np.float64) * 0.8 + 30
        page = np.clip(page + rng.normal(0, 8, page.shape), 0, 255).astype(np.uint8)
    return page


def non_cxr_images(seed: int = 0) -> list[tuple[str, str, np.ndarray]]:
    """(name, category, uint8 image) for >= 100 images that are not chest X-rays."""
    import cv2

    rng = np.random.default_rng(seed)
    items: list[tuple[str, str, np.ndarray]] = []
    base = _skimage_images()
    for name, img in base.items():
        category = "colour photo/scene" if img.ndim == 3 else "greyscale sample image"
        if name.startswith("lfw_face"):
            img = _resize(img, 128, 128)
            category = "greyscale sample image"
        if min(img.shape[:2]) < 64:
            img = _resize(img, max(64, img.shape[1] * 2), max(64, img.shape[0] * 2))
        items.append((f"skimage:{name}", category, img))
        if img.ndim == 3:
            items.append((f"grey({name})", "greyscale copy of a photo", cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)))
        h, w = img.shape[:2]
        if min(h, w) >= 128:  # a random crop of 40-80 % of each side
            ch, cw = int(h * rng.uniform(0.4, 0.8)), int(w * rng.uniform(0.4, 0.8))
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            items.append((f"crop({name})", "crop", img[y0 : y0 + ch, x0 : x0 + cw]))
        # a rescale with a changed aspect ratio (portrait), as a phone or scanner might give
        items.append((f"rescale({name})", "rescale", _resize(img, max(64, int(w * 0.6)), int(h * 1.3))))
    for i in range(10):
        items.append((f"document_{i}", "document/text render",
                      _document(rng, dark=i in (3, 7), scanned=i % 3 == 1, table=i % 2 == 0)))
    h, w = 512, 512
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(yy - h / 2, xx - w / 2) / (h / 2)
    gradients = {
        "gradient_horizontal": xx / (w - 1), "gradient_vertical": yy / (h - 1),
        "gradient_diagonal": (xx + yy) / (w + h - 2), "gradient_radial": np.clip(1 - r, 0, 1),
        "gradient_radial_inverse": np.clip(r, 0, 1), "stripes_sinusoidal": 0.5 + 0.5 * np.sin(xx / 9.0),
        "rings": 0.5 + 0.5 * np.cos(r * 40.0),
    }
    for name, g in gradients.items():
        items.append((name, "gradient", _u8(g * 255.0)))
    colour = (np.stack([xx / w, yy / h, 1 - xx / w], -1) * 255).astype(np.uint8)
    items.append(("gradient_colour", "gradient", colour))
    noises = {
        "noise_uniform": rng.integers(0, 256, (h, w)),
        "noise_gaussian": np.clip(rng.normal(128, 40, (h, w)), 0, 255),
        "noise_salt_pepper": (rng.random((h, w)) < 0.5) * 255,
        "noise_blur3": cv2.GaussianBlur(rng.normal(128, 60, (h, w)), (0, 0), 3),
        "noise_blur12": cv2.GaussianBlur(rng.normal(128, 60, (h, w)), (0, 0), 12),
        "noise_colour": rng.integers(0, 256, (h, w, 3)),
        "noise_dark_low": np.clip(rng.normal(30, 10, (h, w)), 0, 255),
    }
    for name, n in noises.items():
        items.append((name, "noise", _u8(n) if name.startswith("noise_blur") else np.asarray(n, np.uint8)))
    for level in (0, 40, 128, 255):
        items.append((f"flat_{level}", "flat/blank", np.full((300, 300), level, np.uint8)))
    items.append(("flat_colour", "flat/blank", np.full((300, 300, 3), (200, 60, 60), np.uint8)))
    return items


def encode(img: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def evaluate(model: str, data: Path, items, batch_size: int = 32) -> dict:
    from pneumo_core.datasets.listing import list_images, resolve_split_dir
    from pneumo_core.inference.predictor import Predictor

    t0 = time.time()
    pred = Predictor(model)
    if pred.ood is None:
        print(f"[{model}] has no out-of-distribution detector (ood.npz): nothing to evaluate")
        return {}
    df = list_images(resolve_split_dir(data, "test"))
    res = pred.predict_files(df.path, batch_size=batch_size, reject_ood=True)
    rejected = np.array([r.error is not None for r in res])
    dists = np.array([r.ood_distance if r.ood_distance is not None else np.nan for r in res])
    by_cat: dict[str, list] = defaultdict(list)
    by_reason: dict[str, int] = defaultdict(int)
    accepted = []
    non_dists = []
    for name, cat, img in items:
        fmt = "JPEG" if img.ndim == 3 else "PNG"
        r = pred.predict(encode(img, fmt), name=name)
        by_cat[cat].append(r.error is not None)
        if r.error is not None:
            by_reason["not-a-chest-X-ray check" if r.is_chest_xray is False else
                      "blank check" if "blank" in r.error else "loader"] += 1
        non_dists.append(r.ood_distance if r.ood_distance is not None else np.nan)
        if r.error is None:
            accepted.append(f"{name} (distance {r.ood_distance}, {r.label} p={r.p_pneumonia:.2f})")
    n_rej = sum(sum(v) for v in by_cat.values())
    n_all = sum(len(v) for v in by_cat.values())
    frr = float(rejected.mean())
    print(f"\n== model {model} (sha256 {pred.sha256[:12]})  OOD limit {pred.ood.threshold:.1f}, calibrated for "
          f"{pred.ood.target_frr:.0%} false rejection on validation films")
    print(f"test chest X-rays : {rejected.sum()}/{len(rejected)} rejected  -> false rejection "
          f"{frr:.2%}  (target <= 2%)  {'PASS' if frr <= 0.02 else 'FAIL'}")
    print("   distance percentiles 50/95/99/max: "
          + " / ".join(f"{np.nanpercentile(dists, q):.1f}" for q in (50, 95, 99, 100)))
    for i in np.flatnonzero(rejected)[:10]:
        print(f"   rejected: {Path(res[i].file).parent.name}/{Path(res[i].file).name}: {res[i].error[:90]}")
    print(f"non-chest images  : {n_rej}/{n_all} rejected  -> rejection {n_rej / n_all:.2%}  (target >= 95%)  "
          f"{'PASS' if n_rej / n_all >= 0.95 else 'FAIL'}")
    print("   rejected by: " + ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())))
    print(f"   {'category':28s} {'n':>4s} {'rejected':>9s}")
    for cat, v in sorted(by_cat.items()):
        print(f"   {cat:28s} {len(v):4d} {np.mean(v):9.0%}")
    finite = np.array(non_dists, float)
    if np.isfinite(finite).any():
        print(f"   smallest non-chest distance reaching the detector: {np.nanmin(finite):.1f}")
    for a in accepted:
        print(f"   ACCEPTED (missed): {a}")
    # Informational, not in either target: real films shown wrongly. Rejecting them is welcome
    # (the model never saw them) but they *are* chest X-rays, so they count for neither rate.
    from PIL import Image

    sample = list(df.path[:: max(1, len(df) // 20)][:20])
    wrong = {"negative (MONOCHROME1 shown raw)": lambda g: 255 - g, "rotated 90 deg": lambda g: np.rot90(g),
             "upside down": lambda g: g[::-1]}
    print("   informational, real films displayed wrongly (20 each): rejected by the chest-X-ray check")
    for label, fn in wrong.items():
        n = 0
        for path in sample:
            g = np.asarray(Image.open(path).convert("L"))
            n += pred.predict(encode(np.ascontiguousarray(fn(g)), "PNG")).error is not None
        print(f"      {label:34s} {n}/{len(sample)}")
    print(f"   ({time.time() - t0:.0f} s)")
    return {"model": model, "false_rejection": frr, "n_cxr": len(rejected), "rejection": n_rej / n_all,
            "n_non_cxr": n_all, "by_category": {k: float(np.mean(v)) for k, v in by_cat.items()}}


def main(argv=None) -> int:
    from pneumo_core.config import MODELS_DIR, data_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["finetuned", "frozen"])
    ap.add_argument("--data", type=Path, default=data_dir())
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    items = non_cxr_images(args.seed)
    counts = defaultdict(int)
    for _, cat, _ in items:
        counts[cat] += 1
    print(f"non-chest set: {len(items)} images: " + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())))
    results = []
    for m in args.models:
        if not (MODELS_DIR / f"{m}.keras").exists() and not Path(m).is_file():
            print(f"[{m}] model file not found, skipped")
            continue
        results.append(evaluate(m, args.data, items))
    ok = all(r and r["false_rejection"] <= 0.02 and r["rejection"] >= 0.95 for r in results) and results
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
