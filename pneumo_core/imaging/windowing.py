"""Window/level for 12/16-bit films: the VOI window functions of PS3.3 C.11.2.1.2, the values kept
for re-windowing (``LoadedImage.raw``) and the presets a viewer offers.

Pure numpy; no Streamlit. The loader uses
:func:`apply_window` for the file's own window, the viewer for any other, so both agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Longest side of ``LoadedImage.raw``: a 4300 x 3500 detector film kept at full size as float32 would
#: hold 60 MB per open film; 2048 px (16 MB at most) is more than a browser viewer shows.
MAX_RAW_SIDE = 2048
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")

# Chest presets where the values have no physical unit (CR/DX): (name, centre, width) as fractions of
# the film's robust range (0.5-99.5th percentile) in display brightness, 0 = black. Air-filled lung is
# the dark part of a chest film, mediastinum and soft tissue the middle-to-bright part, bone the brightest.
_RELATIVE_CHEST = (("lung", 0.30, 0.60), ("mediastinum / soft tissue", 0.62, 0.55), ("bone", 0.80, 0.40))
# Where the Modality LUT gives Hounsfield units (a CT slice or CT-derived image): the usual CT windows.
_HU_CHEST = (("lung", -600.0, 1500.0), ("mediastinum / soft tissue", 50.0, 400.0), ("bone", 500.0, 2000.0))


@dataclass(frozen=True)
class WindowPreset:
    """One window a viewer can offer: ``apply_window(raw, center, width, function)``."""

    name: str
    center: float
    width: float
    function: str = "LINEAR"
    source: str = "data"  # "file" (the DICOM's own VOI window), "data" (from the values), "chest", "HU"


def apply_window(raw: np.ndarray, center: float, width: float, function: str = "LINEAR",
                 invert: bool = False) -> np.ndarray:
    """Values -> uint8 through one VOI window (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT or SIGMOID),
    inverted afterwards when ``invert`` (MONOCHROME1). Raises ``ValueError`` for an unusable window."""
    function = str(function or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        raise ValueError(f"unknown VOI LUT function {function[:20]!r}; expected one of {', '.join(VOI_FUNCTIONS)}")
    center, width = float(center), float(width)
    if not (math.isfinite(center) and math.isfinite(width)):
        raise ValueError("window centre and width must be finite numbers")
    too_small = width < 1.0 if function == "LINEAR" else width <= 0.0
    if too_small:
        raise ValueError(f"window width {width:g} is too small for {function} (LINEAR needs >= 1, others > 0)")
    x = np.asarray(raw, dtype=np.float64)
    if function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        y = (x - center) / width + 0.5
    elif width == 1.0:  # LINEAR of width 1 is a threshold at centre - 0.5
        y = (x > center - 0.5).astype(np.float64)
    else:
        y = (x - (center - 0.5)) / (width - 1.0) + 0.5
    out = np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
    return 255 - out if invert else out


def keep_raw(values: np.ndarray) -> np.ndarray:
    """Values kept for re-windowing: at most ``MAX_RAW_SIDE`` px a side (area-averaged, float32),
    otherwise in the smallest dtype that holds them exactly."""
    arr = np.asarray(values)
    height, width = arr.shape[:2]
    if max(height, width) > MAX_RAW_SIDE:
        from pneumo_core.imaging.resample import shrink

        scale = MAX_RAW_SIDE / max(height, width)
        return shrink(arr.astype(np.float32), (max(1, round(height * scale)), max(1, round(width * scale))))
    if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
        return arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
        if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
            return arr.astype(dtype)
    return arr.astype(np.float32)


def window_presets(loaded) -> list[WindowPreset]:
    """The windows a viewer offers for ``loaded`` (a :class:`LoadedImage`): the file's own VOI windows,
    the full range, a robust range, and chest presets (relative to the data range, or in Hounsfield
    units when the file is calibrated in HU). Empty when there are no kept values (8-bit, colour)."""
    raw = loaded.raw
    if raw is None or raw.size == 0:
        return []
    facts = loaded.dicom or {}
    presets = []
    function = facts.get("voi_function") or "LINEAR"
    for i, (center, width) in enumerate(facts.get("window") or []):
        if width >= 1.0 if function == "LINEAR" else width > 0.0:  # the loader skips unusable ones too
            presets.append(WindowPreset(f"file window {i + 1}", float(center), float(width), function, "file"))
    lo, hi = float(raw.min()), float(raw.max())
    if hi <= lo:
        return presets
    presets.append(WindowPreset("full range (min-max)", (lo + hi) / 2, hi - lo, "LINEAR_EXACT"))
    sample = raw[:: max(1, raw.shape[0] // 512), :: max(1, raw.shape[1] // 512)]  # percentiles of ~250k values
    p_lo, p_hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if p_hi > p_lo:
        presets.append(WindowPreset("robust range (0.5-99.5 %)", (p_lo + p_hi) / 2, p_hi - p_lo, "LINEAR_EXACT"))
    else:
        p_lo, p_hi = lo, hi
    if facts.get("rescale_type") == "HU" or facts.get("modality") == "CT":  # CT's Modality LUT gives HU
        presets += [WindowPreset(name, c, w, "LINEAR", "HU") for name, c, w in _HU_CHEST]
        return presets
    span = p_hi - p_lo
    for name, t_center, t_width in _RELATIVE_CHEST:
        # in display brightness; an inverted film (MONOCHROME1) shows its low values as white
        center = p_hi - t_center * span if loaded.raw_inverted else p_lo + t_center * span
        presets.append(WindowPreset(name, center, t_width * span, "LINEAR_EXACT", "chest"))
    return presets


def windowed(loaded, preset: WindowPreset) -> np.ndarray:
    """``loaded.raw`` through ``preset``, bone white (inverted for MONOCHROME1): uint8, raw's size."""
    if loaded.raw is None:
        raise ValueError("this image has no values to window (8-bit or colour source); show loaded.pixels")
    return apply_window(loaded.raw, preset.center, preset.width, preset.function, invert=loaded.raw_inverted)
